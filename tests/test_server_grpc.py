"""The bundled server's Nacos gRPC API, driven by raw ``grpc.aio`` channels and the codec (not
by aioacm's client): connections, config calls, pushes, auth, faults and restarts."""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import grpc
import grpc.aio
import pytest

from aioacm.auth import sign
from aioacm.rpc.codec import STREAM_METHOD, UNARY_METHOD, Message, decode, encode
from aioacm.server import LocalACMServer
from aioacm.server.__main__ import _parser
from aioacm.server.grpc_controls import port_is_free
from aioacm.server.security import grpc_sign_string

pytestmark = pytest.mark.timeout(20)

#: what a quick server waits for acks, and between push retries
FAST = {"grpc_ack_timeout": 0.2, "grpc_retry_delay": 0.05}


class Link:
    """One client's channel to the server: unary calls, and at most one stream."""

    def __init__(self, server: LocalACMServer) -> None:
        self.channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{server.grpc_port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self._unary = self.channel.unary_unary(UNARY_METHOD)
        self.stream: Any = None
        # a read cancelled by a timeout would cancel the whole call: one task reads instead
        self._inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None

    async def _read_all(self) -> None:
        with contextlib.suppress(grpc.aio.AioRpcError):
            while (data := await self.stream.read()) is not grpc.aio.EOF:
                self._inbox.put_nowait(decode(data))
        self._inbox.put_nowait(None)

    async def close(self) -> None:
        await self.channel.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def call(
        self,
        type_name: str,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 5.0,
    ) -> Message:
        data = await self._unary(encode(type_name, body or {}, headers), timeout=timeout)
        return decode(data)

    async def open(self, ability_table: bool = True) -> Message | None:
        """Open the stream and send the setup; return the SetupAckRequest (if one is due)."""
        if self._reader is not None:
            await self._reader
        self.stream = self.channel.stream_stream(STREAM_METHOD)()
        self._inbox = asyncio.Queue()
        self._reader = asyncio.ensure_future(self._read_all())
        setup: dict[str, Any] = {
            "headers": {},
            "clientVersion": "Nacos-Java-Client:v2.5.1",
            "tenant": "",
            "labels": {"source": "sdk", "module": "config"},
        }
        if ability_table:
            setup["abilityTable"] = {}
        await self.send("ConnectionSetupRequest", setup)
        return await self.read() if ability_table else None

    async def send(self, type_name: str, body: Mapping[str, Any]) -> None:
        await self.stream.write(encode(type_name, body))

    async def read(self, timeout: float = 5.0) -> Message:
        message = await asyncio.wait_for(self._inbox.get(), timeout)
        assert message is not None, "the stream ended"
        return message

    async def end(self) -> grpc.StatusCode:
        """Wait for the stream to end (skipping what comes before); its status code."""
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), 5)
        code: grpc.StatusCode = await self.stream.code()
        return code

    async def ack(self, request: Message, type_name: str, result_code: int = 200) -> None:
        await self.send(type_name, {"resultCode": result_code, **_rid(request)})

    async def listen(
        self, contexts: list[dict[str, str]], headers: Mapping[str, str] | None = None
    ) -> Message:
        body = {"listen": True, "configListenContexts": contexts}
        return await self.call("ConfigBatchListenRequest", body, headers)


def _rid(message: Message) -> dict[str, str]:
    return {"requestId": message.body["requestId"]}


MakeLink = Callable[..., Awaitable[Link]]


@pytest.fixture
async def connect() -> AsyncIterator[MakeLink]:
    """``await connect(server, setup=True)``: a Link, its stream set up; all closed after."""
    links: list[Link] = []

    async def make(server: LocalACMServer, setup: bool = True) -> Link:
        link = Link(server)
        links.append(link)
        if setup:
            ack = await link.open()
            assert ack is not None
            assert ack.type == "SetupAckRequest"
        return link

    yield make
    for link in links:
        await link.close()


