"""The lookup chain, the one every read of a value goes through: ``get``, ``get_raw`` and
watchers alike.

1. the **failover** file, if there is one (an operator's pin through a known outage);
2. the **server**: its answer refreshes the **snapshot** (a 404 deletes it);
3. the **snapshot**, when every server failed (unless ``no_snapshot``).

Envelope-encrypted items (``cipher-kms-aes-*``) keep their encrypted data key beside the
content in each folder (``encrypted-data-key/``), and the chain reads it from the same place as
the content.

A failover file that cannot be used counts as absent, for every caller: one that cannot be read
(the store warns), and, when the caller decrypts (``get`` of a ``cipher-`` item with KMS on, and
every watcher), one that cannot be decrypted: the chain warns and goes on to the server. The
pin is the operator's, but a pin that cannot be honoured must not stop the application from
reading the server's value. ``get_raw`` never decrypts, so it returns such a file as it is.

Watchers read the server with ``fetch`` (no snapshot fallback: a poller that cannot reach the
server retries) and then apply the same failover rule to what they deliver (``failover``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, NamedTuple

from .errors import CredentialsError, KMSError, ServerUnavailableError
from .keys import Item
from .kms import KMS
from .options import Options
from .stores import FAILOVER_RECHECK, FileStore
from .wire import Fetched, Request, Response

__all__ = ["DATA_KEY_FOLDER", "LocalStores", "Lookup", "Value"]

logger = logging.getLogger(__name__)

# Envelope-encrypted items keep their encrypted data key beside the content, in a subfolder of
# the snapshot and failover folders (a name no key can take: keys always contain "+").
DATA_KEY_FOLDER = "encrypted-data-key"


class LocalStores:
    """The snapshot and failover folders of one client (each with its data-key subfolder),
    made again when ``snapshot_base`` or ``failover_base`` changes."""

    def __init__(self, options: Options) -> None:
        self._options = options
        self.rebuild(snapshots=True, failover=True)

    def rebuild(self, *, snapshots: bool, failover: bool) -> None:
        """Make the stores of the folders the options name now."""
        if snapshots:
            base = self._options.snapshot_base
            self.snapshots = FileStore(base, name="snapshot")
            self.snapshot_keys = FileStore(
                os.path.join(base, DATA_KEY_FOLDER), name="snapshot data key"
            )
        if failover:
            base = self._options.failover_base
            self.failover = FileStore(base, name="failover", recheck=FAILOVER_RECHECK)
            self.failover_keys = FileStore(
                os.path.join(base, DATA_KEY_FOLDER),
                name="failover data key",
                recheck=FAILOVER_RECHECK,
            )


class Value(NamedTuple):
    """What the chain found for one item.

    Attributes:
        fetched: the item as stored (None: it does not exist).
        content: the content as the user sees it (decrypted when the caller decrypts).
    """

    fetched: Fetched | None
    content: str | None


# ``dialect.read_query``: the item in an answer (None: not found)
ReadQuery = Callable[[Response, Item], Fetched | None]


class Lookup:
    """The chain for one client.

    Args:
        send: the transport's ``send``.
        query: the dialect's ``query`` (for items made without their request: watched keys,
            tens of thousands of which would otherwise each hold one).
        read_query: the dialect's ``read_query``.
        stores: the client's folders.
        options: the client's live options.
    """

    def __init__(
        self,
        send: Callable[..., Coroutine[Any, Any, Response]],
        query: Callable[[Item], Request],
        read_query: ReadQuery,
        stores: LocalStores,
        options: Options,
    ) -> None:
        self._send = send
        self._query = query
        self._read_query = read_query
        self._stores = stores
        self._options = options
        #: values served from a failover file
        self.failover_hits = 0
        #: gets served from a snapshot because every server failed
        self.snapshot_fallbacks = 0

    def read(
        self, item: Item, timeout: float, no_snapshot: bool
    ) -> Coroutine[Any, Any, Fetched | None]:
        """The chain without decryption: the item as stored, or None.

        A plain function returning the coroutine: when the failover folder is known not to
        hold the key (nearly always), that is the server read itself, one coroutine fewer
        per ``get``.
        """
        if self._stores.failover.known_absent(item.key):
            return self._server(item, timeout, no_snapshot, True)
        return self._failover_then_server(item, timeout, no_snapshot)

    async def _failover_then_server(
        self, item: Item, timeout: float, no_snapshot: bool
    ) -> Fetched | None:
        found = await self._failover_file(item)
        if found is not None:
            return found
        return await self._server(item, timeout, no_snapshot, True)

    async def read_decrypted(
        self, item: Item, timeout: float, no_snapshot: bool, kms: KMS
    ) -> Value:
        """The chain for an item stored encrypted: failover (if it decrypts), server, snapshot.

        Raises:
            KMSError: the server's or the snapshot's value cannot be decrypted.
        """
        value = await self.failover(item, kms)
        if value is not None:
            return value
        fetched = await self._server(item, timeout, no_snapshot, True)
        if fetched is None:
            return Value(None, None)
        # the data key came with the value, from the same place (server or snapshot)
        content = await kms.decrypt(item.data_id, item.key, fetched.content, fetched.data_key)
        return Value(fetched, content)

    async def failover(self, item: Item, kms: KMS | None) -> Value | None:
        """The failover file's value, decrypted with ``kms`` when given; None when there is no
        file, or (see the module docstring) when it cannot be decrypted."""
        fetched = await self._failover_file(item)
        if fetched is None:
            return None
        if kms is None:
            return Value(fetched, fetched.content)
        try:
            content = await kms.decrypt(item.data_id, item.key, fetched.content, fetched.data_key)
        except KMSError as exc:
            logger.warning(
                "failover file of %s cannot be decrypted, so it is not used: %s", item.key, exc
            )
            return None
        return Value(fetched, content)

    async def _failover_file(self, item: Item) -> Fetched | None:
        stores = self._stores
        if stores.failover.known_absent(item.key):
            return None
        content = await stores.failover.read(item.key)
        if content is None:
            return None
        logger.debug("%s: served from the failover file", item.key)
        self.failover_hits += 1
        data_key = await stores.failover_keys.read(item.key) if item.envelope else None
        return Fetched(content, data_key)

    def fetch(self, item: Item) -> Coroutine[Any, Any, Fetched | None]:
        """The server's value (no fallback), keeping the snapshot in step: for watchers."""
        options = self._options
        return self._server(item, options.default_timeout, options.no_snapshot, False)

    async def _server(
        self, item: Item, timeout: float, no_snapshot: bool, fallback: bool
    ) -> Fetched | None:
        """Read one item from the servers, keeping its snapshot (and data key) in step; when
        every server fails, the snapshot unless ``no_snapshot`` or not ``fallback``."""
        key = item.key
        stores = self._stores
        try:
            query = item.query if item.query is not None else self._query(item)
            resp = await self._send(query, timeout=timeout, key=key)
        except (ServerUnavailableError, CredentialsError) as exc:
            if no_snapshot or not fallback:
                raise
            content = await stores.snapshots.read(key)
            if content is None:
                raise
            logger.warning("get %s: served from the snapshot: %s", key, exc)
            self.snapshot_fallbacks += 1
            data_key = await stores.snapshot_keys.read(key) if item.envelope else None
            return Fetched(content, data_key)
        fetched = self._read_query(resp, item)
        if fetched is None:
            logger.debug("get %s: not found on %s", key, resp.server)
            await stores.snapshots.delete(key)
            if item.envelope:
                await stores.snapshot_keys.delete(key)
            return None
        if not no_snapshot:
            if item.envelope:
                # the data key first: a content snapshot is never newer than its key
                if fetched.data_key is None:
                    await stores.snapshot_keys.delete(key)
                else:
                    await stores.snapshot_keys.write(key, fetched.data_key)
            # write() checks holds() too; asking first saves a coroutine on nearly every get
            content = fetched.content
            if not stores.snapshots.holds(key, content):
                await stores.snapshots.write(key, content)
        return fetched

    async def snapshot_hint(self, item: Item, max_age: float) -> Fetched | None:
        """The snapshot, looked up in a listing of the folder at most ``max_age`` seconds old
        (a watcher primes its probe's md5 with it: a snapshot that is current is not fetched
        again, and a missed one only costs a fetch)."""
        stores = self._stores
        content = await stores.snapshots.read_if_listed(item.key, max_age)
        if content is None:
            return None
        data_key = await stores.snapshot_keys.read(item.key) if item.envelope else None
        return Fetched(content, data_key)
