"""Watching configs: long polling, callbacks through queues, and watch() iterators,
against the bundled server over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import Recorder, aioacm_tasks, eventually

from aioacm import ACMClient, ClientClosedError, ConfigChange, InvalidParameterError
from aioacm.dialects.acm import content_md5
from aioacm.server import LocalACMServer
from aioacm.watch import BACKOFF_BASE, BACKOFF_CAP, backoff_delay

MakeClient = Callable[..., ACMClient]


@pytest.fixture
def fast(make_client: MakeClient, server: LocalACMServer) -> Callable[..., ACMClient]:
    """A client on the bundled server with a short long-poll hold."""

    def make(**kwargs: Any) -> ACMClient:
        kwargs.setdefault("pulling_timeout", 2)
        return make_client(server.endpoint, **kwargs)

    return make


async def test_initial_change_and_delete(server: LocalACMServer, fast: MakeClient) -> None:
    server.set_config("d", "g", "v1", tenant="ns")
    rec = Recorder()
    async with fast(namespace="ns") as client:
        await client.add_watcher("d", "g", rec)
        await eventually(lambda: rec.contents == ["v1"])
        assert rec.calls[0] == {
            "data_id": "d",
            "group": "g",
            "namespace": "ns",
            "raw_content": "v1",
            "content": "v1",
        }
        server.set_config("d", "g", "v2", tenant="ns")
        await eventually(lambda: rec.contents == ["v1", "v2"])
        server.delete_config("d", "g", tenant="ns")
        await eventually(lambda: rec.contents == ["v1", "v2", None])
        assert rec.calls[-1]["raw_content"] is None


async def test_missing_item_fires_only_when_created(
    server: LocalACMServer, fast: MakeClient
) -> None:
    rec = Recorder()
    async with fast() as client:
        await client.add_watcher("d", None, rec)
        await server.wait_for_held_polls(1)
        assert rec.calls == []
        server.set_config("d", "DEFAULT_GROUP", "born")
        await eventually(lambda: rec.contents == ["born"])


async def test_never_twice_for_the_same_md5(server: LocalACMServer, fast: MakeClient) -> None:
    server.set_config("d", "g", "same")
    rec = Recorder()
    async with fast() as client:
        await client.add_watcher("d", "g", rec)
        await eventually(lambda: rec.contents == ["same"])
        await client.publish("d", "g", "same")  # same md5: the server does not even report it
        server.set_config("d", "g", "other")
        await eventually(lambda: rec.contents == ["same", "other"])
        server.set_config("d", "g", "same")
        await eventually(lambda: rec.contents == ["same", "other", "same"])
        await asyncio.sleep(0.1)
        assert len(rec.calls) == 3


async def test_sync_and_async_callbacks(server: LocalACMServer, fast: MakeClient) -> None:
    server.set_config("d", "g", "v")
    loop_thread = threading.get_ident()
    threads: dict[str, int] = {}
    done = asyncio.Event()

    def sync_cb(event: dict[str, Any]) -> None:
        threads["sync"] = threading.get_ident()

    async def async_cb(event: dict[str, Any]) -> None:
        threads["async"] = threading.get_ident()
        done.set()

    async with fast() as client:
        await client.add_watchers("d", "g", [sync_cb, async_cb])
        await asyncio.wait_for(done.wait(), 5)
        await eventually(lambda: "sync" in threads)
    assert threads["async"] == loop_thread
    assert threads["sync"] != loop_thread  # plain functions never run on the loop


async def test_changes_of_one_key_arrive_in_order(server: LocalACMServer, fast: MakeClient) -> None:
    seen: list[str] = []

    async def slow(event: dict[str, Any]) -> None:
        await asyncio.sleep(0.02)
        seen.append(event["content"])

    server.set_config("d", "g", "0")
    async with fast() as client:
        await client.add_watcher("d", "g", slow)
        await eventually(lambda: seen == ["0"])
        for i in range(1, 30):
            server.set_config("d", "g", str(i))
            await asyncio.sleep(0.003)
        await eventually(lambda: seen[-1:] == ["29"])
    numbers = [int(x) for x in seen]
    assert numbers == sorted(numbers)
    assert len(numbers) == len(set(numbers))


async def test_a_slow_callback_does_not_delay_other_keys(
    server: LocalACMServer, fast: MakeClient
) -> None:
    server.set_config("a", "g", "a1")
    server.set_config("b", "g", "b1")
    release = threading.Event()
    slow_started = threading.Event()
    fast_rec = Recorder()

    def slow(event: dict[str, Any]) -> None:
        slow_started.set()
        release.wait(10)

    async with fast() as client:
        await client.add_watcher("a", "g", slow)
        await eventually(slow_started.is_set)
        await client.add_watcher("b", "g", fast_rec)
        await eventually(lambda: fast_rec.contents == ["b1"])
        server.set_config("b", "g", "b2")
        await eventually(lambda: fast_rec.contents == ["b1", "b2"])
        assert not release.is_set()  # the slow one is still running meanwhile
        release.set()


async def test_callbacks_run_concurrently_bounded(server: LocalACMServer, fast: MakeClient) -> None:
    running = 0
    peak = 0

    async def cb(event: dict[str, Any]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.1)
        running -= 1

    for i in range(8):
        server.set_config(f"k{i}", "g", "v")
    async with fast(callback_thread_num=3) as client:
        for i in range(8):
            await client.add_watcher(f"k{i}", "g", cb)
        await eventually(lambda: peak == 3 and running == 0)
    assert peak == 3


async def test_a_raising_callback_is_logged_and_isolated(
    server: LocalACMServer, fast: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    server.set_config("d", "g", "v1")
    calls = 0

    def broken(event: dict[str, Any]) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("callback bug")

    rec = Recorder()
    async with fast() as client:
        with caplog.at_level(logging.ERROR, logger="aioacm"):
            await client.add_watchers("d", "g", [broken, rec])
            await eventually(lambda: rec.contents == ["v1"] and calls == 1)
            server.set_config("d", "g", "v2")
            await eventually(lambda: rec.contents == ["v1", "v2"] and calls == 2)
    failures = [r for r in caplog.records if "callback" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].exc_info is not None
    assert "v1" not in failures[0].getMessage()  # no config content in the log line


async def test_a_callback_may_add_and_remove_watchers(
    server: LocalACMServer, fast: MakeClient
) -> None:
    server.set_config("first", "g", "1")
    server.set_config("second", "g", "2")
    rec = Recorder()
    client = fast()

    async def chain(event: dict[str, Any]) -> None:
        await client.add_watcher("second", "g", rec)
        await client.remove_watcher("first", "g", chain)

    async with client:
        await client.add_watcher("first", "g", chain)
        await eventually(lambda: rec.contents == ["2"])
        await eventually(lambda: client.stats().watched_keys == 1)
        server.set_config("first", "g", "changed")
        server.set_config("second", "g", "changed")
        await eventually(lambda: rec.contents == ["2", "changed"])


async def test_remove_watcher_once_and_all(server: LocalACMServer, fast: MakeClient) -> None:
    server.set_config("d", "g", "v1")
    rec = Recorder()
    async with fast() as client:
        await client.add_watchers("d", "g", [rec, rec, rec])
        await eventually(lambda: rec.contents == ["v1"] * 3)
        await client.remove_watcher("d", "g", rec)
        server.set_config("d", "g", "v2")
        await eventually(lambda: rec.contents.count("v2") == 2)
        await client.remove_watcher("d", "g", rec, remove_all=True)
        stats = client.stats()
        assert (stats.watched_keys, stats.watchers, stats.pollers) == (0, 0, 0)
        assert not any(n.startswith("aioacm.poll") for n in aioacm_tasks())
        server.set_config("d", "g", "v3")
        await asyncio.sleep(0.2)
        assert "v3" not in rec.contents
        await client.remove_watcher("d", "g", rec)  # nothing left: harmless


async def test_bad_watcher_arguments(server: LocalACMServer, fast: MakeClient) -> None:
    async with fast() as client:
        with pytest.raises(InvalidParameterError):
            await client.add_watcher("d", "g", "not callable")  # type: ignore[arg-type]
        with pytest.raises(InvalidParameterError):
            await client.add_watchers("d", "g", [])
        with pytest.raises(InvalidParameterError):
            await client.add_watcher("bad id", "g", print)
        with pytest.raises(InvalidParameterError):
            client.watch("d", "bad/group")
    assert server.request_count() == 0


async def test_new_key_joins_a_held_poll_at_once(
    server: LocalACMServer, make_client: MakeClient
) -> None:
    server.set_config("a", "g", "a")
    server.set_config("b", "g", "b")
    rec = Recorder()
    async with make_client(server.endpoint, pulling_timeout=30) as client:
        await client.add_watcher("a", "g", rec)
        await eventually(lambda: rec.contents == ["a"])
        await server.wait_for_held_polls(1)
        started = time.monotonic()
        await client.add_watcher("b", "g", rec)
        await eventually(lambda: rec.contents == ["a", "b"], timeout=5)
        assert time.monotonic() - started < 5  # not the 30 s hold
        assert client.stats().pollers == 1


async def test_a_thousand_keys_over_pollers(server: LocalACMServer, fast: MakeClient) -> None:
    for i in range(1000):
        server.set_config(f"key.{i}", "g", f"v{i}")
    rec = Recorder()
    async with fast(pulling_config_size=300) as client:
        for i in range(1000):
            await client.add_watcher(f"key.{i}", "g", rec)
        await eventually(lambda: len(rec.calls) == 1000, timeout=30)
        assert client.stats().pollers == 4
        assert sorted(
            n for n in aioacm_tasks() if n.startswith("aioacm.poll[") and "]." not in n
        ) == [f"aioacm.poll[{i}]" for i in range(4)]
        await server.wait_for_held_polls(4)
        for i in range(0, 1000, 20):
            server.set_config(f"key.{i}", "g", f"changed {i}")
        await eventually(lambda: len(rec.calls) == 1050, timeout=15)
        changed = sorted(c["data_id"] for c in rec.calls if c["content"].startswith("changed"))
        assert changed == sorted(f"key.{i}" for i in range(0, 1000, 20))


async def test_fetched_changes_refresh_the_snapshot(
    server: LocalACMServer, fast: MakeClient, tmp_path: Path
) -> None:
    server.set_config("d", "g", "v1")
    rec = Recorder()
    async with fast() as client:
        await client.add_watcher("d", "g", rec)
        await eventually(lambda: rec.contents == ["v1"])
        server.set_config("d", "g", "v2")
        await eventually(lambda: rec.contents == ["v1", "v2"])
        assert (tmp_path / "snapshot" / "d+g+").read_text() == "v2"


async def test_failover_file_does_not_make_the_poller_spin(
    server: LocalACMServer, fast: MakeClient, tmp_path: Path
) -> None:
    server.set_config("d", "g", "server")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "d+g+").write_text("pinned")
    rec = Recorder()
    async with fast(pulling_timeout=1) as client:
        await client.add_watcher("d", "g", rec)
        await eventually(lambda: rec.contents == ["pinned"])  # failover wins, as for get()
        server.clear_requests()
        await asyncio.sleep(1.5)
        # held polls of 0.5 s (one may start right after the clear and one right at the
        # end of a busy machine's 1.5 s: 4), not a spin, and no re-fetch of the key
        assert server.request_count("poll") <= 4
        assert server.request_count("get") == 0
    assert rec.contents == ["pinned"]


# -- outages ---------------------------------------------------------------------------------


async def test_outage_backs_off_and_delivers_the_change_once(
    server: LocalACMServer, fast: MakeClient
) -> None:
    server.set_config("d", "g", "before")
    rec = Recorder()
    async with fast() as client:
        await client.add_watcher("d", "g", rec)
        await eventually(lambda: rec.contents == ["before"])
        await server.wait_for_held_polls(1)
        outage = server.add_fault(None, status=503)
        server.set_config("d", "g", "during")  # wakes the held poll; what follows fails
        server.clear_requests()
        await asyncio.sleep(2.0)
        polls_during_outage = server.request_count("poll")
        server.remove_fault(outage)
        await eventually(lambda: rec.contents == ["before", "during"], timeout=15)
        await asyncio.sleep(0.2)
        assert rec.contents == ["before", "during"]
    # backoff, not a busy loop: 2 s of outage cost a handful of requests
    assert 1 <= polls_during_outage <= 12


async def test_server_restart_mid_poll(server: LocalACMServer, fast: MakeClient) -> None:
    server.set_config("d", "g", "v1")
    rec = Recorder()
    async with fast() as client:
        await client.add_watcher("d", "g", rec)
        await eventually(lambda: rec.contents == ["v1"])
        await server.wait_for_held_polls(1)
        await server.stop()
        server.set_config("d", "g", "v2")
        await asyncio.sleep(0.5)
        await server.start()
        await eventually(lambda: rec.contents == ["v1", "v2"], timeout=15)
        server.set_config("d", "g", "v3")
        await eventually(lambda: rec.contents == ["v1", "v2", "v3"])


# -- watch() ---------------------------------------------------------------------------------


async def test_watch_iterator(server: LocalACMServer, fast: MakeClient) -> None:
    server.set_config("d", "g", "v1")
    async with fast() as client:
        changes: list[ConfigChange] = []
        async for change in client.watch("d", "g"):
            changes.append(change)
            if change.content == "v1":
                server.set_config("d", "g", "v2")
            elif change.content == "v2":
                server.delete_config("d", "g")
            else:
                break
        assert [c.content for c in changes] == ["v1", "v2", None]
        assert changes[-1].deleted
        assert changes[0].md5 == content_md5("v1")
        assert (changes[0].data_id, changes[0].group, changes[0].namespace) == ("d", "g", "")
        with pytest.raises(AttributeError):
            changes[0].content = "x"  # type: ignore[misc]
        assert "v1" not in repr(changes[0])


async def test_watch_break_ends_the_subscription(server: LocalACMServer, fast: MakeClient) -> None:
    server.set_config("d", "g", "v1")
    async with fast() as client:
        async with contextlib.aclosing(client.watch("d", "g")) as stream:
            async for _ in stream:
                break
        assert client.stats().watched_keys == 0
        assert not any(n.startswith("aioacm.poll") for n in aioacm_tasks())


async def test_watch_cancellation_ends_the_subscription(
    server: LocalACMServer, fast: MakeClient
) -> None:
    server.set_config("d", "g", "v1")
    got_first = asyncio.Event()

    async def consume(client: ACMClient) -> None:
        async for _ in client.watch("d", "g"):
            got_first.set()

    async with fast() as client:
        task = asyncio.create_task(consume(client))
        await asyncio.wait_for(got_first.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert client.stats().watched_keys == 0


async def test_aclose_ends_watch_loops_and_leaves_nothing(
    server: LocalACMServer, fast: MakeClient
) -> None:
    server.set_config("d", "g", "v1")
    client = fast()
    got: list[str | None] = []

    async def consume() -> None:
        async for change in client.watch("d", "g"):
            got.append(change.content)

    await client.add_watcher("d", "g", Recorder())
    task = asyncio.create_task(consume())
    await eventually(lambda: got == ["v1"])
    await client.aclose()
    await asyncio.wait_for(task, 5)  # the loop ended by itself
    assert aioacm_tasks() == []
    with pytest.raises(ClientClosedError):
        client.watch("d", "g")
    with pytest.raises(ClientClosedError):
        await client.add_watcher("d", "g", print)


async def test_first_poll_of_many_keys_fetches_without_a_task_per_key(
    server: LocalACMServer, fast: MakeClient
) -> None:
    # The first poll reports every key at once; a task per key (each waiting for a fetch
    # slot) cost megabytes at 10,000 keys.
    for i in range(600):
        server.set_config(f"key.{i}", "g", f"v{i}")
    rec = Recorder()
    peak = 0
    async with fast() as client:
        await asyncio.gather(*(client.add_watcher(f"key.{i}", "g", rec) for i in range(600)))
        deadline = time.monotonic() + 15
        while len(rec.calls) < 600 and time.monotonic() < deadline:
            peak = max(peak, len(asyncio.all_tasks()))  # the server's tasks included
            await asyncio.sleep(0.001)
    assert len(rec.calls) == 600
    assert peak < 200


async def test_adding_keys_during_a_first_poll_keeps_its_connection(
    server: LocalACMServer, tmp_path: Path
) -> None:
    # Cutting a no-hang-up poll short closed its connection for nothing (it answers at once):
    # adding keys one by one opened a connection every few milliseconds.
    for i in range(2000):
        server.set_config(f"key.{i}", "g", f"v{i}")
    connections = 0

    async def opened(*_: object) -> None:
        nonlocal connections
        connections += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(opened)
    rec = Recorder()
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = ACMClient(
            server.endpoint,
            session=session,
            pulling_timeout=2,
            snapshot_base=str(tmp_path / "snapshot"),
            failover_base=str(tmp_path / "data"),
        )
        async with client:
            for i in range(2000):
                await client.add_watcher(f"key.{i}", "g", rec)
                if i % 50 == 0:
                    await asyncio.sleep(0.01)  # past the re-probe coalescing window
            await eventually(lambda: len(rec.calls) == 2000, timeout=15)
    # the address server, the fetches (at most FETCH_CONCURRENCY at once), one poll
    assert connections <= 40


def test_backoff_grows_is_capped_and_jittered() -> None:
    for failures in (1, 2, 3, 5, 40):
        top = min(BACKOFF_CAP, BACKOFF_BASE * 2**failures)
        delays = [backoff_delay(failures) for _ in range(200)]
        assert all(0 <= d <= top for d in delays)
        assert max(delays) > top / 2  # uses the range it grew to...
        assert len(set(delays)) > 100  # ...and spreads the pollers over it
    assert max(backoff_delay(40) for _ in range(200)) <= BACKOFF_CAP