async def test_server_check_setup_ack_and_health(server: LocalACMServer, connect: MakeLink) -> None:
    assert server.grpc_port == server.port + 1000
    link = await connect(server, setup=False)
    check = await link.call("ServerCheckRequest", {"requestId": "r1", "module": "internal"})
    assert check.type == "ServerCheckResponse"
    assert check.body["resultCode"] == 200
    assert check.body["requestId"] == "r1"
    assert check.body["supportAbilityNegotiation"] is True
    assert re.fullmatch(r"\d{13}_127\.0\.0\.1_\d+", check.body["connectionId"])
    assert server.grpc_connection_count == 0

    ack = await link.open()
    assert ack is not None
    assert (ack.type, ack.body) == (
        "SetupAckRequest",
        {"headers": {}, "abilityTable": {}, "module": "internal"},  # no requestId: no answer
    )
    await server.wait_for_grpc_connections(1)
    assert list(server.grpc_listens) == [check.body["connectionId"]]  # same connection
    health = await link.call("HealthCheckRequest", {"requestId": "h1"})
    assert (health.type, health.body["resultCode"], health.body["requestId"]) == (
        "HealthCheckResponse",
        200,
        "h1",
    )
    assert server.request_count("grpc:HealthCheckRequest") == 1
    record = server.requests_for("grpc:ConnectionSetupRequest")[0]
    assert (record.method, record.path, record.status) == ("GRPC", STREAM_METHOD, None)


async def test_a_setup_without_ability_table_gets_no_ack(
    server: LocalACMServer, connect: MakeLink
) -> None:
    link = await connect(server, setup=False)
    await link.open(ability_table=False)
    await server.wait_for_grpc_connections(1)
    assert (await link.call("HealthCheckRequest")).body["resultCode"] == 200
    with pytest.raises(asyncio.TimeoutError):
        await link.read(timeout=0.2)


async def test_calls_on_an_unregistered_connection_get_301(
    server: LocalACMServer, connect: MakeLink
) -> None:
    link = await connect(server, setup=False)
    for type_name in ("HealthCheckRequest", "ConfigQueryRequest"):
        answer = await link.call(type_name, {"dataId": "d", "group": "G", "requestId": "7"})
        assert answer.type == "ErrorResponse"
        assert answer.body["resultCode"] == 500
        assert answer.body["errorCode"] == 301
        assert answer.body["message"] == "Connection is unregistered."
        assert answer.body["requestId"] == "7"
    unknown = await link.call("InstanceRequest")
    assert (unknown.type, unknown.body["errorCode"]) == ("ErrorResponse", 302)
    assert "InstanceRequest" in unknown.body["message"]


async def test_query_publish_remove_and_not_found(
    server: LocalACMServer, connect: MakeLink
) -> None:
    link = await connect(server)
    key = {"dataId": "app.yaml", "group": "G", "tenant": "dev"}
    published = await link.call(
        "ConfigPublishRequest",
        {**key, "content": "k: 中", "additionMap": {"type": "yaml", "encryptedDataKey": "EDK"}},
    )
    assert (published.type, published.body["resultCode"]) == ("ConfigPublishResponse", 200)
    item = server.get_item("app.yaml", "G", tenant="dev")
    assert item is not None
    assert (item.content, item.config_type, item.encrypted_data_key) == ("k: 中", "yaml", "EDK")

    query = await link.call("ConfigQueryRequest", {**key, "requestId": "q"})
    assert query.type == "ConfigQueryResponse"
    body = query.body
    assert body["resultCode"] == 200
    assert body["requestId"] == "q"
    assert (body["content"], body["md5"], body["contentType"]) == ("k: 中", item.utf8_md5, "yaml")
    assert body["encryptedDataKey"] == "EDK"
    assert body["lastModified"] == int(item.last_modified * 1000)
    assert body["beta"] is False

    removed = await link.call("ConfigRemoveRequest", key)
    assert (removed.type, removed.body["resultCode"]) == ("ConfigRemoveResponse", 200)
    missing = await link.call("ConfigQueryRequest", key)
    assert missing.type == "ConfigQueryResponse"
    assert (missing.body["resultCode"], missing.body["errorCode"]) == (500, 300)
    assert missing.body["message"] == "config data not exist"
    assert server.request_count("grpc:ConfigQueryRequest") == 2
    assert server.requests_for("grpc:ConfigQueryRequest")[-1].error_code == 300


