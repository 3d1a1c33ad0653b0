"""aioacm benchmarks: aioacm against the sync SDK and the bare-aiohttp floor, side by side.

    python benchmarks/run.py            # the full run (about 20 minutes), writes results.md
    python benchmarks/run.py --quick    # a tiny run (seconds) that exercises every section
    nox -s bench                        # the full run in its own environment

It starts the bundled server (``python -m aioacm.server``) in a separate process, fills it, and
runs every client in a process of its own (so CPU accounting is per client):

1. get throughput and latency at concurrency 1, 64 and 256 (aioacm, floor, sync + 32 threads);
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
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import report
from _common import GROUP, content_for, parse_result

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
NAMESPACE = "bench"
CLI_NAMESPACE = "cli"
CLI_ALIAS = "bench-cli"
SECTIONS = ("import", "get", "watch", "cli")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run of every section")
    parser.add_argument("--repeats", type=int, help="runs of each get, CLI figure (default 5)")
    parser.add_argument("--watch-repeats", type=int, help="runs of each watch figure (default 3)")
    parser.add_argument("--gets", type=int, help="gets per level at concurrency 64/256 (8000)")
    parser.add_argument("--get-keys", type=int, help="distinct keys read round-robin (100)")
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
        "--profile",
        type=Path,
        metavar="DIR",
        help="profile every aioacm worker with pyinstrument into DIR (text and HTML)",
    )
    args = parser.parse_args(argv)
    full = {
        "repeats": 5,
        "watch_repeats": 3,
        "gets": 8000,
        "get_keys": 100,
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


# -- CPUs -------------------------------------------------------------------------------------

# The server runs on the first CPU, every client process (tree) on the others, so a client
# never competes with the server for a core. Unpinned, the kernel placed them differently from
# one run to the next and throughput came in two modes twice apart (5,800 or 13,000 gets/s
# for the same floor run).
PINS: dict[str, set[int] | None] = {"server": None, "clients": None}


def plan_pins(enabled: bool) -> dict[str, list[int]] | None:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not enabled or len(cpus) < 2:
        return None
    PINS["server"], PINS["clients"] = {cpus[0]}, set(cpus[1:])
    return {"server": cpus[:1], "clients": cpus[1:]}


def pinned(role: str) -> Callable[[], None] | None:
    """A ``preexec_fn`` that pins the child (and everything it starts) to ``role``'s CPUs."""
    cpus = PINS[role]
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


# -- the server -----------------------------------------------------------------------------


class Server:
    """``python -m aioacm.server`` on a free loopback port, in its own process."""

    def __init__(self, workdir: Path) -> None:
        self.log = open(workdir / "server.log", "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "aioacm.server", "--port", "0", "--log-level", "WARNING"],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            preexec_fn=pinned("server"),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (\S+):(\d+)", line)
        if match is None:
            self.stop()
            raise RuntimeError(f"the server did not start: {line!r}")
        self.host, self.port = match.group(1), int(match.group(2))

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


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


# -- running workers --------------------------------------------------------------------------


