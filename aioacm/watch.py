"""Long polling: which keys are watched, the pollers that watch them, and change detection.

Keys are split over pollers of at most ``pulling_config_size`` keys; each poller is one
background task (``aioacm.poll[N]``) owned by the client, holding one long poll at a time over the
shared session. The probe carries the md5 of the last value fetched *from the server* (never of a
failover file, which made the sync SDK's poller spin), so after an outage the poll resumes with
the md5s it holds and every change made meanwhile is reported exactly once.

``cipher-`` items (with KMS on) are decrypted before delivery; md5s stay those of the ciphertext.
A value that cannot be decrypted is not delivered and not taken as known: the next probe still
names it, so it is fetched and decrypted again (with backoff) until it works. Nothing is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._tasks import cancel_and_wait
from .dispatch import ConfigChange, Dispatcher, Watcher
from .errors import ACMException
from .kms import envelope_key_spec
from .protocol import (
    cache_key,
    content_md5,
    encode_probe_record,
    parse_poll_response,
    probe_form_body,
)

if TYPE_CHECKING:
    from .client import ACMClient

__all__ = ["WatchManager"]

logger = logging.getLogger(__name__)

BACKOFF_BASE = 0.5
BACKOFF_CAP = 10.0
FETCH_CONCURRENCY = 32
ADD_COALESCE_SECONDS = 0.005
SNAPSHOT_HINT_AGE = 1.0


def backoff_delay(failures: int) -> float:
    """Capped exponential backoff with full jitter for the ``failures``-th failure in a row."""
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(failures, 16)))


@dataclass(eq=False, slots=True)
class KeyState:
    """What the client knows of one watched key."""

    data_id: str
    group: str
    key: str
    md5: str = ""  # of the last value fetched from the server: what the probe sends
    raw: str | None = None  # that value (None: the item does not exist)
    data_key: str | None = None  # its encrypted data key (envelope-encrypted items)
    content: str | None = None  # raw as the user sees it (decrypted), once revealed
    revealed: bool = False  # content is set
    known: bool = False  # the server confirmed md5 at least once
    watchers: list[Watcher] = field(default_factory=list)
    poller: Poller | None = None
    # this key's form-encoded probe record, and the md5 it was built with
    record: str = ""
    record_md5: str | None = None

    def probe_record(self, tenant: str) -> str:
        """The key's probe record for the current md5 (encoded once per md5, not per poll)."""
        if self.record_md5 != self.md5:
            self.record = encode_probe_record(self.data_id, self.group, self.md5, tenant)
            self.record_md5 = self.md5
        return self.record