async def test_cas_publish_and_bad_parameters(server: LocalACMServer, connect: MakeLink) -> None:
    link = await connect(server)
    server.set_config("d", "G", "v1")
    key = {"dataId": "d", "group": "G"}
    stale = await link.call("ConfigPublishRequest", {**key, "content": "v2", "casMd5": "0" * 32})
    assert (stale.body["resultCode"], stale.body["errorCode"]) == (500, 500)
    assert "md5" in stale.body["message"]
    assert server.get_config("d", "G") == "v1"
    current = server.get_item("d", "G").utf8_md5  # type: ignore[union-attr]
    fresh = await link.call("ConfigPublishRequest", {**key, "content": "v2", "casMd5": current})
    assert fresh.body["resultCode"] == 200
    assert server.get_config("d", "G") == "v2"

    for type_name, body in [
        ("ConfigPublishRequest", {**key, "content": "  "}),
        ("ConfigQueryRequest", {"dataId": "d"}),
        ("ConfigRemoveRequest", {"dataId": "bad id", "group": "G"}),
        ("ConfigBatchListenRequest", {"configListenContexts": [{"dataId": "d"}]}),
    ]:
        answer = await link.call(type_name, body)
        assert answer.type.startswith("Config"), answer.type  # the handler's own type
        assert (answer.body["resultCode"], answer.body["errorCode"]) == (500, 400), type_name


async def test_one_store_for_acm_nacos_http_and_grpc(
    server: LocalACMServer, connect: MakeLink
) -> None:
    link = await connect(server)
    server.set_config("acm.properties", "G", "a=1")  # as an ACM publish would
    for tenant in ("", "public"):  # the default namespace, by both its names
        query = await link.call(
            "ConfigQueryRequest", {"dataId": "acm.properties", "group": "G", "tenant": tenant}
        )
        assert query.body["content"] == "a=1"
        assert query.body["contentType"] == "text"

    async with aiohttp.ClientSession() as http:
        form = {"dataId": "http.json", "group": "G", "content": '{"a": "é"}', "type": "json"}
        async with http.post(f"{server.url}/nacos/v1/cs/configs", data=form) as resp:
            assert await resp.text() == "true"
        query = await link.call("ConfigQueryRequest", {"dataId": "http.json", "group": "G"})
        assert (query.body["content"], query.body["contentType"]) == ('{"a": "é"}', "json")

        params = {"dataId": "grpc.txt", "group": "G"}
        await link.call("ConfigPublishRequest", {**params, "content": "über"})
        query = await link.call("ConfigQueryRequest", params)
        async with http.get(f"{server.url}/nacos/v1/cs/configs", params=params) as resp:
            assert await resp.text() == "über"
            assert resp.headers["Content-MD5"] == query.body["md5"]  # both UTF-8 md5s
        async with http.get(f"{server.url}/diamond-server/config.co", params=params) as resp:
            assert (await resp.read()).decode("gbk") == "über"


