"""The server's config items and the change notifications long polls wait on.

Everything here runs on the server's event loop thread; nothing awaits while it changes state,
so a poll that compares md5s and then registers a watch cannot miss a change in between.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NamedTuple

from ..dialects.acm import content_md5

__all__ = ["ConfigItem", "ConfigKey", "ConfigStore", "Watch"]

logger = logging.getLogger("aioacm.server")


class ConfigKey(NamedTuple):
    """The identity of one item: ``(tenant, group, data_id)`` (sorts by tenant, group, id)."""

    tenant: str
    group: str
    data_id: str


@dataclass(frozen=True)
class ConfigItem:
    """One stored item.

    Attributes:
        data_id: the dataId.
        group: the group (never empty).
        tenant: the namespace id, ``""`` for the default namespace.
        content: the content as text.
        md5: lowercase hex md5 of the content's GBK bytes (what long polls compare).
        encrypted_data_key: the ``encryptedDataKey`` published with it (KMS envelope), if any.
        last_modified: ``time.time()`` of the last write.
        config_type: the Nacos config type published with it (``text``, ``yaml``...), if any.
    """

    data_id: str
    group: str
    tenant: str
    content: str
    md5: str
    encrypted_data_key: str | None = None
    last_modified: float = 0.0
    config_type: str | None = None

    @functools.cached_property
    def utf8_md5(self) -> str:
        """The md5 Nacos compares: over the content's UTF-8 bytes."""
        return hashlib.md5(self.content.encode("utf-8", errors="surrogatepass")).hexdigest()

    @property
    def key(self) -> ConfigKey:
        """The item's key."""
        return ConfigKey(self.tenant, self.group, self.data_id)


class Watch:
    """A set of keys a long poll waits on; ``changed`` collects the keys that changed."""

    def __init__(self, keys: Iterable[ConfigKey]) -> None:
        self.keys = frozenset(keys)
        self.changed: set[ConfigKey] = set()
        self.event = asyncio.Event()

    def notify(self, key: ConfigKey | None) -> None:
        """Record that ``key`` changed (``None``: just wake up) and wake the waiter."""
        if key is not None:
            self.changed.add(key)
        self.event.set()


class ConfigStore:
    """Items keyed by :class:`ConfigKey`, with watches woken when an item changes.

    A write wakes the watches on its key only when the md5 changes; a delete always wakes them
    (even when there was nothing to delete). ``on_change`` callbacks run after every write or
    delete that changed the stored data, for persistence. Subscribers (:meth:`subscribe`) hear
    of every key whose watches are woken, as the watches do (gRPC pushes).
    """

    def __init__(self) -> None:
        self._items: dict[ConfigKey, ConfigItem] = {}
        self._watches: dict[ConfigKey, set[Watch]] = {}
        self._subscribers: list[Callable[[ConfigKey], None]] = []
        self.on_change: list[Callable[[], None]] = []

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: ConfigKey) -> ConfigItem | None:
        """Return the item stored under ``key``, or ``None``."""
        return self._items.get(key)

    def md5(self, key: ConfigKey) -> str:
        """The md5 a poll compares with: the item's, or ``""`` when it does not exist."""
        item = self._items.get(key)
        return item.md5 if item is not None else ""

    def utf8_md5(self, key: ConfigKey) -> str:
        """The md5 a Nacos listener compares with (UTF-8), or ``""`` when there is no item."""
        item = self._items.get(key)
        return item.utf8_md5 if item is not None else ""

    def items(self, tenant: str | None = None) -> list[ConfigItem]:
        """Every item (only ``tenant``'s when given), sorted by (tenant, group, data_id)."""
        return [
            item
            for key, item in sorted(self._items.items())
            if tenant is None or key.tenant == tenant
        ]

    def put(
        self,
        key: ConfigKey,
        content: str,
        encrypted_data_key: str | None = None,
        config_type: str | None = None,
    ) -> ConfigItem:
        """Store ``content`` under ``key``; wake the watches on it if the md5 changed."""
        previous = self._items.get(key)
        item = ConfigItem(
            data_id=key.data_id,
            group=key.group,
            tenant=key.tenant,
            content=content,
            md5=content_md5(content),
            encrypted_data_key=encrypted_data_key,
            last_modified=time.time(),
            config_type=config_type,
        )
        self._items[key] = item
        if previous is None or previous.md5 != item.md5:
            self._notify(key)
        self._changed()
        return item

    def delete(self, key: ConfigKey) -> bool:
        """Delete the item under ``key``; return whether it existed. Always wakes its watches."""
        existed = self._items.pop(key, None) is not None
        self._notify(key)
        if existed:
            self._changed()
        return existed

    def load(self, items: Iterable[ConfigItem]) -> None:
        """Add ``items`` (read from a file) over the current ones, waking watches as needed."""
        for item in items:
            previous = self._items.get(item.key)
            self._items[item.key] = item
            if previous is None or previous.md5 != item.md5:
                self._notify(item.key)

    @contextmanager
    def watch(self, keys: Iterable[ConfigKey]) -> Iterator[Watch]:
        """Register a :class:`Watch` on ``keys`` for the duration of the ``with`` block."""
        watch = Watch(keys)
        for key in watch.keys:
            self._watches.setdefault(key, set()).add(watch)
        try:
            yield watch
        finally:
            for key in watch.keys:
                watchers = self._watches.get(key)
                if watchers is not None:
                    watchers.discard(watch)
                    if not watchers:
                        del self._watches[key]

    def wake_all(self) -> None:
        """Wake every watch without reporting a change (the server is stopping)."""
        for watchers in list(self._watches.values()):
            for watch in list(watchers):
                watch.notify(None)

    def subscribe(self, callback: Callable[[ConfigKey], None]) -> Callable[[], None]:
        """Call ``callback(key)`` whenever the watches on ``key`` are woken: a write that
        changed the md5, a delete, a load. It runs synchronously inside the write and must not
        block; an exception it raises is logged, never passed to the writer.

        Returns:
            A function that ends the subscription (calling it twice is harmless).
        """
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    @property
    def watch_count(self) -> int:
        """How many watches (held long polls) are registered."""
        return len({watch for watchers in self._watches.values() for watch in watchers})

    def _notify(self, key: ConfigKey) -> None:
        for watch in list(self._watches.get(key, ())):
            watch.notify(key)
        for callback in list(self._subscribers):
            try:
                callback(key)
            except Exception:
                logger.exception("a change subscriber failed on %s", key)

    def _changed(self) -> None:
        for callback in list(self.on_change):
            callback()
