"""The fault matrix (tests/FAULTS.md): the client against the bundled server failing on purpose,
over real sockets. Each test checks that ``get`` still answers correctly (from the server, else
from the snapshot) and that watchers miss nothing and get nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from helpers import Recorder, assert_history, cluster, eventually

import aioacm.servers
import aioacm.stores
import aioacm.watch
from aioacm import (
    AccessDeniedError,
    ACMClient,
    Credentials,
    ServerUnavailableError,
)
from aioacm.server import LocalACMServer
from aioacm.stores import WRITTEN_RECHECK

MakeClient = Callable[..., ACMClient]


@pytest.fixture(autouse=True)
def _quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pollers back off up to 0.5 s instead of 10 s, so recoveries fit in a test (backing
    off at all, rather than spinning, is what the tests check)."""
    monkeypatch.setattr(aioacm.watch, "BACKOFF_CAP", 0.5)


async def publish_all(
    server: LocalACMServer, values: list[str], key: tuple[str, str] = ("d", "g")
) -> None:
    """Set the values one after another, each once the previous one was seen by a held poll."""
    for value in values:
        server.set_config(*key, value)
        await asyncio.sleep(0.05)


# -- the server goes away ------------------------------------------------------------------


async def test_server_stopped_and_restarted_mid_poll(
    server: LocalACMServer, make_client: MakeClient
) -> None:
    for name in ("a", "b", "c"):
        server.set_config(name, "g", f"{name}1")
    recs = {name: Recorder() for name in ("a", "b", "c")}
    async with make_client(server.endpoint, pulling_timeout=2) as client:
        for name, rec in recs.items():
            await client.add_watcher(name, "g", rec)
        await eventually(lambda: all(r.contents == [f"{n}1"] for n, r in recs.items()))
        await server.wait_for_held_polls(1)
        await server.stop()
        server.set_config("a", "g", "a2")  # changed while down
        server.delete_config("b", "g")  # deleted while down
        for name in ("a", "b", "c"):  # served from the snapshots meanwhile
            assert await client.get(name, "g") == f"{name}1"
        await server.start()
        await eventually(
            lambda: recs["a"].contents == ["a1", "a2"] and recs["b"].contents[-1:] == [None]
        )
        server.set_config("c", "g", "c2")
        await eventually(lambda: recs["c"].contents == ["c1", "c2"])
        await asyncio.sleep(0.1)
        assert recs["a"].contents == ["a1", "a2"]
        assert recs["b"].contents == ["b1", None]
        assert await client.get("a", "g") == "a2"
        assert await client.get("b", "g") is None


async def _start_server_process(port: int, data: Path) -> tuple[asyncio.subprocess.Process, int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aioacm.server",
        "--port",
        str(port),
        "--data",
        str(data),
        "--log-level",
        "ERROR",
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 20)
    match = re.search(rb"listening on [\d.]+:(\d+)", line)
    assert match, line
    return proc, int(match.group(1))


async def test_server_killed_mid_poll_and_restarted(
    make_client: MakeClient, tmp_path: Path
) -> None:
    data = tmp_path / "acm.json"
    seed = LocalACMServer(data_file=data)
    async with seed:
        seed.set_config("d", "g", "v1")
        seed.set_config("e", "g", "e1")
        await seed.flush()
    proc, port = await _start_server_process(0, data)
    rec = Recorder()
    try:
        async with make_client(f"127.0.0.1:{port}", pulling_timeout=2) as client:
            assert await client.get("e", "g") == "e1"
            await client.add_watcher("d", "g", rec)
            await eventually(lambda: rec.contents == ["v1"])
            await asyncio.sleep(0.3)  # the poll is held now
            proc.send_signal(signal.SIGKILL)  # no goodbye: the held poll's connection just dies
            await proc.wait()
            assert await client.get("e", "g") == "e1"  # the snapshot
            assert await client.get("d", "g") == "v1"  # the watcher kept its snapshot too
            proc, _ = await _start_server_process(port, data)
            await eventually(lambda: rec.contents == ["v1"])
            for _ in range(100):  # the client may still be backing off from the outage
                with contextlib.suppress(ServerUnavailableError):
                    await client.publish("d", "g", "v2")
                    break
                await asyncio.sleep(0.05)
            await eventually(lambda: rec.contents == ["v1", "v2"])
            assert await client.get("d", "g") == "v2"
            await asyncio.sleep(0.2)
            assert rec.contents == ["v1", "v2"]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# -- servers answering errors --------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429, 408])
