"""aioacm against the floor, alternating inside one process: their ratio, with less noise.

    python benchmarks/paired.py                      # 10 pairs at concurrency 64 and 256
    python benchmarks/paired.py --rounds 20 --concurrency 64

On this kind of machine a client's speed moves by up to half from one process to the next, so
``run.py`` pairs aioacm's and the floor's levels in one worker, five times over. This runs only
that comparison, with as many pairs as asked: one process (pinned like ``run.py``'s clients,
the bundled server on its own CPU) runs a floor level then an aioacm level, each exactly as
``get_worker.py`` runs them (a fresh client and an empty snapshot folder per level, every key
read once before the level is timed), over and over, and reports per concurrency the median of
the per-pair ratios with their quartiles (±0.02 in a quiet stretch of the machine, ±0.05–0.1
in a noisy one). ``--cold`` times each key's first read too, as the levels did until session 5.
A tool for working on the get path; ``results.md`` does not use it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import GROUP, content_for
from get_worker import run_aioacm, run_floor
from procs import PINS, Server, plan_pins
from run import NAMESPACE, populate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="pairs per concurrency (10)")
    parser.add_argument("--gets", type=int, default=8000, help="gets per level (8000)")
    parser.add_argument("--keys", type=int, default=100, help="keys read round-robin (100)")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[64, 256], help="levels (64 256)"
    )
    parser.add_argument(
        "--protocol",
        choices=("acm", "nacos"),
        default="acm",
        help="ACMClient against a GET of ACM's path, or NacosClient against Nacos's (acm)",
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="time each key's first read too (no unmeasured read of every key first)",
    )
    return parser.parse_args(argv)


async def pairs(args: argparse.Namespace, endpoint: str, workdir: Path) -> dict[int, Any]:
    keys = [f"get.{i:05d}" for i in range(args.keys)]
    ratios: dict[int, dict[str, list[float]]] = {
        c: {"rps": [], "cpu": []} for c in args.concurrency
    }
    for round_ in range(args.rounds):
        for concurrency in args.concurrency:
            cfg = {
                "endpoint": endpoint,
                "namespace": NAMESPACE,
                "keys": keys,
                "warm_key": "warm",
                "levels": [[concurrency, args.gets]],
                "workdir": tempfile.mkdtemp(dir=workdir),
                "cold": args.cold,
                "protocol": args.protocol,
            }
            floor = (await run_floor(cfg))["levels"][str(concurrency)]
            ours = (await run_aioacm(cfg))["levels"][str(concurrency)]
            ratios[concurrency]["rps"].append(ours["rps"] / floor["rps"])
            ratios[concurrency]["cpu"].append(ours["cpu_per_get_us"] / floor["cpu_per_get_us"])
            print(
                f"pair {round_ + 1} at {concurrency}: aioacm {ours['rps']:,.0f}/s "
                f"{ours['cpu_per_get_us']:.0f} µs/get, floor {floor['rps']:,.0f}/s "
                f"{floor['cpu_per_get_us']:.0f} µs/get",
                file=sys.stderr,
                flush=True,
            )
    return ratios


def quartiles(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.3f}"
    low, median, high = statistics.quantiles(values, n=4, method="inclusive")
    return f"{median:.3f} ({low:.3f}–{high:.3f})"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan_pins(True)
    with tempfile.TemporaryDirectory(prefix="aioacm-paired-") as scratch:
        workdir = Path(scratch)
        server = Server(workdir)
        try:
            items = [(NAMESPACE, "warm", GROUP, content_for("warm", 512))]
            items += [
                (NAMESPACE, f"get.{i:05d}", GROUP, content_for(f"get.{i:05d}", 512))
                for i in range(args.keys)
            ]
            asyncio.run(populate(server.endpoint, items))
            if PINS["clients"] is not None:
                os.sched_setaffinity(0, PINS["clients"])
            ratios = asyncio.run(pairs(args, server.endpoint, workdir))
        finally:
            server.stop()
    print("| concurrency | aioacm/floor req/s | aioacm/floor CPU per get | pairs |")
    print("|---|---|---|---|")
    for concurrency, r in ratios.items():
        pairs_run = len(r["rps"])
        print(f"| {concurrency} | {quartiles(r['rps'])} | {quartiles(r['cpu'])} | {pairs_run} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