async def test_batch_listen_answers_changed_keys_at_once(
    server: LocalACMServer, connect: MakeLink
) -> None:
    link = await connect(server)
    same = server.set_config("same", "G", "1")
    server.set_config("stale", "G", "2")
    answer = await link.listen(
        [
            {"dataId": "same", "group": "G", "tenant": "", "md5": same.utf8_md5},
            {"dataId": "stale", "group": "G", "tenant": "", "md5": "0" * 32},
            {"dataId": "absent", "group": "G", "tenant": "", "md5": ""},
            {"dataId": "gone", "group": "G", "md5": "0" * 32},  # no tenant: none in the answer
        ]
    )
    assert answer.type == "ConfigChangeBatchListenResponse"
    assert answer.body["resultCode"] == 200
    assert answer.body["changedConfigs"] == [
        {"dataId": "stale", "group": "G", "tenant": ""},
        {"dataId": "gone", "group": "G"},
    ]
    assert server.grpc_listener_count == 4
    await server.wait_for_grpc_listeners(4)
    stop = await link.call(
        "ConfigBatchListenRequest",
        {"listen": False, "configListenContexts": [{"dataId": "stale", "group": "G"}]},
    )
    assert stop.body["changedConfigs"] == []
    assert server.grpc_listener_count == 3


async def test_changes_are_pushed_and_acked(server: LocalACMServer, connect: MakeLink) -> None:
    link = await connect(server)
    other = await connect(server)  # listens to something else: hears nothing
    item = server.set_config("d", "G", "v1", tenant="dev")
    await link.listen([{"dataId": "d", "group": "G", "tenant": "dev", "md5": item.utf8_md5}])
    await other.listen([{"dataId": "x", "group": "G", "tenant": "dev", "md5": ""}])

    server.set_config("d", "G", "v2", tenant="dev")
    push = await link.read()
    assert push.type == "ConfigChangeNotifyRequest"
    assert {k: push.body[k] for k in ("dataId", "group", "tenant", "module")} == {
        "dataId": "d",
        "group": "G",
        "tenant": "dev",
        "module": "config",
    }
    assert push.body["requestId"]
    await link.ack(push, "ConfigChangeNotifyResponse")
    await server.wait_for_requests(1, "grpc:ConfigChangeNotifyResponse")

    server.delete_config("d", "G", tenant="dev")  # a delete is pushed too
    second = await link.read()
    assert second.body["dataId"] == "d"
    assert second.body["requestId"] != push.body["requestId"]
    await link.ack(second, "ConfigChangeNotifyResponse")
    with pytest.raises(asyncio.TimeoutError):  # acked: never sent again
        await link.read(timeout=0.3)
    with pytest.raises(asyncio.TimeoutError):
        await other.read(timeout=0.01)

    await link.call(
        "ConfigBatchListenRequest",
        {"listen": False, "configListenContexts": [{"dataId": "d", "group": "G", "tenant": "dev"}]},
    )
    server.set_config("d", "G", "v3", tenant="dev")
    with pytest.raises(asyncio.TimeoutError):  # no longer listened to
        await link.read(timeout=0.2)


async def test_an_unacked_push_is_retried_then_the_connection_dropped(
    connect: MakeLink,
) -> None:
    async with LocalACMServer(grpc_push_retries=2, **FAST) as server:  # type: ignore[arg-type]
        link = await connect(server)
        await link.listen([{"dataId": "d", "group": "G", "md5": ""}])
        server.set_config("d", "G", "v")
        pushes = [await link.read() for _ in range(3)]  # the first try and two retries
        assert {p.type for p in pushes} == {"ConfigChangeNotifyRequest"}
        assert len({p.body["requestId"] for p in pushes}) == 3
        assert await link.end() == grpc.StatusCode.UNAVAILABLE
        assert server.grpc_connection_count == 0
        answer = await link.call("HealthCheckRequest")
        assert answer.body["errorCode"] == 301


async def test_a_failed_ack_counts_as_no_ack(connect: MakeLink) -> None:
    async with LocalACMServer(grpc_push_retries=1, **FAST) as server:  # type: ignore[arg-type]
        link = await connect(server)
        await link.listen([{"dataId": "d", "group": "G", "md5": ""}])
        server.set_config("d", "G", "v")
        first = await link.read()
        await link.ack(first, "ConfigChangeNotifyResponse", result_code=500)
        retry = await link.read()
        await link.ack(retry, "ConfigChangeNotifyResponse")
        with pytest.raises(asyncio.TimeoutError):
            await link.read(timeout=0.3)
        assert server.grpc_connection_count == 1


