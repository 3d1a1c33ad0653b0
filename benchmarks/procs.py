"""Processes of the benchmark: CPU pinning, the bundled server, worker processes, the log."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _common import parse_result

HERE = Path(__file__).resolve().parent


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
    """``python -m aioacm.server`` on a free loopback port (or ``port``), in its own process.

    ``stop()`` then ``start()`` restarts it on the same ports (HTTP, and gRPC at + 1000)."""

    def __init__(self, workdir: Path, port: int = 0, extra: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.host, self.port = "127.0.0.1", port
        self.start(extra)

    def start(self, extra: Sequence[str] = ()) -> None:
        """Start the process (on the port it had, if it ran before), with ``extra`` options."""
        self.log = open(self.workdir / "server.log", "a")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "aioacm.server", "--port", str(self.port)),
                *("--log-level", "WARNING", *extra),
            ],
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

    def stop(self, kill: bool = False) -> None:
        """SIGTERM (the server stops cleanly), or SIGKILL (a crash), and wait for the exit."""
        if kill:
            self.proc.kill()
        else:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


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
