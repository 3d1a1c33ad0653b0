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