async def test_idle_connections_are_probed_and_dropped_when_silent(connect: MakeLink) -> None:
    async with LocalACMServer(grpc_idle_time=0.2, **FAST) as server:  # type: ignore[arg-type]
        alive, silent = await connect(server), await connect(server)
        probe = await alive.read()
        assert probe.type == "ClientDetectionRequest"
        assert probe.body["module"] == "internal"
        await alive.ack(probe, "ClientDetectionResponse")
        assert (await silent.read()).type == "ClientDetectionRequest"
        assert await silent.end() == grpc.StatusCode.UNAVAILABLE
        assert (await alive.read()).type == "ClientDetectionRequest"  # idle again: asked again
        assert server.grpc_connection_count == 1


async def test_tokens_over_grpc(connect: MakeLink) -> None:
    async with LocalACMServer(users={"nacos": "pw"}) as server:
        link = await connect(server)  # connecting needs no token
        assert (await link.call("HealthCheckRequest")).body["resultCode"] == 200
        key = {"dataId": "d", "group": "G"}
        for headers in ({}, {"accessToken": "forged"}):
            denied = await link.call("ConfigQueryRequest", key, headers)
            assert denied.type == "ConfigQueryResponse"
            assert (denied.body["resultCode"], denied.body["errorCode"]) == (500, 403)
        listen = await link.listen([{**key, "md5": ""}])
        assert (listen.type, listen.body["errorCode"]) == ("ConfigChangeBatchListenResponse", 403)
        assert server.grpc_listener_count == 0

        token = server.nacos_users.login("nacos", "pw")
        assert token is not None
        for headers in (
            {"accessToken": token},
            {"Authorization": f"Bearer {token}"},
            {"username": "nacos", "password": "pw"},
        ):
            published = await link.call("ConfigPublishRequest", {**key, "content": "v"}, headers)
            assert published.body["resultCode"] == 200, headers
        assert (await link.listen([{**key, "md5": ""}], {"accessToken": token})).body[
            "changedConfigs"
        ] == [{"dataId": "d", "group": "G"}]
        server.nacos_users.expire_all()
        expired = await link.call("ConfigQueryRequest", key, {"accessToken": token})
        assert expired.body["errorCode"] == 403


def _spas(
    ak: str, sk: str, tenant: str | None, group: str | None, offset_ms: int = 0
) -> dict[str, str]:
    ts = str(int(time.time() * 1000) + offset_ms)
    return {
        "Spas-AccessKey": ak,
        "Timestamp": ts,
        "Spas-Signature": sign(sk, grpc_sign_string(tenant, group, ts)),
    }


def test_the_grpc_sign_string() -> None:
    assert grpc_sign_string("t", "g", "1") == "t+g+1"
    assert grpc_sign_string("t", None, "1") == "t+1"  # HTTP would sign "t++1"
    assert grpc_sign_string(None, "g", "1") == "g+1"
    assert grpc_sign_string(" ", "", "1") == "1"


