"""``ACMClient``: the façade. Argument checks, the lookup chain and the lifecycle live here;
HTTP, files, servers and signing are delegated to their own modules."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any

import aiohttp

from .auth import CredentialsProvider, StaticCredentialsProvider
from .dispatch import CallbackWatcher, ConfigChange, Dispatcher, StreamWatcher, Watcher
from .errors import (
    ACMRequestException,
    ClientClosedError,
    InvalidOptionError,
    InvalidParameterError,
    ServerUnavailableError,
)
from .options import Options
from .protocol import (
    cache_key,
    decode_content,
    encode_content,
    normalize_group,
    validate_data_id,
    validate_namespace,
)
from .stores import FAILOVER_RECHECK, FileStore
from .transport import Transport
from .watch import WatchManager

__all__ = ["ACMClient"]

logger = logging.getLogger(__name__)

CONFIG_PATH = "/diamond-server/config.co"
PUBLISH_PATH = "/diamond-server/basestone.do?method=syncUpdateAll"
REMOVE_PATH = "/diamond-server/datum.do?method=deleteAllDatums"
LIST_PATH = "/diamond-server/basestone.do"
LIST_ALL_PAGE_SIZE = 200

WatchCallback = Callable[[dict[str, Any]], Any]

# ``ACMClient.list`` shadows the builtin inside the class body.
ItemList = list[dict[str, str]]


def _check_endpoint(endpoint: object) -> str:
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise InvalidParameterError("endpoint must be a non-empty 'host[:port]' string")
    endpoint = endpoint.strip()
    if "://" in endpoint or "/" in endpoint or any(c.isspace() for c in endpoint):
        raise InvalidParameterError(
            f"endpoint must be 'host[:port]' without scheme or path, not {endpoint!r}"
        )
    return endpoint


def _check_secret_pair(ak: object, sk: object) -> tuple[str, str] | None:
    if ak is None and sk is None:
        return None
    if not isinstance(ak, str) or not ak or not isinstance(sk, str) or not sk:
        raise InvalidParameterError("ak and sk must be given together, as non-empty strings")
    return ak, sk


class ACMClient:
    """An asyncio client for one ACM namespace.

    Use it as ``async with ACMClient(...) as client:``, or call ``await client.aclose()`` when
    done; it opens lazily on first use. Nothing is created in ``__init__``: no session, no task,
    no file.

    Args:
        endpoint: the ACM endpoint, ``host[:port]`` (the address server, or with
            ``cai_enabled=False`` the server itself).
        namespace: the namespace (tenant) id; None or "" for the default namespace.
        ak: AccessKey; signs requests together with ``sk``.
        sk: SecretKey.
        ram_role_name: take credentials from this ECS RAM role (a later release).
        unit_name: the address-server unit, if any.
        credentials: any ``CredentialsProvider`` (instead of ak/sk).
        session: an ``aiohttp.ClientSession`` to use; the client never closes one it was given.
        **options: any option of ``set_options``.

    Raises:
        InvalidParameterError: a bad endpoint, namespace or credential pair.
        InvalidOptionError: an unknown option or a bad value.
    """

    _debugging = False

    def __init__(
        self,
        endpoint: str,
        namespace: str | None = None,
        ak: str | None = None,
        sk: str | None = None,
        ram_role_name: str | None = None,
        unit_name: str | None = None,
        *,
        credentials: CredentialsProvider | None = None,
        session: aiohttp.ClientSession | None = None,
        **options: Any,
    ) -> None:
        self._endpoint = _check_endpoint(endpoint)
        self._namespace = validate_namespace(namespace)
        if unit_name is not None and unit_name != "":
            unit_name = validate_data_id(unit_name)
        self._unit_name = unit_name or None
        pair = _check_secret_pair(ak, sk)
        if pair is not None and credentials is not None:
            raise InvalidParameterError("give either ak/sk or credentials, not both")
        self._ak = pair[0] if pair else None
        self._credentials: CredentialsProvider | None = (
            StaticCredentialsProvider(*pair) if pair else credentials
        )
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise InvalidParameterError("session must be an aiohttp.ClientSession")
        self._given_session = session
        self._session: aiohttp.ClientSession | None = None
        self._transport: Transport | None = None
        self._watches: WatchManager | None = None
        self._closed = False
        self._options = Options()
        self._snapshots = FileStore(self._options.snapshot_base, name="snapshot")
        self._failover = FileStore(
            self._options.failover_base, name="failover", recheck=FAILOVER_RECHECK
        )
        if ram_role_name is not None:
            options = {**options, "ram_role_name": ram_role_name}
        self.set_options(**options)

    # -- settings ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The endpoint given to the client."""
        return self._endpoint

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

    @staticmethod
    def _check_supported(options: dict[str, Any]) -> None:
        if options.get("kms_enabled"):
            raise InvalidOptionError(
                "kms_enabled: KMS encryption of cipher- items is not available in this release"
            )
        if options.get("ram_role_name"):
            raise InvalidOptionError(
                "ram_role_name: RAM-role credentials are not available in this release;"
                " pass ak/sk or a CredentialsProvider"
            )

    def set_options(self, **options: Any) -> None:
        """Change options (the sync SDK's names). All are checked before any is applied.

        Raises:
            InvalidOptionError: an unknown name or a bad value; nothing is changed then.
        """
        checked = Options.validate(options)
        self._check_supported(checked)
        changed = self._options.apply(checked)
        if "snapshot_base" in changed:
            self._snapshots = FileStore(self._options.snapshot_base, name="snapshot")
        if "failover_base" in changed:
            self._failover = FileStore(
                self._options.failover_base, name="failover", recheck=FAILOVER_RECHECK
            )
        if self._transport is not None and {"tls_enabled", "cai_enabled"} & changed.keys():
            self._transport.servers.invalidate()
        for name in changed:
            logger.debug("option %s changed", name)

    @staticmethod
    def set_debugging() -> None:
        """Log aioacm at DEBUG on stderr (only the ``aioacm`` loggers; idempotent)."""
        root = logging.getLogger("aioacm")
        root.setLevel(logging.DEBUG)
        if not ACMClient._debugging:
            handler = logging.StreamHandler()
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            root.addHandler(handler)
            ACMClient._debugging = True

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._transport else "new"
        return (
            f"ACMClient(endpoint={self._endpoint!r}, namespace={self._namespace!r},"
            f" ak={self._ak!r}, {state})"
        )

    # -- lifecycle --------------------------------------------------------------------------

    def _open(self) -> Transport:
        if self._closed:
            raise ClientClosedError("the client is closed")
        if self._transport is None:
            if self._given_session is not None:
                if self._given_session.closed:
                    raise ClientClosedError("the session given to the client is closed")
                session = self._given_session
            else:
                # No connector limit: the transport bounds requests itself, fairly (an
                # aiohttp limit lets late requests overtake waiting ones).
                session = self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0)
                )
            self._transport = Transport(
                session, self._endpoint, self._unit_name, self._options, self._credentials
            )
        return self._transport

    async def __aenter__(self) -> ACMClient:
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
        """Stop every background task and close the session the client opened. Idempotent."""
        if self._closed:
            return
        self._closed = True
        watches, self._watches = self._watches, None
        transport, self._transport = self._transport, None
        session, self._session = self._session, None
        try:
            if watches is not None:
                await watches.close()
        finally:
            try:
                if transport is not None:
                    await transport.servers.close()
            finally:
                if session is not None:
                    await session.close()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        session = getattr(self, "_session", None)
        if session is not None and not session.closed:
            _warn(f"unclosed {self!r}; use 'async with' or aclose()", ResourceWarning, source=self)

    # -- argument helpers -------------------------------------------------------------------

    def _timeout(self, timeout: object) -> float:
        if timeout is None:
            return self._options.default_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise InvalidParameterError(f"timeout must be a positive number, not {timeout!r}")
        return float(timeout)

    def _key(self, data_id: object, group: object) -> tuple[str, str, str]:
        data_id = validate_data_id(data_id)
        group = normalize_group(group)
        return data_id, group, cache_key(data_id, group, self._namespace)

    def _tenant_fields(self) -> list[tuple[str, str]]:
        return [("tenant", self._namespace)] if self._namespace else []

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
            The content, or None when the item does not exist.

        Raises:
            InvalidParameterError: a bad argument (before any I/O).
            AccessDeniedError: 403.
            ServerUnavailableError: every server failed and there is no snapshot to fall back
                to (or ``no_snapshot``).
        """
        return await self.get_raw(data_id, group, timeout, no_snapshot)

    async def get_raw(
        self,
        data_id: str,
        group: str | None,
        timeout: float | None = None,
        no_snapshot: bool | None = None,
    ) -> str | None:
        """Like ``get``, but never decrypts (``cipher-`` items come back as stored)."""
        data_id, group, key = self._key(data_id, group)
        seconds = self._timeout(timeout)
        if no_snapshot is None:
            no_snapshot = self._options.no_snapshot
        elif not isinstance(no_snapshot, bool):
            raise InvalidParameterError(f"no_snapshot must be True or False, not {no_snapshot!r}")
        self._open()
        content = await self._failover.read(key)
        if content is not None:
            logger.debug("get %s: served from the failover file", key)
            return content

        try:
            return await self._fetch_server(data_id, group, key, seconds, no_snapshot)
        except ServerUnavailableError:
            if no_snapshot:
                raise
            content = await self._snapshots.read(key)
            if content is None:
                raise
            logger.warning("get %s: every server failed, served from the snapshot", key)
            return content

    async def _fetch_server(
        self,
        data_id: str,
        group: str,
        key: str,
        timeout: float | None = None,
        no_snapshot: bool | None = None,
    ) -> str | None:
        """Read one item from the servers, keeping its snapshot in step."""
        transport = self._open()
        resp = await transport.request(
            "GET",
            CONFIG_PATH,
            query=[("dataId", data_id), ("group", group), *self._tenant_fields()],
            sign=(self._namespace or None, group),
            timeout=self._options.default_timeout if timeout is None else timeout,
            key=key,
        )
        if resp.status == 404:
            logger.debug("get %s: not found on %s", key, resp.server)
            await self._snapshots.delete(key)
            return None
        content = decode_content(resp.body)
        if not (self._options.no_snapshot if no_snapshot is None else no_snapshot):
            await self._snapshots.write(key, content)
        return content

    async def publish(
        self, data_id: str, group: str | None, content: str, timeout: float | None = None
    ) -> bool:
        """Create or replace one config item.

        Returns:
            True.

        Raises:
            InvalidParameterError: a bad argument, None content, or content ACM cannot store
                (outside GBK, or over 100 KB), before any I/O.
            AccessDeniedError: 403.
            ServerUnavailableError: every server failed.
        """
        data_id, group, key = self._key(data_id, group)
        encode_content(content)  # refuse what ACM cannot store before any I/O
        text = content.decode("utf-8") if isinstance(content, bytes) else content
        seconds = self._timeout(timeout)
        transport = self._open()
        await transport.request(
            "POST",
            PUBLISH_PATH,
            form=[("dataId", data_id), ("group", group), ("content", text), *self._tenant_fields()],
            sign=(self._namespace or None, group),
            timeout=seconds,
            key=key,
        )
        logger.debug("publish %s: done", key)
        return True

    async def remove(self, data_id: str, group: str | None, timeout: float | None = None) -> bool:
        """Remove one config item; removing a missing item succeeds.

        Returns:
            True.
        """
        data_id, group, key = self._key(data_id, group)
        seconds = self._timeout(timeout)
        transport = self._open()
        await transport.request(
            "POST",
            REMOVE_PATH,
            form=[("dataId", data_id), ("group", group), *self._tenant_fields()],
            sign=(self._namespace or None, group),
            timeout=seconds,
            key=key,
        )
        logger.debug("remove %s: done", key)
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
        transport = self._open()
        resp = await transport.request(
            "GET",
            LIST_PATH,
            query=[
                ("pageNo", page),
                ("pageSize", size),
                ("method", "getAllConfigByTenant"),
                *self._tenant_fields(),
            ],
            sign=(self._namespace or None, None),
            timeout=self._options.default_timeout,
        )
        if resp.status == 404:
            raise ACMRequestException("list is not served", status=404, server=resp.server)
        return _decode_page(resp.body, resp.server)

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
        result: ItemList = []
        page, pages = 1, 1
        while page <= pages:
            data = await self.list(page, LIST_ALL_PAGE_SIZE)
            pages = int(data.get("pagesAvailable") or 0)
            for item in data.get("pageItems") or []:
                data_id, item_group = item.get("dataId"), item.get("group")
                if not isinstance(data_id, str) or not isinstance(item_group, str):
                    continue
                if group is not None and item_group != group:
                    continue
                if prefix is not None and not data_id.startswith(prefix):
                    continue
                result.append({"dataId": data_id, "group": item_group})
            page += 1
        return result

    # -- watching ---------------------------------------------------------------------------

    def _watch_manager(self) -> WatchManager:
        self._open()
        if self._watches is None:
            self._watches = WatchManager(self, Dispatcher(self._options.callback_thread_num))
        return self._watches

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
        data_id, group, key = self._key(data_id, group)
        callbacks = list(cb_list) if cb_list is not None else []
        if not callbacks:
            raise InvalidParameterError("A callback function is needed")
        for cb in callbacks:
            if not callable(cb):
                raise InvalidParameterError(f"callback {cb!r} is not callable")
        manager = self._watch_manager()
        for cb in callbacks:
            await manager.add(data_id, group, CallbackWatcher(cb, manager.dispatcher, key))

    async def remove_watcher(
        self, data_id: str, group: str | None, cb: WatchCallback, remove_all: bool = False
    ) -> None:
        """Remove one registration of ``cb`` (every one with ``remove_all``) from an item.

        An item with no watcher left is no longer polled; a poller with no key left ends.
        """
        data_id, group, _key = self._key(data_id, group)
        if not callable(cb):
            raise InvalidParameterError("A callback function is needed")
        if self._watches is None:
            return

        def same_callback(watcher: Watcher) -> bool:
            return isinstance(watcher, CallbackWatcher) and watcher.callback == cb

        await self._watches.remove(data_id, group, same_callback, remove_all)

    def watch(self, data_id: str, group: str | None = None) -> AsyncIterator[ConfigChange]:
        """Iterate over the changes of one item: ``async for change in client.watch(...)``.

        The first change is the current value when the item exists. Leaving the loop (break,
        exception, cancellation) ends the subscription; so does closing the client, which ends
        the loop. ``contextlib.aclosing(client.watch(...))`` ends it deterministically.

        Raises:
            InvalidParameterError: a bad key (at once, not at the first iteration).
            ClientClosedError: the client is closed.
        """
        data_id, group, _key = self._key(data_id, group)
        if self._closed:
            raise ClientClosedError("the client is closed")
        return self._watch_stream(data_id, group)

    async def _watch_stream(self, data_id: str, group: str) -> AsyncIterator[ConfigChange]:
        manager = self._watch_manager()
        watcher = StreamWatcher()
        await manager.add(data_id, group, watcher)
        try:
            while True:
                change = await watcher.queue.get()
                if change is None:
                    return
                yield change
        finally:
            watcher.stop()
            if self._watches is manager:
                await manager.remove(data_id, group, lambda w: w is watcher, remove_all=False)


def _decode_page(body: bytes, server: str) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = body.decode("gbk", errors="replace")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ACMRequestException("list answered with malformed JSON", server=server) from exc
    if not isinstance(data, dict):
        raise ACMRequestException("list answered with malformed JSON", server=server)
    return data
