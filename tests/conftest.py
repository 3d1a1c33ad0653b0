"""Shared fixtures."""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aioresponses.core
import pytest
from aiohttp import ClientResponse
from aioresponses import aioresponses as _aioresponses
from helpers import aioacm_tasks
from hypothesis import settings

from aioacm import ACMClient
from aioacm.server import LocalACMServer

# Property tests stay quick by default; HYPOTHESIS_PROFILE=thorough runs many more examples.
# No deadline: examples talk to a real server on a machine that may be busy.
settings.register_profile("default", max_examples=40, deadline=None, database=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


class _ResponseWithWriter(ClientResponse):
    """aioresponses 0.7.9 builds responses without the ``stream_writer`` that aiohttp 3.14
    requires (pnuckowski/aioresponses#289, still open); give it a finished writer."""

    def __init__(self, method: str, url: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(method, url, **kwargs)


@pytest.fixture
def mocked(monkeypatch: pytest.MonkeyPatch) -> Iterator[_aioresponses]:
    """aioresponses, working on every aiohttp we support."""
    if "stream_writer" in inspect.signature(ClientResponse.__init__).parameters:
        monkeypatch.setattr(aioresponses.core, "ClientResponse", _ResponseWithWriter)
    with _aioresponses() as m:
        yield m


@pytest.fixture(autouse=True)
async def _loop_errors_fail_the_test() -> AsyncIterator[None]:
    """A task exception never retrieved, or any other error the event loop reports, fails the
    test (warnings-as-errors does not see these: the loop logs them)."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    yield
    gc.collect()  # a dead task reports its unretrieved exception when collected
    loop.set_exception_handler(previous)
    assert not reported, [c.get("message") for c in reported]


@pytest.fixture
async def server() -> AsyncIterator[LocalACMServer]:
    """A bundled ACM server on a free loopback port."""
    async with LocalACMServer() as srv:
        yield srv


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[Callable[..., ACMClient]]:
    """Build clients whose snapshot and failover folders live in ``tmp_path``; all are closed
    (and checked to leave no aioacm task behind) at the end of the test."""
    clients: list[ACMClient] = []

    def make(endpoint: str, **kwargs: Any) -> ACMClient:
        kwargs.setdefault("snapshot_base", str(tmp_path / "snapshot"))
        kwargs.setdefault("failover_base", str(tmp_path / "data"))
        client = ACMClient(endpoint, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
    assert aioacm_tasks() == []


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh HOME for the ``aioacm`` command (settings in ``home/.acm.json``), with the
    working directory set to an empty ``tmp_path/work``, as for a new user."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DIAMOND_SERVER_IPS", raising=False)
    monkeypatch.chdir(work)
    return home
