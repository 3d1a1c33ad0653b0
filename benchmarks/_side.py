"""What the two workers of ``official_side_by_side.py`` share: the line protocol, the timed gets,
the record of what the watch callbacks saw, and the values' format.

Standard library only and no client: ``side_worker_official.py`` runs it under the official
client's interpreter (``tests/.peers/nacos3``), ``side_worker_aioacm.py`` under aioacm's, and the
orchestrator imports it for ``body`` and ``stamp``. Each worker wraps its client in an adapter
(``open``, ``get``, ``watch``, ``stats``, ``close``) and hands it to :func:`serve`, so both are
driven and timed by the same code.

The protocol: the orchestrator starts ``python side_worker_X.py CONFIG_JSON`` and writes one
JSON command a line on its stdin; the worker answers each command with one JSON line on stdout
(``{"type": ..., ...}``). Besides the answers, the worker writes one ``{"type": "change", "seq",
"t"}`` line the moment a callback sees a streamed value (``t`` is ``time.monotonic()``,
CLOCK_MONOTONIC, one clock for every process of the machine). Anything a library prints goes to
stderr (the worker's stdout is moved there; the protocol keeps a copy of the original).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

STREAM_MARK = "side-stream"


def body(key: str, size: int) -> str:
    """A value of exactly ``size`` characters (ASCII), unique to ``key``."""
    head = f"# {key}\n"
    lines = [head]
    i = 0
    while sum(map(len, lines)) < size:
        lines.append(f"{key}.setting{i}=value-{i:04d}\n")
        i += 1
    return "".join(lines)[:size]


def streamed(seq: int, published: float, size: int) -> str:
    """A streamed value: its sequence number and ``time.monotonic()`` when it was published,
    padded to ``size`` characters."""
    text = f"{STREAM_MARK}\nseq={seq}\nt={published!r}\n"
    return text + "#" * max(0, size - len(text))


def stamp(content: str | None) -> int | None:
    """The sequence number of a streamed value, else None (an initial value)."""
    if not content or not content.startswith(STREAM_MARK):
        return None
    for line in content.splitlines():
        if line.startswith("seq="):
            return int(line[4:])
    return None


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile (``fraction`` in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]


class Channel:
    """The worker's end of the line protocol."""

    def __init__(self) -> None:
        self._out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)  # whatever a library prints goes to stderr, not into the protocol
        sys.stdout = sys.stderr
        self._reader: asyncio.StreamReader | None = None

    def send(self, **fields: Any) -> None:
        self._out.write(json.dumps(fields) + "\n")
        self._out.flush()

    async def receive(self) -> dict[str, Any]:
        if self._reader is None:  # read stdin on the loop: no thread taken from the executor
            loop = asyncio.get_running_loop()
            self._reader = asyncio.StreamReader(limit=2**24)
            protocol = asyncio.StreamReaderProtocol(self._reader)
            await loop.connect_read_pipe(lambda: protocol, sys.stdin)
        line = await self._reader.readline()
        return json.loads(line) if line.strip() else {"cmd": "quit"}


class Recorder:
    """What the watch callbacks saw: the first value of each key, and every streamed value
    (reported at once on the channel)."""

    def __init__(self, channel: Channel, keys: list[str]) -> None:
        self.channel = channel
        self.expected = len(keys)
        self.first: set[str] = set()
        self.empty_first = 0
        self.others = 0
        self.all_first = asyncio.Event()

    def seen(self, data_id: str, content: str | None) -> None:
        now = time.monotonic()
        seq = stamp(content)
        if seq is not None:
            self.channel.send(type="change", seq=seq, t=now)
        if data_id not in self.first:
            self.first.add(data_id)
            if not content:
                self.empty_first += 1
            if len(self.first) == self.expected:
                self.all_first.set()
        elif seq is None:
            self.others += 1  # a callback neither first nor streamed (a repeat of a value)


class Adapter(Protocol):
    """One client, as the shared driver sees it."""

    async def open(self) -> None: ...

    async def get(self, key: str) -> str | None: ...

    async def watch(self, key: str, recorder: Recorder) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    async def close(self) -> dict[str, Any]: ...


