"""Get throughput and latency, measured in a worker process (so its CPU time is the clients').

``python get_worker.py CONFIG_JSON``; CONFIG has ``client`` (``sync``, or ``aioacm``, ``floor``,
or both as ``floor+aioacm``: their levels then alternate in this one process, one client at a
time, so the CPU time of a level is still its client's),
``endpoint``, ``namespace``, ``keys`` (data ids, read round-robin), ``warm_key``, ``levels``
(``[[concurrency, gets], ...]``), ``workdir``, and optionally ``first`` (``{"keys": [...],
"concurrency": n, "repeats": n}``) and ``cold`` (true: leave out the unmeasured first read of each
key). It prints, per level and per first-read run, requests/s, p50 and p99 latency (seconds, as
the caller sees them, queueing included) and process CPU seconds per get.

Two measurements, because a key's first read and its later reads cost different things:

- **levels** (the steady state): each level starts with a fresh client and an empty snapshot
  folder; before it is timed, the client opens its connections and reads every key once, as a
  running application has. Then ``gets`` reads are timed.
- **first reads** (a cold start): a fresh client with an empty snapshot folder opens its
  connections, then reads each of ``first["keys"]`` exactly once, timed. aioacm writes a
  snapshot for each (temporary file, flushed to disk, renamed into place); the sync SDK
  writes one on every get.

- ``aioacm``: ``ACMClient.get`` with default options (address server, snapshots), or
  ``NacosClient.get`` with ``protocol: "nacos"`` (the floor then GETs Nacos's path).
- ``floor``: bare ``aiohttp`` GETs of the same URL with the same headers over one default
  ``ClientSession``: no SDK work at all.
- ``sync``: ``acm-sdk-python`` 0.4.11 ``get`` driven by a thread pool of 32 threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any
from urllib.parse import urlencode

from _common import GROUP, emit, percentile, profiled

SYNC_THREADS = 32


def summarize(latencies: list[float], wall: float, cpu: float, errors: int) -> dict[str, Any]:
    gets = len(latencies)
    return {
        "gets": gets,
        "errors": errors,
        "wall_s": wall,
        "rps": gets / wall if wall else 0.0,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "cpu_per_get_us": cpu / gets * 1e6 if gets else 0.0,
    }


async def drive(
    call: Callable[[str], Awaitable[object]], keys: list[str], gets: int, concurrency: int
) -> dict[str, Any]:
    """``concurrency`` callers share ``gets`` calls; each call is timed from the caller."""
    latencies: list[float] = []
    errors = 0
    turns = iter(range(gets))

    async def caller() -> None:
        nonlocal errors
        for i in turns:
            started = time.perf_counter()
            try:
                if await call(keys[i % len(keys)]) is None:
                    errors += 1
            except Exception as exc:
                errors += 1
                print(f"get failed: {exc!r}", file=sys.stderr)
            latencies.append(time.perf_counter() - started)

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return summarize(latencies, wall, cpu, errors)


Call = Callable[[str], Awaitable[object]]
#: Opens a client for one measurement (its snapshot folders named after the argument) and
#: yields its ``call``.
Opener = Callable[[str], contextlib.AbstractAsyncContextManager[Call]]


async def connect(call: Call, key: str, concurrency: int) -> None:
    """Open the connections a run will use (not measured)."""
    for _ in range(2):
        await asyncio.gather(*(call(key) for _ in range(concurrency)))


async def measure(openers: dict[str, Opener], cfg: dict[str, Any]) -> dict[str, Any]:
    """The levels, then the first-read runs (see the module docstring), per client: with more
    than one, their runs alternate (a level of each, in the order given, then the next level),
    so that a slow patch of the machine, or of this process, weighs on all of them alike."""
    keys, warm_key = cfg["keys"], cfg["warm_key"]
    out: dict[str, Any] = {name: {"levels": {}, "first": []} for name in openers}
    for concurrency, gets in cfg["levels"]:
        for name, open_client in openers.items():
            async with open_client(f"c{concurrency}") as call:
                await connect(call, warm_key, concurrency)
                if not cfg.get("cold"):
                    await drive(call, keys, len(keys), concurrency)  # each key's first read
                out[name]["levels"][str(concurrency)] = await drive(call, keys, gets, concurrency)
    spec = cfg.get("first")
    for run in range(spec["repeats"] if spec else 0):
        assert spec is not None
        for name, open_client in openers.items():
            async with open_client(f"first{run}") as call:
                await connect(call, warm_key, spec["concurrency"])
                first = await drive(call, spec["keys"], len(spec["keys"]), spec["concurrency"])
                out[name]["first"].append(first)
    return out


def aioacm_opener(cfg: dict[str, Any]) -> Opener:
    from aioacm import ACMClient, NacosClient

    nacos = cfg.get("protocol") == "nacos"

    @contextlib.asynccontextmanager
    async def open_client(name: str) -> AsyncIterator[Call]:
        base = os.path.join(cfg["workdir"], f"aioacm-{name}")
        folders = {
            "snapshot_base": os.path.join(base, "snapshot"),
            "failover_base": os.path.join(base, "data"),
        }
        client_class = NacosClient if nacos else ACMClient
        async with client_class(cfg["endpoint"], cfg["namespace"], **folders) as client:

            async def call(key: str) -> str | None:
                return await client.get(key, GROUP)

            yield call

    return open_client


def floor_opener(cfg: dict[str, Any]) -> Opener:
    import aiohttp

    from aioacm import __version__

    headers = {
        "Diamond-Client-AppName": "ACM-SDK-Python",
        "Client-Version": __version__,
        "exConfigInfo": "true",
    }

    path = "/nacos/v1/cs/configs" if cfg.get("protocol") == "nacos" else "/diamond-server/config.co"

    def url(key: str) -> str:
        query = urlencode([("dataId", key), ("group", GROUP), ("tenant", cfg["namespace"])])
        return f"http://{cfg['endpoint']}{path}?{query}"

    first_keys = cfg["first"]["keys"] if cfg.get("first") else []
    urls = {key: url(key) for key in [*cfg["keys"], *first_keys, cfg["warm_key"]]}

    @contextlib.asynccontextmanager
    async def open_client(name: str) -> AsyncIterator[Call]:
        async with aiohttp.ClientSession() as session:

            async def call(key: str) -> bytes | None:
                async with session.get(urls[key], headers=headers) as resp:
                    body = await resp.read()
                    return body if resp.status == 200 else None

            yield call

    return open_client


OPENERS = {"aioacm": aioacm_opener, "floor": floor_opener}


async def run_async(names: list[str], cfg: dict[str, Any]) -> dict[str, Any]:
    """``measure`` for aioacm and/or the floor, in this process."""
    return await measure({name: OPENERS[name](cfg) for name in names}, cfg)


async def run_aioacm(cfg: dict[str, Any]) -> dict[str, Any]:
    return (await run_async(["aioacm"], cfg))["aioacm"]  # type: ignore[no-any-return]


async def run_floor(cfg: dict[str, Any]) -> dict[str, Any]:
    return (await run_async(["floor"], cfg))["floor"]  # type: ignore[no-any-return]


def drive_threads(
    pool: ThreadPoolExecutor,
    call: Callable[[str], object],
    keys: list[str],
    gets: int,
    concurrency: int,
) -> dict[str, Any]:
    """Keep ``concurrency`` calls in flight on ``pool``; time each from its submission."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    turns = iter(range(gets))
    active = [concurrency]
    finished = threading.Event()

    def submit() -> None:
        with lock:
            i = next(turns, None)
            if i is None:
                active[0] -= 1
                if active[0] == 0:
                    finished.set()
                return
        started = time.perf_counter()
        future = pool.submit(call, keys[i % len(keys)])
        future.add_done_callback(lambda f: done(f, started))

    def done(future: Future[object], started: float) -> None:
        latencies.append(time.perf_counter() - started)
        if future.exception() is not None or future.result() is None:
            errors[0] += 1
        submit()

    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(concurrency):
        submit()
    finished.wait()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return summarize(latencies, wall, cpu, errors[0])