async def test_every_server_failing(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, status: int
) -> None:
    # Every backoff at the top of its jitter range: the poll count below then depends on the
    # time the test takes, not on how low the random delays happened to fall (with full
    # jitter it ranged 8-17 in isolation and reached 20 on a loaded machine).
    monkeypatch.setattr(aioacm.watch, "random", SimpleNamespace(uniform=lambda low, high: high))
    async with cluster(3) as servers:
        monkeypatch.setenv("DIAMOND_SERVER_IPS", ",".join(s.endpoint for s in servers))
        servers[0].set_config("d", "g", "v1")
        rec = Recorder()
        async with make_client("unused.invalid", pulling_timeout=2) as client:
            assert await client.get("d", "g") == "v1"
            await client.add_watcher("d", "g", rec)
            await eventually(lambda: rec.contents == ["v1"])
            await servers[0].wait_for_held_polls(1)
            faults = [s.add_fault(None, status=status) for s in servers]
            servers[0].set_config("d", "g", "v2")  # wakes the held poll; what follows fails
            servers[0].set_config("d", "g", "v3")
            assert await client.get("d", "g") == "v1"  # the snapshot
            with pytest.raises(ServerUnavailableError) as info:
                await client.publish("d", "g", "x")
            assert info.value.status == status
            await asyncio.sleep(0.6)
            polls = sum(s.request_count("poll") for s in servers)
            for srv, fault in zip(servers, faults, strict=True):
                srv.remove_fault(fault)
            await eventually(lambda: rec.contents == ["v1", "v3"])
            assert await client.get("d", "g") == "v3"
            await asyncio.sleep(0.1)
            assert rec.contents == ["v1", "v3"]
    assert polls <= 3 * 6  # backed off: a few rounds over the three servers, not a busy loop


async def test_conflict_storm(server: LocalACMServer, make_client: MakeClient) -> None:
    server.set_config("d", "g", "v1")
    rec = Recorder()
    async with make_client(server.endpoint, pulling_timeout=2) as client:
        assert await client.get("d", "g") == "v1"
        await client.add_watcher("d", "g", rec)
        await eventually(lambda: rec.contents == ["v1"])
        await server.wait_for_held_polls(1)
        storm = server.add_fault(["get", "publish", "poll"], status=409)
        server.set_config("d", "g", "v2")
        assert await client.get("d", "g") == "v1"  # retried briefly, then the snapshot
        with pytest.raises(ServerUnavailableError) as info:
            await client.publish("d", "g", "x")
        assert info.value.status == 409
        server.clear_requests()
        await asyncio.sleep(0.6)
        hits = server.request_count()
        server.remove_fault(storm)
        await eventually(lambda: rec.contents == ["v1", "v2"])
        assert await client.get("d", "g") == "v2"
        await asyncio.sleep(0.1)
        assert rec.contents == ["v1", "v2"]
    assert hits <= 4 * 6  # 4 tries per request (3 retries), a few backed-off rounds


async def test_conflicts_on_fetching_a_changed_key(
    server: LocalACMServer, make_client: MakeClient
) -> None:
    """The poll says the key changed but fetching it keeps failing: back off, no spin."""
    server.set_config("d", "g", "v1")
    rec = Recorder()
    async with make_client(server.endpoint, pulling_timeout=2) as client:
        await client.add_watcher("d", "g", rec)
        await eventually(lambda: rec.contents == ["v1"])
        await server.wait_for_held_polls(1)
        storm = server.add_fault("get", status=409)
        server.clear_requests()
        await publish_all(server, ["v2", "v3"])
        await asyncio.sleep(0.6)
        polls = server.request_count("poll")
        server.remove_fault(storm)
        await eventually(lambda: rec.contents[-1:] == ["v3"])
        await asyncio.sleep(0.1)
        assert_history(rec.contents, ["v1", "v2", "v3"])
    assert polls <= 6


# -- slow, cut and garbled answers ---------------------------------------------------------


