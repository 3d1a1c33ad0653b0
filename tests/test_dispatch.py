"""The dispatcher on its own: a few workers shared by every watcher, each watcher in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from helpers import aioacm_tasks

from aioacm.dialects.acm import content_md5
from aioacm.dispatch import CallbackWatcher, ConfigChange, Dispatcher


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.001)


def change(data_id: str, content: str) -> ConfigChange:
    return ConfigChange(data_id, "g", "", content, content, content_md5(content))


async def test_each_watcher_gets_its_changes_in_order_with_few_workers() -> None:
    dispatcher = Dispatcher(3)
    seen: dict[str, list[str]] = {}
    running = peak = 0

    async def record(event: dict[str, Any]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        seen.setdefault(event["data_id"], []).append(event["content"])
        running -= 1

    watchers = [CallbackWatcher(record, dispatcher, f"w{i}") for i in range(100)]
    for step in range(5):
        for i, watcher in enumerate(watchers):
            assert watcher.offer(change(f"w{i}", f"v{step}"))
    # a worker per free slot, not a task per watcher
    assert len([n for n in aioacm_tasks() if n.startswith("aioacm.dispatch")]) == 3
    await eventually(lambda: sum(len(v) for v in seen.values()) == 500)
    assert all(seen[f"w{i}"] == [f"v{s}" for s in range(5)] for i in range(100))
    assert peak == 3
    await dispatcher.close()
    assert aioacm_tasks() == []


async def test_sync_callbacks_run_in_threads_and_a_stopped_watcher_gets_nothing_more() -> None:
    dispatcher = Dispatcher(2)
    calls: list[str] = []
    watcher = CallbackWatcher(lambda e: calls.append(e["content"]), dispatcher, "w")
    watcher.offer(change("w", "a"))
    watcher.offer(change("w", "a"))  # same md5: dropped
    watcher.offer(change("w", "b"))
    await eventually(lambda: len(calls) == 2)
    watcher.stop()
    assert not watcher.offer(change("w", "c"))
    await asyncio.sleep(0.01)
    assert calls == ["a", "b"]
    await dispatcher.close()
