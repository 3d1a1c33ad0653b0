"""Delivering changes to watchers: callbacks through per-watcher queues, and ``watch()`` streams.

Each watcher has its own queue, so one watcher's changes arrive in order while different keys
and different callbacks run concurrently, at most ``callback_thread_num`` at a time. Sync
callbacks run in the client's thread pool, so they never block the event loop. A watcher that
raises is logged and affects nobody else. No user code ever runs under an aioacm lock or inside
a poller, so a callback may add or remove watchers freely.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ._tasks import cancel_and_wait

__all__ = ["CallbackWatcher", "ConfigChange", "Dispatcher", "StreamWatcher", "Watcher"]

logger = logging.getLogger(__name__)

Callback = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """One change of one config item, as delivered to watchers.

    Attributes:
        data_id: the data id.
        group: the group.
        namespace: the namespace ("" for the default one).
        content: the content (decrypted for ``cipher-`` items), None when the item was deleted.
        raw_content: the content as stored on the server.
        md5: the md5 ACM keeps for ``raw_content`` ("" when deleted).
    """

    data_id: str
    group: str
    namespace: str
    content: str | None
    raw_content: str | None
    md5: str

    @property
    def deleted(self) -> bool:
        """Whether the item was deleted."""
        return self.raw_content is None

    def as_dict(self) -> dict[str, Any]:
        """The mapping the sync SDK passes to callbacks."""
        return {
            "data_id": self.data_id,
            "group": self.group,
            "namespace": self.namespace,
            "raw_content": self.raw_content,
            "content": self.content,
        }

    def __repr__(self) -> str:
        # content is configuration: keep it out of reprs that end up in logs
        state = "deleted" if self.deleted else f"md5={self.md5}"
        return f"ConfigChange({self.data_id!r}, {self.group!r}, {self.namespace!r}, {state})"


class Watcher:
    """One subscriber of one key. ``offer`` drops a change with the md5 it last received."""

    def __init__(self) -> None:
        # "" is "does not exist": a watcher added to a missing item is not called until it
        # appears, and is called on deletion after it existed.
        self.last_md5 = ""
        self.active = True

    def offer(self, change: ConfigChange) -> bool:
        """Queue ``change`` unless this watcher already has that md5; True if queued."""
        if not self.active or change.md5 == self.last_md5:
            return False
        self.last_md5 = change.md5
        self._deliver(change)
        return True

    def _deliver(self, change: ConfigChange) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop delivering (pending changes are dropped)."""
        self.active = False


class CallbackWatcher(Watcher):
    """A callback, plain or ``async def``, fed from its own queue by a worker task."""

    def __init__(self, callback: Callback, dispatcher: Dispatcher, name: str) -> None:
        super().__init__()
        self.callback = callback
        self._dispatcher = dispatcher
        self._name = name
        self._pending: collections.deque[ConfigChange] = collections.deque()
        self._worker: asyncio.Task[None] | None = None

    def _deliver(self, change: ConfigChange) -> None:
        self._pending.append(change)
        if self._worker is None:
            self._worker = self._dispatcher.spawn(self._drain(), f"aioacm.dispatch[{self._name}]")

    async def _drain(self) -> None:
        try:
            while self._pending and self.active:
                await self._dispatcher.call(self.callback, self._pending.popleft())
        finally:
            self._worker = None

    def stop(self) -> None:
        super().stop()
        self._pending.clear()


class StreamWatcher(Watcher):
    """The queue behind one ``client.watch()`` iterator. ``None`` in the queue ends it."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[ConfigChange | None] = asyncio.Queue()

    def _deliver(self, change: ConfigChange) -> None:
        self.queue.put_nowait(change)

    def stop(self) -> None:
        super().stop()
        self.queue.put_nowait(None)


class Dispatcher:
    """Runs callbacks for one client: a concurrency bound, a thread pool, and the worker tasks."""

    def __init__(self, concurrency: int) -> None:
        self._limit = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Start a task this dispatcher owns (cancelled and awaited by ``close``)."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def call(self, callback: Callback, change: ConfigChange) -> None:
        """Run one callback with the sync SDK's mapping; log (never raise) what it raises."""
        async with self._limit:
            try:
                if inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
                    getattr(callback, "__call__", None)  # noqa: B004
                ):
                    await callback(change.as_dict())
                else:
                    if self._executor is None:
                        self._executor = ThreadPoolExecutor(
                            self._concurrency, thread_name_prefix="aioacm-callback"
                        )
                    loop = asyncio.get_running_loop()
                    result = await loop.run_in_executor(self._executor, callback, change.as_dict())
                    if inspect.isawaitable(result):  # a sync function that returned a coroutine
                        await result
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "watcher callback %s failed for %s+%s",
                    _name(callback),
                    change.data_id,
                    change.group,
                )

    async def close(self) -> None:
        """Cancel and await every worker; shut the thread pool down without waiting."""
        while self._tasks:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*(cancel_and_wait(t) for t in list(self._tasks)))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _name(callback: Callback) -> str:
    return getattr(callback, "__qualname__", None) or repr(callback)
