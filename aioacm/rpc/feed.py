"""The change feed of a client that speaks Nacos's gRPC: listens, pushes, and re-listening.

- Adding a key queues it for a batch listen (``ConfigBatchListenRequest``, at most
  ``LISTEN_CHUNK`` keys each) carrying the md5 the client holds. The server answers with the
  keys whose md5 differs: those are refreshed (fetched, delivered); the others, not yet known,
  are confirmed (the value held is the current one).
- Later changes arrive as server pushes (``ConfigChangeNotifyRequest``, acknowledged by the
  connection): the key is refreshed.
- Every new connection (the first, and every reconnect after a stream died, a server reset or
  a failed health check) queues every watched key for a listen again, with the md5s held. The
  server registers the listens on the new connection and names the keys that changed while
  the client was away: each change is delivered once (the watch manager never delivers an md5
  twice). Every ``RESYNC_INTERVAL`` the same full listen runs anyway, in case a push was lost.
- A refresh that fails puts its keys back in the listen queue after a backoff: the server says
  again whether they differ.

Two tasks, ``aioacm.grpc.listen`` and ``aioacm.grpc.refresh``, made on the first key and
cancelled and awaited by ``close()``. When the client's transport decided on HTTP (``auto``
against a server without gRPC), the feed hands its keys to a ``LongPollFeed`` instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from .._tasks import cancel_and_wait
from ..dialects.nacos_grpc import LISTEN_CHUNK, NacosGrpcDialect
from ..errors import ACMException
from ..keys import cache_key
from ..watch import ChangeFeed, ChangeSink, KeyState, backoff_delay
from ..wire import Send
from .codec import Message
from .connection import RpcConnection

if TYPE_CHECKING:
    from ..options import Options

__all__ = ["RESYNC_INTERVAL", "PushFeed"]

logger = logging.getLogger(__name__)

#: seconds between two full listens of every key on a healthy connection
RESYNC_INTERVAL = 300.0
#: seconds a burst of added keys is given to gather into one listen
GATHER = 0.005

Key = str  # the cache key (``KeyState.key``): no second key object per watched key


class Mode(Protocol):
    """The transport's choice of protocol (``"grpc"`` or ``"http"``) and its connection."""

    connection: RpcConnection

    async def mode(self) -> str: ...


