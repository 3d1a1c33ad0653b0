"""Watch scale, change latency and idle cost of one client, in a process of its own.

``python watch_worker.py CONFIG_JSON``; CONFIG has ``client`` (``aioacm`` or ``sync``),
``endpoint``, ``server_port``, ``namespace``, ``keys`` (how many), ``prefix``, ``changes`` (0:
skip), ``gap``, ``idle_seconds`` (0: skip), ``timeout`` and ``workdir``.

1. Scale: add a plain-function watcher to each of ``keys`` existing items, one after the
   other, and wait until every initial callback arrived. Reported: seconds until then (and
   until the last ``add_watcher`` returned), resident memory added (RSS and PSS, summed over
   the process tree: the sync SDK forks), pollers (long polls held), processes, threads and TCP
   connections to the server.
2. Change latency: publish a new value of one watched key at a time (through the same client)
   and time publish -> callback, ``changes`` times, keys spread over every poller. Twice:
   ``gap`` seconds apart (each change finds the client at rest, its polls held: the usual
   case), and back to back (the next publish as soon as the callback ran: a burst).
3. Idle: CPU seconds (process tree) used in ``idle_seconds`` of watching with nothing changing.

Both clients run with default options (pulling_timeout 30 s, pulling_config_size 3000, 10
callback threads).
"""

from __future__ import annotations

import asyncio
import gc
import json
import multiprocessing
import os
import sys
import threading
import time
import uuid
from typing import Any

from _common import GROUP, emit, percentile, profiled, tree_cpu_seconds, tree_metrics