async def test_slow_responses_past_the_timeout(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with cluster(2) as (slow, fast):
        monkeypatch.setenv("DIAMOND_SERVER_IPS", f"{slow.endpoint},{fast.endpoint}")
        slow.set_config("d", "g", "v1")
        rec = Recorder()
        async with make_client("unused.invalid", default_timeout=0.3, pulling_timeout=2) as client:
            assert await client.get("d", "g") == "v1"
            await client.add_watcher("d", "g", rec)
            await eventually(lambda: rec.contents == ["v1"])
            # one server slow: the other answers
            slow.add_fault("get", delay=2.0)
            for _ in range(3):
                assert await client.get("d", "g") == "v1"
            # both slow: the snapshot, after one timeout per server
            lag = fast.add_fault("get", delay=2.0)
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await client.get("d", "g") == "v1"
            assert loop.time() - started < 1.5
            # a change whose fetch is slow is fetched again later, and delivered once
            slow.set_config("d", "g", "v2")
            await asyncio.sleep(0.8)
            fast.remove_fault(lag)
            await eventually(lambda: rec.contents == ["v1", "v2"])
            await asyncio.sleep(0.1)
            assert rec.contents == ["v1", "v2"]


@pytest.mark.parametrize("keep", [0, 1, 7])
async def test_connection_reset_mid_body(
    server: LocalACMServer, make_client: MakeClient, tmp_path: Path, keep: int
) -> None:
    content = "k=v\n中文" * 50
    second = "second value " * 20
    server.set_config("d", "g", content)
    rec = Recorder()
    async with make_client(server.endpoint, pulling_timeout=2) as client:
        assert await client.get("d", "g") == content
        await client.add_watcher("d", "g", rec)
        await eventually(lambda: rec.contents == [content])
        await server.wait_for_held_polls(1)
        cut = server.add_fault(["get", "poll"], truncate=keep)
        server.set_config("d", "g", second)
        # a cut answer is never taken as the content, nor saved as the snapshot
        assert await client.get("d", "g") == content
        assert (tmp_path / "snapshot" / "d+g+").read_text(encoding="utf-8") == content
        with pytest.raises(ServerUnavailableError):
            await client.get("d", "g", no_snapshot=True)
        await asyncio.sleep(0.5)
        server.remove_fault(cut)
        await eventually(lambda: rec.contents == [content, second])
        assert await client.get("d", "g") == second
        await asyncio.sleep(0.1)
        assert rec.contents == [content, second]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, "d%02"),  # truncated: a data id and no group
        (200, "d%02g"),  # names the key, which has not changed (a lie, or a stale answer)
        (200, "<html><body>502 Bad Gateway</body></html>"),
        (200, ""),  # an empty answer at once, although the poll asked to be held
        (404, "<html>Not Found</html>"),  # a proxy that does not know the path
    ],
)
async def test_truncated_and_malformed_poll_responses(
    server: LocalACMServer, make_client: MakeClient, status: int, body: str
) -> None:
    server.set_config("d", "g", "v1")
    rec = Recorder()
    async with make_client(server.endpoint, pulling_timeout=2) as client:
        await client.add_watcher("d", "g", rec)
        await eventually(lambda: rec.contents == ["v1"])
        await server.wait_for_held_polls(1)
        garbled = server.add_fault("poll", status=status, body=body)
        server.clear_requests()
        server.set_config("d", "g", "v2")  # wakes the held poll; the next answers are garbage
        await asyncio.sleep(0.6)
        polls = server.request_count("poll")
        server.remove_fault(garbled)
        await eventually(lambda: rec.contents[-1:] == ["v2"])
        assert await client.get("d", "g") == "v2"
        await asyncio.sleep(0.1)
        assert rec.contents == ["v1", "v2"]
    assert polls <= 8, f"{polls} polls in 0.6 s: the poller spins on {status} {body!r}"


