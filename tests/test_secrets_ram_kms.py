"""No secret anywhere, with RAM-role and KMS credentials: every operation runs with DEBUG
logging, failures included, and no secret key, STS token, signature (ACM's or KMS's) or, above
DEBUG, config content may appear in a log record, an exception message or a repr."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from aioacm import ACMClient, ACMException
from aioacm.server import LocalACMServer
from aioacm.testing import FakeKMS, FakeMetadataServer, Issued

CONTENT = "payload-that-must-stay-private"
KMS_SECRET = "kms-secret-that-must-stay-private"


async def test_no_secret_reaches_logs_errors_or_reprs(
    server: LocalACMServer,
    make_client: Callable[..., ACMClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="aioacm")
    texts: list[str] = []  # every exception message and repr we saw

    def keep(*objects: Any) -> None:
        for obj in objects:
            texts.extend([str(obj), repr(obj)])

    async def failing(awaitable: Any) -> None:
        try:
            await awaitable
        except ACMException as exc:
            keep(exc, exc.__cause__, exc.__context__)
        else:
            raise AssertionError("expected a failure")

    async with (
        FakeMetadataServer("role", ttl=182) as metadata,  # refreshed every ~2 s
        FakeKMS(("key-1",)) as kms,
    ):

        def trust(sts: Issued) -> None:
            server.add_credentials(*sts.as_tuple())
            kms.add_credentials(*sts.as_tuple())

        metadata.on_issue.append(trust)
        kms.add_credentials("kms-ak", KMS_SECRET)
        settings: dict[str, Any] = {
            "namespace": "ns1",
            "cai_enabled": False,
            "ram_role_name": "role",
            "ram_metadata_url": metadata.url,
            "kms_enabled": True,
            "region_id": "cn-hangzhou",
            "key_id": "key-1",
            "kms_endpoint": kms.endpoint,
            "kms_protocol": "http",
            "pulling_timeout": 1,
        }
        client = make_client(server.endpoint, **settings)
        changes = []
        await client.add_watcher("cipher-w", "G", changes.append)
        for data_id in ("plain", "cipher-a", "cipher-kms-aes-128-b", "cipher-kms-aes-256-c"):
            await client.publish(data_id, "G", CONTENT)
            assert await client.get(data_id, "G") == CONTENT
            await client.get_raw(data_id, "G")
        await client.publish("cipher-w", "G", CONTENT)
        stream = client.watch("cipher-w", "G")
        change = await anext(stream)
        keep(change)
        await stream.aclose()
        await client.list_all()
        await asyncio.sleep(2.2)  # across an STS refresh
        assert await client.get("cipher-a", "G") == CONTENT
        assert len(metadata.issued) >= 2

        # KMS with its own secret, then failures of every kind
        kms_client = make_client(
            server.endpoint, **{**settings, "kms_ak": "kms-ak", "kms_secret": KMS_SECRET}
        )
        assert await kms_client.get("cipher-a", "G") == CONTENT
        keep(kms_client, kms_client.options)
        kms.fail_next(code="Rejected.Throttling", status=429)
        await failing(kms_client.publish("cipher-x", "G", CONTENT))
        wrong = make_client(
            server.endpoint, **{**settings, "kms_ak": "kms-ak", "kms_secret": KMS_SECRET + "x"}
        )
        await failing(wrong.get("cipher-a", "G", no_snapshot=True))
        metadata.on_issue.clear()  # from now on, new STS keys are unknown to ACM
        for issued in metadata.issued:
            server.revoke_credentials(issued.access_key)
        await failing(client.publish("plain", "G", CONTENT))  # 403
        metadata.fail_status = 500
        fresh = make_client(server.endpoint, **{**settings, "snapshot_base": "elsewhere"})
        await failing(fresh.get("plain", "G"))
        keep(client, client.options, client.stats())

        secrets = {KMS_SECRET, KMS_SECRET + "x"}
        for issued in metadata.issued:
            secrets |= {issued.secret_key, issued.security_token}
        for record in server.requests:
            if "Spas-Signature" in record.headers:
                secrets.add(record.headers["Spas-Signature"])
        kms_signatures = {call.signature for call in kms.calls}
        assert len(kms_signatures) > 5
        secrets |= kms_signatures
        assert len(secrets) > 10

    messages = [record.getMessage() for record in caplog.records]
    for text in messages + texts:
        for secret in secrets:
            assert secret not in text, (secret[:6], text)
    above_debug = [r.getMessage() for r in caplog.records if r.levelno > logging.DEBUG]
    assert above_debug  # failures were logged...
    assert not [m for m in above_debug if CONTENT in m]  # ...without the content
    assert not [t for t in texts if CONTENT in t]
