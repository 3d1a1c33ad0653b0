"""aioacm benchmarks: aioacm against the sync SDK and the bare-aiohttp floor, side by side.

    python benchmarks/run.py            # the full run (about 13 minutes), writes results.md
    python benchmarks/run.py --quick    # a tiny run (seconds) that exercises every section
    nox -s bench                        # the full run in its own environment

It starts the bundled server (``python -m aioacm.server``) in a separate process, fills it, and
runs the clients in worker processes (so CPU accounting is per client; aioacm's and the floor's
gets share a worker, one client at a time):

1. get throughput and latency at concurrency 1, 64 and 256 (aioacm, floor, sync + 32 threads),
   once every key has been read; and, apart, each of 1,000 keys read once by a fresh client
   (aioacm and the floor alternating in one process, the sync SDK in its own);
2. watch scale with 1,000 and 10,000 keys (aioacm, sync);
3. change latency, publish -> callback, over 200 changes with 10,000 keys watched;
4. idle CPU over 60 s of watching 10,000 unchanged keys;
5. CLI export then import of 2,000 items (the ``aioacm`` script if installed, the ``acm`` one);
6. ``import aioacm`` time.

Every figure is repeated; the report gives median, min and max.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import report
from _common import GROUP, content_for
from cli_bench import CLI_NAMESPACE, bench_cli, import_times
from procs import Server, log, plan_pins, run_worker

HERE = Path(__file__).resolve().parent
NAMESPACE = "bench"
SECTIONS = ("import", "get", "watch", "cli")
#: Concurrent callers in the first-read runs (an application reading its keys at start-up).
FIRST_CONCURRENCY = 64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run of every section")
    parser.add_argument("--repeats", type=int, help="runs of each get, CLI figure (default 5)")
    parser.add_argument("--watch-repeats", type=int, help="runs of each watch figure (default 3)")
    parser.add_argument("--gets", type=int, help="gets per level at concurrency 64/256 (8000)")
    parser.add_argument("--get-keys", type=int, help="distinct keys read round-robin (100)")
    parser.add_argument(
        "--first-keys", type=int, help="keys read once each, by a fresh client (1000)"
    )
    parser.add_argument(
        "--first-repeats", type=int, help="first-read runs in each get run (default 3)"
    )
    parser.add_argument(
        "--watch-sizes", type=int, nargs="+", help="watched keys per run (1000 10000)"
    )
    parser.add_argument("--changes", type=int, help="changes timed at the largest size (200)")
    parser.add_argument(
        "--change-gap", type=float, help="seconds between timed changes at rest (0.1)"
    )
    parser.add_argument("--idle-seconds", type=float, help="idle period measured (60)")
    parser.add_argument("--sync-timeout", type=float, help="bound on one sync-SDK watch run (300)")
    parser.add_argument("--cli-items", type=int, help="items exported and imported (2000)")
    parser.add_argument("--import-runs", type=int, help="interpreter starts timed (20)")
    parser.add_argument(
        "--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="what to run"
    )
    parser.add_argument(
        "--output", type=Path, default=HERE / "results.md", help="the report (results.md)"
    )
    parser.add_argument("--json", type=Path, help="raw results (default: next to --output)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not pin the server to the first CPU and the clients to the others",
    )
    parser.add_argument(
        "--watch-protocol",
        choices=("acm", "nacos"),
        default="acm",
        help="watch with ACMClient, or NacosClient over the bundled Nacos API (acm)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="profile every aioacm worker with pyinstrument into DIR (text and HTML; a get "
        "worker runs the floor's levels too)",
    )
    args = parser.parse_args(argv)
    full = {
        "repeats": 5,
        "watch_repeats": 3,
        "gets": 8000,
        "get_keys": 100,
        "first_keys": 1000,
        "first_repeats": 3,
        "watch_sizes": [1000, 10000],
        "changes": 200,
        "change_gap": 0.1,
        "idle_seconds": 60.0,
        "sync_timeout": 300.0,
        "cli_items": 2000,
        "import_runs": 20,
    }
    quick = {
        "repeats": 1,
        "watch_repeats": 1,
        "gets": 200,
        "get_keys": 20,
        "first_keys": 20,
        "first_repeats": 1,
        "watch_sizes": [20, 100],
        "changes": 5,
        "change_gap": 0.01,
        "idle_seconds": 0.5,
        "sync_timeout": 30.0,
        "cli_items": 20,
        "import_runs": 1,
    }
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.json is None:
        args.json = args.output.with_suffix(".json")
    return args


async def populate(endpoint: str, items: list[tuple[str, str, str, str]]) -> None:
    """Publish ``(namespace, data_id, group, content)`` items, 64 at a time."""
    from aioacm import ACMClient

    clients: dict[str, ACMClient] = {}
    limit = asyncio.Semaphore(64)

    async def publish(namespace: str, data_id: str, group: str, content: str) -> None:
        client = clients.get(namespace)
        if client is None:
            client = clients[namespace] = ACMClient(endpoint, namespace, cai_enabled=False)
        async with limit:
            await client.publish(data_id, group, content)

    try:
        await asyncio.gather(*(publish(*item) for item in items))
    finally:
        for client in clients.values():
            await client.aclose()


def bench_gets(args: argparse.Namespace, server: Server, workdir: Path) -> dict[str, Any]:
    keys = [f"get.{i:05d}" for i in range(args.get_keys)]
    levels = [[1, max(1, args.gets // 4)], [64, args.gets], [256, args.gets]]
    first = {
        "keys": [f"first.{i:05d}" for i in range(args.first_keys)],
        "concurrency": FIRST_CONCURRENCY,
        "repeats": args.first_repeats,
    }
    runs: dict[str, list[dict[str, Any]]] = {"aioacm": [], "floor": [], "sync": []}
    for repeat in range(args.repeats):
        # aioacm and the floor alternate level by level in one process (which goes first
        # alternates too): from one process to the next this VM's speed moved by up to 2x,
        # and each in its own process made their ratio a draw. The sync SDK (threads, its own
        # modules) runs in a process of its own right after.
        pair = "floor+aioacm" if repeat % 2 == 0 else "aioacm+floor"
        for client in (pair, "sync"):
            cfg = {
                "client": client,
                "endpoint": server.endpoint,
                "namespace": NAMESPACE,
                "keys": keys,
                "warm_key": "warm",
                "levels": levels,
                "first": first,
            }
            if client != "sync" and args.profile:
                cfg["profile"] = str(args.profile / f"get-{repeat + 1}.txt")
            result = run_worker("get_worker.py", cfg, workdir, timeout=900)
            names = client.split("+")
            for name in names:
                one = result if "error" in result else result["runs"][name]
                runs[name].append(one)
                log(f"get {name} run {repeat + 1}: {report.brief_get(one)}")
    first_info = {k: v for k, v in first.items() if k != "keys"}
    return {
        "keys": len(keys),
        "levels": levels,
        "first": {"keys": args.first_keys, **first_info},
        "runs": runs,
    }


def bench_watch(args: argparse.Namespace, server: Server, workdir: Path) -> dict[str, Any]:
    largest = max(args.watch_sizes)
    out: dict[str, Any] = {}
    for size in args.watch_sizes:
        runs: dict[str, list[dict[str, Any]]] = {"aioacm": [], "sync": []}
        for repeat in range(args.watch_repeats):
            for client in runs:
                if client == "sync" and any(
                    not r.get("scale", {}).get("finished") for r in runs[client]
                ):
                    continue  # it did not finish before: do not spend the timeout again
                timeout = args.sync_timeout if client == "sync" else max(60.0, args.sync_timeout)
                cfg = {
                    "client": client,
                    "endpoint": server.endpoint,
                    "server_port": server.port,
                    "namespace": NAMESPACE,
                    "prefix": "watch.",
                    "keys": size,
                    "warm_key": "warm",
                    "changes": args.changes if size == largest else 0,
                    "gap": args.change_gap,
                    "idle_seconds": args.idle_seconds if size == largest else 0,
                    "timeout": timeout,
                    "protocol": args.watch_protocol,
                }
                if client == "aioacm" and args.profile:
                    cfg["profile"] = str(args.profile / f"watch-{size}-{repeat + 1}.txt")
                budget = timeout * 2 + args.idle_seconds + 120
                result = run_worker("watch_worker.py", cfg, workdir, timeout=budget)
                runs[client].append(result)
                log(f"watch {size} {client} run {repeat + 1}: {report.brief_watch(result)}")
        out[str(size)] = runs
    return out


# -- main -------------------------------------------------------------------------------------


@contextmanager
def scratch(keep: bool) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="aioacm-bench-"))
    try:
        yield path
    finally:
        if keep:
            log(f"scratch folder kept: {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def dataset(args: argparse.Namespace) -> list[tuple[str, str, str, str]]:
    items = [(NAMESPACE, "warm", GROUP, content_for("warm", 512))]
    if "get" in args.sections:
        items += [
            (NAMESPACE, f"get.{i:05d}", GROUP, content_for(f"get.{i:05d}", 512))
            for i in range(args.get_keys)
        ]
        items += [
            (NAMESPACE, f"first.{i:05d}", GROUP, content_for(f"first.{i:05d}", 512))
            for i in range(args.first_keys)
        ]
    if "watch" in args.sections:
        items += [
            (NAMESPACE, f"watch.{i:05d}", GROUP, content_for(f"watch.{i:05d}", 128))
            for i in range(max(args.watch_sizes))
        ]
    if "cli" in args.sections:
        items += [
            (
                CLI_NAMESPACE,
                f"cli.{i:05d}",
                GROUP if i % 2 else "APP_GROUP",
                content_for(f"cli.{i:05d}", 256),
            )
            for i in range(args.cli_items)
        ]
    return items


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.profile:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    started = time.time()
    results: dict[str, Any] = {"meta": report.machine(args, sys.argv[1:] if argv is None else argv)}
    results["meta"]["pins"] = plan_pins(args.pin)
    with scratch(args.keep) as workdir:
        if "import" in args.sections:
            log("import times")
            results["import"] = {m: import_times(m, args.import_runs) for m in ("aioacm", "acm")}
        server = Server(workdir)
        try:
            items = dataset(args)
            log(f"server on {server.endpoint}; publishing {len(items)} items")
            asyncio.run(populate(server.endpoint, items))
            if "get" in args.sections:
                results["get"] = bench_gets(args, server, workdir)
            if "watch" in args.sections:
                results["watch"] = bench_watch(args, server, workdir)
            if "cli" in args.sections:
                results["cli"] = bench_cli(args, server, workdir)
        finally:
            server.stop()
    results["meta"]["duration_s"] = time.time() - started
    results["meta"]["load_after"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    report.write(results, args.output)
    log(f"wrote {args.output} and {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
