"""The CLI (export then import, aioacm against the sync ``acm``) and import-time sections."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import report
from _common import content_for
from procs import Server, log, pinned

BIN = Path(sys.executable).parent
CLI_NAMESPACE = "cli"
CLI_ALIAS = "bench-cli"
COPY_SOURCE = "copy-src"
#: one item in this many of the copy's source is envelope-encrypted, with a data key
COPY_CIPHER_EVERY = 10


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
    return {"items": args.cli_items, "runs": runs, "copy": bench_copy(args, server, workdir)}


# -- aioacm copy: ACM to Nacos ----------------------------------------------------------------


async def seed_copy(endpoint: str, items: int) -> None:
    """``items`` items in the ACM namespace COPY_SOURCE over two groups; one in
    COPY_CIPHER_EVERY is ``cipher-kms-aes-128-`` with an encrypted data key (as KMS left it)."""
    from aioacm import ACMClient

    limit = asyncio.Semaphore(64)
    async with ACMClient(endpoint, COPY_SOURCE, cai_enabled=False) as client:

        async def publish(i: int) -> None:
            cipher = i % COPY_CIPHER_EVERY == 0
            data_id = f"cipher-kms-aes-128-copy.{i:05d}" if cipher else f"copy.{i:05d}"
            async with limit:
                await client.publish_raw(
                    data_id,
                    "DEFAULT_GROUP" if i % 2 else "APP_GROUP",
                    content_for(data_id, 256),
                    encrypted_data_key=f"data-key-{i}" if cipher else None,
                )

        await asyncio.gather(*(publish(i) for i in range(items)))


def copy_run(server: Server, items: int, workdir: Path, repeat: int) -> dict[str, Any]:
    """``aioacm copy`` of the ACM namespace to a new Nacos namespace of the same server, then
    again (every item the same: both sides read and compared, nothing written)."""
    exe = BIN / "aioacm"
    if not exe.exists():
        return {"skipped": "aioacm CLI not installed"}
    home = Path(tempfile.mkdtemp(prefix="cli-copy-", dir=workdir))
    env = {**os.environ, "HOME": str(home)}
    source = f"{server.endpoint}:{COPY_SOURCE}"
    target = f"nacos://{server.endpoint}/copy-dst-{repeat}"
    try:
        copy = timed([str(exe), "copy", source, target], env, home)
        again = timed([str(exe), "copy", source, target], env, home)
        check = subprocess.run(
            [str(exe), "copy", source, target, "--dry-run", "--json"],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=300,
        )
        same = len(json.loads(check.stdout)["same"]) if check.returncode == 0 else -1
        if same != items:
            raise RuntimeError(f"the target has {same} items the same as the source, not {items}")
        return {"copy": copy, "again": again, "items": items}
    except (RuntimeError, ValueError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def bench_copy(args: argparse.Namespace, server: Server, workdir: Path) -> dict[str, Any]:
    asyncio.run(seed_copy(server.endpoint, args.cli_items))
    runs = []
    for repeat in range(args.repeats):
        result = copy_run(server, args.cli_items, workdir, repeat)
        runs.append(result)
        log(f"cli copy run {repeat + 1}: {report.brief_copy(result)}")
    return {"items": args.cli_items, "cipher_every": COPY_CIPHER_EVERY, "runs": runs}


# -- import time ------------------------------------------------------------------------------


def import_times(module: str, runs: int) -> dict[str, Any]:
    """``-X importtime`` cumulative microseconds, and wall time over a bare interpreter."""
    cumulative: list[float] = []
    wall: list[float] = []
    bare: list[float] = []
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