class PushFeed:
    """Watched keys of one client over gRPC (a ``ChangeFeed``; see the module docstring).

    Args:
        sink: where changes go (the watch manager).
        send: the transport's ``send``.
        dialect: the client's gRPC dialect.
        options: the client's live options.
        rpc: the client's gRPC transport: its protocol choice and its connection.
    """

    def __init__(
        self,
        sink: ChangeSink,
        send: Send,
        dialect: NacosGrpcDialect,
        options: Options,
        rpc: Mode,
    ) -> None:
        self.sink = sink
        self.rpc = rpc
        self.send = send
        self.dialect = dialect
        self.options = options
        self._states: dict[Key, KeyState] = {}
        self._to_listen: dict[Key, KeyState] = {}
        self._to_unlisten: dict[Key, KeyState] = {}
        self._dirty: set[Key] = set()
        self._listen_wake = asyncio.Event()
        self._refresh_wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._fallback: ChangeFeed | None = None
        self._closed = False
        self._listened = False  # a listen succeeded (on some connection)

    @staticmethod
    def _key(state: KeyState) -> Key:
        return state.key

    @property
    def pollers(self) -> int:
        """1 while a stream carries the keys (long pollers when HTTP was chosen)."""
        if self._fallback is not None:
            return self._fallback.pollers
        return 1 if self._states and self.rpc.connection.connected else 0

    def add(self, state: KeyState) -> None:
        """Watch one more key (listened to with the md5 it holds)."""
        if self._fallback is not None:
            self._fallback.add(state)
            return
        key = self._key(state)
        self._states[key] = state
        self._to_unlisten.pop(key, None)
        self._to_listen[key] = state
        self._listen_wake.set()
        self._start()

    async def discard(self, state: KeyState) -> None:
        """Stop watching a key (the server is told, best effort)."""
        if self._fallback is not None:
            await self._fallback.discard(state)
            return
        key = self._key(state)
        if self._states.get(key) is not state:
            return
        del self._states[key]
        self._to_listen.pop(key, None)
        self._dirty.discard(key)
        self._to_unlisten[key] = state
        self._listen_wake.set()

    async def close(self) -> None:
        """Cancel and await both tasks (and the long pollers, if HTTP was chosen)."""
        self._closed = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            await cancel_and_wait(task)
        if self._fallback is not None:
            await self._fallback.close()

    def _start(self) -> None:
        if self._tasks or self._closed:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(_supervised(self._listen_loop), name="aioacm.grpc.listen"),
            loop.create_task(_supervised(self._refresh_loop), name="aioacm.grpc.refresh"),
        ]

    # -- news from the connection ----------------------------------------------------------

    def _connected(self, generation: int) -> None:
        """A new connection: every key is listened to again (it knows none of them)."""
        if not self._listened:
            return  # nothing was listened to on an older connection: the queue goes on this one
        logger.info("re-listening %d keys on the new gRPC connection", len(self._states))
        self._to_listen.update(self._states)
        self._to_unlisten.clear()
        self._listen_wake.set()

    def _resync(self) -> None:
        """Every key listened to again (a push may have been lost)."""
        self._to_listen.update(self._states)
        self._listen_wake.set()

    def _pushed(self, message: Message) -> None:
        named = self.dialect.read_push(message.body)
        if named is None:
            return
        key = cache_key(*named, self.dialect.namespace)
        if key in self._states:
            self._dirty.add(key)
            self._refresh_wake.set()

    # -- the listen task -------------------------------------------------------------------

    async def _listen_loop(self) -> None:
        rpc = self.rpc
        failures = 0
        while True:
            try:
                mode = await rpc.mode()
                break
            except ACMException as exc:  # no server list yet (an address server down)
                failures += 1
                logger.warning("watching waits for a Nacos server: %s", exc)
                await asyncio.sleep(backoff_delay(failures))
        if mode == "http":
            await self._fall_back()
            return
        connection = rpc.connection
        connection.on_push = self._pushed
        connection.on_connect(self._connected)
        failures = 0
        while True:
            if not self._to_listen and not self._to_unlisten:
                # a timer, not wait_for: 3.11's wait_for can swallow the cancellation that
                # close() sends when a wake-up lands in the same step
                timer = asyncio.get_running_loop().call_later(RESYNC_INTERVAL, self._resync)
                try:
                    await self._listen_wake.wait()
                finally:
                    timer.cancel()
                self._listen_wake.clear()
                await asyncio.sleep(GATHER)
            if await self._listen_once():
                failures = 0
            else:
                failures += 1
                await asyncio.sleep(backoff_delay(failures))

    async def _fall_back(self) -> None:
        from ..polling import LongPollFeed

        feed = LongPollFeed(self.sink, self.send, self.dialect, self.options)
        self._fallback = feed
        for state in self._states.values():
            feed.add(state)
        self._states.clear()
        self._to_listen.clear()
        self._to_unlisten.clear()

    async def _listen_once(self) -> bool:
        """One batch listen (or unlisten); False when it failed (its keys stay queued)."""
        dialect, timeout = self.dialect, self.options.default_timeout
        if self._to_unlisten:
            gone = _take(self._to_unlisten)
            try:
                request = dialect.listen([(s.item, "") for s in gone], listen=False)
                await self.send(request, timeout=timeout)
            except ACMException as exc:  # the server drops them with the connection anyway
                logger.debug("unlisten of %d keys failed: %s", len(gone), exc)
            return True
        chunk = _take(self._to_listen)
        if not self._to_listen:
            self._to_listen = {}  # a drained dict keeps its table: 10,000 keys' worth
        if not chunk:
            return True
        request = dialect.listen([(state.item, state.md5) for state in chunk])
        try:
            response = await self.send(request, timeout=timeout)
        except ACMException as exc:
            logger.warning("listening to %d keys failed: %s", len(chunk), exc)
            for state in chunk:
                key = self._key(state)
                if self._states.get(key) is state:
                    self._to_listen.setdefault(key, state)
            return False
        self._listened = True
        namespace = dialect.namespace
        changed = {cache_key(d, g, namespace) for d, g in dialect.read_listen_answer(response)}
        confirm = []
        for state in chunk:
            key = self._key(state)
            if self._states.get(key) is not state:
                continue
            if key in changed:
                self._dirty.add(key)
            elif not state.known:
                confirm.append(state)
        if self._dirty:
            self._refresh_wake.set()
        if confirm:
            for state in await self.sink.confirm(confirm):
                self._dirty.add(self._key(state))
            self._refresh_wake.set()
        return True

    # -- the refresh task ------------------------------------------------------------------

    async def _refresh_loop(self) -> None:
        failures = 0
        while True:
            await self._refresh_wake.wait()
            self._refresh_wake.clear()
            while self._dirty:
                keys, self._dirty = self._dirty, set()
                states = [self._states[k] for k in keys if k in self._states]
                if await self.sink.refresh(states):
                    failures = 0
                    continue
                # Some are still stale: after a pause, ask the server again which differ
                failures += 1
                await asyncio.sleep(backoff_delay(failures))
                for state in states:
                    key = self._key(state)
                    if self._states.get(key) is state:
                        self._to_listen.setdefault(key, state)
                self._listen_wake.set()


async def _supervised(loop: Callable[[], Awaitable[None]]) -> None:
    """Run a feed loop; an unexpected crash is logged with its traceback and the loop starts
    again after a pause (a lost task would leave watchers silent)."""
    failures = 0
    while True:
        try:
            await loop()
            return
        except Exception:
            failures += 1
            logger.exception("gRPC change feed failed; restarting it")
            await asyncio.sleep(backoff_delay(failures))


def _take(queue: dict[Key, KeyState]) -> Sequence[KeyState]:
    """Up to ``LISTEN_CHUNK`` states out of ``queue``, oldest first."""
    taken = []
    for key in list(queue)[:LISTEN_CHUNK]:
        taken.append(queue.pop(key))
    return taken