class Poller:
    """One long-polling task over up to ``pulling_config_size`` keys."""

    def __init__(self, manager: WatchManager, index: int) -> None:
        self.manager = manager
        self.index = index
        self.keys: dict[str, KeyState] = {}
        self._wake = asyncio.Event()
        self._wake_handle: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None

    def add(self, state: KeyState) -> None:
        """Watch ``state`` too; a held poll is cut short so the new key is probed at once."""
        self.keys[state.key] = state
        state.poller = self
        if self._wake_handle is None:
            # Keys added within a few milliseconds share one re-probe: adding a thousand
            # keys one by one costs a handful of polls, not a thousand growing ones.
            self._wake_handle = asyncio.get_running_loop().call_later(
                ADD_COALESCE_SECONDS, self._wake_up
            )
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(
                self._run(), name=f"aioacm.poll[{self.index}]"
            )

    def stop_waking(self) -> None:
        """Drop a pending wake-up (the poller is being stopped)."""
        if self._wake_handle is not None:
            self._wake_handle.cancel()
            self._wake_handle = None

    def _wake_up(self) -> None:
        self._wake_handle = None
        self._wake.set()

    def discard(self, state: KeyState) -> None:
        """Stop watching ``state`` (the held poll may still name it; its answer is ignored)."""
        self.keys.pop(state.key, None)
        state.poller = None

    async def _run(self) -> None:
        failures = 0
        while self.keys and not self.manager.client.closed:
            try:
                ok = await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("poller %d failed unexpectedly; restarting", self.index)
                ok = False
            if ok:
                failures = 0
            else:
                failures += 1
                await asyncio.sleep(backoff_delay(failures))

    async def _poll_once(self) -> bool:
        """One probe and its consequences. False when something failed (the caller backs off)."""
        client = self.manager.client
        options = client.options
        self._wake.clear()
        states = list(self.keys.values())
        tenant = client.namespace
        body = probe_form_body([s.probe_record(tenant) for s in states])
        headers = {"longPullingTimeout": str(int(options.pulling_timeout * 1000))}
        first_poll = any(not s.known for s in states)
        if first_poll:
            headers["longPullingNoHangUp"] = "true"
        transport = client._transport
        if transport is None:  # the client is closing: aclose() is cancelling this task
            return True
        loop = asyncio.get_running_loop()
        started = loop.time()
        request = loop.create_task(
            transport.request(
                "POST",
                "/diamond-server/config.co",
                body=body,
                headers=headers,
                timeout=options.pulling_timeout + 10,
                limited=False,
            ),
            name=f"aioacm.poll[{self.index}].request",
        )
        helpers: set[asyncio.Task[object]] = {request}
        if not first_poll:
            # Only a held poll is cut short for a new key. A no-hang-up poll answers at once,
            # and cancelling it would only close its connection (it cannot be reused half
            # read): adding thousands of keys then cost a new connection every few ms.
            woken = loop.create_task(self._wake.wait(), name=f"aioacm.poll[{self.index}].wake")
            helpers.add(woken)
        try:
            await asyncio.wait(helpers, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Also when this poller is being cancelled: the helpers end here, and a request
            # that failed meanwhile has its exception retrieved (never "never retrieved").
            for helper in helpers:
                helper.cancel()
            await asyncio.wait(helpers)
            if not request.cancelled():
                request.exception()
        if request.cancelled():
            return True  # a key was added: probe again at once
        try:
            resp = request.result()
        except ACMException as exc:
            logger.warning("poller %d: %s", self.index, exc)
            return False
        reported = parse_poll_response(resp.body)
        if resp.status != 200 or (not reported and resp.body.strip()):
            # A proxy's error page or a cut answer: nothing in it can be trusted, not even
            # "nothing changed", which would confirm stale snapshots.
            logger.warning(
                "poller %d: %s answered the poll %d, malformed",
                self.index,
                resp.server,
                resp.status,
            )
            return False
        changed = []
        if reported:
            by_name = {(s.data_id, s.group): s for s in states}
            changed = [
                by_name[(data_id, group)]
                for data_id, group, _tenant in reported
                if (data_id, group) in by_name
            ]
        confirmed = []
        if first_poll:
            changed_set = set(map(id, changed))
            confirmed = [s for s in states if not s.known and id(s) not in changed_set]
            for state in confirmed:
                # the server agrees with the local snapshot: that is the current value
                if not await self.manager.reveal(state):
                    changed.append(state)  # cannot decrypt the snapshot: fetch from the server
                    continue
                state.known = True
                await self.manager.deliver(state)
        before = [s.md5 for s in changed]
        if not await self.manager.refresh(changed):
            return False
        if (
            not first_poll
            and before == [s.md5 for s in changed]
            and loop.time() - started < options.pulling_timeout / 2 - 0.25
        ):
            # Asked to hold, the server answered at once with nothing new: polling again
            # at once would spin as long as it does that. Back off instead.
            logger.warning(
                "poller %d: %s answered a held poll at once with no change", self.index, resp.server
            )
            return False
        return True


class WatchManager:
    """Every watched key of one client, its pollers, and delivery to its watchers."""

    def __init__(self, client: ACMClient, dispatcher: Dispatcher) -> None:
        self.client = client
        self.dispatcher = dispatcher
        self._states: dict[str, KeyState] = {}
        self._pollers: list[Poller] = []
        self._next_index = 0
        self._fetch_limit = asyncio.Semaphore(FETCH_CONCURRENCY)

    @property
    def keys(self) -> list[str]:
        """The watched keys."""
        return list(self._states)

    @property
    def pollers(self) -> list[Poller]:
        """The running pollers."""
        return list(self._pollers)

    async def add(self, data_id: str, group: str, watcher: Watcher) -> None:
        """Add ``watcher`` to a key, starting to poll the key if it is new.

        All or nothing: the watcher is registered after the last await, together with its
        first value, so a caller cancelled meanwhile has added nothing.
        """
        key = cache_key(data_id, group, self.client.namespace)
        while True:
            state = self._states.get(key)
            if state is None:
                # The snapshot only primes the probe's md5 (a key whose snapshot is current
                # is not fetched again), so a listing a second old is good enough: adding
                # thousands of keys to an empty folder then costs no file access per key.
                snapshot = await self.client._snapshots.read_if_listed(key, SNAPSHOT_HINT_AGE)
                data_key = None
                if snapshot is not None and envelope_key_spec(data_id) is not None:
                    data_key = await self.client._snapshot_keys.read(key)
                if key in self._states:  # another add won the race
                    continue
                state = KeyState(data_id, group, key, content_md5(snapshot), snapshot, data_key)
                self._states[key] = state
                self._poller_with_room().add(state)
            elif state.known:
                change = await self._change(state)
                if self._states.get(key) is not state:  # no longer watched meanwhile
                    continue
                state.watchers.append(watcher)
                watcher.offer(change)
                return
            state.watchers.append(watcher)  # the first poll delivers the first value
            return

    async def remove(
        self, data_id: str, group: str, match: Callable[[Watcher], bool], remove_all: bool
    ) -> int:
        """Remove the first (or every) watcher of a key that ``match``es; return how many."""
        key = cache_key(data_id, group, self.client.namespace)
        state = self._states.get(key)
        if state is None:
            return 0
        removed = []
        for watcher in list(state.watchers):
            if match(watcher):
                state.watchers.remove(watcher)
                watcher.stop()
                removed.append(watcher)
                if not remove_all:
                    break
        if not state.watchers:
            del self._states[key]
            poller = state.poller
            if poller is not None:
                poller.discard(state)
                if not poller.keys:
                    self._pollers.remove(poller)
                    poller.stop_waking()
                    await cancel_and_wait(poller.task)
        return len(removed)

    def _poller_with_room(self) -> Poller:
        size = self.client.options.pulling_config_size
        for poller in self._pollers:
            if len(poller.keys) < size:
                return poller
        poller = Poller(self, self._next_index)
        self._next_index += 1
        self._pollers.append(poller)
        return poller

    async def refresh(self, states: list[KeyState]) -> bool:
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
            if state.poller is None:
                return True  # no longer watched
            client = self.client
            try:
                raw, data_key = await client._fetch_server(state.data_id, state.group)
                content = await client._reveal(state.data_id, state.key, raw, data_key)
            except ACMException as exc:
                # state is untouched: the next probe still reports the key, and it is retried
                logger.warning("cannot fetch changed %s: %s", state.key, exc)
                return False
        state.raw, state.data_key, state.md5 = raw, data_key, content_md5(raw)
        state.content, state.revealed, state.known = content, True, True
        await self.deliver(state)
        return True

    async def reveal(self, state: KeyState) -> bool:
        """Make sure ``state.content`` is the decrypted ``state.raw``; False if it cannot be."""
        if not state.revealed:
            try:
                content = await self.client._reveal(
                    state.data_id, state.key, state.raw, state.data_key
                )
            except ACMException as exc:
                logger.warning("cannot decrypt the snapshot of %s: %s", state.key, exc)
                return False
            state.content, state.revealed = content, True
        return True

    async def _change(self, state: KeyState) -> ConfigChange:
        # A failover file overrides the server for watchers too, as it does for get().
        client = self.client
        raw, content, md5 = state.raw, state.content, state.md5  # md5 is content_md5(raw)
        failover = await client._failover.read(state.key)
        if failover is not None:
            data_key = None
            if envelope_key_spec(state.data_id) is not None:
                data_key = await client._failover_keys.read(state.key)
            try:
                content = await client._reveal(state.data_id, state.key, failover, data_key)
            except ACMException as exc:
                logger.warning("cannot decrypt the failover file of %s: %s", state.key, exc)
            else:
                raw, md5 = failover, content_md5(failover)
        return ConfigChange(
            data_id=state.data_id,
            group=state.group,
            namespace=client.namespace,
            content=content,
            raw_content=raw,
            md5=md5,
        )

    async def deliver(self, state: KeyState) -> None:
        """Offer the key's current value to each of its watchers."""
        if not state.watchers:
            return
        change = await self._change(state)
        for watcher in list(state.watchers):
            watcher.offer(change)

    async def close(self) -> None:
        """Cancel and await every poller, end every watcher, then the dispatcher."""
        pollers, self._pollers = self._pollers, []
        for poller in pollers:  # all at once, before any of them can take another step
            poller.stop_waking()
            if poller.task is not None:
                poller.task.cancel()
        await asyncio.gather(*(cancel_and_wait(p.task) for p in pollers))
        states, self._states = self._states, {}
        for state in states.values():
            for watcher in state.watchers:
                watcher.stop()
        await self.dispatcher.close()
