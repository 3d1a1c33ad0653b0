"""TLS: HTTPS to the data servers, with certificates verified (host names included)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
import trustme

from aioacm import ACMClient, ServerUnavailableError
from aioacm.server import LocalACMServer

MakeClient = Callable[..., ACMClient]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def tls_server(ca: trustme.CA) -> AsyncIterator[LocalACMServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    async with LocalACMServer(ssl_context=context) as server:
        server.set_config("d", "g", "over tls")
        yield server


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


async def test_https_with_a_trusted_ca(
    tls_server: LocalACMServer, make_client: MakeClient, ca_file: str
) -> None:
    endpoint = f"localhost:{tls_server.port}"
    async with make_client(
        endpoint, cai_enabled=False, tls_enabled=True, tls_ca_file=ca_file
    ) as client:
        assert await client.get("d", "g") == "over tls"
        await client.publish("d", "g", "新")
    assert tls_server.get_config("d", "g") == "新"


async def test_an_untrusted_certificate_is_refused(
    tls_server: LocalACMServer, make_client: MakeClient
) -> None:
    async with make_client(
        f"localhost:{tls_server.port}", cai_enabled=False, tls_enabled=True
    ) as client:
        with pytest.raises(ServerUnavailableError) as info:
            await client.get("d", "g", no_snapshot=True)
    assert isinstance(info.value.__cause__, aiohttp.ClientSSLError)
    assert tls_server.request_count() == 0


async def test_the_host_name_is_verified_for_ip_addresses_too(
    tls_server: LocalACMServer, make_client: MakeClient, ca_file: str
) -> None:
    # the certificate names "localhost" only; the sync SDK turned verification off for IPs
    async with make_client(
        tls_server.endpoint, cai_enabled=False, tls_enabled=True, tls_ca_file=ca_file
    ) as client:
        with pytest.raises(ServerUnavailableError) as info:
            await client.get("d", "g", no_snapshot=True)
    assert isinstance(info.value.__cause__, aiohttp.ClientSSLError)


async def test_plain_http_client_cannot_talk_to_a_tls_server(
    tls_server: LocalACMServer, make_client: MakeClient
) -> None:
    async with make_client(f"localhost:{tls_server.port}", cai_enabled=False) as client:
        with pytest.raises(ServerUnavailableError):
            await client.get("d", "g", no_snapshot=True)


async def test_tls_default_port_is_443(make_client: MakeClient) -> None:
    async with make_client("localhost", cai_enabled=False, tls_enabled=True) as client:
        with pytest.raises(ServerUnavailableError) as info:
            await client.get("d", "g", no_snapshot=True, timeout=1)
    assert info.value.server == "localhost:443"
