"""KMS ``cipher-`` items end to end: the real Tea SDK against a fake, signature-checking KMS,
the bundled server over real sockets; ciphertext on the wire and on disk, plaintext to users."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from aioacm import ACMClient, InvalidOptionError, KMSError
from aioacm.server import LocalACMServer
from aioacm.testing import FakeKMS, FakeMetadataServer, Issued

PLAIN = "db.password = s3cret 中文 ✓"
CIPHER_IDS = ["cipher-app", "cipher-kms-aes-128-app", "cipher-kms-aes-256-app"]


@pytest.fixture
async def kms() -> AsyncIterator[FakeKMS]:
    async with FakeKMS(("key-1",)) as service:
        service.add_credentials("ak", "sk")
        yield service


@pytest.fixture
def kms_client(
    server: LocalACMServer, kms: FakeKMS, make_client: Callable[..., ACMClient]
) -> Callable[..., ACMClient]:
    server.add_credentials("ak", "sk")

    def make(**kwargs: Any) -> ACMClient:
        settings: dict[str, Any] = {
            "ak": "ak",
            "sk": "sk",
            "cai_enabled": False,
            "kms_enabled": True,
            "region_id": "cn-hangzhou",
            "key_id": "key-1",
            "kms_endpoint": kms.endpoint,
            "kms_protocol": "http",
        }
        settings.update(kwargs)
        return make_client(server.endpoint, **settings)

    return make


def aes_ecb_decrypt(data_key_b64: str, content_b64: str) -> str:
    """An independent decryption of the envelope format: Base64(AES-ECB-PKCS7(key, UTF-8))."""
    decryptor = Cipher(algorithms.AES(base64.b64decode(data_key_b64)), modes.ECB()).decryptor()
    padded = decryptor.update(base64.b64decode(content_b64)) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")


@pytest.mark.parametrize("data_id", CIPHER_IDS)
async def test_publish_and_get_round_trip(
    server: LocalACMServer,
    kms: FakeKMS,
    kms_client: Callable[..., ACMClient],
    tmp_path: Path,
    data_id: str,
) -> None:
    client = kms_client()
    assert await client.publish(data_id, "G", PLAIN)

    stored = server.get_item(data_id, "G")
    assert stored is not None
    assert PLAIN not in stored.content
    assert "s3cret" not in stored.content
    publish = server.requests_for("publish")[-1]
    assert b"s3cret" not in publish.body
    envelope = data_id.startswith("cipher-kms-aes-")
    if envelope:
        assert stored.encrypted_data_key
        data_key = kms.plaintext_of(stored.encrypted_data_key)
        assert len(base64.b64decode(data_key)) == (16 if "-128-" in data_id else 32)
        assert aes_ecb_decrypt(data_key, stored.content) == PLAIN
        assert kms.actions() == ["GenerateDataKey"]
    else:
        assert stored.encrypted_data_key in (None, "")
        assert kms.plaintext_of(stored.content) == PLAIN
        assert kms.actions() == ["Encrypt"]

    assert await client.get(data_id, "G") == PLAIN
    assert await client.get_raw(data_id, "G") == stored.content
    assert kms.actions()[-1] == "Decrypt"

    snapshot = tmp_path / "snapshot" / f"{data_id}+G+"
    assert snapshot.read_text("utf-8") == stored.content
    key_file = tmp_path / "snapshot" / "encrypted-data-key" / f"{data_id}+G+"
    assert key_file.exists() == envelope
    if envelope:
        assert key_file.read_text("utf-8") == stored.encrypted_data_key


@pytest.mark.parametrize("data_id", CIPHER_IDS)
async def test_watchers_get_plaintext_and_the_ciphertext_md5(
    server: LocalACMServer, kms_client: Callable[..., ACMClient], data_id: str
) -> None:
    client = kms_client(pulling_timeout=1)
    seen: list[dict[str, Any]] = []
    called = asyncio.Event()

    async def callback(change: dict[str, Any]) -> None:
        seen.append(change)
        called.set()

    await client.publish(data_id, "G", "v1")
    await client.add_watcher(data_id, "G", callback)
    stream = client.watch(data_id, "G")
    first = await anext(stream)
    assert first.content == "v1"
    await client.publish(data_id, "G", "v2")
    second = await anext(stream)
    stored = server.get_item(data_id, "G")
    assert stored is not None
    assert second.content == "v2"
    assert second.raw_content == stored.content != "v2"
    assert second.md5 == hashlib.md5(stored.content.encode("gbk")).hexdigest()
    await stream.aclose()
    while len(seen) < 2:
        called.clear()
        await asyncio.wait_for(called.wait(), 5)
    assert [c["content"] for c in seen] == ["v1", "v2"]
    assert seen[1]["raw_content"] == stored.content


async def test_without_kms_enabled_the_ciphertext_is_returned(
    server: LocalACMServer, kms_client: Callable[..., ACMClient]
) -> None:
    await kms_client().publish("cipher-app", "G", PLAIN)
    stored = server.get_item("cipher-app", "G")
    assert stored is not None
    plain_client = kms_client(kms_enabled=False)
    assert await plain_client.get("cipher-app", "G") == stored.content
    # and publishing without KMS stores the text as given, as the sync SDK does
    await plain_client.publish("cipher-raw", "G", "as-is")
    assert server.get_config("cipher-raw", "G") == "as-is"


async def test_ordinary_items_never_touch_kms(
    server: LocalACMServer, kms: FakeKMS, kms_client: Callable[..., ACMClient]
) -> None:
    client = kms_client()
    await client.publish("plain", "G", "v")
    assert await client.get("plain", "G") == "v"
    assert kms.calls == []


@pytest.mark.parametrize("data_id", CIPHER_IDS)
async def test_kms_failure_on_publish_sends_nothing(
    server: LocalACMServer, kms: FakeKMS, kms_client: Callable[..., ACMClient], data_id: str
) -> None:
    kms.fail_next(status=503, code="ServiceUnavailable")
    with pytest.raises(KMSError, match="ServiceUnavailable") as info:
        await kms_client().publish(data_id, "G", PLAIN)
    assert info.value.code == "ServiceUnavailable"
    assert info.value.key == f"{data_id}+G+"
    assert server.request_count("publish") == 0
    assert server.get_item(data_id, "G") is None


@pytest.mark.parametrize("data_id", CIPHER_IDS)
async def test_kms_failure_on_get_is_an_error_and_never_plaintext_on_disk(
    server: LocalACMServer,
    kms: FakeKMS,
    kms_client: Callable[..., ACMClient],
    tmp_path: Path,
    data_id: str,
) -> None:
    client = kms_client()
    await client.publish(data_id, "G", PLAIN)
    kms.fail_next(status=500, code="InternalFailure")
    with pytest.raises(KMSError, match="InternalFailure"):
        await client.get(data_id, "G")
    for path in (tmp_path / "snapshot").rglob("*"):
        if path.is_file():
            assert "s3cret" not in path.read_text("utf-8")
    assert await client.get(data_id, "G") == PLAIN  # KMS is back


async def test_unknown_key_is_a_clear_error(kms_client: Callable[..., ACMClient]) -> None:
    with pytest.raises(KMSError, match=r"Forbidden\.KeyNotFound") as info:
        await kms_client(key_id="no-such-key").publish("cipher-app", "G", PLAIN)
    assert info.value.code == "Forbidden.KeyNotFound"
    assert "sk" not in str(info.value).split()


async def test_wrong_kms_secret_is_refused_by_kms_and_not_leaked(
    kms: FakeKMS, kms_client: Callable[..., ACMClient]
) -> None:
    kms.add_credentials("kms-ak", "the-right-one")
    client = kms_client(kms_ak="kms-ak", kms_secret="not-the-right-secret")
    with pytest.raises(KMSError, match="SignatureDoesNotMatch") as info:
        await client.publish("cipher-app", "G", PLAIN)
    for text in (str(info.value), repr(info.value), repr(client), repr(client.options)):
        assert "not-the-right-secret" not in text
    assert info.value.__cause__ is None  # the Tea exception keeps the signed request


async def test_kms_ak_and_secret_win_over_the_client_keys(
    kms: FakeKMS, kms_client: Callable[..., ACMClient]
) -> None:
    kms.add_credentials("kms-ak", "kms-secret")
    client = kms_client(kms_ak="kms-ak", kms_secret="kms-secret")
    await client.publish("cipher-app", "G", PLAIN)
    assert await client.get("cipher-app", "G") == PLAIN
    assert {c.access_key for c in kms.calls} == {"kms-ak"}


async def test_kms_with_ram_role_credentials(
    server: LocalACMServer, kms: FakeKMS, make_client: Callable[..., ACMClient]
) -> None:
    async with FakeMetadataServer("role") as metadata:

        def register(issued: Issued) -> None:
            server.add_credentials(issued.access_key, issued.secret_key, issued.security_token)
            kms.add_credentials(issued.access_key, issued.secret_key, issued.security_token)

        metadata.on_issue.append(register)
        client = make_client(
            server.endpoint,
            cai_enabled=False,
            ram_role_name="role",
            ram_metadata_url=metadata.url,
            kms_enabled=True,
            region_id="cn-hangzhou",
            key_id="key-1",
            kms_endpoint=kms.endpoint,
            kms_protocol="http",
        )
        await client.publish("cipher-kms-aes-256-x", "G", PLAIN)
        assert await client.get("cipher-kms-aes-256-x", "G") == PLAIN
        (issued,) = metadata.issued
        assert {c.access_key for c in kms.calls} == {issued.access_key}
        await client.aclose()


@pytest.mark.parametrize("data_id", CIPHER_IDS)
async def test_snapshot_and_failover_decrypt_too(
    server: LocalACMServer, kms_client: Callable[..., ACMClient], tmp_path: Path, data_id: str
) -> None:
    client = kms_client()
    await client.publish(data_id, "G", PLAIN)
    assert await client.get(data_id, "G") == PLAIN  # writes the snapshot (and its data key)
    await server.stop()
    assert await client.get(data_id, "G") == PLAIN  # from the snapshot
    shutil.copytree(tmp_path / "snapshot", tmp_path / "data")  # what an operator would do
    assert await client.get(data_id, "G") == PLAIN  # from the failover file
    await server.start()


async def test_envelope_item_without_its_data_key_is_an_error(
    server: LocalACMServer, kms_client: Callable[..., ACMClient]
) -> None:
    server.set_config("cipher-kms-aes-128-x", "G", base64.b64encode(b"0" * 16).decode())
    with pytest.raises(KMSError, match="no encrypted data key"):
        await kms_client().get("cipher-kms-aes-128-x", "G")


async def test_tampered_envelope_content_is_an_error_not_garbage(
    server: LocalACMServer, kms_client: Callable[..., ACMClient]
) -> None:
    client = kms_client()
    await client.publish("cipher-kms-aes-128-x", "G", PLAIN)
    stored = server.get_item("cipher-kms-aes-128-x", "G")
    assert stored is not None
    tampered = base64.b64encode(base64.b64decode(stored.content)[:-16]).decode()
    server.set_config(
        "cipher-kms-aes-128-x", "G", tampered, encrypted_data_key=stored.encrypted_data_key
    )
    with pytest.raises(KMSError, match="cannot be decrypted"):
        await client.get("cipher-kms-aes-128-x", "G")


async def test_watcher_survives_a_kms_outage_without_losing_the_change(
    server: LocalACMServer, kms: FakeKMS, kms_client: Callable[..., ACMClient]
) -> None:
    client = kms_client(pulling_timeout=1)
    await client.publish("cipher-app", "G", "v1")
    stream = client.watch("cipher-app", "G")
    assert (await anext(stream)).content == "v1"
    await client.publish("cipher-app", "G", "v2")
    kms.fail_next(2, status=503)  # the watcher's decrypts fail twice, then KMS is back
    change = await asyncio.wait_for(anext(stream), 15)
    assert change.content == "v2"
    await stream.aclose()


async def test_misconfigured_kms_is_refused_before_any_io(
    server: LocalACMServer, kms: FakeKMS, kms_client: Callable[..., ACMClient]
) -> None:
    with pytest.raises(InvalidOptionError, match="region_id"):
        await kms_client(region_id="", kms_endpoint=None).get("cipher-app", "G")
    with pytest.raises(InvalidOptionError, match="key_id"):
        await kms_client(key_id="").publish("cipher-app", "G", PLAIN)
    no_keys = kms_client(ak=None, sk=None)
    with pytest.raises(InvalidOptionError, match="kms_ak"):
        await no_keys.get("cipher-app", "G")
    assert server.requests == []
    assert kms.calls == []


@pytest.mark.parametrize("data_id", ["cipher-app", "cipher-kms-aes-128-app"])
async def test_undecryptable_failover_file_gives_way_to_the_server_for_get_and_watchers(
    server: LocalACMServer,
    kms_client: Callable[..., ACMClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    data_id: str,
) -> None:
    # One rule for every caller of the lookup chain: a failover file that cannot be decrypted
    # (garbage, or an envelope item without its data key) is not used; the server's value is.
    client = kms_client(pulling_timeout=1)
    await client.publish(data_id, "G", PLAIN)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / f"{data_id}+G+").write_text("not a ciphertext", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="aioacm"):
        assert await client.get(data_id, "G") == PLAIN
        stream = client.watch(data_id, "G")
        change = await asyncio.wait_for(anext(stream), 10)
        await stream.aclose()
    assert change.content == PLAIN
    warned = [r.getMessage() for r in caplog.records if "cannot be decrypted" in r.getMessage()]
    assert len(warned) >= 2  # the get's and the watcher's
    assert all("not used" in message for message in warned)
    # get_raw never decrypts: the pin comes back as it is
    assert await client.get_raw(data_id, "G") == "not a ciphertext"
    assert client.stats().failover_reads >= 3
