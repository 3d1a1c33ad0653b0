"""Watching: which keys are watched, what the client holds for each, and delivery on change.

The watch machinery learns of changes from a ``ChangeFeed`` that its dialect makes: HTTP long
polls (``aioacm.polling``), or a server that pushes the keys that changed. Whichever way the news
arrives, it is one of two calls on this module's ``WatchManager`` (the feed's ``ChangeSink``):

- ``refresh(states)``: "the server says these keys differ from the md5s you hold": each is
  fetched through the lookup chain's server read (its snapshot kept in step) and delivered;
- ``confirm(states)``: "the server agrees with the md5s you hold" (a first poll naming nothing):
  the value held (from the snapshot) is delivered without a fetch.

A feed sends the md5 of the last value fetched *from the server* (never of a failover file,
which made the sync SDK's poller spin), so after an outage it resumes with the md5s it holds and
every change made meanwhile is reported exactly once. A failover file overrides the server for
watchers as it does for ``get`` (``Lookup.failover``: one rule for both).

``cipher-`` items (with KMS on) are decrypted before delivery; md5s stay those of the ciphertext.
A value that cannot be decrypted is not delivered and not taken as known: the feed still names
it, so it is fetched and decrypted again (with backoff) until it works. Nothing is dropped.

This module never imports the client: it is given the lookup chain, the dispatcher, the
dialect's md5, the KMS of the moment and the feed to use.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .dispatch import ConfigChange, Dispatcher, Watcher
from .errors import ACMException
from .keys import Item
from .kms import KMS
from .lookup import Lookup

__all__ = ["ChangeFeed", "ChangeSink", "KeyState", "WatchManager", "backoff_delay"]

logger = logging.getLogger(__name__)

BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
FETCH_CONCURRENCY = 32
SNAPSHOT_HINT_AGE = 1.0


def backoff_delay(failures: int, *, cap: float | None = None) -> float:
    """Capped exponential backoff with full jitter for the ``failures``-th failure in a row."""
    top = BACKOFF_CAP if cap is None else cap
    return random.uniform(0, min(top, BACKOFF_BASE * 2 ** min(failures, 16)))


@dataclass(eq=False, slots=True)
class KeyState:
    """What the client knows of one watched key."""

    item: Item
    md5: str = ""  # of the last value fetched from the server: what the feed sends
    raw: str | None = None  # that value (None: the item does not exist)
    data_key: str | None = None  # its encrypted data key (envelope-encrypted items)
    config_type: str | None = None  # its config type, where the server keeps one
    content: str | None = None  # raw as the user sees it (decrypted), once revealed
    revealed: bool = False  # content is set
    known: bool = False  # the server confirmed md5 at least once
    watched: bool = True  # False once the last watcher left
    watchers: list[Watcher] = field(default_factory=list)

    @property
    def key(self) -> str:
        """The cache key ``dataId+group+namespace``."""
        return self.item.key


class ChangeSink(Protocol):
    """What a feed reports to (the ``WatchManager``)."""

    async def refresh(self, states: Sequence[KeyState]) -> bool:
        """The server says these differ from the md5s held: fetch and deliver them. False if
        any failed (it is still stale: the feed names it again, after a backoff)."""
        ...

    async def confirm(self, states: Sequence[KeyState]) -> list[KeyState]:
        """The server agrees with the md5s held: deliver the values held. Returns the ones
        that could not be (a snapshot that cannot be decrypted): refresh those."""
        ...


class ChangeFeed(Protocol):
    """Tells a ``ChangeSink`` when watched keys change (made by a dialect)."""

    def add(self, state: KeyState) -> None:
        """Watch one more key (its held md5 is ``state.md5``)."""
        ...

    async def discard(self, state: KeyState) -> None:
        """Stop watching a key."""
        ...

    @property
    def pollers(self) -> int:
        """Long polls or streams held for the keys."""
        ...

    async def close(self) -> None:
        """Cancel and await every task of the feed."""
        ...


class WatchManager:
    """Every watched key of one client, and delivery to its watchers (a ``ChangeSink``).

    Args:
        lookup: the client's lookup chain.
        dispatcher: runs the callbacks.
        make_feed: makes the feed, given this manager as its sink (the dialect's).
        md5: the dialect's md5.
        kms_for: the KMS that decrypts an item, None when it is not stored encrypted.
    """

    def __init__(
        self,
        lookup: Lookup,
        dispatcher: Dispatcher,
        make_feed: Callable[[ChangeSink], ChangeFeed],
        md5: Callable[[str | None], str],
        kms_for: Callable[[Item], KMS | None],
    ) -> None:
        self.lookup = lookup
        self.dispatcher = dispatcher
        self._md5 = md5
        self._kms_for = kms_for
        self._states: dict[str, KeyState] = {}
        self._fetch_limit = asyncio.Semaphore(FETCH_CONCURRENCY)
        self.feed = make_feed(self)

    @property
    def keys(self) -> int:
        """How many keys are watched."""
        return len(self._states)

    @property
    def watchers(self) -> int:
        """How many watchers there are, over every key."""
        return sum(len(state.watchers) for state in self._states.values())

    def watching(self, key: str, watcher: Watcher) -> bool:
        """Whether ``watcher`` is registered on the key ``key``."""
        state = self._states.get(key)
        return state is not None and any(w is watcher for w in state.watchers)

    async def add(self, item: Item, watcher: Watcher) -> None:
        """Add ``watcher`` to a key, starting to watch the key if it is new.

        All or nothing: the watcher is registered after the last await, together with its
        first value, so a caller cancelled meanwhile has added nothing.
        """
        key = item.key
        while True:
            state = self._states.get(key)
            if state is None:
                # The snapshot only primes the md5 the feed sends (a key whose snapshot is
                # current is not fetched again), so a listing a second old is good enough:
                # adding thousands of keys to an empty folder then costs no file access each.
                snapshot = await self.lookup.snapshot_hint(item, SNAPSHOT_HINT_AGE)
                if key in self._states:  # another add won the race
                    continue
                state = KeyState(item)
                if snapshot is not None:
                    state.raw, state.data_key = snapshot.content, snapshot.data_key
                    state.md5 = self._md5(snapshot.content)
                self._states[key] = state
                self.feed.add(state)
            elif state.known:
                change = await self._change(state)
                if self._states.get(key) is not state:  # no longer watched meanwhile
                    continue
                state.watchers.append(watcher)
                watcher.offer(change)
                return
            state.watchers.append(watcher)  # the first poll delivers the first value
            return

    async def remove(self, item: Item, match: Callable[[Watcher], bool], remove_all: bool) -> int:
        """Remove the first (or every) watcher of a key that ``match``es; return how many."""
        state = self._states.get(item.key)
        if state is None:
            return 0
        removed = 0
        for watcher in list(state.watchers):
            if match(watcher):
                state.watchers.remove(watcher)
                watcher.stop()
                removed += 1
                if not remove_all:
                    break
        if not state.watchers:
            del self._states[item.key]
            state.watched = False
            await self.feed.discard(state)
        return removed

    # -- the sink --------------------------------------------------------------------------

    async def refresh(self, states: Sequence[KeyState]) -> bool:
        """Fetch the keys the server reported changed and deliver them; False if any failed."""
        if len(states) <= 1:
            return all([await self._refresh_one(s) for s in states])
        # A few workers over the list, not a task per key: the first poll of thousands of
        # keys reports them all, and thousands of tasks waiting on the semaphore cost
        # megabytes that the process keeps.
        pending = iter(states)
        failed = False

        async def work() -> None:
            nonlocal failed
            for state in pending:
                if not await self._refresh_one(state):
                    failed = True

        await asyncio.gather(*(work() for _ in range(min(FETCH_CONCURRENCY, len(states)))))
        return not failed

    async def _refresh_one(self, state: KeyState) -> bool:
        async with self._fetch_limit:
            if not state.watched:
                return True
            item = state.item
            try:
                fetched = await self.lookup.fetch(item)
                raw = fetched.content if fetched is not None else None
                kms = self._kms_for(item) if raw is not None else None
                content = raw
                if kms is not None and fetched is not None:
                    content = await kms.decrypt(item.data_id, item.key, raw or "", fetched.data_key)
            except ACMException as exc:
                # state is untouched: the feed still names the key, and it is retried
                logger.warning("cannot fetch changed %s: %s", item.key, exc)
                return False
        state.raw, state.md5 = raw, self._md5(raw)
        state.data_key = fetched.data_key if fetched is not None else None
        state.config_type = fetched.config_type if fetched is not None else None
        state.content, state.revealed, state.known = content, True, True
        await self.deliver(state)
        return True

    async def confirm(self, states: Sequence[KeyState]) -> list[KeyState]:
        """The server agrees with the values held: deliver them; return those that could not
        be revealed (to be fetched instead)."""
        failed = []
        for state in states:
            # the server agrees with the local snapshot: that is the current value
            if not await self._reveal(state):
                failed.append(state)  # cannot decrypt the snapshot: fetch from the server
                continue
            state.known = True
            await self.deliver(state)
        return failed

    async def _reveal(self, state: KeyState) -> bool:
        """Make sure ``state.content`` is the decrypted ``state.raw``; False if it cannot be."""
        if not state.revealed:
            item = state.item
            kms = self._kms_for(item) if state.raw is not None else None
            content = state.raw
            if kms is not None:
                try:
                    content = await kms.decrypt(
                        item.data_id, item.key, state.raw or "", state.data_key
                    )
                except ACMException as exc:
                    logger.warning("cannot decrypt the snapshot of %s: %s", item.key, exc)
                    return False
            state.content, state.revealed = content, True
        return True

    # -- delivery --------------------------------------------------------------------------

    async def _change(self, state: KeyState) -> ConfigChange:
        item = state.item
        raw, content, md5, config_type = state.raw, state.content, state.md5, state.config_type
        # A failover file overrides the server for watchers too, as it does for get().
        override = await self.lookup.failover(item, self._kms_for(item))
        if override is not None and override.fetched is not None:
            raw, content = override.fetched.content, override.content
            md5, config_type = self._md5(raw), None
        return ConfigChange(
            data_id=item.data_id,
            group=item.group,
            namespace=item.namespace,
            content=content,
            raw_content=raw,
            md5=md5,
            config_type=config_type,
        )

    async def deliver(self, state: KeyState) -> None:
        """Offer the key's current value to each of its watchers."""
        if not state.watchers:
            return
        change = await self._change(state)
        for watcher in list(state.watchers):
            watcher.offer(change)

    async def close(self) -> None:
        """Stop the feed, end every watcher, then the dispatcher."""
        await self.feed.close()
        states, self._states = self._states, {}
        for state in states.values():
            state.watched = False
            for watcher in state.watchers:
                watcher.stop()
        await self.dispatcher.close()
