"""Compatibility with the sync SDK (acm-sdk-python 0.4.11) as an oracle: the same requests byte
for byte (query strings, GBK bodies, auth headers, signatures), and snapshot files that each SDK
reads from the other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import run_sync_sdk

from aioacm import ACMClient
from aioacm.server import LocalACMServer
from aioacm.server.records import RequestRecord

MakeClient = Callable[..., ACMClient]
FROZEN = 1700000000.0
CONTENT = "k=v\n中文 a+b&c=d%"
# What must be the same on the wire. Client-Version differs on purpose (it names the client).
COMPARED_HEADERS = (
    "Diamond-Client-AppName",
    "exConfigInfo",
    "Content-Type",
    "Spas-AccessKey",
    "timeStamp",
    "Spas-Signature",
    "Spas-SecurityToken",
    "longPullingTimeout",
    "longPullingNoHangUp",
)

SYNC_OPERATIONS = """
    import time
    time.time = lambda: {frozen}
    import acm
    for namespace, ak, sk in (("ns1", "AK", "secret"), ("", None, None)):
        c = acm.ACMClient("{endpoint}", namespace, ak, sk)
        c.set_options(cai_enabled=False)
        c.get("app.props", "G1")
        c.publish("app.props", "G1", {content!r})
        c.get("app.props", "G1")
        c.remove("app.props", None)
        c.list(2, 50)
    print("done")
"""


def wire(record: RequestRecord) -> dict[str, object]:
    return {
        "op": record.op,
        "method": record.method,
        "path": record.path,
        "query": record.query_string,
        "body": record.body,
        "headers": {h: record.headers.get(h) for h in COMPARED_HEADERS},
    }


async def test_requests_match_the_sync_sdk_byte_for_byte(
    server: LocalACMServer, make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.set_config("app.props", "G1", "old", tenant="ns1")
    out = await run_sync_sdk(
        SYNC_OPERATIONS.format(frozen=FROZEN, endpoint=server.endpoint, content=CONTENT), tmp_path
    )
    assert out.strip() == "done"
    theirs = [wire(r) for r in server.requests]
    server.clear_requests()
    server.set_config("app.props", "G1", "old", tenant="ns1")

    monkeypatch.setattr(time, "time", lambda: FROZEN)
    for namespace, ak, sk in (("ns1", "AK", "secret"), ("", None, None)):
        async with make_client(
            server.endpoint, namespace=namespace, ak=ak, sk=sk, cai_enabled=False
        ) as client:
            await client.get("app.props", "G1")
            await client.publish("app.props", "G1", CONTENT)
            await client.get("app.props", "G1")
            await client.remove("app.props", None)
            await client.list(2, 50)
    ours = [wire(r) for r in server.requests]
    assert len(ours) == len(theirs) == 10
    for mine, sync in zip(ours, theirs, strict=True):
        assert mine == sync
    # and the signature really is there where the sync SDK signs
    assert theirs[1]["headers"]["Spas-Signature"]  # type: ignore[index]


SYNC_WATCH = """
    import multiprocessing, os, time
    multiprocessing.set_start_method("fork")
    time.time = lambda: {frozen}
    import acm
    c = acm.ACMClient("{endpoint}", "ns1", "AK", "secret")
    c.set_options(cai_enabled=False, pulling_timeout=1)
    c.add_watcher("app.props", "G1", lambda event: None)
    deadline = time.monotonic() + 20
    while not os.path.exists("polled") and time.monotonic() < deadline:
        time.sleep(0.05)
    for child in multiprocessing.active_children():  # its pollers hold our stdout open
        child.kill()
    os._exit(0)
"""


async def test_long_poll_matches_the_sync_sdk(
    server: LocalACMServer, make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.set_config("app.props", "G1", "v", tenant="ns1")
    sync = asyncio.create_task(
        run_sync_sdk(SYNC_WATCH.format(frozen=FROZEN, endpoint=server.endpoint), tmp_path)
    )
    try:
        await server.wait_for_held_polls(1, timeout=20)
    finally:
        (tmp_path / "polled").touch()
        await sync
    theirs = [wire(r) for r in server.requests_for("poll")]
    server.clear_requests()

    monkeypatch.setattr(time, "time", lambda: FROZEN)
    async with make_client(
        server.endpoint, namespace="ns1", ak="AK", sk="secret", cai_enabled=False, pulling_timeout=1
    ) as client:
        await client.add_watcher("app.props", "G1", lambda event: None)
        await server.wait_for_requests(2, op="poll")
    ours = [wire(r) for r in server.requests_for("poll")]
    # the first poll (no-hang-up, empty md5) and the first held one
    assert ours[0] == theirs[0]
    assert ours[0]["headers"]["longPullingNoHangUp"] == "true"  # type: ignore[index]
    assert ours[1]["body"] == theirs[1]["body"]
    assert ours[1]["headers"] == theirs[1]["headers"]


async def test_snapshot_written_by_the_sync_sdk_is_served(
    server: LocalACMServer, make_client: MakeClient, tmp_path: Path
) -> None:
    server.set_config("app.props", "G1", "from sync\r\n中文", tenant="ns1")
    script = f"""
        import acm
        c = acm.ACMClient("{server.endpoint}", "ns1")
        c.set_options(cai_enabled=False)
        print(repr(c.get("app.props", "G1")))
    """
    assert (await run_sync_sdk(script, tmp_path)).strip() == repr("from sync\r\n中文")
    server.add_fault("get", status=503)
    async with make_client(
        server.endpoint, namespace="ns1", snapshot_base=str(tmp_path / "acm-data" / "snapshot")
    ) as client:
        assert await client.get("app.props", "G1") == "from sync\r\n中文"


async def test_snapshot_written_here_is_served_by_the_sync_sdk(
    server: LocalACMServer, make_client: MakeClient, tmp_path: Path
) -> None:
    server.set_config("app.props", "G1", "from aioacm\r\n中文", tenant="ns1")
    async with make_client(
        server.endpoint, namespace="ns1", snapshot_base=str(tmp_path / "acm-data" / "snapshot")
    ) as client:
        assert await client.get("app.props", "G1") == "from aioacm\r\n中文"
    endpoint = server.endpoint
    await server.stop()  # the sync SDK now finds no server and falls back to the snapshot
    script = f"""
        import acm
        c = acm.ACMClient("{endpoint}", "ns1")
        c.set_options(cai_enabled=False)
        print(repr(c.get("app.props", "G1")))
    """
    assert (await run_sync_sdk(script, tmp_path)).strip() == repr("from aioacm\r\n中文")


async def test_failover_folder_shared_with_the_sync_sdk(
    server: LocalACMServer, make_client: MakeClient, tmp_path: Path
) -> None:
    server.set_config("app.props", "G1", "server value")
    failover = tmp_path / "acm-data" / "data"
    failover.mkdir(parents=True)
    (failover / "app.props+G1+").write_text("pinned 中", encoding="utf-8")
    script = f"""
        import acm
        c = acm.ACMClient("{server.endpoint}")
        c.set_options(cai_enabled=False)
        print(repr(c.get("app.props", "G1")))
    """
    assert (await run_sync_sdk(script, tmp_path)).strip() == repr("pinned 中")
    async with make_client(server.endpoint, failover_base=str(failover)) as client:
        assert await client.get("app.props", "G1") == "pinned 中"
