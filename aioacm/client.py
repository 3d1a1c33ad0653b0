"""``ACMClient``: the façade. Argument checks, the lookup chain and the lifecycle live here;
HTTP, files, servers and signing are delegated to their own modules."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from types import TracebackType
from typing import Any, NamedTuple

import aiohttp

from .auth import CredentialsProvider, RamRoleCredentialsProvider, StaticCredentialsProvider
from .dispatch import CallbackWatcher, ConfigChange, Dispatcher, StreamWatcher, Watcher
from .errors import (
    ACMRequestException,
    ClientClosedError,
    CredentialsError,
    InvalidOptionError,
    InvalidParameterError,
    ServerUnavailableError,
)
from .kms import KMS, envelope_key_spec, is_cipher, kms_available
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
# Envelope-encrypted items keep their encrypted data key beside the content, in a subfolder of
# the snapshot and failover folders (a name no key can take: keys always contain "+").
DATA_KEY_FOLDER = "encrypted-data-key"
DATA_KEY_HEADER = "Encrypted-Data-Key"

WatchCallback = Callable[[dict[str, Any]], Any]

# ``ACMClient.list`` shadows the builtin inside the class body.
ItemList = list[dict[str, str]]
# Distinct (data_id, group) pairs remembered for gets (about 600 bytes each); past it the
# memory starts over.
_KEY_CACHE_SIZE = 1024


class _Item(NamedTuple):
    """One config item, checked, with what every get of it sends (made once per key)."""

    data_id: str
    group: str
    key: str  # the cache key: file name and watch key
    query: tuple[tuple[str, str], ...]  # the GET's query
    sign: tuple[str | None, str]  # (tenant, group) for the signature
    envelope: bool  # envelope-encrypted (cipher-kms-aes-*): has a data key
    cipher: bool  # stored encrypted when KMS is on


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
        ram_role_name: sign with the temporary credentials of this ECS RAM role, fetched from
            the instance metadata service (``ram_metadata_url``); wins over ak/sk, as in the
            sync SDK.
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
        self._closing: asyncio.Task[None] | None = None
        self._options = Options()
        self._ram_role: RamRoleCredentialsProvider | None = None
        self._kms: KMS | None = None
        # (data_id, group) as given -> the item they name (bounded: _KEY_CACHE_SIZE)
        self._items: dict[tuple[object, object], _Item] = {}
        self._make_stores(snapshots=True, failover=True)
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

    def _make_stores(self, *, snapshots: bool, failover: bool) -> None:
        base = self._options.snapshot_base
        if snapshots:
            self._snapshots = FileStore(base, name="snapshot")
            self._snapshot_keys = FileStore(
                os.path.join(base, DATA_KEY_FOLDER), name="snapshot data key"
            )
        base = self._options.failover_base
        if failover:
            self._failover = FileStore(base, name="failover", recheck=FAILOVER_RECHECK)
            self._failover_keys = FileStore(
                os.path.join(base, DATA_KEY_FOLDER),
                name="failover data key",
                recheck=FAILOVER_RECHECK,
            )

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
        if checked.get("ram_role_name") and self._credentials is not None and self._ak is None:
            raise InvalidOptionError("give either credentials or ram_role_name, not both")
        changed = self._options.apply(checked)
        self._make_stores(snapshots="snapshot_base" in changed, failover="failover_base" in changed)
        if self._transport is not None:
            if {"tls_enabled", "cai_enabled"} & changed.keys():
                self._transport.servers.invalidate()
            if {"ram_role_name", "ram_metadata_url", "default_timeout"} & changed.keys():
                self._transport.credentials = self._signing_credentials(self._transport.session)
                if self._kms is not None:
                    self._kms.credentials = self._transport.credentials
        for name in changed:
            logger.debug("option %s changed", name)

    def _signing_credentials(self, session: aiohttp.ClientSession) -> CredentialsProvider | None:
        """What signs requests: the RAM role when one is set (as in the sync SDK), else the
        ak/sk or provider the client was given."""
        role = self._options.ram_role_name
        if not role:
            self._ram_role = None
            return self._credentials
        current = self._ram_role
        if (
            current is None
            or current.role_name != role
            or current.metadata_url != self._options.ram_metadata_url
        ):
            current = self._ram_role = RamRoleCredentialsProvider(
                role,
                session=session,
                metadata_url=self._options.ram_metadata_url,
                timeout=self._options.default_timeout,
            )
        return current

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
                session,
                self._endpoint,
                self._unit_name,
                self._options,
                self._signing_credentials(session),
            )
        return self._transport

    def _kms_for(self, data_id: str) -> KMS | None:
        """The KMS helper when ``data_id`` is encrypted and KMS is on, else None."""
        if not (self._options.kms_enabled and is_cipher(data_id)):
            return None
        transport = self._open()
        if self._kms is None:
            self._kms = KMS(self._options, transport.credentials)
        return self._kms

    async def _reveal(
        self, data_id: str, key: str, raw: str | None, data_key: str | None
    ) -> str | None:
        """The content the user sees: ``raw`` decrypted for ``cipher-`` items when KMS is on."""
        kms = self._kms_for(data_id)
        if kms is None or raw is None:
            return raw
        return await kms.decrypt(data_id, key, raw, data_key)

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
        """Stop every background task and close the session the client opened. Idempotent.

        Closing goes on when the caller is cancelled meanwhile; a later ``aclose()`` waits
        for it to end.
        """
        if self._closing is None:
            self._closed = True
            self._closing = asyncio.get_running_loop().create_task(
                self._shutdown(), name="aioacm.close"
            )
            # never "exception never retrieved" when the caller that started it was cancelled
            self._closing.add_done_callback(lambda t: t.cancelled() or t.exception())
        await asyncio.shield(self._closing)

    async def _shutdown(self) -> None:
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

    def _item(self, data_id: object, group: object, remember: bool = True) -> _Item:
        """The item ``(data_id, group)`` names, checked and normalized; InvalidParameterError.
        ``remember``: keep it for the next call (gets); watchers, which may cover tens of
        thousands of keys each fetched now and then, pass False."""
        try:
            return self._items[data_id, group]  # every get: the checks ran once per key
        except (KeyError, TypeError):
            pass
        checked_id = validate_data_id(data_id)
        checked_group = normalize_group(group)
        item = _Item(
            checked_id,
            checked_group,
            cache_key(checked_id, checked_group, self._namespace),
            (("dataId", checked_id), ("group", checked_group), *self._tenant_fields()),
            (self._namespace or None, checked_group),
            envelope_key_spec(checked_id) is not None,
            is_cipher(checked_id),
        )
        if remember and type(data_id) is str and (group is None or type(group) is str):
            if len(self._items) >= _KEY_CACHE_SIZE:
                self._items.clear()
            self._items[data_id, group] = item
        return item

    def _key(self, data_id: object, group: object) -> tuple[str, str, str]:
        """``(data_id, group, cache key)`` checked and normalized; InvalidParameterError."""
        item = self._item(data_id, group, remember=False)
        return item.data_id, item.group, item.key

    def _tenant_fields(self) -> tuple[tuple[str, str], ...]:
        return (("tenant", self._namespace),) if self._namespace else ()

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
        item = self._item(data_id, group)
        kms = self._kms_for(item.data_id) if item.cipher else None
        if kms is not None:
            kms.check(encrypting=False)
        raw, data_key = await self._lookup(item, timeout, no_snapshot)
        if kms is None or raw is None:
            return raw
        return await kms.decrypt(item.data_id, item.key, raw, data_key)

    async def get_raw(
        self,
        data_id: str,
        group: str | None,
        timeout: float | None = None,
        no_snapshot: bool | None = None,
    ) -> str | None:
        """Like ``get``, but never decrypts (``cipher-`` items come back as stored)."""
        raw, _data_key = await self._lookup(self._item(data_id, group), timeout, no_snapshot)
        return raw

    def _lookup(
        self, item: _Item, timeout: object, no_snapshot: object
    ) -> Coroutine[Any, Any, tuple[str | None, str | None]]:
        """The lookup chain: ``(stored content, encrypted data key)``.

        A plain function that checks the arguments (raising before any I/O) and returns the
        coroutine doing the lookup: when the failover folder is known not to hold the key
        (nearly always), that is the server read itself, one coroutine fewer per ``get``.
        """
        seconds = self._timeout(timeout)
        if no_snapshot is None:
            no_snapshot = self._options.no_snapshot
        elif not isinstance(no_snapshot, bool):
            raise InvalidParameterError(f"no_snapshot must be True or False, not {no_snapshot!r}")
        transport = self._open()
        if self._failover.known_absent(item.key):
            return self._from_server(transport, item, seconds, no_snapshot)
        return self._from_failover(transport, item, seconds, no_snapshot)

    async def _from_failover(
        self, transport: Transport, item: _Item, timeout: float, no_snapshot: bool
    ) -> tuple[str | None, str | None]:
        """The failover file if there is one, else ``_from_server``."""
        key = item.key
        content = await self._failover.read(key)
        if content is not None:
            logger.debug("get %s: served from the failover file", key)
            return content, (await self._failover_keys.read(key) if item.envelope else None)
        return await self._from_server(transport, item, timeout, no_snapshot)

    async def _from_server(
        self,
        transport: Transport,
        item: _Item,
        timeout: float,
        no_snapshot: bool,
        fallback: bool = True,
    ) -> tuple[str | None, str | None]:
        """Read one item from the servers, keeping its snapshot (and data key) in step; when
        every server fails, the snapshot unless ``no_snapshot`` or not ``fallback``."""
        key, envelope = item.key, item.envelope
        try:
            resp = await transport.request(
                "GET", CONFIG_PATH, query=item.query, sign=item.sign, timeout=timeout, key=key
            )
        except (ServerUnavailableError, CredentialsError) as exc:
            if no_snapshot or not fallback:
                raise
            content = await self._snapshots.read(key)
            if content is None:
                raise
            logger.warning("get %s: served from the snapshot: %s", key, exc)
            return content, (await self._snapshot_keys.read(key) if envelope else None)
        if resp.status == 404:
            logger.debug("get %s: not found on %s", key, resp.server)
            await self._snapshots.delete(key)
            if envelope:
                await self._snapshot_keys.delete(key)
            return None, None
        content = decode_content(resp.body)
        data_key = (resp.headers.get(DATA_KEY_HEADER) or None) if envelope else None
        if not no_snapshot:
            if envelope:
                # the data key first: a content snapshot is never newer than its key
                if data_key is None:
                    await self._snapshot_keys.delete(key)
                else:
                    await self._snapshot_keys.write(key, data_key)
            # write() checks holds() too; asking first saves a coroutine on nearly every get
            if not self._snapshots.holds(key, content):
                await self._snapshots.write(key, content)
        return content, data_key

    async def _fetch_server(
        self,
        data_id: str,
        group: str,
        timeout: float | None = None,
        no_snapshot: bool | None = None,
    ) -> tuple[str | None, str | None]:
        """Read one item from the servers, keeping its snapshot in step (no fallback).

        Returns:
            ``(content, encrypted data key)``; the key only for envelope-encrypted items.
        """
        item = self._item(data_id, group, remember=False)
        return await self._from_server(
            self._open(),
            item,
            self._options.default_timeout if timeout is None else timeout,
            self._options.no_snapshot if no_snapshot is None else no_snapshot,
            fallback=False,
        )

    async def publish(
        self, data_id: str, group: str | None, content: str, timeout: float | None = None
    ) -> bool:
        """Create or replace one config item.

        With ``kms_enabled``, a ``cipher-`` item is encrypted first (see the README's KMS
        section); only ciphertext reaches the server.

        Returns:
            True.

        Raises:
            InvalidParameterError: a bad argument, None content, or content ACM cannot store
                (outside GBK, or over 100 KB), before any I/O.
            InvalidOptionError: a ``cipher-`` item with KMS on but not configured (before I/O).
            AccessDeniedError: 403.
            ServerUnavailableError: every server failed.
            KMSError: KMS could not encrypt the content; nothing was sent.
        """
        data_id, group, key = self._key(data_id, group)
        seconds = self._timeout(timeout)
        kms = self._kms_for(data_id)
        extra: list[tuple[str, str]] = []
        if kms is None:
            encode_content(content)  # refuse what ACM cannot store before any I/O
            text = content.decode("utf-8") if isinstance(content, bytes) else content
        else:
            if isinstance(content, bytes):
                content = content.decode("utf-8")
            if not isinstance(content, str):
                raise InvalidParameterError("content must be a str")
            kms.check(encrypting=True)
            text, data_key = await kms.encrypt(data_id, key, content)
            encode_content(text)  # the ciphertext must still fit
            if data_key is not None:
                extra.append(("encryptedDataKey", data_key))
        transport = self._open()
        await transport.request(
            "POST",
            PUBLISH_PATH,
            form=[
                ("dataId", data_id),
                ("group", group),
                ("content", text),
                *extra,
                *self._tenant_fields(),
            ],
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
        seen: set[tuple[str, str]] = set()
        page, pages, received = 1, 1, 0
        while page <= pages:
            data = await self.list(page, LIST_ALL_PAGE_SIZE)
            pages, total, items = _page_shape(data, page)
            received += len(items)
            new = False
            for item in items:
                data_id = item.get("dataId") if isinstance(item, dict) else None
                item_group = item.get("group") if isinstance(item, dict) else None
                if not isinstance(data_id, str) or not isinstance(item_group, str):
                    continue
                if (data_id, item_group) in seen:  # items shift between pages as others write
                    continue
                seen.add((data_id, item_group))
                new = True
                if group is not None and item_group != group:
                    continue
                if prefix is not None and not data_id.startswith(prefix):
                    continue
                result.append({"dataId": data_id, "group": item_group})
            # A server that keeps announcing pages but sends nothing new must not keep us here.
            if not new or (total is not None and received >= total):
                break
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


def _count(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ValueError(value)


def _page_shape(data: dict[str, Any], page: int) -> tuple[int, int | None, list[Any]]:
    """``pagesAvailable``, ``totalCount`` and ``pageItems`` of one list page.

    Raises:
        ACMRequestException: the page is malformed.
    """
    malformed = ACMRequestException(f"list answered a malformed page {page}")
    try:
        pages, total = (_count(data.get(name)) for name in ("pagesAvailable", "totalCount"))
    except ValueError:
        raise malformed from None
    items = data.get("pageItems")
    if items is None:
        items = []
    if not isinstance(items, list):
        raise malformed
    return pages or 0, total, items


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
