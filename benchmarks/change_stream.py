"""A watching client under a steady stream of changes: its CPU per change and the latency.

    python benchmarks/change_stream.py                     # 2,500 and 10,000 keys, 3 runs each
    python benchmarks/change_stream.py --keys 2500 --runs 1 --seconds 10
    python benchmarks/change_stream.py --quick             # a few seconds, every step once

The bundled server runs in a process of its own (pinned to the first CPU, like ``run.py``'s),
one client watches every key on one poller (``pulling_config_size`` = the number of keys) in
a worker process pinned to the other CPUs (``stream_worker.py``), and this process publishes
``--rate`` changes a second for ``--seconds`` through the server's ACM API, each to another
watched key. Reported per run: the client's event-loop CPU and process CPU per change, the
publish-to-callback latency p50/p99/max, and changes lost or delivered twice (both must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import GROUP, content_for, parse_result
from procs import HERE, PINS, Server, log, pinned, plan_pins
from run import populate

NAMESPACE = "stream"
PREFIX = "stream."


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, nargs="+", help="watched keys per run (2500 10000)")
    parser.add_argument("--rate", type=float, default=50.0, help="changes a second (50)")
    parser.add_argument("--seconds", type=float, help="seconds of changes per run (20)")
    parser.add_argument("--runs", type=int, help="runs per size (3)")
    parser.add_argument("--quick", action="store_true", help="a tiny run")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="profile each run's stream window into DIR"
    )
    parser.add_argument(
        "--protocol",
        choices=("acm", "nacos"),
        default="acm",
        help="watch with ACMClient, or with NacosClient over the bundled Nacos API (acm)",
    )
    args = parser.parse_args(argv)
    defaults = {"keys": [2500, 10000], "seconds": 20.0, "runs": 3}
    if args.quick:
        defaults = {"keys": [50], "seconds": 1.0, "runs": 1}
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


async def publish_stream(
    endpoint: str, keys: list[str], count: int, rate: float, nonce: str
) -> float:
    """Publish ``count`` values at ``rate`` a second, each to the next key of a stride through
    ``keys`` (so consecutive changes hit different keys and pollers); the seconds it took."""
    from aioacm import ACMClient

    stride = max(1, len(keys) // 7) | 1  # odd: with a power-of-two key count it visits all
    async with ACMClient(endpoint, NAMESPACE, cai_enabled=False, no_snapshot=True) as client:
        start = time.monotonic()
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            key = keys[(i * stride) % len(keys)]
            await client.publish(key, GROUP, f"run={nonce}\nseq={i}\nt={time.monotonic()!r}\n")
        return time.monotonic() - start


def one_run(args: argparse.Namespace, server: Server, keys: int, workdir: Path) -> dict[str, Any]:
    count = max(1, int(args.rate * args.seconds))
    cwd = Path(tempfile.mkdtemp(prefix="stream-", dir=workdir))
    cfg = {
        "endpoint": server.endpoint,
        "namespace": NAMESPACE,
        "prefix": PREFIX,
        "keys": keys,
        "poller_size": keys,
        "changes": count,
        "nonce": uuid.uuid4().hex[:12],
        "timeout": 120.0 + args.seconds,
        "workdir": str(cwd),
        "protocol": args.protocol,
    }
    if args.profile:
        cfg["profile"] = str(args.profile.resolve() / f"stream-{keys}-{cfg['nonce']}.txt")
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "stream_worker.py"), json.dumps(cfg)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=open(cwd / "stderr.log", "w"),  # noqa: SIM115 (the child holds it)
        text=True,
        preexec_fn=pinned("clients"),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "READY":
        proc.kill()
        proc.wait()
        return {"error": f"the worker did not get ready: {line!r}"}
    names = [f"{PREFIX}{i:05d}" for i in range(keys)]
    took = asyncio.run(publish_stream(server.endpoint, names, count, args.rate, cfg["nonce"]))
    out, _ = proc.communicate(timeout=cfg["timeout"] + 30)
    result = parse_result(out)
    result["publish_s"] = took
    return result


def summary(runs: list[dict[str, Any]]) -> str:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return "; ".join(r["error"] for r in runs)

    def med(name: str) -> float:
        return statistics.median(r[name] for r in ok)

    return (
        f"loop CPU/change {med('loop_cpu_per_change_ms'):.2f} ms"
        f" (runs {', '.join(format(r['loop_cpu_per_change_ms'], '.2f') for r in ok)}),"
        f" process CPU/change {med('process_cpu_per_change_ms'):.2f} ms,"
        f" latency p50 {med('p50_ms'):.1f} ms p99 {med('p99_ms'):.1f} ms,"
        f" lost {sum(r['lost'] for r in ok)}, doubled {sum(r['doubled'] for r in ok)},"
        f" ready in {med('ready_s'):.1f} s"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan_pins(True)
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="aioacm-stream-") as tmp:
        workdir = Path(tmp)
        server = Server(workdir)
        try:
            most = max(args.keys)
            items = [
                (NAMESPACE, f"{PREFIX}{i:05d}", GROUP, content_for(f"{PREFIX}{i:05d}", 128))
                for i in range(most)
            ]
            log(f"server on {server.endpoint}; publishing {len(items)} items")
            asyncio.run(populate(server.endpoint, items))
            if PINS["server"] is not None:  # the publisher shares the server's CPU
                os.sched_setaffinity(0, PINS["server"])
            for keys in args.keys:
                runs = results[str(keys)] = []
                for n in range(args.runs):
                    result = one_run(args, server, keys, workdir)
                    runs.append(result)
                    log(f"{keys} keys, run {n + 1}: {summary([result])}")
                log(f"{keys} keys: {summary(runs)}")
        finally:
            server.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    failed = any("error" in r or r["lost"] or r["doubled"] for rs in results.values() for r in rs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
