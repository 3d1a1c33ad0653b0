"""One watching client under a steady stream of changes, in a process of its own.

``python stream_worker.py CONFIG_JSON``; CONFIG has ``endpoint``, ``namespace``, ``prefix``,
``keys``, ``poller_size`` (``pulling_config_size``), ``changes`` (how many the publisher
sends), ``nonce`` (marks this run's values), ``timeout``, ``workdir`` and optionally ``profile``
(a cProfile report of the stream window goes there).

1. Watch ``keys`` existing items (an ``async def`` callback each, so every callback runs on the
   event loop and its CPU is the loop's) and wait for every first callback.
2. Print ``READY`` on stdout: the orchestrator (``change_stream.py``) then publishes
   ``changes`` new values, each to another watched key, at a steady rate, from another process.
   Each value carries its sequence number and ``time.monotonic()`` at publishing
   (CLOCK_MONOTONIC: one clock for every process of the machine).
3. Count every callback until each sequence number arrived (or ``timeout``): latency is
   callback time minus publish time; a number seen twice is a double delivery, one never seen
   a lost change. CPU is measured from ``READY`` to the last arrival: the event-loop thread's
   (``time.thread_time`` on the loop) and the whole process's (snapshot writes run in threads).
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import sys
import time
from collections.abc import Iterator
from typing import Any

from _common import GROUP, emit, percentile


@contextlib.contextmanager
def cprofiled(path: str | None) -> Iterator[None]:
    """cProfile the block (every call on the loop's thread) into ``path``, by own time."""
    if not path:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        with open(path, "w", encoding="utf-8") as f:
            pstats.Stats(profiler, stream=f).sort_stats("tottime").print_stats(40)
            pstats.Stats(profiler, stream=f).sort_stats("cumulative").print_stats(60)


def parse(content: str | None, nonce: str) -> tuple[int, float] | None:
    """``(sequence number, publish time)`` of a value streamed in this run, else None (a
    seeded value, or one left by an earlier run)."""
    if not content or not content.startswith(f"run={nonce}\n"):
        return None
    fields = dict(line.split("=", 1) for line in content.splitlines() if "=" in line)
    return int(fields["seq"]), float(fields["t"])


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    from aioacm import ACMClient, ConfigClient, NacosClient

    keys = [f"{cfg['prefix']}{i:05d}" for i in range(cfg["keys"])]
    expected = cfg["changes"]
    first: set[str] = set()
    all_first = asyncio.Event()
    latencies: dict[int, float] = {}
    doubles = 0
    done = asyncio.Event()
    last_arrival = [0.0]

    async def callback(event: dict[str, Any]) -> None:
        nonlocal doubles
        now = time.monotonic()
        data_id = event["data_id"]
        if data_id not in first:
            first.add(data_id)
            if len(first) == len(keys):
                all_first.set()
        stamp = parse(event["content"], cfg["nonce"])
        if stamp is None:
            return
        seq, published = stamp
        if seq in latencies:
            doubles += 1
            return
        latencies[seq] = now - published
        last_arrival[0] = now
        if len(latencies) >= expected:
            done.set()

    options: dict[str, Any] = {
        "pulling_config_size": cfg["poller_size"],
        "snapshot_base": os.path.join(cfg["workdir"], "snapshot"),
        "failover_base": os.path.join(cfg["workdir"], "data"),
    }
    if cfg.get("protocol") == "nacos":
        client: ConfigClient = NacosClient(cfg["endpoint"], cfg["namespace"], **options)
    else:
        client = ACMClient(cfg["endpoint"], cfg["namespace"], cai_enabled=False, **options)
    async with client:
        started = time.perf_counter()
        for key in keys:
            await client.add_watcher(key, GROUP, callback)
        await asyncio.wait_for(all_first.wait(), cfg["timeout"])
        ready_s = time.perf_counter() - started
        await asyncio.sleep(1.0)  # let the first polls' snapshot writes settle
        loop_cpu0, cpu0, t0 = time.thread_time(), time.process_time(), time.monotonic()
        req0 = client.stats().requests
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        with cprofiled(cfg.get("profile")), contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(done.wait(), cfg["timeout"])
        loop_cpu, cpu = time.thread_time() - loop_cpu0, time.process_time() - cpu0
        reqs = client.stats().requests - req0
        window = (last_arrival[0] or time.monotonic()) - t0
    values = sorted(latencies.values())
    delivered = len(latencies)
    return {
        "keys": len(keys),
        "requests": reqs,  # sent in the window: a get per change, plus the polls
        "poller_size": cfg["poller_size"],
        "ready_s": ready_s,
        "changes": expected,
        "delivered": delivered,
        "lost": expected - delivered,
        "doubled": doubles,
        "window_s": window,
        "loop_cpu_s": loop_cpu,
        "process_cpu_s": cpu,
        "loop_cpu_per_change_ms": loop_cpu / max(1, delivered) * 1000,
        "process_cpu_per_change_ms": cpu / max(1, delivered) * 1000,
        "p50_ms": percentile(values, 0.5) * 1000 if values else None,
        "p99_ms": percentile(values, 0.99) * 1000 if values else None,
        "max_ms": values[-1] * 1000 if values else None,
    }


def main() -> None:
    cfg = json.loads(sys.argv[1])
    emit(asyncio.run(run(cfg)))


if __name__ == "__main__":
    main()