def spread_keys(keys: list[str], count: int) -> list[str]:
    """``count`` keys picked across the whole list (so every poller sees changes)."""
    step = max(1, len(keys) // max(1, count))
    return [keys[(i * step + i // len(keys)) % len(keys)] for i in range(count)]


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {
        "rss_added_mb": after["rss_mb"] - before["rss_mb"],
        "pss_added_mb": after["pss_mb"] - before["pss_mb"],
        "processes": after["processes"],
        "threads": after["threads"],
        "connections": after["connections"],
    }


def latency_summary(latencies: list[float], lost: int, gap: float) -> dict[str, Any]:
    return {
        "gap_s": gap,
        "changes": len(latencies),
        "lost": lost,
        "p50_ms": percentile(latencies, 0.5) * 1000 if latencies else None,
        "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else None,
        "max_ms": max(latencies) * 1000 if latencies else None,
    }


class Arrivals:
    """What the callbacks saw; callbacks run in threads (both SDKs' default for plain
    functions), so this is thread-safe and signals through ``notify``."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.first: dict[str, float] = {}
        self.lock = threading.Lock()
        self.all_arrived = threading.Event()
        # data_id -> (content we wait for, time it arrived or None)
        self.waiting: dict[str, tuple[str, list[float]]] = {}
        self.changed = threading.Event()

    def expect(self, data_id: str, content: str) -> list[float]:
        """Wait for ``content`` on ``data_id`` (only): the list gets its arrival time."""
        arrived: list[float] = []
        with self.lock:
            self.waiting = {data_id: (content, arrived)}
            self.changed.clear()
        return arrived

    def callback(self, event: dict[str, Any]) -> None:
        now = time.perf_counter()
        data_id = event["data_id"]
        with self.lock:
            if data_id not in self.first:
                self.first[data_id] = now
                if len(self.first) >= self.expected:
                    self.all_arrived.set()
            waited = self.waiting.get(data_id)
            if waited is not None and event["content"] == waited[0] and not waited[1]:
                waited[1].append(now)
                self.changed.set()


def new_content(nonce: str, i: int) -> str:
    return f"# changed\nrun={nonce}\nchange={i}\n"


async def run_aioacm(cfg: dict[str, Any]) -> dict[str, Any]:
    from aioacm import ACMClient, ConfigClient, NacosClient

    keys = [f"{cfg['prefix']}{i:05d}" for i in range(cfg["keys"])]
    arrivals = Arrivals(len(keys))
    port = cfg["server_port"]
    result: dict[str, Any] = {}
    folders = {
        "snapshot_base": os.path.join(cfg["workdir"], "snapshot"),
        "failover_base": os.path.join(cfg["workdir"], "data"),
    }
    if cfg.get("protocol") == "nacos":  # the bundled server's Nacos API, same store
        client: ConfigClient = NacosClient(cfg["endpoint"], cfg["namespace"], **folders)
    else:
        client = ACMClient(cfg["endpoint"], namespace=cfg["namespace"], **folders)
    async with client:
        await client.get(cfg["warm_key"], GROUP)  # open the session, load the server list
        gc.collect()
        before = tree_metrics(port)
        t0 = time.perf_counter()
        for key in keys:
            await client.add_watcher(key, GROUP, arrivals.callback)
        added = time.perf_counter() - t0
        finished = await asyncio.to_thread(arrivals.all_arrived.wait, cfg["timeout"])
        ready = time.perf_counter() - t0
        result["scale"] = {
            "keys": len(keys),
            "finished": finished,
            "arrived": len(arrivals.first),
            "timeout_s": cfg["timeout"],
            "added_s": added,
            "ready_s": ready if finished else None,
        }
        if not finished:
            return result
        gc.collect()
        result["scale"].update(delta(before, tree_metrics(port)))
        result["scale"]["pollers"] = client.stats().pollers  # one long poll each
        result["scale"]["protocol"] = client.stats().protocol

        if cfg["changes"]:
            targets = spread_keys(keys, cfg["changes"])
            for name, gap in (("change", cfg["gap"]), ("change_burst", 0.0)):
                nonce, latencies, lost = uuid.uuid4().hex[:8], [], 0
                for i, key in enumerate(targets):
                    await asyncio.sleep(gap)
                    content = new_content(nonce, i)
                    arrived = arrivals.expect(key, content)
                    started = time.perf_counter()
                    await client.publish(key, GROUP, content)
                    if await asyncio.to_thread(arrivals.changed.wait, 10):
                        latencies.append(arrived[0] - started)
                    else:
                        lost += 1
                result[name] = latency_summary(latencies, lost, gap)

        if cfg["idle_seconds"]:
            gc.collect()
            cpu0 = tree_cpu_seconds()
            await asyncio.sleep(cfg["idle_seconds"])
            result["idle"] = {
                "seconds": cfg["idle_seconds"],
                "cpu_s": tree_cpu_seconds() - cpu0,
                "connections_after": tree_metrics(port, memory_detail=False)["connections"],
            }
    return result


def run_sync(cfg: dict[str, Any]) -> dict[str, Any]:
    # The SDK's pollers are processes running bound methods of a client holding locks: they
    # only work when forked.
    multiprocessing.set_start_method("fork")
    import acm

    keys = [f"{cfg['prefix']}{i:05d}" for i in range(cfg["keys"])]
    arrivals = Arrivals(len(keys))
    port = cfg["server_port"]
    result: dict[str, Any] = {}
    client = acm.ACMClient(cfg["endpoint"], cfg["namespace"])
    client.set_options(
        snapshot_base=os.path.join(cfg["workdir"], "snapshot"),
        failover_base=os.path.join(cfg["workdir"], "data"),
    )
    client.get(cfg["warm_key"], GROUP)
    gc.collect()
    before = tree_metrics(port)
    t0 = time.perf_counter()
    deadline = t0 + cfg["timeout"]
    added_all = True
    for key in keys:
        client.add_watcher(key, GROUP, arrivals.callback)
        if time.perf_counter() > deadline:
            added_all = False
            break
    added = time.perf_counter() - t0
    finished = added_all and arrivals.all_arrived.wait(max(0.0, deadline - time.perf_counter()))
    ready = time.perf_counter() - t0
    result["scale"] = {
        "keys": len(keys),
        "finished": finished,
        "arrived": len(arrivals.first),
        "timeout_s": cfg["timeout"],
        "added_s": added if added_all else None,
        "ready_s": ready if finished else None,
    }
    if not finished:
        return result
    gc.collect()
    result["scale"].update(delta(before, tree_metrics(port)))
    # one puller process, holding one long poll, per pulling_config_size keys
    result["scale"]["pollers"] = len({id(info[0]) for info in client.puller_mapping.values()})

    if cfg["changes"]:
        targets = spread_keys(keys, cfg["changes"])
        for name, gap in (("change", cfg["gap"]), ("change_burst", 0.0)):
            nonce, latencies, lost = uuid.uuid4().hex[:8], [], 0
            change_deadline = time.perf_counter() + cfg["timeout"]
            for i, key in enumerate(targets):
                if time.perf_counter() > change_deadline:
                    break
                time.sleep(gap)
                content = new_content(nonce, i)
                arrived = arrivals.expect(key, content)
                started = time.perf_counter()
                client.publish(key, GROUP, content)
                if arrivals.changed.wait(10):
                    latencies.append(arrived[0] - started)
                else:
                    lost += 1
            result[name] = latency_summary(latencies, lost, gap)
            result[name]["requested"] = cfg["changes"]

    if cfg["idle_seconds"]:
        gc.collect()
        cpu0 = tree_cpu_seconds()
        time.sleep(cfg["idle_seconds"])
        result["idle"] = {
            "seconds": cfg["idle_seconds"],
            "cpu_s": tree_cpu_seconds() - cpu0,
            "connections_after": tree_metrics(port, memory_detail=False)["connections"],
        }
    return result


def main() -> None:
    cfg = json.loads(sys.argv[1])
    if cfg["client"] == "sync":
        try:
            result = run_sync(cfg)
        finally:
            # The SDK's pollers and its Manager are children that never end on their own.
            for child in multiprocessing.active_children():
                child.kill()
        emit({"client": "sync", **result})
        # Its threads are blocked in queues and locks; nothing is left to clean up.
        os._exit(0)
    with profiled(cfg.get("profile")):
        result = asyncio.run(run_aioacm(cfg))
    emit({"client": "aioacm", **result})


if __name__ == "__main__":
    main()
