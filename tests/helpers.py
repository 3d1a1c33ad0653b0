"""Helpers shared by the tests (importable as ``helpers``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path


def aioacm_tasks() -> list[str]:
    """Names of the running tasks aioacm started (the server's are not the client's)."""
    return sorted(
        t.get_name()
        for t in asyncio.all_tasks()
        if t.get_name().startswith("aioacm.") and not t.done()
    )


async def run_sync_sdk(script: str, cwd: Path, timeout: float = 60.0) -> str:
    """Run ``script`` with the sync SDK (acm-sdk-python 0.4.11) in a subprocess; return stdout.

    The sync SDK forks processes, sets up root logging and blocks: a subprocess keeps all of
    that away from the test's event loop.
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(script),
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")
    return out.decode()


class CLIResult:
    """What one run of the ``aioacm`` command gave."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"CLIResult(code={self.code}, out={self.out!r}, err={self.err!r})"


async def cli(*argv: str, stdin: str = "") -> CLIResult:
    """Run ``aioacm *argv`` in-process on the test's loop (HOME as the test set it)."""
    import io

    from aioacm.cli import run
    from aioacm.cli.console import Console

    out, err = io.StringIO(), io.StringIO()
    code = await run(list(argv), Console(out, err, io.StringIO(stdin), env={}))
    return CLIResult(code, out.getvalue(), err.getvalue())


async def cli_process(
    *argv: str,
    home: Path,
    cwd: Path,
    module: str = "aioacm",
    stdin: bytes = b"",
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
) -> CLIResult:
    """Run ``python -m <module> *argv`` as a new user would: a subprocess with HOME=home."""
    import os

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        *argv,
        cwd=cwd,
        env={**os.environ, "HOME": str(home), **(env or {})},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return CLIResult(proc.returncode, out.decode(), err.decode())
