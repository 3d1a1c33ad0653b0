"""Async snapshot and failover stores: one file per key, the sync SDK's layout.

``{base}/{dataId}+{group}+{namespace}``, UTF-8 text, so folders written by ``acm-sdk-python``
are read here and the other way round. Writes go to a temporary file in the same folder that is
flushed to disk and then renamed over the target: a reader (or a crash) sees the old file or the
new one, never a torn one. A store that cannot write warns once and goes on: a snapshot is a
fallback, and failing to keep one must never fail a ``get``.

Writes are group-committed: the writes that arrive while a thread job is writing wait for it and
then go together in the next job (one thread hop for all of them). A batch of at least
``SYNCFS_MIN_FILES`` files is flushed to disk with one ``syncfs`` of the folder's file system
(Linux) instead of an fsync per file: the first reads of an application starting up, or of a
watch of thousands of keys, cost about half the CPU they did. ``syncfs`` flushes everything
written to that file system, so a slow one (a busy disk shared with others) makes the store
fsync each file again for ``SYNCFS_PAUSE`` seconds.

A store made with ``recheck`` (the failover store: read before every ``get`` and every
delivery to a watcher, and nearly always empty) first looks a key up in a listing of its folder
taken at most ``recheck`` seconds ago, and touches the file only when it is listed. A file put
there by hand is therefore used from at most ``recheck`` seconds later on; a listed file is
read afresh every time, so edits and removals count at once.

Every store also answers two questions from such a listing (at most ``WRITTEN_RECHECK``
seconds old, one for all keys): is a file this process wrote still there (else it is written
again), and is there a file to delete at all. A thread hop per key for those cost about as much
CPU as a ``get``.

A store measures every age (of a listing, of a written file, of a ``syncfs`` pause) with the
``clock`` it is given, and touches the disk only through its ``StoreIO`` (see ``storeio``):
tests pass a clock they advance and a ``StoreIO`` that records, fails or waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable

from .storeio import TMP_MARK, StoreIO, is_temporary

__all__ = ["FAILOVER_RECHECK", "TMP_MARK", "FileStore", "StoreIO", "is_temporary"]

logger = logging.getLogger(__name__)

#: Seconds a listing of the failover folder is trusted (see the module docstring).
FAILOVER_RECHECK = 1.0
#: Seconds a snapshot this process wrote (or found) is trusted to still be there.
WRITTEN_RECHECK = 1.0

#: A batch of at least this many files is flushed with one ``syncfs`` (where there is one).
SYNCFS_MIN_FILES = 4
#: A ``syncfs`` that took longer than this per file of its batch: fsync each file for a while.
SYNCFS_SLOW_PER_FILE = 0.005
#: Seconds a store fsyncs each file after a slow ``syncfs``.
SYNCFS_PAUSE = 300.0


def _digest(content: str) -> int:
    # The memo only saves a rewrite of what this process wrote itself: Python's own string
    # hash (keyed per process, 64 bits) is plenty, and costs a fraction of an md5 per get.
    return hash(content)


class _Write:
    """A write on its way: what goes where, its place in the order of changes, its outcome."""

    __slots__ = ("content", "digest", "done", "key", "path", "seq")

    def __init__(
        self, key: str, path: str, content: str, digest: int, seq: int, done: asyncio.Future[bool]
    ) -> None:
        self.key, self.path, self.content = key, path, content
        self.digest, self.seq, self.done = digest, seq, done


class FileStore:
    """One folder of config files.

    Args:
        base: the folder (created on first write).
        name: what the store is for, in log lines ("snapshot", "failover").
        recheck: if given, look keys up in a listing of the folder at most this many seconds
            old before reading a file (see the module docstring).
        clock: the monotonic clock, in seconds, that every age in the store is measured with
            (called on the event loop and in worker threads).
        io: the file-system calls the store makes (a new ``StoreIO`` if None).
    """

    def __init__(
        self,
        base: str,
        *,
        name: str,
        recheck: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        io: StoreIO | None = None,
    ) -> None:
        self.base = base
        self.name = name
        self._clock = clock
        self._io = StoreIO() if io is None else io
        self._warned = False
        # What this process last wrote per key: a server read that brings the same content
        # again costs one stat, not a write.
        self._written: dict[str, int] = {}
        self._unreadable: set[str] = set()  # keys whose file could not be read (warned)
        self._seq = itertools.count()  # orders the changes of this store
        self._landed: dict[str, int] = {}  # per key, the number of the change on disk
        # per key, the write on its way: (digest of its content, its outcome)
        self._pending: dict[str, tuple[int, asyncio.Future[bool]]] = {}
        self._queue: list[_Write] = []  # writes waiting for the next thread job
        self._committing = False  # a thread job is writing, or one is about to start
        self._syncfs_paused_until = -math.inf
        self._lock = threading.Lock()
        self._recheck = recheck
        self._checked: dict[str, float] = {}  # per key, when its file was last known there
        # The folder's names when last listed (less the files this process deleted since)
        self._listing: set[str] | None = None
        self._listed_at = -math.inf
        self._listing_future: asyncio.Future[set[str] | None] | None = None

    def path(self, key: str) -> str:
        """The file of ``key``. Keys are validated upstream; this refuses anything path-like."""
        if not key or key != os.path.basename(key) or key in (".", "..") or TMP_MARK in key:
            raise ValueError(f"not a store key: {key!r}")
        return os.path.join(self.base, key)

    def known_absent(self, key: str) -> bool:
        """True when a listing of the folder young enough for ``read`` lacks ``key``: ``read``
        would return None without touching the disk. No I/O, no await (the fast path of
        every ``get``, whose failover folder is nearly always empty)."""
        # A local: Python specialises ``self._clock`` loaded, not ``self._clock()`` called.
        clock = self._clock
        return (
            self._recheck is not None
            and self._listing is not None
            and key not in self._listing
            and clock() - self._listed_at < self._recheck
        )

    def holds(self, key: str, content: str) -> bool:
        """True when this process wrote ``content`` for ``key`` and saw its file less than
        ``WRITTEN_RECHECK`` seconds ago: ``write`` would do nothing. No I/O, no await."""
        clock = self._clock  # (see known_absent)
        return (
            self._written.get(key) == _digest(content)
            and clock() - self._checked.get(key, -math.inf) < WRITTEN_RECHECK
        )

    async def read(self, key: str) -> str | None:
        """Return the stored content, or None when there is none or it cannot be read."""
        if self._recheck is not None:
            return await self.read_if_listed(key, self._recheck)
        return await self._read(key)

    async def read_if_listed(self, key: str, max_age: float) -> str | None:
        """Like ``read``, but look the key up in a listing of the folder at most ``max_age``
        seconds old first: a file created since may be missed. For callers to whom the file
        is a hint (and for the failover store, whose ``read`` is this)."""
        listing = await self._listing_within(max_age)
        if listing is not None and key not in listing:
            self.path(key)  # still refuse a bad key
            return None
        return await self._read(key)

    async def _listing_within(self, max_age: float) -> set[str] | None:
        """A listing at most ``max_age`` seconds old (taken now if the last one is older)."""
        if self._clock() - self._listed_at < max_age:
            return self._listing
        return await self._names()

    async def _names(self) -> set[str] | None:
        """List the folder again (concurrent readers share one listing): its file names, or
        None if it cannot be listed (then every read goes to the file)."""
        loop = asyncio.get_running_loop()
        future = self._listing_future
        if future is None:
            # Stamped with the time it started: it shows every file that existed by then.
            future = self._listing_future = loop.run_in_executor(
                None, self._io.list_names, self.base
            )
            future.add_done_callback(functools.partial(self._listed, self._clock()))
        # shield: a reader cancelled while waiting must not cancel the others' listing
        return await asyncio.shield(future)

    def _listed(self, started: float, future: asyncio.Future[set[str] | None]) -> None:
        self._listing_future = None
        if not future.cancelled():
            self._listing, self._listed_at = future.result(), started

    async def _read(self, key: str) -> str | None:
        path = self.path(key)
        try:
            content = await asyncio.to_thread(self._io.read_file, path)
        except (FileNotFoundError, NotADirectoryError):  # no folder is no file
            return None
        except (OSError, UnicodeDecodeError) as exc:
            # Once per broken file, not once per get: a bad failover file is read every time.
            level = logging.DEBUG if key in self._unreadable else logging.WARNING
            self._unreadable.add(key)
            logger.log(level, "%s file %s cannot be read: %s", self.name, path, exc)
            return None
        self._unreadable.discard(key)
        return content

    async def write(self, key: str, content: str) -> bool:
        """Atomically replace the file of ``key``; return False (and warn once) on failure."""
        path = self.path(key)
        digest = _digest(content)
        if self.holds(key, content):
            return True
        if self._written.get(key) == digest and await self._still_there(key, path):
            return True
        self._written.pop(key, None)
        # The same content for the same key already on its way (concurrent first reads of
        # a key): wait for that write instead of writing the file twice.
        pending = self._pending.get(key)
        if pending is None or pending[0] != digest:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[bool] = loop.create_future()
            self._queue.append(_Write(key, path, content, digest, next(self._seq), done))
            pending = self._pending[key] = (digest, done)
            if not self._committing:
                self._committing = True
                loop.call_soon(self._commit)  # after this turn: the writes it brings go too
        # shield: a cancelled caller leaves the write to finish for the others
        return await asyncio.shield(pending[1])

    def _commit(self) -> None:
        """Start a thread job writing every queued write, or go idle if there is none."""
        batch, self._queue = self._queue, []
        if not batch:
            self._committing = False
            return
        try:
            job = asyncio.get_running_loop().run_in_executor(None, self._write_batch, batch)
        except RuntimeError as exc:  # the loop's executor is shut down: the loop is closing
            self._committing = False
            for write in batch:
                self._wrote(write, OSError(f"not written: {exc}"))
            return
        job.add_done_callback(functools.partial(self._committed, batch))

    def _committed(self, batch: list[_Write], job: asyncio.Future[list[bool | Exception]]) -> None:
        if job.cancelled():  # nothing here cancels it; if something did, nothing was written
            outcomes: list[bool | Exception] = [OSError("the write job was cancelled")] * len(batch)
        else:
            exc = job.exception()
            outcomes = job.result() if exc is None else [exc] * len(batch)  # type: ignore[list-item]
        for write, outcome in zip(batch, outcomes, strict=True):
            self._wrote(write, outcome)
        self._commit()  # the writes that came meanwhile

    def _wrote(self, write: _Write, outcome: bool | BaseException) -> None:
        """Settle one write: True when it landed or a newer change outranked it, False (warned)
        when it failed on the disk."""
        if self._pending.get(write.key, (None, None))[1] is write.done:
            del self._pending[write.key]
        if write.done.done():
            return
        if isinstance(outcome, OSError):
            self._warn(f"cannot write {self.name} file {write.path}: {outcome}")
            write.done.set_result(False)
        elif isinstance(outcome, BaseException):  # not a disk error: a bug, for the callers
            write.done.set_exception(outcome)
        else:
            if outcome and self._landed.get(write.key) == write.seq:
                self._written[write.key] = write.digest
                self._checked[write.key] = self._clock()
            write.done.set_result(True)

    async def _still_there(self, key: str, path: str) -> bool:
        """Whether the file this process wrote for ``key`` is still there.

        It may have gone since (a cleaner, a user), and a snapshot that silently stays missing
        fails the next outage; but a stat per key per second was a thread hop per key per
        second, each costing about as much CPU as a get on a small VM. So one listing of the
        folder, at most ``WRITTEN_RECHECK`` seconds old, answers for every key and caller."""
        listing = await self._listing_within(WRITTEN_RECHECK)
        if listing is None:  # the folder cannot be listed: ask for the file itself
            return await asyncio.get_running_loop().run_in_executor(None, self._io.exists, path)
        if key not in listing:
            return False
        self._checked[key] = max(self._listed_at, self._checked.get(key, -math.inf))
        return True

    async def delete(self, key: str) -> None:
        """Remove the file of ``key`` if it exists.

        A file this process neither wrote nor is writing, missing from a listing of the folder
        at most ``WRITTEN_RECHECK`` seconds old, is taken as absent: a key read again and again
        while it does not exist (every such ``get`` deletes its snapshot) costs one listing a
        second, shared with every other key, instead of a thread hop per ``get``."""
        path = self.path(key)
        seq = next(self._seq)  # ordered as called, whatever it waits for below
        written = self._written.pop(key, None)
        pending = self._pending.pop(key, None)  # a later write of it must not join this one
        if written is None and pending is None:  # not a file this process wrote or writes
            listing = await self._listing_within(WRITTEN_RECHECK)
            if listing is not None and key not in listing:
                return
        try:
            await asyncio.to_thread(self._delete_file, key, path, seq)
        except OSError as exc:
            self._warn(f"cannot delete {self.name} file {path}: {exc}")
            return
        if self._listing is not None:
            self._listing.discard(key)

    # Each batch of writes, and each delete, is one job in a worker thread, start to finish.
    # A caller cancelled meanwhile leaves the job to finish on its own: no file is left open
    # or half-written, and no temporary file stays behind. A delete's job can then run before
    # or after a batch holding an older or newer write of its key, so each change gets a
    # number and a change older than the one already on disk is dropped instead of replacing
    # it.

    def _write_batch(self, batch: list[_Write]) -> list[bool | Exception]:
        """Write a batch; per write, True (landed), False (a newer change outranked it) or the
        OSError that stopped it. Every file is on disk before any is renamed into place."""
        syncfs = self._io.syncfs() if len(batch) >= SYNCFS_MIN_FILES else None
        if syncfs is not None and self._clock() < self._syncfs_paused_until:
            syncfs = None
        outcomes: list[bool | Exception] = [False] * len(batch)
        staged: list[tuple[int, str | None]] = []  # (index, temporary file or None: in place)
        # Only the newest write of a key is made (the others are outranked): an older one
        # renamed into place after the newer one found its content already there would win.
        newest = {write.key: i for i, write in enumerate(batch)}
        try:
            for i, write in enumerate(batch):
                if newest[write.key] != i:
                    continue
                try:
                    staged.append(
                        (i, self._io.stage(write.path, write.content, fsync=syncfs is None))
                    )
                except OSError as exc:
                    outcomes[i] = exc
            if syncfs is not None and staged:
                try:
                    self._sync_folder(syncfs, len(staged))
                except OSError as exc:
                    for i, _tmp in staged:
                        outcomes[i] = exc
                    return outcomes
            for i, tmp in staged:
                try:
                    outcomes[i] = self._land(batch[i], tmp)
                except OSError as exc:
                    outcomes[i] = exc
            return outcomes
        finally:
            # Whatever was not renamed into place (outranked, failed, or an error on the way):
            # never leave a temporary file behind.
            for i, tmp in staged:
                if tmp is not None and outcomes[i] is not True:
                    with contextlib.suppress(OSError):
                        self._io.remove(tmp)

    def _sync_folder(self, syncfs: Callable[[int], None], files: int) -> None:
        """Flush the folder's file system to disk; pause syncfs for this store if it was slow."""
        started = self._clock()
        self._io.sync_folder(self.base, syncfs)
        took = self._clock() - started
        if took > SYNCFS_SLOW_PER_FILE * files:
            self._syncfs_paused_until = self._clock() + SYNCFS_PAUSE
            logger.debug(
                "%s store: syncfs took %.3f s for %d files; fsync each file for %g s",
                self.name,
                took,
                files,
                SYNCFS_PAUSE,
            )

    def _land(self, write: _Write, tmp: str | None) -> bool:
        """Rename a staged file into place, unless a newer change of its key is on disk."""
        with self._lock:
            if write.seq < self._landed.get(write.key, -1):
                return False  # _write_batch removes the temporary file
            if tmp is not None:
                self._io.replace(tmp, write.path)
            self._landed[write.key] = write.seq
        return True

    def _delete_file(self, key: str, path: str, seq: int) -> None:
        with self._lock:
            if seq < self._landed.get(key, -1):
                return
            self._landed[key] = seq
            with contextlib.suppress(FileNotFoundError):
                self._io.remove(path)

    def _warn(self, message: str) -> None:
        if self._warned:
            logger.debug("%s", message)
            return
        self._warned = True
        logger.warning("%s (further %s write errors are logged at DEBUG)", message, self.name)

    def __repr__(self) -> str:
        return f"FileStore(name={self.name!r}, base={self.base!r})"
