"""Helpers shared by the tests (importable as ``helpers``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

from aioacm.server import LocalACMServer


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


class Terminal(io.StringIO):
    """Standard input that is a terminal, with the user's answers typed in advance."""

    def isatty(self) -> bool:
        return True


async def cli(*argv: str, stdin: str = "", terminal: bool = False) -> CLIResult:
    """Run ``aioacm *argv`` in-process on the test's loop (HOME as the test set it); with
    ``terminal``, stdin is a terminal (prompts are answered from ``stdin``)."""
    from aioacm.cli import run
    from aioacm.cli.console import Console

    out, err = io.StringIO(), io.StringIO()
    inp = Terminal(stdin) if terminal else io.StringIO(stdin)
    code = await run(list(argv), Console(out, err, inp, env={}))
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


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (polling the loop), or fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


class Recorder:
    """A sync watcher callback that records the contents it was called with."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append(event)

    @property
    def contents(self) -> list[str | None]:
        with self.lock:
            return [c["content"] for c in self.calls]


def assert_history(delivered: Sequence[str | None], published: Sequence[str | None]) -> None:
    """What a watcher got is what was published, with nothing made up, reordered or repeated.

    ``delivered`` must be a subsequence of ``published`` (changes made while the client could
    not see them may be folded into the next one), never the same value twice in a row, and
    end with the last value published: the watcher missed nothing that lasted.
    """
    assert delivered, "the watcher got nothing"
    assert delivered[-1] == published[-1], (delivered, published)
    assert all(a != b for a, b in itertools.pairwise(delivered)), f"duplicate in {delivered}"
    position = 0
    for value in delivered:
        try:
            position = list(published).index(value, position) + 1
        except ValueError:
            raise AssertionError(f"{value!r} delivered out of order: {delivered}") from None


@contextlib.asynccontextmanager
async def cluster(count: int, **kwargs: Any) -> AsyncIterator[list[LocalACMServer]]:
    """``count`` servers sharing one store (a change on one is seen on all), each one's address
    server listing all of them."""
    servers = [LocalACMServer(**kwargs) for _ in range(count)]
    for srv in servers[1:]:
        srv.store = servers[0].store
    async with contextlib.AsyncExitStack() as stack:
        for srv in servers:
            await stack.enter_async_context(srv)
        for srv in servers:
            srv.address_list = [s.endpoint for s in servers]
        yield servers
