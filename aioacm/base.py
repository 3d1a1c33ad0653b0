"""``ConfigClient``: what every aioacm client does, whatever its protocol.

The public coroutines, their argument checks and the lifecycle. Everything else is wired here
and lives in its own room: the dialect (``aioacm.dialects``) builds and reads requests, the
transport sends them, the lookup chain reads values, the watch manager and its feed watch keys,
the dispatcher runs callbacks. ``ACMClient`` is this class with ACM's dialect.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any, TypeVar

import aiohttp

from .auth import ClientCredentials, CredentialsProvider
from .dialects import Dialect
from .dispatch import CallbackWatcher, ConfigChange, Dispatcher, StreamWatcher, Watcher
from .errors import ClientClosedError, InvalidOptionError, InvalidParameterError
from .exact import ExactAccess
from .keys import Item, KeyMemo
from .kms import KMS, kms_available
from .listing import walk_pages
from .lookup import LocalStores, Lookup
from .options import Options
from .rooms import Rooms
from .stats import ClientStats
from .transport import ClientTransport, Transport
from .watch import WatchManager

__all__ = ["ConfigClient", "WatchCallback"]

logger = logging.getLogger(__name__)

#: A watcher callback: a plain function (run in a thread) or an ``async def``, given the sync
#: SDK's mapping (``data_id``, ``group``, ``namespace``, ``raw_content``, ``content``).
WatchCallback = Callable[[dict[str, Any]], Any]
# ``ConfigClient.list`` shadows the builtin inside the class body.
ItemList = list[dict[str, str]]
_C = TypeVar("_C", bound="ConfigClient")


class ConfigClient(ExactAccess):
    """The protocol-independent part of a client (see ``ACMClient``).

    A subclass checks its own arguments, then calls ``_setup`` with the dialect it speaks.
    """

    _debugging = False
    _dialect: Dialect
    _stores: LocalStores

    def _setup(
        self,
        namespace: str,
        credentials: CredentialsProvider | None,
        session: aiohttp.ClientSession | None,
        options: dict[str, Any],
        dialect: Callable[[Options, ClientCredentials], Dialect],
        *,
        role_allowed: bool,
    ) -> None:
        """Store the settings; no I/O, no task, no file (the client opens on first use).

        Args:
            role_allowed: whether ``ram_role_name`` may be set (not with ``credentials=``).
        """
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidParameterError("session must be an aiohttp.ClientSession")
        self._namespace = namespace
        self._given_session = session
        self._role_allowed = role_allowed
        self._options = Options()
        self._credentials = ClientCredentials(credentials, self._options)
        self._dialect = dialect(self._options, self._credentials)
        self._memo = KeyMemo(namespace, self._dialect.check_key, self._dialect.query)
        self._stores = LocalStores(self._options)
        self._rooms: Rooms | None = None
        self._kms: KMS | None = None
        self._closed = False
        self._closing: asyncio.Task[None] | None = None
        self.set_options(**options)

    # -- settings ---------------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        """The namespace id ("" for the default namespace)."""
        return self._namespace

    @property
    def options(self) -> Options:
        """The current options (change them with ``set_options``)."""
        return self._options

    @property
    def closed(self) -> bool:
        """Whether ``aclose()`` was called."""
        return self._closed

    @property
    def session(self) -> aiohttp.ClientSession | None:
        """The aiohttp session in use (the one given, or the one the client opened and
        closes); None until the client opens and after it closed."""
        return self._rooms.session if self._rooms is not None else None

    def set_options(self, **options: Any) -> None:
        """Change options (the sync SDK's names). All are checked before any is applied.

        Raises:
            InvalidOptionError: an unknown name or a bad value, ``kms_enabled=True`` without
                the ``aioacm[kms]`` extra, or ``ram_role_name`` on a client given
                ``credentials``; nothing is changed then.
        """
        checked = Options.validate(options)
        if checked.get("kms_enabled") and not kms_available():
            raise InvalidOptionError(
                "kms_enabled=True needs the KMS SDK: install the KMS extra:"
                " pip install 'aioacm[kms]'"
            )
        if checked.get("ram_role_name") and not self._role_allowed:
            raise InvalidOptionError("give either credentials or ram_role_name, not both")
        changed = self._options.apply(checked)
        self._stores.rebuild(
            snapshots="snapshot_base" in changed, failover="failover_base" in changed
        )
        if self._rooms is not None and {"tls_enabled", "cai_enabled"} & changed.keys():
            self._rooms.transport.servers.invalidate()
        for name in changed:
            logger.debug("option %s changed", name)

    @staticmethod
    def set_debugging() -> None:
        """Log aioacm at DEBUG on stderr (only the ``aioacm`` loggers; idempotent)."""
        root = logging.getLogger("aioacm")
        root.setLevel(logging.DEBUG)
        if not ConfigClient._debugging:
            handler = logging.StreamHandler()
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            root.addHandler(handler)
            ConfigClient._debugging = True

    def stats(self) -> ClientStats:
        """A read-out of the client now (no I/O)."""
        rooms = self._rooms
        watches = rooms.watches if rooms is not None else None
        return ClientStats(
            protocol=rooms.transport.protocol if rooms is not None else self._dialect.name,
            open=rooms is not None,
            server=rooms.transport.servers.current_name if rooms is not None else None,
            watched_keys=watches.keys if watches is not None else 0,
            watchers=watches.watchers if watches is not None else 0,
            pollers=watches.feed.pollers if watches is not None else 0,
            requests=rooms.transport.attempts if rooms is not None else 0,
            failover_reads=rooms.lookup.failover_hits if rooms is not None else 0,
            snapshot_fallbacks=rooms.lookup.snapshot_fallbacks if rooms is not None else 0,
            remembered_keys=len(self._memo),
            connections=rooms.transport.connections if rooms is not None else 0,
            connected=rooms.transport.connected if rooms is not None else False,
        )

    # -- lifecycle --------------------------------------------------------------------------

    def _transport(self, http: Transport) -> ClientTransport:
        """The transport of the client's protocol, given its HTTP transport (which it is,
        unless the protocol is not HTTP)."""
        return http

    def _open(self) -> Rooms:
        if self._closed:
            raise ClientClosedError("the client is closed")
        rooms = self._rooms
        if rooms is None:
            if self._given_session is not None:
                if self._given_session.closed:
                    raise ClientClosedError("the session given to the client is closed")
                session, owned = self._given_session, False
            else:
                # No connector limit: the transport bounds requests itself, fairly (an
                # aiohttp limit lets late requests overtake waiting ones).
                session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                owned = True
            self._credentials.bind(session)
            dialect, opts = self._dialect, self._options
            transport = self._transport(Transport(session, opts, dialect))
            lookup = Lookup(transport.send, dialect.query, dialect.read_query, self._stores, opts)
            rooms = self._rooms = Rooms(session, owned, transport, lookup)
            dialect.attach(transport.send)
        else:
            rooms.check_loop(type(self).__name__)  # WrongEventLoopError on any other loop
        return rooms

    def _kms_for(self, item: Item) -> KMS | None:
        """The KMS helper when ``item`` is stored encrypted and KMS is on, else None."""
        if not (item.cipher and self._options.kms_enabled):
            return None
        self._open()
        if self._kms is None:
            self._kms = KMS(self._options, self._credentials)
        return self._kms

    async def __aenter__(self: _C) -> _C:
        self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop every background task and close the session the client opened. Idempotent.

        Closing goes on when the caller is cancelled meanwhile; a later ``aclose()`` waits
        for it to end.

        Raises:
            WrongEventLoopError: open on another loop that still runs (close it there).
        """
        if self._closing is None:
            rooms = self._rooms
            if rooms is not None and rooms.loop is not asyncio.get_running_loop():
                rooms.let_go(type(self).__name__)  # WrongEventLoopError unless that loop is closed
                self._rooms = None  # what it held went with its loop: nothing to close here
            self._closed = True
            self._closing = asyncio.get_running_loop().create_task(
                self._shutdown(), name="aioacm.close"
            )
            # never "exception never retrieved" when the caller that started it was cancelled
            self._closing.add_done_callback(lambda t: t.cancelled() or t.exception())
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
        rooms, self._rooms = self._rooms, None
        if rooms is None:
            return
        try:
            if rooms.watches is not None:
                await rooms.watches.close()
        finally:
            try:
                await rooms.transport.close()
            finally:
                self._dialect.attach(None)
                self._credentials.bind(None)
                if rooms.owned:
                    await rooms.session.close()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        rooms = getattr(self, "_rooms", None)
        if rooms is not None and rooms.owned and not rooms.session.closed:
            _warn(f"unclosed {self!r}; use 'async with' or aclose()", ResourceWarning, source=self)

    # -- argument helpers -------------------------------------------------------------------

    def _timeout(self, timeout: object) -> float:
        if timeout is None:
            return self._options.default_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidParameterError(f"timeout must be a positive number, not {timeout!r}")
        return float(timeout)

    def _no_snapshot(self, no_snapshot: object) -> bool:
        if no_snapshot is None:
            return self._options.no_snapshot
        if not isinstance(no_snapshot, bool):
            raise InvalidParameterError(f"no_snapshot must be True or False, not {no_snapshot!r}")
        return no_snapshot

    # -- operations -------------------------------------------------------------------------

    async def get(
        self,
        data_id: str,
        group: str | None,
        timeout: float | None = None,
        no_snapshot: bool | None = None,
    ) -> str | None:
        """Get one config item: failover file, else the server, else the snapshot.

        Args:
            data_id: the data id.
            group: the group; None or "" means ``DEFAULT_GROUP``.
            timeout: seconds for one server (default: ``default_timeout``).
            no_snapshot: do not write a snapshot, and raise instead of falling back to it
                when the servers fail (default: the ``no_snapshot`` option).

        Returns:
            The content (decrypted for ``cipher-`` items when ``kms_enabled``), or None when
            the item does not exist.

        Raises:
            InvalidParameterError: a bad argument (before any I/O).
            InvalidOptionError: a ``cipher-`` item with KMS on but not configured (before I/O).
            AccessDeniedError: 403.
            ServerUnavailableError: every server failed and there is no snapshot to fall back
                to (or ``no_snapshot``).
            CredentialsError: the RAM role's credentials could not be fetched and there is no
                snapshot to fall back to.
            KMSError: the item could not be decrypted.
        """
        item = self._memo.item(data_id, group)
        seconds, skip = self._timeout(timeout), self._no_snapshot(no_snapshot)
        if item.cipher and self._options.kms_enabled:
            kms = self._kms_for(item)
            assert kms is not None
            kms.check(encrypting=False)
            value = await self._open().lookup.read_decrypted(item, seconds, skip, kms)
            return value.content
        fetched = await self._open().lookup.read(item, seconds, skip)
        return None if fetched is None else fetched.content

    async def get_raw(
        self,
        data_id: str,
        group: str | None,
        timeout: float | None = None,
        no_snapshot: bool | None = None,
    ) -> str | None:
        """Like ``get``, but never decrypts (``cipher-`` items come back as stored)."""
        item = self._memo.item(data_id, group)
        seconds, skip = self._timeout(timeout), self._no_snapshot(no_snapshot)
        fetched = await self._open().lookup.read(item, seconds, skip)
        return None if fetched is None else fetched.content

    async def _publish(
        self,
        data_id: str,
        group: str | None,
        content: str,
        timeout: float | None,
        config_type: str | None = None,
        cas_md5: str | None = None,
    ) -> bool:
        item = self._memo.item(data_id, group, remember=False)
        seconds = self._timeout(timeout)
        kms = self._kms_for(item)
        dialect, data_key = self._dialect, None
        if kms is None:
            text = dialect.check_content(content)  # refuse what the server cannot store
        else:
            if isinstance(content, bytes):
                content = content.decode("utf-8")
            if not isinstance(content, str):
                raise InvalidParameterError("content must be a str")
            kms.check(encrypting=True)
            text, data_key = await kms.encrypt(item.data_id, item.key, content)
            dialect.check_content(text)  # the ciphertext must still fit
        request = dialect.publish(
            item, text, data_key=data_key, config_type=config_type, cas_md5=cas_md5
        )
        resp = await self._open().transport.send(request, timeout=seconds, key=item.key)
        dialect.read_ack(resp, item)
        logger.debug("publish %s: done", item.key)
        return True

    async def remove(self, data_id: str, group: str | None, timeout: float | None = None) -> bool:
        """Remove one config item; removing a missing item succeeds.

        Returns:
            True.
        """
        item = self._memo.item(data_id, group, remember=False)
        seconds = self._timeout(timeout)
        request = self._dialect.remove(item)
        resp = await self._open().transport.send(request, timeout=seconds, key=item.key)
        self._dialect.read_ack(resp, item)
        logger.debug("remove %s: done", item.key)
        return True

    async def list(self, page: int = 1, size: int = 200) -> dict[str, Any]:
        """One page of the namespace's items, with content, straight from the server.

        Returns:
            The server's page: ``totalCount``, ``pageNumber``, ``pagesAvailable``,
            ``pageItems`` (each with at least ``dataId``, ``group``, ``content``).
        """
        for name, value in (("page", page), ("size", size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(f"{name} must be a positive int, not {value!r}")
        request = self._dialect.list_page(page, size)
        resp = await self._open().transport.send(request, timeout=self._options.default_timeout)
        return self._dialect.read_page(resp)

    async def list_all(self, group: str | None = None, prefix: str | None = None) -> ItemList:
        """Every item of the namespace as ``{"dataId", "group"}``, walking pages of 200.

        Args:
            group: only items of this group (None: every group).
            prefix: only data ids starting with this (case sensitive).
        """
        if group is not None and not isinstance(group, str):
            raise InvalidParameterError("group must be a str or None")
        if prefix is not None and not isinstance(prefix, str):
            raise InvalidParameterError("prefix must be a str or None")
        return await walk_pages(self.list, group, prefix)

    # -- watching ---------------------------------------------------------------------------

    def _watch_manager(self) -> WatchManager:
        rooms = self._open()
        if rooms.watches is None:
            dialect, options, send = self._dialect, self._options, rooms.transport.send
            rooms.watches = WatchManager(
                rooms.lookup,
                Dispatcher(options.callback_thread_num),
                lambda sink: dialect.change_feed(sink, send, options),
                dialect.content_md5,
                self._kms_for,
            )
        return rooms.watches

    async def add_watcher(self, data_id: str, group: str | None, cb: WatchCallback) -> None:
        """Call ``cb`` on every change of one item (see ``add_watchers``)."""
        await self.add_watchers(data_id, group, [cb])

    async def add_watchers(
        self, data_id: str, group: str | None, cb_list: Iterable[WatchCallback]
    ) -> None:
        """Call each callback on every change and on deletion of one item.

        A callback is called once at once if the item exists, then on each change (never twice
        for the same md5) and on deletion (``content`` None). It gets the sync SDK's mapping:
        ``data_id``, ``group``, ``namespace``, ``raw_content``, ``content``. Plain functions run
        in a thread pool, ``async def`` ones on the loop; changes of one item reach one callback
        in order; at most ``callback_thread_num`` callbacks run at once.

        Raises:
            InvalidParameterError: a bad key, or something that is not callable (before any I/O).
        """
        item = self._memo.item(data_id, group, remember=False)
        callbacks = list(cb_list) if cb_list is not None else []
        if not callbacks:
            raise InvalidParameterError("A callback function is needed")
        for cb in callbacks:
            if not callable(cb):
                raise InvalidParameterError(f"callback {cb!r} is not callable")
        manager = self._watch_manager()
        for cb in callbacks:
            await manager.add(item, CallbackWatcher(cb, manager.dispatcher, item.key))

    async def remove_watcher(
        self, data_id: str, group: str | None, cb: WatchCallback, remove_all: bool = False
    ) -> None:
        """Remove one registration of ``cb`` (every one with ``remove_all``) from an item.

        An item with no watcher left is no longer watched; a poller with no key left ends.
        """
        item = self._memo.item(data_id, group, remember=False)
        if not callable(cb):
            raise InvalidParameterError("A callback function is needed")
        if self._rooms is None or self._rooms.watches is None:
            return
        self._open()  # on the client's own loop only

        def same_callback(watcher: Watcher) -> bool:
            return isinstance(watcher, CallbackWatcher) and watcher.callback == cb

        await self._rooms.watches.remove(item, same_callback, remove_all)

    def watch(self, data_id: str, group: str | None = None) -> AsyncIterator[ConfigChange]:
        """Iterate over the changes of one item: ``async for change in client.watch(...)``.

        The first change is the current value when the item exists. Leaving the loop (break,
        exception, cancellation) ends the subscription; so does closing the client, which ends
        the loop. ``contextlib.aclosing(client.watch(...))`` ends it deterministically.

        Raises:
            InvalidParameterError: a bad key (at once, not at the first iteration).
            ClientClosedError: the client is closed.
        """
        item = self._memo.item(data_id, group, remember=False)
        if self._closed:
            raise ClientClosedError("the client is closed")
        return self._watch_stream(item)

    async def _watch_stream(self, item: Item) -> AsyncIterator[ConfigChange]:
        manager = self._watch_manager()
        watcher = StreamWatcher()
        await manager.add(item, watcher)
        try:
            while True:
                change = await watcher.queue.get()
                if change is None:
                    return
                yield change
        finally:
            watcher.stop()
            rooms = self._rooms
            if rooms is not None and rooms.watches is manager:
                await manager.remove(item, lambda w: w is watcher, remove_all=False)
