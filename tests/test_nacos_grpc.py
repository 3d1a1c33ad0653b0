"""NacosClient over gRPC against the bundled server: the protocol choice, request shapes, and
the connection's life (stream drops, clean ends, reset requests, silent servers, restarts,
expired tokens): every change delivered once, nothing left running."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import aioacm_tasks

import aioacm.nacos_auth
import aioacm.rpc.connection as rpc_connection
import aioacm.rpc.feed
from aioacm import (
    AccessDeniedError,
    InvalidParameterError,
    NacosClient,
    ServerUnavailableError,
)
from aioacm.server import LocalACMServer


@pytest.fixture
async def make_nacos(tmp_path: Path) -> AsyncIterator[Callable[..., NacosClient]]:
    clients: list[NacosClient] = []

    def make(addresses: str, **kwargs: Any) -> NacosClient:
        kwargs.setdefault("protocol", "grpc")
        kwargs.setdefault("snapshot_base", str(tmp_path / "snapshot"))
        kwargs.setdefault("failover_base", str(tmp_path / "data"))
        client = NacosClient(addresses, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
    assert aioacm_tasks() == []


class Recorder:
    """What a watcher callback received, per data id."""

    def __init__(self) -> None:
        self.seen: dict[str, list[str | None]] = {}
        self.changed = asyncio.Event()

    async def __call__(self, event: dict[str, Any]) -> None:
        self.seen.setdefault(event["data_id"], []).append(event["content"])
        self.changed.set()

    async def wait_for(self, data_id: str, values: list[str | None], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.seen.get(data_id, []) != values:
            assert time.monotonic() < deadline, f"{data_id}: {self.seen.get(data_id)} != {values}"
            self.changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.changed.wait(), 0.1)


async def until(condition: Callable[[], bool], timeout: float = 10, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.02)


# -- choosing the protocol ---------------------------------------------------------------------


async def test_auto_speaks_grpc_when_the_grpc_port_answers(
    server: LocalACMServer,
    make_nacos: Callable[..., NacosClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="aioacm")
    async with make_nacos(server.endpoint, protocol="auto") as client:
        assert client.stats().protocol == "nacos-auto"  # nothing decided before any I/O
        await client.publish("a", "G", "1")
        assert await client.get("a", "G") == "1"
        await client.get("a", "G")
        assert client.stats().protocol == "nacos-grpc"
    grpc_ops = {r.op for r in server.requests if r.op.startswith("grpc:")}
    assert {"grpc:ConfigPublishRequest", "grpc:ConfigQueryRequest"} <= grpc_ops
    assert server.request_count("get") == server.request_count("publish") == 0
    chosen = [r.getMessage() for r in caplog.records if "using gRPC" in r.getMessage()]
    assert len(chosen) == 1
    assert server.endpoint in chosen[0]


async def test_auto_falls_back_to_http_without_a_grpc_port(
    make_nacos: Callable[..., NacosClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aioacm")
    recorder = Recorder()
    async with LocalACMServer(grpc=False) as server:
        async with make_nacos(server.endpoint, protocol="auto", pulling_timeout=2) as client:
            await client.publish("a", "G", "1")
            assert await client.get("a", "G") == "1"
            await client.add_watcher("a", "G", recorder)
            await recorder.wait_for("a", ["1"])
            await client.publish("a", "G", "2")
            await recorder.wait_for("a", ["1", "2"])
            assert client.stats().protocol == "nacos-http"
            assert client.stats().pollers == 1
        assert server.request_count("nacos:get") >= 1 or server.request_count("get") >= 1
    assert any("using HTTP" in r.getMessage() for r in caplog.records)


async def test_auto_decides_nothing_while_no_server_answers(
    make_nacos: Callable[..., NacosClient],
) -> None:
    """A client started before its servers is not stuck on HTTP: with nothing answering it
    raises, and speaks gRPC once the server is up."""
    server = LocalACMServer()
    await server.start()
    await server.stop()  # its ports, free
    server.set_config("a", "G", "1")
    async with make_nacos(server.endpoint, protocol="auto", default_timeout=1) as client:
        with pytest.raises(ServerUnavailableError, match="no Nacos server answers"):
            await client.get("a", "G", no_snapshot=True)
        assert client.stats().protocol == "nacos-auto"
        await server.start()
        try:
            assert await client.get("a", "G") == "1"
            assert client.stats().protocol == "nacos-grpc"
        finally:
            await server.stop()


def test_an_unknown_protocol_is_refused_before_any_io() -> None:
    with pytest.raises(InvalidParameterError, match="protocol must be one of auto, grpc, http"):
        NacosClient("127.0.0.1:8848", protocol="grpcs")


async def test_grpc_without_a_server_fails_within_the_timeout(
    make_nacos: Callable[..., NacosClient], unused_tcp_port: int
) -> None:
    async with make_nacos(f"127.0.0.1:{unused_tcp_port}", default_timeout=1) as client:
        started = time.monotonic()
        with pytest.raises(ServerUnavailableError, match="connection refused"):
            await client.get("a", "G", no_snapshot=True)
        assert time.monotonic() - started < 3
        assert client.stats().connected is False


# -- the wire ----------------------------------------------------------------------------------


async def test_request_shapes(
    server: LocalACMServer, make_nacos: Callable[..., NacosClient]
) -> None:
    async with make_nacos(server.endpoint, namespace="dev", app_name="billing") as client:
        await client.publish("app.json", "G", '{"a": "中"}', config_type="json")
        assert await client.get("app.json", "G") == '{"a": "中"}'
        await client.remove("app.json", "G")
        assert await client.get("app.json", "G") is None
    publish = server.requests_for("grpc:ConfigPublishRequest")[-1]
    body = json.loads(publish.body)
    assert (body["dataId"], body["group"], body["tenant"]) == ("app.json", "G", "dev")
    assert body["content"] == '{"a": "中"}'
    assert body["additionMap"] == {"type": "json", "appName": "billing"}
    assert publish.status == 200
    query = server.requests_for("grpc:ConfigQueryRequest")[-1]
    assert query.error_code == 300  # not found, after the remove
    remove = json.loads(server.requests_for("grpc:ConfigRemoveRequest")[-1].body)
    assert (remove["dataId"], remove["group"], remove["tenant"]) == ("app.json", "G", "dev")
    assert server.get_item("app.json", "G", "dev") is None


async def test_config_type_and_value_cross_protocols(
    server: LocalACMServer, make_nacos: Callable[..., NacosClient]
) -> None:
    """Published over gRPC, read over HTTP and the other way round: one store."""
    async with (
        make_nacos(server.endpoint) as grpc_client,
        make_nacos(server.endpoint, protocol="http") as http_client,
    ):
        await grpc_client.publish("x.yaml", None, "k: 1", config_type="yaml")
        assert await http_client.get("x.yaml", None) == "k: 1"
        await http_client.publish("y", "G", "中文")
        assert await grpc_client.get("y", "G") == "中文"
        await http_client.publish("z.yaml", None, "k: 2", config_type="yaml")
        changes = grpc_client.watch("z.yaml")  # never read: its value comes from the server
        first = await asyncio.wait_for(anext(changes), 5)
        assert (first.content, first.config_type) == ("k: 2", "yaml")
        await changes.aclose()


# -- watching and the connection's life ---------------------------------------------------------


async def test_watch_sees_each_change_once_and_the_deletion(
    server: LocalACMServer, make_nacos: Callable[..., NacosClient]
) -> None:
    recorder = Recorder()
    server.set_config("w", "G", "v0")
    async with make_nacos(server.endpoint) as client:
        await client.add_watcher("w", "G", recorder)
        await recorder.wait_for("w", ["v0"])
        for value in ("v1", "v2", "v3"):
            server.set_config("w", "G", value)
            await recorder.wait_for("w", ["v0", "v1", "v2", "v3"][: int(value[1]) + 1])
        server.delete_config("w", "G")
        await recorder.wait_for("w", ["v0", "v1", "v2", "v3", None])
        stats = client.stats()
        assert (stats.pollers, stats.connections, stats.connected) == (1, 1, True)
    # one listen for the key; every change after it came as a push, then a query
    assert server.request_count("grpc:ConfigBatchListenRequest") == 1


@pytest.mark.parametrize("error", [True, False], ids=["stream-error", "clean-end"])
async def test_a_dropped_stream_is_replaced_and_changes_made_meanwhile_arrive_once(
    server: LocalACMServer, make_nacos: Callable[..., NacosClient], error: bool
) -> None:
    recorder = Recorder()
    keys = [f"k{i}" for i in range(20)]
    for key in keys:
        server.set_config(key, "G", "0")
    async with make_nacos(server.endpoint) as client:
        for key in keys:
            await client.add_watcher(key, "G", recorder)
        for key in keys:
            await recorder.wait_for(key, ["0"])
        await server.wait_for_grpc_listeners(len(keys))
        assert server.drop_grpc_streams(error=error) == 1
        for key in keys[:10]:  # while the client has no stream: no push can reach it
            server.set_config(key, "G", "1")
        for key in keys[:10]:
            await recorder.wait_for(key, ["0", "1"])
        await until(lambda: client.stats().connections == 2, what="a second connection")
        await server.wait_for_grpc_listeners(len(keys))  # every key listened to again
        server.set_config("k15", "G", "2")  # and pushes reach the new stream
        await recorder.wait_for("k15", ["0", "2"])
        await asyncio.sleep(0.3)
        assert all(recorder.seen[k] == ["0", "1"] for k in keys[:10])  # never twice


async def test_a_restarted_server_gets_every_listen_again(
    server: LocalACMServer, make_nacos: Callable[..., NacosClient]
) -> None:
    recorder = Recorder()
    server.set_config("r", "G", "before")
    async with make_nacos(server.endpoint) as client:
        await client.add_watcher("r", "G", recorder)
        await recorder.wait_for("r", ["before"])
        await server.stop()
        assert client.stats().connected is False or await _disconnected(client)
        server.set_config("r", "G", "while down")
        await server.start()
        await recorder.wait_for("r", ["before", "while down"], timeout=15)
        server.set_config("r", "G", "after")
        await recorder.wait_for("r", ["before", "while down", "after"])


async def _disconnected(client: NacosClient) -> bool:
    await until(lambda: not client.stats().connected, what="the stream seen lost")
    return True


async def test_a_reset_request_moves_the_client_to_the_server_it_names(
    server: LocalACMServer, make_nacos: Callable[..., NacosClient]
) -> None:
    recorder = Recorder()
    async with LocalACMServer() as other:
        for target in (server, other):
            target.set_config("m", "G", "same")
        async with make_nacos(server.endpoint) as client:
            await client.add_watcher("m", "G", recorder)
            await recorder.wait_for("m", ["same"])
            assert server.reset_grpc_connections("127.0.0.1", other.port) == 1
            await other.wait_for_grpc_listeners(1)
            assert server.grpc_connection_count == 0 or await _gone(server)
            assert len(server.requests_for("grpc:ConnectResetResponse")) == 1
            other.set_config("m", "G", "moved")
            await recorder.wait_for("m", ["same", "moved"])
            assert client.stats().connections == 2


async def _gone(server: LocalACMServer) -> bool:
    await until(lambda: server.grpc_connection_count == 0, what="the old connection closed")
    return True


async def test_a_silent_server_is_found_by_the_health_check(
    server: LocalACMServer,
    make_nacos: Callable[..., NacosClient],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(rpc_connection, "HEALTH_IDLE", 0.2)
    monkeypatch.setattr(rpc_connection, "HEALTH_TIMEOUT", 0.3)
    recorder = Recorder()
    server.set_config("h", "G", "0")
    async with make_nacos(server.endpoint) as client:
        await client.add_watcher("h", "G", recorder)
        await recorder.wait_for("h", ["0"])
        server.pause_grpc_health_checks()
        await until(lambda: not client.stats().connected, timeout=3, what="health check fails")
        server.resume_grpc_health_checks()
        await until(lambda: client.stats().connections >= 2, timeout=5, what="reconnected")
        server.set_config("h", "G", "1")
        await recorder.wait_for("h", ["0", "1"])
    assert server.request_count("grpc:HealthCheckRequest") >= 1


async def test_changes_under_repeated_stream_drops_arrive_exactly_once(
    server: LocalACMServer, make_nacos: Callable[..., NacosClient]
) -> None:
    recorder = Recorder()
    keys = [f"s{i}" for i in range(50)]
    for key in keys:
        server.set_config(key, "G", "0")
    expected = {key: ["0"] for key in keys}
    dropped = 0
    async with make_nacos(server.endpoint) as client:
        for key in keys:
            await client.add_watcher(key, "G", recorder)
        for key in keys:
            await recorder.wait_for(key, ["0"])
        for step in range(1, 61):
            key = keys[step % len(keys)]
            server.set_config(key, "G", str(step))
            expected[key].append(str(step))
            if step % 10 == 0:
                dropped += server.drop_grpc_streams(error=step % 20 == 0)
            # changes to one key are spaced out, so none is superseded before it is fetched
            await asyncio.sleep(0.03)
        for key in keys:
            await recorder.wait_for(key, expected[key], timeout=15)
        assert dropped >= 3  # most drops found a stream (some hit a reconnect in progress)
        await until(lambda: client.stats().connections == 1 + dropped, what="reconnects")


# -- auth --------------------------------------------------------------------------------------


async def test_the_token_travels_in_the_metadata_and_never_in_a_log(
    make_nacos: Callable[..., NacosClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with LocalACMServer(users={"nacos": "pw-s3cret"}) as server:
        async with make_nacos(server.endpoint, username="nacos", password="pw-s3cret") as client:
            await client.publish("a", "G", "1")
            assert await client.get("a", "G") == "1"
        query = server.requests_for("grpc:ConfigQueryRequest")[-1]
        token = query.headers.get("accessToken")
        assert token
        assert query.status == 200
        assert "Authorization" not in query.headers
        for login in server.requests_for("login"):
            assert "pw-s3cret" not in login.query_string
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("aioacm"))
    assert "pw-s3cret" not in logged
    assert token not in logged


async def test_a_wrong_password_is_refused_over_grpc_too(
    make_nacos: Callable[..., NacosClient],
) -> None:
    async with (
        LocalACMServer(users={"nacos": "right"}) as server,
        make_nacos(server.endpoint, username="nacos", password="wrong") as client,
    ):
        with pytest.raises(AccessDeniedError, match="nacos"):
            await client.get("a", "G", no_snapshot=True)


async def test_expired_tokens_after_a_restart_cost_one_login_not_a_403_storm(
    make_nacos: Callable[..., NacosClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thousands of keys re-listened at once on a new stream, every token expired: the first
    403 logs in once, the other requests wait for that login."""
    recorder = Recorder()
    # batch listens of 100 keys (3,000 in Nacos's clients): several in flight together
    monkeypatch.setattr(aioacm.rpc.feed, "LISTEN_CHUNK", 100)
    keys = [f"t{i}" for i in range(450)]
    async with LocalACMServer(users={"nacos": "pw"}) as server:
        for key in keys:
            server.set_config(key, "G", "0")
        async with make_nacos(server.endpoint, username="nacos", password="pw") as client:
            for key in keys:
                await client.add_watcher(key, "G", recorder)
            await until(lambda: len(recorder.seen) == len(keys), timeout=30, what="first values")
            logins = len(server.requests_for("login"))
            refused = [r for r in server.requests if r.error_code == 403]
            assert not refused
            # a token refused under TOKEN_RELOGIN_MIN old is not renewed at once (a server
            # refusing fresh tokens gets no login loop): let ours age past it
            monkeypatch.setattr(aioacm.nacos_auth, "TOKEN_RELOGIN_MIN", 0.2)
            await asyncio.sleep(0.3)
            await server.stop()
            server.nacos_users.expire_all()
            server.set_config("t7", "G", "1")
            await server.start()
            await recorder.wait_for("t7", ["0", "1"], timeout=20)
            await server.wait_for_grpc_listeners(len(keys), timeout=20)
            assert len(server.requests_for("login")) == logins + 1
            refused = [r for r in server.requests if r.error_code == 403]
            assert len(refused) == 1  # the first listen on the new stream; the rest log in no more