async def _gets(
    get: Callable[[str], Awaitable[str | None]],
    keys: list[str],
    expected: dict[str, str],
    n: int,
    concurrency: int,
    latencies: list[float] | None,
) -> dict[str, int]:
    """``n`` gets of ``keys`` round-robin by ``concurrency`` tasks, each taking the next."""
    counter = itertools.count()
    counts = {"errors": 0, "wrong": 0}
    first_error: list[str] = []

    async def caller() -> None:
        while (i := next(counter)) < n:
            key = keys[i % len(keys)]
            started = time.perf_counter()
            try:
                value = await get(key)
            except Exception as exc:
                counts["errors"] += 1
                if not first_error:
                    first_error.append(f"{type(exc).__name__}: {exc}")
                continue
            if latencies is not None:
                latencies.append(time.perf_counter() - started)
            if value != expected[key]:
                counts["wrong"] += 1

    await asyncio.gather(*(caller() for _ in range(max(1, min(concurrency, n)))))
    if first_error:
        print(f"first get error: {first_error[0]}", file=sys.stderr)
    return counts


async def timed_gets(client: Adapter, cmd: dict[str, Any]) -> dict[str, Any]:
    """Every key once, ``warmup`` gets at the level's concurrency, then ``gets`` timed ones."""
    keys, size = cmd["keys"], cmd["size"]
    expected = {key: body(key, size) for key in keys}
    n, concurrency = cmd["gets"], cmd["concurrency"]
    await _gets(client.get, keys, expected, len(keys), 1, None)
    await _gets(client.get, keys, expected, cmd["warmup"], concurrency, None)
    gc.collect()
    latencies: list[float] = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    counts = await _gets(client.get, keys, expected, n, concurrency, latencies)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "concurrency": concurrency,
        "gets": n,
        "seconds": wall,
        "cpu_s": cpu,
        "gets_per_s": n / wall,
        "cpu_per_get_us": cpu / n * 1e6,
        "p50_ms": (percentile(latencies, 0.5) or 0) * 1000,
        "p99_ms": (percentile(latencies, 0.99) or 0) * 1000,
        **counts,
    }


async def watch_all(client: Adapter, recorder: Recorder, cmd: dict[str, Any]) -> dict[str, Any]:
    """Watch every key, one after the other; wait until every key's first value arrived."""
    keys = cmd["keys"]
    t0 = time.perf_counter()
    for key in keys:
        await client.watch(key, recorder)
    added = time.perf_counter() - t0
    try:
        await asyncio.wait_for(recorder.all_first.wait(), cmd["timeout"])
        ready: float | None = time.perf_counter() - t0
    except asyncio.TimeoutError:
        ready = None
    return {
        "keys": len(keys),
        "added_s": added,
        "ready_s": ready,
        "arrived": len(recorder.first),
        "empty_first": recorder.empty_first,
    }


async def serve(client: Adapter) -> None:
    """Answer the orchestrator's commands until ``quit``."""
    channel = Channel()
    recorder: Recorder | None = None
    try:
        t0 = time.perf_counter()
        try:
            await client.open()
        except Exception as exc:
            traceback.print_exc()
            channel.send(type="open", error=f"{type(exc).__name__}: {exc}")
            return
        channel.send(type="open", seconds=time.perf_counter() - t0, pid=os.getpid())
        while True:
            cmd = await channel.receive()
            name = cmd["cmd"]
            try:
                if name == "gets":
                    channel.send(type="gets", **await timed_gets(client, cmd))
                elif name == "settle":  # the garbage collected, the loop quiet a while
                    gc.collect()
                    await asyncio.sleep(cmd.get("seconds", 2.0))
                    gc.collect()
                    channel.send(type="settled")
                elif name == "watch":
                    recorder = Recorder(channel, cmd["keys"])
                    channel.send(type="watching", **await watch_all(client, recorder, cmd))
                elif name == "stats":
                    others = recorder.others if recorder else 0
                    channel.send(type="stats", repeats=others, **client.stats())
                elif name == "quit":
                    break
                else:
                    channel.send(type="error", error=f"unknown command {name!r}")
            except Exception as exc:
                traceback.print_exc()
                channel.send(type="error", cmd=name, error=f"{type(exc).__name__}: {exc}")
    finally:
        t0 = time.perf_counter()
        try:
            closed = await client.close()
            channel.send(type="closed", seconds=time.perf_counter() - t0, **closed)
        except Exception as exc:
            traceback.print_exc()
            channel.send(
                type="closed",
                seconds=time.perf_counter() - t0,
                error=f"{type(exc).__name__}: {exc}",
            )
