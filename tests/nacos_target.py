"""Where the Nacos behavioural suite runs: the bundled server, and a real Nacos when
``AIOACM_NACOS_SERVER=host:port[,...]`` is set (with ``AIOACM_NACOS_USERNAME`` and
``AIOACM_NACOS_PASSWORD`` when its auth is on)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from aioacm import NacosClient
from aioacm.server import LocalACMServer

REAL_SERVER = os.environ.get("AIOACM_NACOS_SERVER", "").strip()
REAL_USERNAME = os.environ.get("AIOACM_NACOS_USERNAME") or None
REAL_PASSWORD = os.environ.get("AIOACM_NACOS_PASSWORD") or None
#: the protocols the suite runs with (both by default; ``AIOACM_NACOS_PROTOCOLS=grpc`` for one)
PROTOCOLS = [
    name.strip()
    for name in os.environ.get("AIOACM_NACOS_PROTOCOLS", "http,grpc").split(",")
    if name.strip()
]

real_only = pytest.mark.skipif(not REAL_SERVER, reason="AIOACM_NACOS_SERVER is not set")


@dataclass
class NacosTarget:
    """One server under test, and the clients made for it."""

    addresses: str
    protocol: str
    username: str | None
    password: str | None
    tmp_path: Path
    bundled: LocalACMServer | None = None
    #: a fresh prefix per test: real servers keep what earlier runs left
    prefix: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}.")
    clients: list[NacosClient] = field(default_factory=list)

    def client(self, **kwargs: Any) -> NacosClient:
        kwargs.setdefault("snapshot_base", str(self.tmp_path / "snapshot"))
        kwargs.setdefault("failover_base", str(self.tmp_path / "data"))
        kwargs.setdefault("pulling_timeout", 5)
        kwargs.setdefault("protocol", self.protocol)
        if self.username is not None:
            kwargs.setdefault("username", self.username)
            kwargs.setdefault("password", self.password)
        client = NacosClient(kwargs.pop("server_addresses", self.addresses), **kwargs)
        self.clients.append(client)
        return client

    def key(self, name: str) -> str:
        return self.prefix + name


def target_params() -> list[Any]:
    """``bundled-<protocol>`` and ``real-<protocol>`` for each protocol of the run."""
    params: list[Any] = [f"bundled-{protocol}" for protocol in PROTOCOLS]
    marks = [pytest.mark.nacos_real, real_only]
    params += [pytest.param(f"real-{protocol}", marks=marks) for protocol in PROTOCOLS]
    return params


async def open_target(
    kind: str, tmp_path: Path, check_tasks: Callable[[], list[str]]
) -> AsyncIterator[NacosTarget]:
    where, protocol = kind.split("-", 1)
    if where == "bundled":
        async with LocalACMServer() as server:
            target = NacosTarget(server.endpoint, protocol, None, None, tmp_path, bundled=server)
            yield target
            await close_clients(target, check_tasks)
        return
    # a real server keeps what each run publishes, under the test's own prefix
    target = NacosTarget(REAL_SERVER, protocol, REAL_USERNAME, REAL_PASSWORD, tmp_path)
    yield target
    await close_clients(target, check_tasks)


async def close_clients(target: NacosTarget, check_tasks: Callable[[], list[str]]) -> None:
    for client in target.clients:
        await client.aclose()
    assert check_tasks() == []