async def test_redirects_are_neither_followed_nor_taken_as_content(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with (
        LocalACMServer(credentials={"ak": "sk"}) as evil,
        LocalACMServer(credentials={"ak": "sk"}) as good,
    ):
        good.set_config("d", "g", "v1")

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(f"{evil.url}{request.path_qs}")

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", redirect)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            redirector = f"127.0.0.1:{runner.addresses[0][1]}"
            monkeypatch.setenv("DIAMOND_SERVER_IPS", f"{redirector},{good.endpoint}")
            monkeypatch.setattr(aioacm.servers.random, "shuffle", lambda servers: None)
            rec = Recorder()
            async with make_client("unused.invalid", ak="ak", sk="sk", pulling_timeout=2) as c:
                assert await c.get("d", "g") == "v1"  # asks the redirector first
                assert await c.publish("d", "g", "v1")
                await c.add_watcher("d", "g", rec)
                await eventually(lambda: rec.contents == ["v1"])
                good.add_fault("get", status=302)  # a 3xx without Location: not content
                assert await c.get("d", "g") == "v1"  # the snapshot
                with pytest.raises(ServerUnavailableError) as info:
                    await c.get("d", "g", no_snapshot=True)
                assert info.value.status == 302
        finally:
            await runner.cleanup()
        # nothing, signatures least of all, went where the redirect pointed
        assert evil.request_count() == 0


# -- the address server --------------------------------------------------------------------


async def test_address_server_down_at_start(
    server: LocalACMServer, make_client: MakeClient, tmp_path: Path
) -> None:
    server.set_config("d", "g", "v1")
    (tmp_path / "snapshot").mkdir()
    (tmp_path / "snapshot" / "d+g+").write_text("from an earlier run", encoding="utf-8")
    down = server.add_fault("address", status=503)
    rec = Recorder()
    async with make_client(server.endpoint, pulling_timeout=2) as client:
        assert await client.get("d", "g") == "from an earlier run"
        with pytest.raises(ServerUnavailableError):
            await client.get("nosnapshot", "g")
        await client.add_watcher("d", "g", rec)
        await asyncio.sleep(1.2)
        assert server.request_count("poll") == 0
        assert server.request_count("address") <= 6  # remembered as down for a second
        server.remove_fault(down)
        await eventually(lambda: rec.contents == ["v1"])
        assert await client.get("d", "g") == "v1"
        server.set_config("d", "g", "v2")
        await eventually(lambda: rec.contents == ["v1", "v2"])
        await asyncio.sleep(0.1)
        assert rec.contents == ["v1", "v2"]


@pytest.mark.parametrize(
    "answer",
    [
        {"status": 503},
        {"drop": True},
        {"status": 200, "body": ""},  # an empty list
        {"status": 200, "body": "<html>\n<h1>Service Unavailable</h1>\n</html>"},
        {"status": 200, "body": "evil.example/steal?x=1\nhost name:80\n:::"},
    ],
)
async def test_address_server_flapping(make_client: MakeClient, answer: dict[str, Any]) -> None:
    async with cluster(2) as (a, b):
        a.set_config("d", "g", "v1")
        a.address_list = [b.endpoint]
        rec = Recorder()
        async with make_client(
            a.endpoint, pulling_timeout=2, address_refresh_interval=0.02
        ) as client:
            assert await client.get("d", "g", no_snapshot=True) == "v1"
            await client.add_watcher("d", "g", rec)
            await eventually(lambda: rec.contents == ["v1"])
            for round_ in range(6):
                flap = a.add_fault("address", **answer)
                await asyncio.sleep(0.05)
                assert await client.get("d", "g", no_snapshot=True) == f"v{round_ + 1}"
                a.set_config("d", "g", f"v{round_ + 2}")
                await eventually(lambda r=round_: rec.contents[-1:] == [f"v{r + 2}"])
                a.remove_fault(flap)
                await asyncio.sleep(0.05)
            assert a.request_count("address") > 12  # it did flap under the client
            assert a.request_count("get") == 0  # never listed: never asked
            assert_history(rec.contents, [f"v{i}" for i in range(1, 8)])
            assert rec.contents == [f"v{i}" for i in range(1, 8)]


@pytest.mark.parametrize(("dead", "how"), [(0, "env"), (1, "address"), (2, "address")])
async def test_one_of_three_servers_dead(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch, dead: int, how: str
) -> None:
    async with cluster(3) as servers:
        servers[0].set_config("d", "g", "v1")
        if how == "env":
            monkeypatch.setenv("DIAMOND_SERVER_IPS", ",".join(s.endpoint for s in servers))
        await servers[dead].stop()
        live = [s for i, s in enumerate(servers) if i != dead]
        rec = Recorder()
        async with make_client(servers[0].endpoint, pulling_timeout=2) as client:
            for _ in range(10):
                assert await client.get("d", "g", no_snapshot=True) == "v1"
            await client.add_watcher("d", "g", rec)
            await eventually(lambda: rec.contents == ["v1"])
            for i in range(2, 6):
                live[i % 2].set_config("d", "g", f"v{i}")
                await eventually(lambda i=i: rec.contents[-1:] == [f"v{i}"])
                assert await client.publish("d", "g", f"p{i}")
                await eventually(lambda i=i: rec.contents[-1:] == [f"p{i}"])
            assert rec.contents == ["v1"] + [x for i in range(2, 6) for x in (f"v{i}", f"p{i}")]
        assert servers[dead].request_count() == 0  # stopped: nothing reached it


async def test_one_of_three_servers_a_black_hole(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with cluster(3) as servers:
        servers[0].set_config("d", "g", "v1")
        monkeypatch.setenv("DIAMOND_SERVER_IPS", ",".join(s.endpoint for s in servers))
        servers[1].add_fault(["get", "publish"], delay=30)
        async with make_client("unused.invalid", default_timeout=0.3) as client:
            for i in range(6):
                assert await client.get("d", "g", no_snapshot=True) == f"v{i + 1}"
                assert await client.publish("d", "g", f"v{i + 2}")
        assert servers[1].request_count() <= 2  # left once, never gone back to


# -- local files ---------------------------------------------------------------------------


async def test_snapshot_folder_missing_at_start_and_deleted_while_running(
    server: LocalACMServer, make_client: MakeClient, tmp_path: Path
) -> None:
    server.set_config("d", "g", "v1")
    snapshots = tmp_path / "deep" / "snapshot"
    async with make_client(server.endpoint, snapshot_base=str(snapshots)) as client:
        assert await client.get("d", "g") == "v1"  # the folder is created
        assert (snapshots / "d+g+").read_text(encoding="utf-8") == "v1"
        for path in snapshots.iterdir():
            path.unlink()
        snapshots.rmdir()  # a cleaner removed it
        await asyncio.sleep(WRITTEN_RECHECK + 0.1)  # a written file is trusted that long
        assert await client.get("d", "g") == "v1"  # the same value again: written again
        outage = server.add_fault("get", status=503)
        assert await client.get("d", "g") == "v1"
        server.remove_fault(outage)
        (snapshots / "d+g+").unlink()  # only the file this time
        await asyncio.sleep(WRITTEN_RECHECK + 0.1)
        assert await client.get("d", "g") == "v1"
        server.add_fault("get", status=503)
        assert await client.get("d", "g") == "v1"


async def test_snapshot_folder_unwritable(
    server: LocalACMServer,
    make_client: MakeClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.set_config("d", "g", "v1")
    blocker = tmp_path / "snapshot"
    blocker.write_text("a file where the folder should be")  # unwritable even for root
    rec = Recorder()
    with caplog.at_level(logging.WARNING, logger="aioacm"):
        async with make_client(server.endpoint, pulling_timeout=2) as client:
            for _ in range(3):
                assert await client.get("d", "g") == "v1"  # never fails a get
            await client.add_watcher("d", "g", rec)
            await eventually(lambda: rec.contents == ["v1"])
            server.set_config("d", "g", "v2")
            await eventually(lambda: rec.contents == ["v1", "v2"])
            server.add_fault("get", status=503)
            with pytest.raises(ServerUnavailableError):  # nothing to fall back to
                await client.get("d", "g")
    snapshot_warnings = [r for r in caplog.records if "snapshot" in r.getMessage()]
    assert len(snapshot_warnings) == 1
    assert "v1" not in snapshot_warnings[0].getMessage()


async def test_snapshot_folder_read_only(
    server: LocalACMServer,
    make_client: MakeClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.set_config("d", "g", "v2")
    folder = tmp_path / "snapshot"
    folder.mkdir()
    (folder / "d+g+").write_text("v1", encoding="utf-8")
    if os.geteuid() == 0:  # root writes through chmod: fail the writes as a read-only mount would

        def read_only(*args: Any, **kwargs: Any) -> str | None:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))

        monkeypatch.setattr(aioacm.stores.StoreIO, "stage", read_only)
    else:
        folder.chmod(0o555)
    try:
        async with make_client(server.endpoint) as client:
            assert await client.get("d", "g") == "v2"  # the server, although not saved
            assert (folder / "d+g+").read_text(encoding="utf-8") == "v1"
            assert sorted(p.name for p in folder.iterdir()) == ["d+g+"]
            server.add_fault("get", status=503)
            assert await client.get("d", "g") == "v1"  # the old snapshot is all there is
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize(
    ("failover", "expected"),
    [
        ("pinned", "pinned"),
        ("", ""),  # an empty file pins an empty value, as in the sync SDK
        (b"\xff\xfe not utf-8", "server"),
        ("a directory", "server"),
    ],
    ids=["present", "empty", "invalid-utf8", "directory"],
)
async def test_failover_file(
    server: LocalACMServer,
    make_client: MakeClient,
    tmp_path: Path,
    failover: str | bytes,
    expected: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.set_config("d", "g", "server")
    path = tmp_path / "data" / "d+g+"
    path.parent.mkdir()
    if failover == "a directory":
        path.mkdir()
    elif isinstance(failover, bytes):
        path.write_bytes(failover)
    else:
        path.write_text(failover, encoding="utf-8")
    rec = Recorder()
    with caplog.at_level(logging.WARNING, logger="aioacm"):
        async with make_client(server.endpoint, pulling_timeout=1) as client:
            for _ in range(3):
                assert await client.get("d", "g") == expected
            assert server.request_count("get") == (3 if expected == "server" else 0)
            await client.add_watcher("d", "g", rec)
            await eventually(lambda: rec.contents == [expected])  # failover wins here too
            server.set_config("d", "g", "server 2")
            await asyncio.sleep(0.8)
            polls = server.request_count("poll")
            assert rec.contents == [expected] if expected != "server" else ["server", "server 2"]
    # a pinned key does not make the poller spin
    assert polls <= 6
    # an unreadable file is reported once, not at every get
    assert len(caplog.records) == (1 if expected == "server" else 0), caplog.records


# -- credentials -------------------------------------------------------------------------


class Switchable:
    """Credentials whose secret the test changes (as a rotated or revoked key would)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    async def get_credentials(self) -> Credentials:
        return Credentials("ak", self.secret)


async def test_credentials_rejected(make_client: MakeClient, tmp_path: Path) -> None:
    creds = Switchable("right")
    async with cluster(2, credentials={"ak": "right"}) as servers:
        servers[0].set_config("d", "g", "v1")
        rec = Recorder()
        async with make_client(servers[0].endpoint, credentials=creds, pulling_timeout=2) as client:
            assert await client.get("d", "g") == "v1"
            await client.add_watcher("d", "g", rec)
            await eventually(lambda: rec.contents == ["v1"])
            creds.secret = "revoked"
            for srv in servers:
                srv.clear_requests()
            with pytest.raises(AccessDeniedError) as info:  # at once, not the snapshot
                await client.get("d", "g")
            assert info.value.status == 403
            assert "revoked" not in str(info.value)
            with pytest.raises(AccessDeniedError):
                await client.publish("d", "g", "x")
            # 403 is an answer: no other server was asked
            assert sum(s.request_count("get") + s.request_count("publish") for s in servers) == 2
            await publish_all(servers[0], ["v2", "v3"])
            await asyncio.sleep(0.6)
            polls = sum(s.request_count("poll") for s in servers)
            creds.secret = "right"
            await eventually(lambda: rec.contents[-1:] == ["v3"])
            assert await client.get("d", "g") == "v3"
            await asyncio.sleep(0.1)
            assert_history(rec.contents, ["v1", "v2", "v3"])
    assert polls <= 6


# -- the matrix itself ----------------------------------------------------------------------


def test_fault_matrix_is_up_to_date() -> None:
    """Every test FAULTS.md names exists, and every test of this file is in the matrix."""
    tests = Path(__file__).parent
    matrix = (tests / "FAULTS.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(test_\w+)`", matrix))
    defined = {
        name
        for path in tests.glob("test_*.py")
        for name in re.findall(r"^(?:async )?def (test_\w+)", path.read_text(), re.MULTILINE)
    }
    assert len(named) > 30
    assert named - defined == set(), "FAULTS.md names tests that do not exist"
    here = set(re.findall(r"^(?:async )?def (test_\w+)", Path(__file__).read_text(), re.M))
    assert here - named == set(), "tests of this file missing from FAULTS.md"
