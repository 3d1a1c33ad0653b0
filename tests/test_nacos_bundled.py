"""NacosClient against the bundled server, where the server's side can be seen: request
shapes, auth and tokens, signatures, rotation, and ACM and Nacos over one store."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from helpers import aioacm_tasks

import aioacm.nacos_auth
from aioacm import AccessDeniedError, ACMClient, NacosClient, ServerUnavailableError
from aioacm.auth import sign
from aioacm.dialects.nacos import nacos_sign_string
from aioacm.server import LocalACMServer

PASSWORD = "pa ss&w=rd?é"  # characters a careless client would leave raw in a URL


@pytest.fixture
async def make_nacos(tmp_path: Path) -> AsyncIterator[Callable[..., NacosClient]]:
    clients: list[NacosClient] = []

    def make(addresses: str, **kwargs: Any) -> NacosClient:
        # these check the HTTP API's shapes (test_nacos_grpc.py has gRPC's)
        kwargs.setdefault("protocol", "http")
        kwargs.setdefault("snapshot_base", str(tmp_path / "snapshot"))
        kwargs.setdefault("failover_base", str(tmp_path / "data"))
        client = NacosClient(addresses, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()
    assert aioacm_tasks() == []


async def test_request_shapes(
    server: LocalACMServer, make_nacos: Callable[..., NacosClient]
) -> None:
    async with make_nacos(server.endpoint, namespace="dev", app_name="billing") as client:
        await client.publish("app.json", "G", '{"a": "中"}', config_type="json")
        assert await client.get("app.json", "G") == '{"a": "中"}'
        await client.remove("app.json", "G")
    publish, get, remove = (server.requests_for(op)[-1] for op in ("publish", "get", "remove"))
    assert (publish.method, publish.path) == ("POST", "/nacos/v1/cs/configs")
    form = dict(parse_qsl(publish.body.decode("ascii")))
    assert form == {
        "dataId": "app.json",
        "group": "G",
        "content": '{"a": "中"}',
        "tenant": "dev",
        "type": "json",
        "appName": "billing",
    }
    assert "charset=UTF-8" in publish.headers["Content-Type"]
    assert (get.method, dict(get.query)) == (
        "GET",
        {"dataId": "app.json", "group": "G", "tenant": "dev"},
    )
    assert (remove.method, remove.path) == ("DELETE", "/nacos/v1/cs/configs")
    assert dict(remove.query) == {"dataId": "app.json", "group": "G", "tenant": "dev"}


async def test_listener_shape_and_no_hang_up_after_adding_keys(
    server: LocalACMServer, make_nacos: Callable[..., NacosClient]
) -> None:
    server.set_config("a", "G", "1", tenant="dev")
    async with make_nacos(server.endpoint, namespace="dev", pulling_timeout=30) as client:
        changes = client.watch("a", "G")
        assert (await asyncio.wait_for(anext(changes), 5)).content == "1"
        await server.wait_for_held_polls(1)
        first, held = server.requests_for("poll")[0], server.requests_for("poll")[-1]
        assert first.headers["Long-Pulling-Timeout-No-Hangup"] == "true"
        assert held.headers["Long-Pulling-Timeout"] == "30000"
        assert "Long-Pulling-Timeout-No-Hangup" not in held.headers
        form = held.form("utf-8")
        assert form["tenant"] == "dev"  # permission checks read the namespace from it
        md5 = server.get_item("a", "G", tenant="dev").utf8_md5  # type: ignore[union-attr]
        assert form["Listening-Configs"] == f"a\x02G\x02{md5}\x02dev\x01"
        await changes.aclose()


async def test_login_token_refresh_and_secrecy(
    make_nacos: Callable[..., NacosClient], caplog: pytest.LogCaptureFixture
) -> None:
    async with LocalACMServer(users={"nacos": PASSWORD}, token_ttl=1.5) as server:
        client = make_nacos(server.endpoint, username="nacos", password=PASSWORD)
        with caplog.at_level(logging.DEBUG):
            async with client:
                await client.publish("d", None, "v")
                # concurrent first requests share one login
                assert (
                    await asyncio.gather(*(client.get("d", None) for _ in range(20))) == ["v"] * 20
                )
                assert server.nacos_users.logins == 1
                await asyncio.sleep(1.6)  # renewed before it expires: never a 403
                assert await client.get("d", None) == "v"
                assert server.nacos_users.logins == 2
                assert PASSWORD not in repr(client)
        logins = server.requests_for("login")
        assert [r.path for r in logins] == ["/nacos/v3/auth/user/login"] * 2
        for record in server.requests:
            assert "password" not in record.query_string
            assert record.status != 403
        assert all(PASSWORD not in r.getMessage() for r in caplog.records)
        tokens = {r.headers.get("Authorization") for r in server.requests_for("get")}
        assert len(tokens) == 2
        assert all(t and t.startswith("Bearer ") for t in tokens)
        for token in tokens:  # nor a token, at any level, from the client or the server
            assert all(token[len("Bearer ") :] not in r.getMessage() for r in caplog.records)


async def test_a_403_blaming_the_token_logs_in_again_unless_the_token_is_fresh(
    make_nacos: Callable[..., NacosClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with LocalACMServer(users={"nacos": "pw"}) as server:  # noqa: SIM117 (needs server)
        async with make_nacos(server.endpoint, username="nacos", password="pw") as client:
            await client.publish("d", None, "v")
            server.nacos_users.expire_all()  # a server restarted with a new key, say
            # a token under TOKEN_RELOGIN_MIN old refused: the 403 stands, no login loop
            with pytest.raises(AccessDeniedError):
                await client.get("d", None, no_snapshot=True)
            assert server.nacos_users.logins == 1
    monkeypatch.setattr(aioacm.nacos_auth, "TOKEN_RELOGIN_MIN", 0.3)
    async with LocalACMServer(users={"nacos": "pw"}) as server:  # noqa: SIM117 (needs server)
        async with make_nacos(server.endpoint, username="nacos", password="pw") as client:
            await client.publish("d", None, "v")
            await asyncio.sleep(0.35)
            server.nacos_users.expire_all()
            assert await client.get("d", None) == "v"  # one login, then the retry works
            assert server.nacos_users.logins == 2
            assert [r.status for r in server.requests_for("get")] == [403, 200]


async def test_a_403_for_want_of_permission_logs_in_again_at_most_once_a_minute(
    make_nacos: Callable[..., NacosClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with LocalACMServer(users={"nacos": "pw"}) as server:  # noqa: SIM117 (needs server)
        async with make_nacos(server.endpoint, username="nacos", password="pw") as client:
            await client.publish("d", None, "v")
            server.add_fault("get", status=403, body="authorization failed!", times=1)
            with pytest.raises(AccessDeniedError):  # the login is under a minute old
                await client.get("d", None, no_snapshot=True)
            assert server.nacos_users.logins == 1
            monkeypatch.setattr(aioacm.nacos_auth, "RELOGIN_INTERVAL", 0.3)
            await asyncio.sleep(0.35)
            server.add_fault("get", status=403, body="authorization failed!", times=1)
            assert await client.get("d", None) == "v"  # one login, then the retry works
            assert server.nacos_users.logins == 2


async def test_wrong_password_is_a_clear_error(make_nacos: Callable[..., NacosClient]) -> None:
    async with LocalACMServer(users={"nacos": "pw"}) as server:  # noqa: SIM117 (needs server)
        async with make_nacos(server.endpoint, username="nacos", password="nope") as client:
            with pytest.raises(
                AccessDeniedError, match="refused the login of user 'nacos'"
            ) as info:
                await client.get("d", None, no_snapshot=True)
            assert "nope" not in str(info.value)


async def test_ak_sk_signatures_with_nacos_rules(make_nacos: Callable[..., NacosClient]) -> None:
    async with LocalACMServer(credentials={"ak": "sk"}) as server:
        async with make_nacos(server.endpoint, namespace="dev", ak="ak", sk="sk") as client:
            await client.publish("d", "G", "v")
            assert await client.get("d", "G") == "v"
            stream = client.watch("d", "G")
            assert (await asyncio.wait_for(anext(stream), 5)).content == "v"
            await stream.aclose()
        assert all(r.status != 403 for r in server.requests)
        async with make_nacos(server.endpoint, ak="ak", sk="wrong") as client:
            with pytest.raises(AccessDeniedError):
                await client.get("d", "G", no_snapshot=True)


async def test_rotation_past_a_dead_server(
    server: LocalACMServer, make_nacos: Callable[..., NacosClient], unused_tcp_port: int
) -> None:
    server.set_config("d", "G", "v")
    dead = f"127.0.0.1:{unused_tcp_port}"
    async with make_nacos(f"{dead},{server.endpoint}", default_timeout=2) as client:
        for _ in range(5):
            assert await client.get("d", "G") == "v"
        assert client.stats().server == server.endpoint
    async with make_nacos(dead, default_timeout=1) as client:
        with pytest.raises(ServerUnavailableError):
            await client.get("d", "G", no_snapshot=True)


async def test_acm_and_nacos_share_the_store(
    server: LocalACMServer, make_nacos: Callable[..., NacosClient], tmp_path: Path
) -> None:
    # the migration rehearsal: published through ACM's API, read and watched through Nacos's
    acm = ACMClient(server.endpoint, "ns1", cai_enabled=False, snapshot_base=str(tmp_path / "a"))
    async with acm, make_nacos(server.endpoint, namespace="ns1") as nacos:
        await acm.publish("app.properties", "G", "k=v 中文")
        assert await nacos.get("app.properties", "G") == "k=v 中文"
        stream = nacos.watch("app.properties", "G")
        assert (await asyncio.wait_for(anext(stream), 5)).content == "k=v 中文"
        await acm.publish("app.properties", "G", "k=w")
        assert (await asyncio.wait_for(anext(stream), 10)).content == "k=w"
        await stream.aclose()
        await nacos.publish("back", "G", "from nacos")
        assert await acm.get("back", "G") == "from nacos"


async def test_v3_client_read_and_readiness(server: LocalACMServer) -> None:
    import aiohttp

    server.set_config("d", "G", "v", config_type="yaml")
    async with aiohttp.ClientSession() as session:
        url = f"{server.url}/nacos/v3/client/cs/config"
        async with session.get(url, params={"dataId": "d", "groupName": "G"}) as resp:
            body = await resp.json()
        assert body["code"] == 0
        assert body["data"]["content"] == "v"
        assert body["data"]["contentType"] == "yaml"
        async with session.get(url, params={"dataId": "nope", "groupName": "G"}) as resp:
            assert resp.status == 200
            assert (await resp.json())["code"] == 20004
        for path in ("/nacos/v1/console/health/readiness", "/nacos/v3/admin/core/state/readiness"):
            async with session.get(server.url + path) as resp:
                assert resp.status == 200


async def test_a_server_without_the_v3_login_gets_v1_logins(
    make_nacos: Callable[..., NacosClient],
) -> None:
    async with LocalACMServer(users={"nacos": "pw"}, token_ttl=1) as server:
        server.add_fault("login", status=404, times=1)  # a 2.x server has no v3 login
        client = make_nacos(server.endpoint, username="nacos", password="pw")
        server.set_config("d", None, "v")
        assert await client.get("d", None) == "v"
        await asyncio.sleep(1.05)
        assert await client.get("d", None) == "v"
        paths = [r.path for r in server.requests_for("login")]
        assert paths == ["/nacos/v3/auth/user/login", "/nacos/v1/auth/login"] * 1 + [
            "/nacos/v1/auth/login"
        ]


@pytest.mark.parametrize("data_id", ["cipher-app", "cipher-kms-aes-128-app"])
async def test_kms_items_over_nacos(
    make_nacos: Callable[..., NacosClient], tmp_path: Path, data_id: str
) -> None:
    from aioacm.testing import FakeKMS

    secret = "db.password = s3cret 中文"
    async with (
        FakeKMS(("key-1",)) as kms,
        LocalACMServer() as server,
    ):
        kms.add_credentials("ak", "sk")
        options = {
            "ak": "ak",
            "sk": "sk",
            "kms_enabled": True,
            "region_id": "cn-hangzhou",
            "key_id": "key-1",
            "kms_endpoint": kms.endpoint,
            "kms_protocol": "http",
            "pulling_timeout": 2,
        }
        async with make_nacos(server.endpoint, **options) as client:
            await client.publish(data_id, "G", secret)
            stored = server.get_item(data_id, "G")
            assert stored is not None
            assert "s3cret" not in stored.content
            assert bool(stored.encrypted_data_key) == data_id.startswith("cipher-kms-aes-")
            assert b"s3cret" not in server.requests_for("publish")[-1].body
            assert await client.get(data_id, "G") == secret
            assert await client.get_raw(data_id, "G") == stored.content
            stream = client.watch(data_id, "G")
            change = await asyncio.wait_for(anext(stream), 10)
            await stream.aclose()
            assert change.content == secret
            assert change.raw_content == stored.content


async def test_ram_role_sts_signing_over_nacos(
    server: LocalACMServer, make_nacos: Callable[..., NacosClient]
) -> None:
    from aioacm.testing import FakeMetadataServer, Issued

    async with FakeMetadataServer("app-role") as metadata:

        def register(issued: Issued) -> None:
            server.add_credentials(issued.access_key, issued.secret_key, issued.security_token)

        metadata.on_issue.append(register)
        client = make_nacos(
            server.endpoint,
            namespace="ns1",
            ram_role_name="app-role",
            ram_metadata_url=metadata.url,
            pulling_timeout=2,
        )
        await client.publish("d", "G", "v")
        assert await client.get("d", "G") == "v"
        stream = client.watch("d", "G")
        assert (await asyncio.wait_for(anext(stream), 5)).content == "v"
        await stream.aclose()
        (issued,) = metadata.issued
        for record in server.requests:
            assert record.status in (200, None)  # None: a poll still held
            assert record.headers["Spas-AccessKey"] == issued.access_key
            assert record.headers["Spas-SecurityToken"] == issued.security_token
            assert issued.secret_key not in record.headers.get("Spas-Signature", "")
        get = server.requests_for("get")[-1]
        expected = sign(issued.secret_key, nacos_sign_string("ns1", "G", get.headers["Timestamp"]))
        assert get.headers["Spas-Signature"] == expected
