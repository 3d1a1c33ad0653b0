"""Cancellation safety: a caller cancelled at any await point of ``get``, ``publish``,
``list_all``, ``add_watcher`` and ``aclose`` leaves the client usable (or cleanly closed), no
connection handing a later request another one's answer, and no task or file behind.

Technique: run the operation in a task and cancel it after N turns of the event loop, for
N = 0, 1, 2, ... until the operation finishes before the cancel lands. Between the turns the
bundled server (same loop) and aiofiles' threads make progress, so the cancel lands at each
await point in turn, including in the middle of a request and of a snapshot write.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import Recorder, aioacm_tasks, eventually

from aioacm import ACMClient
from aioacm.server import LocalACMServer

MakeClient = Callable[..., ACMClient]
MAX_TURNS = 400


async def cancel_after(turns: int, op: Callable[[], Awaitable[Any]]) -> bool:
    """Run ``op``; cancel it after ``turns`` loop turns. True if it finished first."""
    task = asyncio.ensure_future(op())
    for _ in range(turns):
        if task.done():
            break
        await asyncio.sleep(0)
    if task.done():
        task.result()  # it must have succeeded
        return True
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        return False
    return True  # it finished while the cancel was on its way


async def every_cancel_point(
    op: Callable[[], Awaitable[Any]], check: Callable[[bool], Awaitable[None]]
) -> int:
    """Cancel ``op`` at every turn until it completes; ``check(completed)`` after each try.
    Returns how many cancellation points there were."""
    for turns in range(MAX_TURNS):
        completed = await cancel_after(turns, op)
        await check(completed)
        if completed:
            return turns
    raise AssertionError(f"the operation did not complete within {MAX_TURNS} loop turns")


def store_files(root: Path) -> list[str]:
    return sorted(name for _folder, _dirs, names in os.walk(root) for name in names)


@pytest.fixture
async def seeded(server: LocalACMServer) -> LocalACMServer:
    for i in range(3):
        server.set_config(f"k{i}", "g", f"value of k{i}")
    server.set_config("other", "g", "the other value")
    return server


async def test_cancel_get_at_every_await_point(
    seeded: LocalACMServer, make_client: MakeClient, tmp_path: Path
) -> None:
    async with make_client(seeded.endpoint) as client:
        values = iter(range(10**6))

        async def op() -> None:
            # a new value each time, so each try writes its snapshot (the longest path)
            seeded.set_config("k0", "g", f"value {next(values)}")
            assert (await client.get("k0", "g")).startswith("value ")

        async def check(completed: bool) -> None:
            # the next requests get their own answers, not a cancelled one's
            assert await client.get("other", "g") == "the other value"
            assert await client.get("k0", "g") == seeded.get_config("k0", "g")
            assert aioacm_tasks() == ["aioacm.servers.refresh"]
            gc.collect()  # an abandoned open file would warn (an error here) when collected
            # no temporary file is left behind (a cancelled write's job may still be
            # finishing in its thread), and the snapshot of k0 is whole and current
            folder = tmp_path / "snapshot"
            await eventually(lambda: store_files(folder) == ["k0+g+", "other+g+"])
            snapshot = (folder / "k0+g+").read_text(encoding="utf-8")
            assert snapshot == seeded.get_config("k0", "g")

        # what earlier tests left on the heap is not this test's: freeze it, so each
        # gc.collect() above walks only what this test made (an abandoned file among it)
        gc.freeze()
        try:
            points = await every_cancel_point(op, check)
        finally:
            gc.unfreeze()
    assert points > 5


async def test_cancel_get_served_from_the_snapshot(
    seeded: LocalACMServer, make_client: MakeClient
) -> None:
    async with make_client(seeded.endpoint) as client:
        assert await client.get("k1", "g") == "value of k1"
        seeded.add_fault("get", status=503)

        async def op() -> None:
            assert await client.get("k1", "g") == "value of k1"

        async def check(completed: bool) -> None:
            assert await client.get("k1", "g") == "value of k1"
            assert aioacm_tasks() == ["aioacm.servers.refresh"]

        assert await every_cancel_point(op, check) > 3


async def test_cancel_publish_at_every_await_point(
    seeded: LocalACMServer, make_client: MakeClient
) -> None:
    async with make_client(seeded.endpoint) as client:
        counter = iter(range(10**6))
        last: list[str] = []

        async def op() -> None:
            last[:] = [f"published {next(counter)}"]
            assert await client.publish("k2", "g", last[0]) is True

        async def check(completed: bool) -> None:
            stored = seeded.get_config("k2", "g")
            if completed:
                assert stored == last[0]
            else:  # it either reached the server or did not: never anything else
                assert stored == "value of k2" or stored.startswith("published ")
            assert await client.get("other", "g") == "the other value"
            assert await client.publish("k1", "g", "after the cancel") is True
            assert await client.get("k1", "g") == "after the cancel"
            assert aioacm_tasks() == ["aioacm.servers.refresh"]

        assert await every_cancel_point(op, check) > 3


async def test_cancel_list_all_at_every_await_point(
    seeded: LocalACMServer, make_client: MakeClient
) -> None:
    for i in range(450):  # three pages
        seeded.set_config(f"item.{i:03d}", "g", "x")
    expected = [*sorted(f"item.{i:03d}" for i in range(450)), "k0", "k1", "k2", "other"]
    async with make_client(seeded.endpoint) as client:

        async def op() -> None:
            assert sorted(i["dataId"] for i in await client.list_all()) == expected

        async def check(completed: bool) -> None:
            assert await client.get("other", "g") == "the other value"
            assert aioacm_tasks() == ["aioacm.servers.refresh"]

        assert await every_cancel_point(op, check) > 5


async def test_cancel_add_watcher_at_every_await_point(
    seeded: LocalACMServer, make_client: MakeClient, tmp_path: Path
) -> None:
    (tmp_path / "snapshot").mkdir()
    (tmp_path / "snapshot" / "k0+g+").write_text("value of k0", encoding="utf-8")
    async with make_client(seeded.endpoint, pulling_timeout=2) as client:
        # k0 is watched already: a new watcher of it is offered the current value at once;
        # k1 is new each time: adding it starts polling it
        keeper = Recorder()
        await client.add_watcher("k0", "g", keeper)
        await eventually(lambda: keeper.contents == ["value of k0"])
        watchers: list[tuple[str, Recorder]] = []
        keys = iter(["k0", "k1"] * MAX_TURNS)

        async def op() -> None:
            rec = Recorder()
            key = next(keys)
            watchers.append((key, rec))
            await client.add_watcher(key, "g", rec)

        async def check(completed: bool) -> None:
            if not watchers:  # cancelled before it even started
                return
            key, rec = watchers.pop()
            # the keeper on k0 is the only other watcher
            registered = client.stats().watchers == 2
            if completed:
                assert registered
            if registered:
                # a registered watcher gets the current value, once
                await eventually(lambda: rec.contents == [f"value of {key}"])
                await client.remove_watcher(key, "g", rec)
            else:
                await asyncio.sleep(0.02)
                assert rec.contents == []
            # nothing half-registered lingers: k0 has its keeper, k1 nothing
            stats = client.stats()
            assert (stats.watched_keys, stats.watchers) == (1, 1)
            assert [
                n for n in aioacm_tasks() if n.startswith("aioacm.poll[") and "]." not in n
            ] == ["aioacm.poll[0]"]
            assert await client.get("other", "g") == "the other value"

        for _ in range(2):  # both keys, cancelled at every point (the store folders' cached
            # listings can leave no await point at all: then there is nothing to cancel)
            assert await every_cancel_point(op, check) >= 1
            watchers.clear()
        assert keeper.contents == ["value of k0"]


async def test_cancel_aclose_at_every_await_point(seeded: LocalACMServer, tmp_path: Path) -> None:
    for turns in range(MAX_TURNS):
        client = ACMClient(seeded.endpoint, snapshot_base=str(tmp_path / "s"), pulling_timeout=2)
        assert await client.get("k0", "g") == "value of k0"
        started = asyncio.Event()

        async def slow(event: dict[str, Any], started: asyncio.Event = started) -> None:
            started.set()
            await asyncio.sleep(30)  # still running when aclose starts

        await client.add_watcher("k1", "g", slow)
        await client.add_watcher("k2", "g", Recorder())  # and a thread pool to shut down
        await asyncio.wait_for(started.wait(), 5)
        session = client.session
        assert session is not None
        completed = await cancel_after(turns, client.aclose)
        assert client.closed or turns == 0  # closed, unless cancelled before it started
        await client.aclose()  # finishes what the cancelled call left, or does nothing
        assert session.closed
        assert aioacm_tasks() == []
        await eventually(
            lambda: not [t for t in threading.enumerate() if t.name.startswith("aioacm")]
        )
        if completed:
            break
    else:
        raise AssertionError("aclose did not complete")
    assert turns > 2
