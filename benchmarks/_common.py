"""Helpers shared by the benchmark orchestrator and its worker processes.

Workers are plain scripts (``python benchmarks/get_worker.py CONFIG_JSON``) that print exactly
one ``RESULT {...}`` line on stdout; everything else they print is diagnostics.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psutil

RESULT_PREFIX = "RESULT "
GROUP = "DEFAULT_GROUP"


def emit(result: dict[str, Any]) -> None:
    """Print the worker's one result line and flush it."""
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()


def parse_result(stdout: str) -> dict[str, Any]:
    """The result a worker printed; ValueError if it printed none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return dict(json.loads(line[len(RESULT_PREFIX) :]))
    raise ValueError("the worker printed no result")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def spread(values: Iterable[float | None]) -> dict[str, float] | None:
    """``{min, median, max, n}`` over the values that are not None (None if there are none)."""
    present = [v for v in values if v is not None and not math.isnan(v)]
    if not present:
        return None
    return {
        "min": min(present),
        "median": statistics.median(present),
        "max": max(present),
        "n": len(present),
    }


def process_tree(root: psutil.Process | None = None) -> list[psutil.Process]:
    """This process (or ``root``) and every live descendant."""
    root = root or psutil.Process(os.getpid())
    procs = [root]
    with contextlib.suppress(psutil.Error):
        procs.extend(root.children(recursive=True))
    return procs


def tree_metrics(server_port: int, *, memory_detail: bool = True) -> dict[str, float]:
    """Resources of this process tree: memory (RSS and PSS summed over processes), CPU seconds,
    threads, processes, and TCP connections established to the server's port."""
    rss = pss = cpu = 0.0
    threads = processes = connections = 0
    for proc in process_tree():
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                if memory_detail:
                    pss += getattr(proc.memory_full_info(), "pss", 0)
                times = proc.cpu_times()
                cpu += times.user + times.system
                threads += proc.num_threads()
                connections += sum(
                    1
                    for c in proc.net_connections(kind="tcp")
                    if c.status == psutil.CONN_ESTABLISHED
                    and c.raddr
                    and c.raddr.port == server_port
                )
                processes += 1
        except psutil.Error:
            continue
    return {
        "rss_mb": rss / 2**20,
        "pss_mb": pss / 2**20,
        "cpu_s": cpu,
        "threads": threads,
        "processes": processes,
        "connections": connections,
    }


def tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process and its live descendants."""
    total = 0.0
    for proc in process_tree():
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def content_for(data_id: str, size: int) -> str:
    """A config body of about ``size`` bytes, properties-style, unique to ``data_id``."""
    lines = [f"# {data_id}"]
    i = 0
    while sum(len(line) + 1 for line in lines) < size:
        lines.append(f"{data_id}.setting{i}=value-{i:04d}")
        i += 1
    return "\n".join(lines)


@contextlib.contextmanager
def profiled(path: str | None) -> Iterator[None]:
    """Profile the block with pyinstrument into ``path`` (text) and ``path``.html, if given."""
    if not path:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        yield
    finally:
        profiler.stop()
        with open(path, "w", encoding="utf-8") as f:
            f.write(profiler.output_text(unicode=True, color=False))
        with open(path + ".html", "w", encoding="utf-8") as f:
            f.write(profiler.output_html())
