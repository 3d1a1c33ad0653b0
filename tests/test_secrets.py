"""No secrets anywhere: every operation runs with DEBUG logging and static AccessKey/SecretKey
credentials (plus an STS token), including the failures; no secret key, signature or token may
appear in any log record, exception message or repr, and no config content in a record above
DEBUG.

The RAM-role and KMS credentials of issue 7 plug into ``run_everything`` the same way: a
provider in ``credentials=``, its secrets in ``Secrets``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import Recorder, eventually

from aioacm import (
    ACMClient,
    ACMException,
    Credentials,
    CredentialsProvider,
    StaticCredentialsProvider,
)
from aioacm.server import LocalACMServer

AK = "LTAI-access-key-id"
SK = "sk-Zq8v1Xp-SECRET-do-not-log"
TOKEN = "sts-token-CAIS-do-not-log"
CONTENT = "password=CONFIG-CONTENT-do-not-log-above-debug"


@dataclass
class Secrets:
    """What must never be shown (signatures are collected from what the server received)."""

    values: set[str] = field(default_factory=lambda: {SK, TOKEN})

    def add_signatures(self, server: LocalACMServer) -> None:
        for record in server.requests:
            signature = record.headers.get("Spas-Signature")
            if signature:
                self.values.add(signature)

    def found_in(self, text: str) -> list[str]:
        return [secret for secret in self.values if secret in text]


@dataclass
class Seen:
    """Every exception and repr the run produced, to be searched for secrets."""

    texts: list[str] = field(default_factory=list)

    def exception(self, exc: BaseException) -> None:
        self.texts.append("".join(traceback.format_exception(exc)))
        self.texts.append(repr(exc))
        while exc.__cause__ is not None or exc.__context__ is not None:
            exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
            self.texts.extend([str(exc), repr(exc)])

    @contextlib.contextmanager
    def expect(self, error: type[BaseException]) -> Iterator[None]:
        with pytest.raises(error) as info:
            yield
        self.exception(info.value)


@pytest.fixture
async def server() -> AsyncIterator[LocalACMServer]:
    async with LocalACMServer() as srv:
        srv.add_credentials(AK, SK, TOKEN)  # a temporary key: its requests must carry TOKEN
        yield srv


def log_text(record: logging.LogRecord) -> str:
    parts = [record.getMessage(), repr(record.args)]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(record.exc_info[1])))
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


async def run_everything(
    server: LocalACMServer,
    tmp_path: Path,
    seen: Seen,
    credentials: CredentialsProvider,
    **options: Any,
) -> None:
    """Every client operation, successes and failures, with the given credentials."""
    folders = {"snapshot_base": str(tmp_path / "snap"), "failover_base": str(tmp_path / "data")}
    server.set_config("app.props", "g", CONTENT, tenant="ns")
    async with ACMClient(
        server.endpoint,
        namespace="ns",
        credentials=credentials,
        pulling_timeout=1,
        **folders,
        **options,
    ) as client:
        seen.texts += [repr(client), repr(client.options), repr(credentials)]
        assert await client.get("app.props", "g") == CONTENT
        assert await client.get_raw("app.props", "g") == CONTENT
        assert await client.publish("other", "g", CONTENT + " 2")
        assert (await client.list())["totalCount"] == 2
        assert len(await client.list_all()) == 2
        rec = Recorder()
        await client.add_watcher("app.props", "g", rec)
        await eventually(lambda: rec.contents == [CONTENT])
        async with contextlib.aclosing(client.watch("other", "g")) as stream:
            async for change in stream:
                seen.texts += [repr(change), str(change)]
                break
        server.set_config("app.props", "g", CONTENT + " 3", tenant="ns")
        await eventually(lambda: rec.contents[-1:] == [CONTENT + " 3"])
        await client.remove_watcher("app.props", "g", rec)
        client.set_options(default_timeout=2, kms_secret="kms-" + SK)
        seen.texts.append(repr(client.options))
        assert await client.remove("other", "g")

        # failures: the server down (served from the snapshot, then nothing to serve)
        outage = server.add_fault(None, status=503)
        assert await client.get("app.props", "g") == CONTENT + " 3"
        with seen.expect(ACMException):
            await client.get("app.props", "g", no_snapshot=True)
        with seen.expect(ACMException):
            await client.publish("app.props", "g", "x")
        server.remove_fault(outage)
        # a bad argument
        with seen.expect(ACMException):
            await client.publish("app.props", "g", "emoji 😀")

    # the credentials rejected
    async with ACMClient(
        server.endpoint, namespace="ns", ak=AK, sk=SK + "-wrong", **folders
    ) as wrong:
        seen.texts.append(repr(wrong))
        with seen.expect(ACMException):
            await wrong.get("app.props", "g")
        with seen.expect(ACMException):
            await wrong.list_all()
        rec = Recorder()
        await wrong.add_watcher("app.props", "g", rec)
        await asyncio.sleep(0.3)  # its fetches are refused, and logged


async def test_no_secret_in_logs_errors_or_reprs(
    server: LocalACMServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen = Seen()
    credentials = StaticCredentialsProvider(AK, SK, TOKEN)
    with caplog.at_level(logging.DEBUG):  # every logger, aiohttp's too
        await run_everything(server, tmp_path, seen, credentials)
    seen.texts += [repr(Credentials(AK, SK, TOKEN)), str(Credentials(AK, SK, TOKEN))]

    secrets = Secrets()
    secrets.values.add(SK + "-wrong")
    secrets.values.add("kms-" + SK)
    secrets.add_signatures(server)
    assert len(secrets.values) > 10  # the signatures of the run are in there
    assert any(r.headers.get("Spas-SecurityToken") == TOKEN for r in server.requests)
    records = [r for r in caplog.records if r.name.startswith("aioacm")]
    assert any(r.levelno == logging.DEBUG for r in records)  # DEBUG was really on
    assert any(r.levelno >= logging.WARNING for r in records)  # failures were logged
    for record in caplog.records:
        text = log_text(record)
        assert not secrets.found_in(text), (record.name, text)
        if record.levelno > logging.DEBUG:
            assert "CONFIG-CONTENT" not in text, (record.name, text)
    for text in seen.texts:
        assert not secrets.found_in(text), text
        assert "CONFIG-CONTENT" not in text, text
