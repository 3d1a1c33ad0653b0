"""RAM-role credentials: STS keys from a fake ECS metadata service sign every request, are
cached, refreshed before expiry (clock skew corrected), and fail with a clear error."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from aioacm import (
    ACMClient,
    Credentials,
    CredentialsError,
    RamRoleCredentialsProvider,
    StaticCredentialsProvider,
)
from aioacm.auth import sign
from aioacm.dialects.acm import sign_string
from aioacm.server import LocalACMServer
from aioacm.testing import TOKEN_PATH, FakeMetadataServer, Issued

ROLE = "app-role"


@pytest.fixture
async def metadata(server: LocalACMServer) -> AsyncIterator[FakeMetadataServer]:
    """The metadata service; every set it issues is registered with the ACM server."""
    async with FakeMetadataServer(ROLE) as service:

        def register(issued: Issued) -> None:
            server.add_credentials(issued.access_key, issued.secret_key, issued.security_token)

        service.on_issue.append(register)
        yield service


@pytest.fixture
def role_client(
    server: LocalACMServer,
    metadata: FakeMetadataServer,
    make_client: Callable[..., ACMClient],
) -> Callable[..., ACMClient]:
    def make(**kwargs: Any) -> ACMClient:
        kwargs.setdefault("cai_enabled", False)
        kwargs.setdefault("ram_role_name", ROLE)
        kwargs.setdefault("ram_metadata_url", metadata.url)
        return make_client(server.endpoint, **kwargs)

    return make


async def test_every_request_is_signed_with_the_sts_secret(
    server: LocalACMServer, metadata: FakeMetadataServer, role_client: Callable[..., ACMClient]
) -> None:
    server.set_config("d", "G", "v", tenant="ns1")
    client = role_client(namespace="ns1")
    assert await client.get("d", "G") == "v"
    assert await client.publish("e", "G", "x")
    assert [item["dataId"] for item in await client.list_all()] == ["d", "e"]
    assert await client.remove("e", "G")

    (issued,) = metadata.issued  # fetched once, used for all four
    for op in ("get", "publish", "list", "remove"):
        record = server.requests_for(op)[-1]
        assert record.status == 200
        assert record.headers["Spas-AccessKey"] == issued.access_key
        assert record.headers["Spas-SecurityToken"] == issued.security_token
    record = server.requests_for("get")[-1]
    expected = sign(issued.secret_key, sign_string("ns1", "G", record.headers["timeStamp"]))
    assert record.headers["Spas-Signature"] == expected


async def test_watching_uses_the_role_too(
    server: LocalACMServer, metadata: FakeMetadataServer, role_client: Callable[..., ACMClient]
) -> None:
    client = role_client(pulling_timeout=1)
    server.set_config("w", "G", "one")
    stream = client.watch("w", "G")
    assert (await anext(stream)).content == "one"
    server.set_config("w", "G", "two")
    assert (await anext(stream)).content == "two"
    await stream.aclose()
    poll = server.requests_for("poll")[-1]
    assert poll.headers["Spas-SecurityToken"] == metadata.issued[0].security_token


async def test_hardened_mode_token_is_sent(
    server: LocalACMServer, metadata: FakeMetadataServer, role_client: Callable[..., ACMClient]
) -> None:
    metadata.token_mode = "required"  # a plain GET would be refused
    server.set_config("d", "G", "v")
    assert await role_client().get("d", "G") == "v"
    put, get = metadata.requests
    assert (put.method, put.path) == ("PUT", TOKEN_PATH)
    assert int(put.headers["X-aliyun-ecs-metadata-token-ttl-seconds"]) > 0
    assert get.method == "GET"
    assert get.headers["X-aliyun-ecs-metadata-token"]


async def test_falls_back_to_the_plain_get_without_hardened_mode(
    server: LocalACMServer, metadata: FakeMetadataServer, role_client: Callable[..., ACMClient]
) -> None:
    metadata.token_mode = "off"
    server.set_config("d", "G", "v")
    assert await role_client().get("d", "G") == "v"
    (get,) = metadata.credential_gets()
    assert "X-aliyun-ecs-metadata-token" not in get.headers


async def test_concurrent_requests_share_one_fetch(
    server: LocalACMServer, metadata: FakeMetadataServer, role_client: Callable[..., ACMClient]
) -> None:
    metadata.delay = 0.2
    for i in range(50):
        server.set_config(f"d{i}", "G", str(i))
    client = role_client()
    values = await asyncio.gather(*(client.get(f"d{i}", "G") for i in range(50)))
    assert values == [str(i) for i in range(50)]
    assert len(metadata.credential_gets()) == 1


async def test_refreshes_before_expiry_and_never_uses_a_revoked_key(
    server: LocalACMServer, metadata: FakeMetadataServer, role_client: Callable[..., ACMClient]
) -> None:
    # Credentials live 182 s: fresh for about 2 s, then inside the 3-minute refresh margin.
    metadata.ttl = 182

    def revoke_previous(issued: Issued) -> None:
        for old in metadata.issued[:-1]:
            server.revoke_credentials(old.access_key)

    metadata.on_issue.append(revoke_previous)
    server.set_config("d", "G", "v")
    client = role_client()
    seen: list[str] = []
    deadline = time.monotonic() + 10
    while len(set(seen)) < 2 and time.monotonic() < deadline:
        assert await client.get("d", "G") == "v"  # a revoked key would be 403 here
        seen.append(server.requests_for("get")[-1].headers["Spas-AccessKey"])
        await asyncio.sleep(0.1)
    assert list(dict.fromkeys(seen)) == ["STS.ak1", "STS.ak2"]
    assert all(r.status == 200 for r in server.requests_for("get"))
    assert seen.count("STS.ak1") >= 5  # cached: not fetched for every request


async def test_unknown_role_is_a_clear_error_naming_the_role(
    server: LocalACMServer, metadata: FakeMetadataServer, role_client: Callable[..., ACMClient]
) -> None:
    client = role_client(ram_role_name="no-such-role")
    with pytest.raises(CredentialsError, match=r"'no-such-role'.*HTTP 404") as info:
        await client.get("d", "G")
    assert metadata.url in str(info.value)
    assert server.request_count("get") == 0  # nothing unsigned went out


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"fail_status": 500}, "HTTP 500"),
        ({"code": "Failed"}, "Code is 'Failed'"),
        ({"body": b"<html>oops</html>"}, "not JSON"),
        ({"body": b'{"Code": "Success", "AccessKeySecret": "leaked?"}'}, "no AccessKeyId"),
    ],
)
async def test_metadata_failures_are_credentials_errors(
    metadata: FakeMetadataServer,
    role_client: Callable[..., ACMClient],
    setup: dict[str, Any],
    reason: str,
) -> None:
    for name, value in setup.items():
        setattr(metadata, name, value)
    client = role_client()
    with pytest.raises(CredentialsError, match=reason) as info:
        await client.get("d", "G")
    assert ROLE in str(info.value)
    assert "leaked?" not in str(info.value)
    assert "sts-secret" not in repr(info.value)


async def test_metadata_fetch_has_a_timeout(
    metadata: FakeMetadataServer, role_client: Callable[..., ACMClient]
) -> None:
    metadata.delay = 5
    client = role_client(default_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(CredentialsError, match=r"no answer within 0\.3 s"):
        await client.get("d", "G")
    assert time.monotonic() - started < 2


async def test_snapshot_is_served_when_the_metadata_service_is_down(
    server: LocalACMServer, metadata: FakeMetadataServer, role_client: Callable[..., ACMClient]
) -> None:
    server.set_config("d", "G", "v")
    assert await role_client().get("d", "G") == "v"  # writes the snapshot
    metadata.fail_status = 503
    assert await role_client().get("d", "G") == "v"
    with pytest.raises(CredentialsError):
        await role_client().get("d", "G", no_snapshot=True)


async def test_role_wins_over_ak_sk_as_in_the_sync_sdk(
    server: LocalACMServer, metadata: FakeMetadataServer, role_client: Callable[..., ACMClient]
) -> None:
    server.set_config("d", "G", "v")
    client = role_client(ak="plain-ak", sk="plain-sk")
    assert await client.get("d", "G") == "v"
    assert server.requests_for("get")[-1].headers["Spas-AccessKey"] == "STS.ak1"


async def test_role_can_be_set_later_with_set_options(
    server: LocalACMServer, metadata: FakeMetadataServer, make_client: Callable[..., ACMClient]
) -> None:
    server.add_credentials("ak", "sk")
    server.set_config("d", "G", "v")
    client = make_client(server.endpoint, ak="ak", sk="sk", cai_enabled=False)
    assert await client.get("d", "G") == "v"
    client.set_options(ram_role_name=ROLE, ram_metadata_url=metadata.url)
    assert await client.get("d", "G") == "v"
    assert server.requests_for("get")[-1].headers["Spas-AccessKey"] == "STS.ak1"
    client.set_options(ram_role_name=None)
    assert await client.get("d", "G") == "v"
    assert server.requests_for("get")[-1].headers["Spas-AccessKey"] == "ak"


# -- the provider on its own, with a controllable clock ----------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def provider(
    session: aiohttp.ClientSession, metadata: FakeMetadataServer, clock: Clock
) -> RamRoleCredentialsProvider:
    return RamRoleCredentialsProvider(
        ROLE, session=session, metadata_url=metadata.url, timeout=1.0, clock=clock
    )


async def test_expiry_is_corrected_with_the_date_header_when_the_service_is_behind(
    session: aiohttp.ClientSession, metadata: FakeMetadataServer
) -> None:
    # The service's clock is an hour behind ours: its Expiration, an hour ahead of *its* now,
    # would look like "now" to us. Corrected with its Date header, it is an hour away.
    metadata.clock_skew, metadata.ttl = -3600, 3600
    ram = provider(session, metadata, Clock())
    first = await ram.get_credentials()
    assert await ram.get_credentials() == first
    assert ram.fetches == 1


async def test_expiry_is_corrected_with_the_date_header_when_the_service_is_ahead(
    session: aiohttp.ClientSession, metadata: FakeMetadataServer
) -> None:
    # The service is an hour ahead and its credentials live 170 s: uncorrected they would
    # look good for an hour; corrected they are inside the 3-minute margin at once.
    metadata.clock_skew, metadata.ttl = 3600, 170
    ram = provider(session, metadata, Clock())
    await ram.get_credentials()
    await ram.get_credentials()
    assert ram.fetches == 2


async def test_refresh_happens_under_three_minutes_left(
    session: aiohttp.ClientSession, metadata: FakeMetadataServer
) -> None:
    clock = Clock()
    ram = provider(session, metadata, clock)
    first = await ram.get_credentials()
    clock.now += 3600 - 181  # 181 s left: still fresh
    assert await ram.get_credentials() == first
    clock.now += 2  # 179 s left
    second = await ram.get_credentials()
    assert second != first
    assert second.access_key == "STS.ak2"
    assert second.security_token == metadata.issued[1].security_token
    for secret in (second.secret_key, second.security_token):
        assert secret not in repr(ram)
        assert secret not in repr(second)


async def test_keeps_valid_credentials_while_refresh_fails(
    session: aiohttp.ClientSession,
    metadata: FakeMetadataServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    ram = provider(session, metadata, clock)
    first = await ram.get_credentials()
    metadata.fail_status = 500
    clock.now += 3600 - 60  # one minute left, and the service fails
    with caplog.at_level(logging.WARNING, logger="aioacm"):
        assert await ram.get_credentials() == first
    assert "using the current credentials" in caplog.text
    assert first.secret_key not in caplog.text
    clock.now += 1
    assert await ram.get_credentials() == first
    assert ram.fetches == 2  # the failed refresh is not retried at once
    clock.now += 60  # expired, and the service still fails
    with pytest.raises(CredentialsError, match="HTTP 500"):
        await ram.get_credentials()


async def test_a_user_provider_plugs_into_the_same_signing_path(
    server: LocalACMServer, make_client: Callable[..., ACMClient]
) -> None:
    class Rotating:
        def __init__(self) -> None:
            self.calls = 0

        async def get_credentials(self) -> Credentials:
            self.calls += 1
            return Credentials("sts-user", "user-secret", "user-token")

    server.add_credentials("sts-user", "user-secret", "user-token")
    server.set_config("d", "G", "v")
    rotating = Rotating()
    client = make_client(server.endpoint, credentials=rotating, cai_enabled=False)
    assert await client.get("d", "G") == "v"
    assert rotating.calls == 1
    assert server.requests_for("get")[-1].headers["Spas-SecurityToken"] == "user-token"
    assert "hidden" not in repr(StaticCredentialsProvider("a", "hidden-secret", "hidden-token"))