async def test_ak_sk_signatures_over_grpc(connect: MakeLink) -> None:
    async with LocalACMServer(credentials={"ak": "sk"}) as server:
        link = await connect(server)
        key = {"dataId": "d", "group": "G", "tenant": "dev"}
        content = {**key, "content": "v"}
        ok = await link.call("ConfigPublishRequest", content, _spas("ak", "sk", "dev", "G"))
        assert ok.body["resultCode"] == 200
        for headers in (
            {},
            _spas("ak", "wrong", "dev", "G"),
            _spas("ak", "sk", "dev", None),  # signs another resource
            _spas("other", "sk", "dev", "G"),
            _spas("ak", "sk", "dev", "G", offset_ms=-600_000),  # too old
        ):
            denied = await link.call("ConfigQueryRequest", key, headers)
            assert (denied.type, denied.body["errorCode"]) == ("ConfigQueryResponse", 403)
        headers = {k.lower(): v for k, v in _spas("ak", "sk", "dev", "G").items()}
        assert (await link.call("ConfigQueryRequest", key, headers)).body["content"] == "v"
        no_group = {"dataId": "d", "tenant": "dev"}  # "tenant+ts" is what was signed
        answer = await link.call("ConfigQueryRequest", no_group, _spas("ak", "sk", "dev", None))
        assert answer.body["errorCode"] == 400  # past the signature check: the group is missing
        listen = await link.listen([{**key, "md5": ""}], _spas("ak", "sk", None, None))
        assert listen.body["resultCode"] == 200  # a batch listen signs the timestamp alone

        server.add_credentials("sts", "stssk", "TOKEN")
        sts = _spas("sts", "stssk", "dev", "G")
        assert (await link.call("ConfigQueryRequest", key, sts)).body["errorCode"] == 403
        sts["Spas-SecurityToken"] = "TOKEN"
        assert (await link.call("ConfigQueryRequest", key, sts)).body["resultCode"] == 200


async def test_dropping_streams(server: LocalACMServer, connect: MakeLink) -> None:
    first, second = await connect(server), await connect(server)
    await server.wait_for_grpc_connections(2)
    assert server.drop_grpc_streams() == 2
    assert await first.end() == grpc.StatusCode.UNAVAILABLE
    assert await second.end() == grpc.StatusCode.UNAVAILABLE
    assert server.grpc_connection_count == 0
    assert (await first.call("HealthCheckRequest")).body["errorCode"] == 301

    assert await first.open() is not None  # the same channel sets up again
    await server.wait_for_grpc_connections(1)
    assert server.drop_grpc_streams(error=False) == 1
    assert await first.end() == grpc.StatusCode.OK


async def test_connect_reset_requests(server: LocalACMServer, connect: MakeLink) -> None:
    plain, moved = await connect(server), await connect(server)
    await server.wait_for_grpc_connections(2)
    assert server.reset_grpc_connections() == 2
    reset = await plain.read()
    assert reset.type == "ConnectResetRequest"
    assert reset.body.keys() >= {"requestId", "module"}
    assert "serverIp" not in reset.body
    await plain.ack(reset, "ConnectResetResponse")
    await moved.ack(await moved.read(), "ConnectResetResponse")
    await server.wait_for_requests(2, "grpc:ConnectResetResponse")

    assert server.reset_grpc_connections("10.0.0.9", 8848) == 2
    reset = await moved.read()
    assert (reset.body["serverIp"], reset.body["serverPort"]) == ("10.0.0.9", "8848")
    assert reset.body["connectionId"] in server.grpc_listens


async def test_pausing_health_checks(server: LocalACMServer, connect: MakeLink) -> None:
    link = await connect(server)
    server.pause_grpc_health_checks()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await link.call("HealthCheckRequest", timeout=0.2)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    hanging = asyncio.ensure_future(link.call("HealthCheckRequest"))
    await server.wait_for_requests(2, "grpc:HealthCheckRequest")
    assert (await link.call("ConfigQueryRequest", {"dataId": "d", "group": "G"})).body[
        "errorCode"
    ] == 300  # only health checks hang
    server.resume_grpc_health_checks()
    assert (await hanging).body["resultCode"] == 200
    assert (await link.call("HealthCheckRequest")).body["resultCode"] == 200

    server.pause_grpc_health_checks()  # a stop ends hanging checks
    hanging = asyncio.ensure_future(link.call("HealthCheckRequest"))
    await server.wait_for_requests(4, "grpc:HealthCheckRequest")
    await server.stop()
    with pytest.raises(grpc.aio.AioRpcError):
        await hanging

    await server.start()  # still paused after a restart
    again = await connect(server)
    with pytest.raises(grpc.aio.AioRpcError):
        await again.call("HealthCheckRequest", timeout=0.1)
    server.resume_grpc_health_checks()
    assert (await again.call("HealthCheckRequest")).body["resultCode"] == 200