def run_sync(cfg: dict[str, Any]) -> dict[str, Any]:
    """``measure`` for the sync SDK: the same steps, its gets from a pool of threads."""
    import acm

    client = acm.ACMClient(cfg["endpoint"], cfg["namespace"])
    keys, warm_key = cfg["keys"], cfg["warm_key"]

    def call(key: str) -> str | None:
        return client.get(key, GROUP)  # type: ignore[no-any-return]

    def fresh(name: str) -> None:
        base = os.path.join(cfg["workdir"], f"sync-{name}")
        client.set_options(
            snapshot_base=os.path.join(base, "snapshot"),
            failover_base=os.path.join(base, "data"),
        )
        call(warm_key)  # it opens a connection per request: nothing else to warm

    levels = {}
    for concurrency, gets in cfg["levels"]:
        fresh(f"c{concurrency}")
        with ThreadPoolExecutor(SYNC_THREADS) as pool:
            if not cfg.get("cold"):
                drive_threads(pool, call, keys, len(keys), concurrency)  # each key's first read
            levels[str(concurrency)] = drive_threads(pool, call, keys, gets, concurrency)
    first = []
    spec = cfg.get("first")
    for run in range(spec["repeats"] if spec else 0):
        assert spec is not None
        fresh(f"first{run}")
        with ThreadPoolExecutor(SYNC_THREADS) as pool:
            first.append(
                drive_threads(pool, call, spec["keys"], len(spec["keys"]), spec["concurrency"])
            )
    return {"levels": levels, "first": first}


def main() -> None:
    cfg = json.loads(sys.argv[1])
    kind = cfg["client"]  # "sync", or async clients joined by "+" (run alternately)
    if kind == "sync":
        emit({"client": kind, "runs": {"sync": run_sync(cfg)}})
        return
    with profiled(cfg.get("profile")):
        runs = asyncio.run(run_async(kind.split("+"), cfg))
    emit({"client": kind, "runs": runs})


if __name__ == "__main__":
    main()
