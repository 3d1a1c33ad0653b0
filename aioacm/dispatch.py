"""Delivering changes to watchers: callbacks through per-watcher queues, and ``watch()`` streams.

Each watcher has its own queue, so one watcher's changes arrive in order while different keys
and different callbacks run concurrently, at most ``callback_thread_num`` at a time (that many
worker tasks at most, shared by every watcher: thousands of watchers cost no task each). Sync
callbacks run in the client's thread pool, so they never block the event loop. A watcher that
raises is logged and affects nobody else. No user code ever runs under an aioacm lock or inside
a poller, so a callback may add or remove watchers freely.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Callable
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
        md5: the md5 the server keeps for ``raw_content`` ("" when deleted).
        config_type: the config type the server keeps (Nacos: ``yaml``, ``json``...), None
            where it keeps none (ACM) or did not say.
    """

    data_id: str
    group: str
    namespace: str
    content: str | None
    raw_content: str | None
    md5: str
    config_type: str | None = None

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

    __slots__ = ("active", "last_md5")

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
    """A callback, plain or ``async def``, with its own queue of changes.

    While it has changes pending it sits in its dispatcher's ready queue (once, however many
    changes it holds); a dispatcher worker runs its oldest change and puts it back at the end
    of the ready queue if more are pending. So its changes run in order, one at a time, and
    other watchers get their turn in between.
    """

    __slots__ = ("_dispatcher", "_name", "_pending", "_scheduled", "callback")

    def __init__(self, callback: Callback, dispatcher: Dispatcher, name: str) -> None:
        super().__init__()
        self.callback = callback
        self._dispatcher = dispatcher
        self._name = name
        # None while idle: thousands of idle watchers should cost no empty queue each
        self._pending: list[ConfigChange] | None = None
        self._scheduled = False

    def _deliver(self, change: ConfigChange) -> None:
        if self._pending is None:
            self._pending = [change]
        else:
            self._pending.append(change)
        if not self._scheduled:
            self._scheduled = True
            self._dispatcher.schedule(self)

    async def run_next(self) -> None:
        """Run the oldest pending change (called by a dispatcher worker)."""
        try:
            if self.active and self._pending:
                await self._dispatcher.call(self.callback, self._pending.pop(0))
        finally:
            if self.active and self._pending:
                self._dispatcher.schedule(self)
            else:
                self._pending = None
                self._scheduled = False

    def stop(self) -> None:
        super().stop()
        self._pending = None


class StreamWatcher(Watcher):
    """The queue behind one ``client.watch()`` iterator. ``None`` in the queue ends it."""

    __slots__ = ("queue",)

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[ConfigChange | None] = asyncio.Queue()

    def _deliver(self, change: ConfigChange) -> None:
        self.queue.put_nowait(change)

    def stop(self) -> None:
        super().stop()
        self.queue.put_nowait(None)


class Dispatcher:
    """Runs callbacks for one client: at most ``concurrency`` worker tasks (started as needed)
    take watchers with pending changes from one ready queue; sync callbacks run in a thread
    pool of the same size."""

    def __init__(self, concurrency: int) -> None:
        self._concurrency = concurrency
        self._ready: collections.deque[CallbackWatcher] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._idle = 0
        self._executor: ThreadPoolExecutor | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def schedule(self, watcher: CallbackWatcher) -> None:
        """Put a watcher with pending changes in the ready queue; start a worker if none is
        free and fewer than ``concurrency`` run."""
        if self._closed:
            return
        self._ready.append(watcher)
        if self._wakeup is None:
            self._wakeup = asyncio.Event()
        self._wakeup.set()
        if self._idle < len(self._ready) and len(self._tasks) < self._concurrency:
            index = len(self._tasks)
            task = asyncio.get_running_loop().create_task(
                self._work(), name=f"aioacm.dispatch[{index}]"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _work(self) -> None:
        assert self._wakeup is not None
        while True:
            while not self._ready:
                self._idle += 1
                try:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                finally:
                    self._idle -= 1
            watcher = self._ready.popleft()
            try:
                await watcher.run_next()
            except asyncio.CancelledError:
                raise
            except Exception:  # never lose a worker: the next watcher gets its turn
                logger.exception("dispatching to %r failed", watcher.callback)

    async def call(self, callback: Callback, change: ConfigChange) -> None:
        """Run one callback with the sync SDK's mapping; log (never raise) what it raises."""
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
        self._closed = True
        self._ready.clear()
        while self._tasks:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*(cancel_and_wait(t) for t in list(self._tasks)))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _name(callback: Callback) -> str:
    return getattr(callback, "__qualname__", None) or repr(callback)
