"""Watch keys on a Nacos cluster while a node is killed (and restarted): every change must be
delivered exactly once.

Run against servers you started yourself (nothing here starts, builds or fetches Nacos):

    AIOACM_NACOS_SERVER=127.0.0.1:8848,127.0.0.1:8858,127.0.0.1:8868 \\
    python benchmarks/nacos_failover.py --keys 1000 --seconds 60 \\
        --at 15 "kill -9 $(cat /path/to/node1/nacos.pid)" --at 40 "/path/to/restart-node1"

One client watches ``--keys`` keys; another publishes a numbered value to a random key at
``--rate`` a second. At the given seconds the shell commands run (kill a node, restart it);
``{port}`` in a command is the HTTP port of the server the watcher is connected to at that
moment (over gRPC: the node holding its stream). At the end every key's deliveries must be its
published values in order, each once, ending with the last one. Prints one JSON line; exits 1
when a change was lost, doubled or out of order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from typing import Any

from aioacm import NacosClient


async def main(args: argparse.Namespace) -> int:
    addresses = os.environ.get("AIOACM_NACOS_SERVER")
    if not addresses:
        print("set AIOACM_NACOS_SERVER=host:port[,...]", file=sys.stderr)
        return 2
    auth = {
        "username": os.environ.get("AIOACM_NACOS_USERNAME"),
        "password": os.environ.get("AIOACM_NACOS_PASSWORD"),
    }
    auth = {k: v for k, v in auth.items() if v}
    run = f"fo{int(time.time())}."
    keys = [f"{run}k{i}" for i in range(args.keys)]
    published: dict[str, list[str]] = {key: [] for key in keys}
    published_at: dict[str, float] = {}  # value -> when its publish returned
    seen: dict[str, list[str]] = {key: [] for key in keys}
    events: list[dict[str, Any]] = []
    folder = tempfile.mkdtemp(prefix="aioacm-failover-")

    def options(name: str) -> dict[str, Any]:
        return {
            "snapshot_base": f"{folder}/{name}/snapshot",
            "failover_base": f"{folder}/{name}/data",
            "default_timeout": 10,
            **auth,
        }

    async def record(event: dict[str, Any]) -> None:
        if event["content"] is not None:
            seen[event["data_id"]].append(event["content"])

    protocol = args.protocol
    watch_options = {"protocol": protocol, "pulling_timeout": 10, **options("watcher")}
    async with (
        NacosClient(addresses, protocol=protocol, **options("writer")) as writer,
        NacosClient(addresses, **watch_options) as watcher,
    ):
        for chunk in range(0, len(keys), 10):  # a cluster writes through raft: not too many at once
            await asyncio.gather(*(writer.publish(k, None, "0") for k in keys[chunk : chunk + 10]))
        for key in keys:
            published[key].append("0")
        started = time.monotonic()
        for key in keys:
            await watcher.add_watcher(key, None, record)
        while any(not v for v in seen.values()):
            if time.monotonic() - started > 120:
                break
            await asyncio.sleep(0.1)
        events.append({"t": round(time.monotonic() - started, 2), "event": "all first values"})

        commands = sorted((float(t), cmd) for t, cmd in args.at)
        begin = time.monotonic()

        async def follow_connection() -> None:
            """Log every change of the watcher's gRPC connection (lost, back on which server)."""
            was = watcher.stats()
            lost_at = None
            while True:
                await asyncio.sleep(0.05)
                now = watcher.stats()
                t = round(time.monotonic() - begin, 2)
                if was.connected and not now.connected:
                    lost_at = time.monotonic()
                    events.append({"t": t, "event": "stream lost"})
                if now.connections != was.connections and now.connected:
                    gap = round(time.monotonic() - lost_at, 2) if lost_at else None
                    events.append({"t": t, "event": f"connected to {now.server}", "after_s": gap})
                    lost_at = None
                was = now

        follower = asyncio.get_running_loop().create_task(follow_connection())
        counter = 0
        failed_publishes = 0
        while (elapsed := time.monotonic() - begin) < args.seconds:
            while commands and commands[0][0] <= elapsed:
                _, cmd = commands.pop(0)
                # {port}: the HTTP port of the server the watcher is connected to now
                current = watcher.stats().server or ""
                cmd = cmd.replace("{port}", current.rpartition(":")[2])
                proc = await asyncio.create_subprocess_shell(cmd)
                events.append({"t": round(elapsed, 2), "event": cmd, "rc": await proc.wait()})
            key = random.choice(keys)
            counter += 1
            value = str(counter)
            try:
                await writer.publish(key, None, value)
                published[key].append(value)
                published_at[value] = time.monotonic()
            except Exception as exc:  # a publish the cluster refused: not a change to expect
                failed_publishes += 1
                events.append({"t": round(elapsed, 2), "event": f"publish failed: {exc}"})
            await asyncio.sleep(1 / args.rate)
        deadline = time.monotonic() + args.settle
        while time.monotonic() < deadline:
            if all(seen[k][-1:] == published[k][-1:] for k in keys):
                break
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)  # anything doubled shows up now
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        stats = watcher.stats()

    lost = doubled = out_of_order = superseded = 0
    for key in keys:
        want, got = published[key], seen[key]
        doubled += len(got) - len(set(got))
        for i, value in enumerate(want):
            if value in got:
                continue
            # a value replaced within a second may never be seen: the watcher fetches the
            # newest value of a changed key (as every Nacos client does); later is a loss
            nxt = want[i + 1] if i + 1 < len(want) else None
            if nxt is not None and published_at.get(nxt, 0) - published_at.get(value, 0) < 1:
                superseded += 1
            else:
                lost += 1
        if [v for v in got if v in want] != [v for v in want if v in got]:
            out_of_order += 1
    result = {
        "protocol": stats.protocol,
        "connections": stats.connections,
        "keys": args.keys,
        "changes": counter - failed_publishes,
        "failed_publishes": failed_publishes,
        "lost": lost,
        "superseded_within_1s": superseded,
        "doubled": doubled,
        "keys_out_of_order": out_of_order,
        "last_values_match": all(seen[k][-1:] == published[k][-1:] for k in keys),
        "events": events,
    }
    print(json.dumps(result))
    # a value published twice in a row to one key is one change (the md5 does not move)
    return 0 if lost == doubled == out_of_order == 0 and result["last_values_match"] else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=20, help="changes a second")
    parser.add_argument("--protocol", choices=("auto", "grpc", "http"), default="auto")
    parser.add_argument("--settle", type=float, default=60, help="seconds to wait at the end")
    parser.add_argument(
        "--at", nargs=2, action="append", default=[], metavar=("SECONDS", "COMMAND")
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