async def test_faults_on_grpc_calls(server: LocalACMServer, connect: MakeLink) -> None:
    link = await connect(server)
    server.add_fault("grpc:ConfigQueryRequest", status=503, times=1)
    key = {"dataId": "d", "group": "G"}
    busy = await link.call("ConfigQueryRequest", key)
    assert (busy.type, busy.body["resultCode"], busy.body["errorCode"]) == (
        "ConfigQueryResponse",
        500,
        503,
    )
    assert (await link.call("ConfigQueryRequest", key)).body["errorCode"] == 300
    starting = server.add_fault("grpc:ServerCheckRequest", status=300, times=1)
    check = await link.call("ServerCheckRequest")
    assert (check.type, check.body["errorCode"]) == ("ErrorResponse", 300)
    assert starting.hits == 1
    server.add_fault("grpc:HealthCheckRequest", drop=True, times=1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await link.call("HealthCheckRequest")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    server.add_fault("grpc:HealthCheckRequest", delay=0.5, times=1)
    with pytest.raises(grpc.aio.AioRpcError):
        await link.call("HealthCheckRequest", timeout=0.1)
    with pytest.raises(ValueError, match="unknown op"):
        server.add_fault("grpc:not a type", status=500)


async def test_stop_ends_streams_and_start_listens_again(connect: MakeLink) -> None:
    async with LocalACMServer() as server:
        http_port, grpc_port = server.port, server.grpc_port
        link = await connect(server)
        await link.listen([{"dataId": "d", "group": "G", "md5": ""}])
        await server.stop()
        assert await link.end() == grpc.StatusCode.OK  # a clean end of stream
        assert server.grpc_connection_count == 0
        await server.start()
        assert (server.port, server.grpc_port) == (http_port, grpc_port)
        again = await connect(server)
        assert server.grpc_listener_count == 0  # listens belong to the old connection
        server.set_config("d", "G", "v")
        query = await again.call("ConfigQueryRequest", {"dataId": "d", "group": "G"})
        assert query.body["content"] == "v"


async def test_a_busy_grpc_port_fails_a_start_on_a_fixed_port() -> None:
    for _ in range(20):  # a busy port whose port - 1000 is free
        blocker = socket.socket()
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        busy = blocker.getsockname()[1]
        if busy > 2024 and port_is_free("127.0.0.1", busy - 1000):
            break
        blocker.close()
    else:
        pytest.skip("found no suitable pair of ports")
    with blocker:
        server = LocalACMServer(port=busy - 1000)
        with pytest.raises(OSError, match="gRPC port"):
            await server.start()
        assert not server.running
        assert port_is_free("127.0.0.1", busy - 1000)  # the HTTP port was let go


async def test_grpc_can_be_turned_off() -> None:
    async with LocalACMServer(grpc=False) as server:
        assert server.grpc_port is None
        assert server.grpc_connection_count == 0
        assert server.grpc_listens == {}
        with pytest.raises(RuntimeError, match="gRPC is off"):
            server.drop_grpc_streams()
    assert _parser().parse_args(["--no-grpc"]).grpc is False
    assert _parser().parse_args([]).grpc is True


async def test_the_standalone_server_names_its_grpc_port() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aioacm.server", "--port", "0", "--log-level", "ERROR",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        first = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        second = (await asyncio.wait_for(proc.stdout.readline(), 5)).decode()
        http_port = int(first.split()[-1].rpartition(":")[2])
        assert second.startswith("aioacm-server: serving ACM"), second
        assert f"/nacos, gRPC on port {http_port + 1000})" in second
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