def run_worker(script: str, cfg: dict[str, Any], workdir: Path, timeout: float) -> dict[str, Any]:
    """Run one worker process; its result, or ``{"error": ...}``."""
    cwd = Path(tempfile.mkdtemp(prefix=f"{cfg['client']}-", dir=workdir))
    cfg = {**cfg, "workdir": str(cwd)}
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE / script), json.dumps(cfg)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=pinned("clients"),
        )
    except subprocess.TimeoutExpired:
        return {"error": f"worker timed out after {timeout:.0f} s"}
    (cwd / "stderr.log").write_text(proc.stderr)
    try:
        if proc.returncode != 0:
            raise ValueError(f"exit status {proc.returncode}")
        return parse_result(proc.stdout)
    except ValueError as exc:
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        return {"error": f"{exc}: {tail}"}
    finally:
        shutil.rmtree(cwd, ignore_errors=True)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def bench_gets(args: argparse.Namespace, server: Server, workdir: Path) -> dict[str, Any]:
    keys = [f"get.{i:05d}" for i in range(args.get_keys)]
    levels = [[1, max(1, args.gets // 4)], [64, args.gets], [256, args.gets]]
    runs: dict[str, list[dict[str, Any]]] = {"aioacm": [], "floor": [], "sync": []}
    for repeat in range(args.repeats):
        for client in runs:  # interleaved, so a slow patch of the machine hits all three
            cfg = {
                "client": client,
                "endpoint": server.endpoint,
                "namespace": NAMESPACE,
                "keys": keys,
                "warm_key": "warm",
                "levels": levels,
            }
            if client == "aioacm" and args.profile:
                cfg["profile"] = str(args.profile / f"get-{repeat + 1}.txt")
            result = run_worker("get_worker.py", cfg, workdir, timeout=900)
            runs[client].append(result)
            log(f"get {client} run {repeat + 1}: {report.brief_get(result)}")
    return {"keys": len(keys), "levels": levels, "runs": runs}


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
                }
                if client == "aioacm" and args.profile:
                    cfg["profile"] = str(args.profile / f"watch-{size}-{repeat + 1}.txt")
                budget = timeout * 2 + args.idle_seconds + 120
                result = run_worker("watch_worker.py", cfg, workdir, timeout=budget)
                runs[client].append(result)
                log(f"watch {size} {client} run {repeat + 1}: {report.brief_watch(result)}")
        out[str(size)] = runs
    return out


# -- the CLI ----------------------------------------------------------------------------------


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """Run a command; wall seconds and its CPU seconds (user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        cmd,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        preexec_fn=pinned("clients"),
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"{' '.join(cmd[1:3])} failed ({proc.returncode}): {tail}")
    return {"wall_s": wall, "cpu_s": cpu}


def sync_cli_config(endpoint: str) -> dict[str, Any]:
    # ``acm add 127.0.0.1:PORT:ns`` splits at the first ":" (endpoint 127.0.0.1, namespace
    # "PORT:ns"), so the sync CLI cannot be pointed at a port other than 8080 by its own
    # command: write the settings file it would have written.
    return {
        "endpoints": {
            endpoint: {
                "tls": False,
                "is_current": True,
                "region_id": None,
                "kms_enabled": False,
                "namespaces": {
                    CLI_NAMESPACE: {
                        "is_current": True,
                        "ak": None,
                        "sk": None,
                        "alias": CLI_ALIAS,
                        "kms_ak": None,
                        "kms_secret": None,
                        "key_id": None,
                        "ram_role_name": None,
                        "updated": "2024-01-01 00:00:00",
                    }
                },
            }
        }
    }


def cli_run(kind: str, endpoint: str, items: int, workdir: Path) -> dict[str, Any]:
    exe = BIN / ("acm" if kind == "sync" else "aioacm")
    if not exe.exists():
        return {"skipped": f"{kind} CLI not installed"}
    home = Path(tempfile.mkdtemp(prefix=f"cli-{kind}-", dir=workdir))
    env = {**os.environ, "HOME": str(home)}
    export_dir = home / "export"
    try:
        if kind == "sync":
            (home / ".acm.json").write_text(json.dumps(sync_cli_config(endpoint)))
        else:
            timed([str(exe), "add", f"{endpoint}:{CLI_NAMESPACE}", "-n", CLI_ALIAS], env, home)
        export = timed([str(exe), "export", "-d", str(export_dir), "-n", CLI_ALIAS], env, home)
        files = sum(len(names) for _, _, names in os.walk(export_dir))
        if files != items:
            raise RuntimeError(f"export wrote {files} files, expected {items}")
        imported = timed(
            [str(exe), "import", "-d", str(export_dir), "-n", CLI_ALIAS, "--force"], env, home
        )
        return {"export": export, "import": imported, "files": files}
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def bench_cli(args: argparse.Namespace, server: Server, workdir: Path) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {"aioacm": [], "sync": []}
    for repeat in range(args.repeats):
        for kind in runs:
            if runs[kind] and "skipped" in runs[kind][-1]:
                continue
            result = cli_run(kind, server.endpoint, args.cli_items, workdir)
            runs[kind].append(result)
            log(f"cli {kind} run {repeat + 1}: {report.brief_cli(result)}")
    return {"items": args.cli_items, "runs": runs}


# -- import time ------------------------------------------------------------------------------


def import_times(module: str, runs: int) -> dict[str, Any]:
    """``-X importtime`` cumulative microseconds, and wall time over a bare interpreter."""
    cumulative, wall, bare = [], [], []
    pin = pinned("clients")
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True)  # compile .pyc
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True,
            text=True,
            check=True,
            preexec_fn=pin,
        )
        for line in proc.stderr.splitlines():
            parts = line.split("|")
            if len(parts) == 3 and parts[2].strip() == module:
                cumulative.append(int(parts[1]) / 1000)
        for command, sink in ((f"import {module}", wall), ("pass", bare)):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", command], check=True, preexec_fn=pin)
            sink.append((time.perf_counter() - started) * 1000)
    return {"importtime_ms": cumulative, "wall_ms": wall, "bare_ms": bare}


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
