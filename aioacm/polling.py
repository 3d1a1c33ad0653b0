"""HTTP long polling: the change feed of the request/response dialects (ACM, Nacos HTTP).

Keys are split over pollers of at most ``pulling_config_size`` keys; each poller is one
background task (``aioacm.poll[N]``) owned by the feed, holding one long poll at a time over the
client's transport. What a poll looks like is the dialect's (a ``ListenGrammar``): one record per
key with the md5 held, a request over the joined records, an answer naming the keys that differ.

A re-poll costs Python work in proportion to the keys that changed, not to the keys watched:
each poller keeps every key's encoded record (re-encoded only when its md5 changes) and the
keys it has not yet heard about from the server, both updated as keys come, go and change; an
answer's keys are found by their cache key. Joining the records into the body is one C-level
join (the protocol wants every record in every poll).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from ._tasks import cancel_and_wait
from .errors import ACMException
from .keys import Item, cache_key
from .options import Options
from .watch import ChangeSink, KeyState, backoff_delay
from .wire import Request, Response, Send

__all__ = ["ListenGrammar", "LongPollFeed"]

logger = logging.getLogger(__name__)

ADD_COALESCE_SECONDS = 0.005


class ListenGrammar(Protocol):
    """A dialect's long poll."""

    #: the namespace of every key polled
    namespace: str

    def listen_record(self, item: Item, md5: str) -> str:
        """One key's record, encoded, for the md5 held."""
        ...

    def listen_request(self, records: str, *, first: bool) -> Request:
        """The poll over joined records; ``first``: answer at once (a key is new)."""
        ...

    def listen_timeout(self) -> float:
        """Seconds to wait for the answer."""
        ...

    def read_listen(self, response: Response) -> list[tuple[str, str, str]] | None:
        """``(data_id, group, namespace)`` of the keys the answer names; None if malformed."""
        ...


class Poller:
    """One long-polling task over up to ``pulling_config_size`` keys."""

    def __init__(self, feed: LongPollFeed, index: int) -> None:
        self.feed = feed
        self.index = index
        self.keys: dict[str, KeyState] = {}
        # per key, its encoded record for the md5 it was built with
        self._records: dict[str, str] = {}
        self._record_md5: dict[str, str] = {}
        # keys the server has not yet confirmed or reported (each poll answers at once then)
        self._new: dict[str, KeyState] = {}
        self._wake = asyncio.Event()
        self._wake_handle: asyncio.TimerHandle | None = None
        self.task: asyncio.Task[None] | None = None

    def add(self, state: KeyState) -> None:
        """Watch ``state`` too; a held poll is cut short so the new key is probed at once."""
        key = state.key
        self.keys[key] = state
        self._update(state)
        if not state.known:
            self._new[key] = state
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

    def _update(self, state: KeyState) -> None:
        """Re-encode the key's record if its md5 changed."""
        key = state.key
        if self._record_md5.get(key) != state.md5 and key in self.keys:
            self._records[key] = self.feed.grammar.listen_record(state.item, state.md5)
            self._record_md5[key] = state.md5

    def discard(self, state: KeyState) -> None:
        """Stop watching ``state`` (the held poll may still name it; its answer is ignored)."""
        key = state.key
        self.keys.pop(key, None)
        self._records.pop(key, None)
        self._record_md5.pop(key, None)
        self._new.pop(key, None)

    def stop_waking(self) -> None:
        """Drop a pending wake-up (the poller is being stopped)."""
        if self._wake_handle is not None:
            self._wake_handle.cancel()
            self._wake_handle = None

    def _wake_up(self) -> None:
        self._wake_handle = None
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while self.keys:
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
        """One poll and its consequences. False when something failed (the caller backs off)."""
        feed = self.feed
        grammar = feed.grammar
        self._wake.clear()
        first_poll = bool(self._new)
        loop = asyncio.get_running_loop()
        started = loop.time()
        request = loop.create_task(
            feed.send(
                grammar.listen_request("".join(self._records.values()), first=first_poll),
                timeout=grammar.listen_timeout(),
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
        reported = grammar.read_listen(resp)
        if reported is None:
            logger.warning(
                "poller %d: %s answered the poll %d, malformed",
                self.index,
                resp.server,
                resp.status,
            )
            return False
        # the answer names keys of this client's namespace (whatever it calls the public one)
        keys, namespace = self.keys, grammar.namespace
        changed = []
        for data_id, group, _namespace in reported:
            state = keys.get(cache_key(data_id, group, namespace))
            if state is not None:
                changed.append(state)
        if first_poll:
            # the new keys the server did not name agree with what is held
            named = {state.key for state in changed}
            confirmed = [s for key, s in self._new.items() if key not in named and not s.known]
            changed.extend(await feed.sink.confirm(confirmed))
        before = [s.md5 for s in changed]
        ok = await feed.sink.refresh(changed)
        for state in changed:
            self._update(state)
        if first_poll:
            for key in [key for key, state in self._new.items() if state.known]:
                del self._new[key]
        if not ok:
            return False
        if (
            not first_poll
            and before == [s.md5 for s in changed]
            and loop.time() - started < feed.options.pulling_timeout / 2 - 0.25
        ):
            # Asked to hold, the server answered at once with nothing new: polling again
            # at once would spin as long as it does that. Back off instead.
            logger.warning(
                "poller %d: %s answered a held poll at once with no change", self.index, resp.server
            )
            return False
        return True


class LongPollFeed:
    """The long pollers of one client (a ``ChangeFeed``).

    Args:
        sink: where changes go (the watch manager).
        send: the transport's ``send``.
        grammar: the dialect's long poll.
        options: the client's live options (``pulling_config_size``, ``pulling_timeout``).
    """

    def __init__(
        self, sink: ChangeSink, send: Send, grammar: ListenGrammar, options: Options
    ) -> None:
        self.sink = sink
        self.send = send
        self.grammar = grammar
        self.options = options
        self._pollers: list[Poller] = []
        self._poller_of: dict[str, Poller] = {}
        self._next_index = 0

    @property
    def pollers(self) -> int:
        """The running pollers (one long poll each)."""
        return len(self._pollers)

    def add(self, state: KeyState) -> None:
        """Poll ``state`` in the first poller with room (a new poller if none has)."""
        size = self.options.pulling_config_size
        for poller in self._pollers:
            if len(poller.keys) < size:
                break
        else:
            poller = Poller(self, self._next_index)
            self._next_index += 1
            self._pollers.append(poller)
        self._poller_of[state.key] = poller
        poller.add(state)

    async def discard(self, state: KeyState) -> None:
        """Stop polling ``state``; a poller left with no key ends."""
        poller = self._poller_of.pop(state.key, None)
        if poller is None:
            return
        poller.discard(state)
        if not poller.keys:
            self._pollers.remove(poller)
            poller.stop_waking()
            await cancel_and_wait(poller.task)

    async def close(self) -> None:
        """Cancel and await every poller."""
        pollers, self._pollers = self._pollers, []
        self._poller_of.clear()
        for poller in pollers:  # all at once, before any of them can take another step
            poller.stop_waking()
            if poller.task is not None:
                poller.task.cancel()
        await asyncio.gather(*(cancel_and_wait(p.task) for p in pollers))
