"""NacosClient against the legacy nacos-sdk-python 2.x client, side by side on one Nacos.

    python benchmarks/legacy_side_by_side.py HOST:PORT

2,000 gets over 50 keys (200-byte values, published first), one at a time and 64 at a time
(asyncio tasks for aioacm, a thread pool for the legacy client, which is synchronous); gets a
second and client CPU per get, as one JSON line. Run it twice and keep the second: the first
run warms the server's JVM. Nothing here starts a server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

GETS = 2000
KEYS = [f"side.{i}" for i in range(50)]
GROUP = "G"


def legacy(address: str, concurrency: int) -> dict[str, float]:
    import nacos  # type: ignore[import-untyped]

    logging.getLogger("nacos").setLevel(logging.ERROR)
    client: Any = nacos.NacosClient(address, namespace="")
    for key in KEYS:
        client.get_config(key, GROUP)
    started, cpu = time.perf_counter(), time.process_time()
    if concurrency == 1:
        for i in range(GETS):
            client.get_config(KEYS[i % len(KEYS)], GROUP)
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda i: client.get_config(KEYS[i % len(KEYS)], GROUP), range(GETS)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"gets_per_s": GETS / wall, "cpu_per_get_us": cpu / GETS * 1e6}


async def ours(address: str, concurrency: int) -> dict[str, float]:
    from aioacm import NacosClient

    folder = tempfile.mkdtemp(prefix="aioacm-side-")
    async with NacosClient(
        address, snapshot_base=f"{folder}/snapshot", failover_base=f"{folder}/data"
    ) as client:
        await asyncio.gather(*(client.publish(key, GROUP, "v" * 200) for key in KEYS))
        for key in KEYS:
            await client.get(key, GROUP)
        gate = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with gate:
                await client.get(KEYS[i % len(KEYS)], GROUP)

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(i) for i in range(GETS)))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return {"gets_per_s": GETS / wall, "cpu_per_get_us": cpu / GETS * 1e6}


def main() -> None:
    address = sys.argv[1]
    out = {}
    for concurrency in (1, 64):
        out[f"aioacm@{concurrency}"] = asyncio.run(ours(address, concurrency))
        out[f"legacy@{concurrency}"] = legacy(address, concurrency)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
