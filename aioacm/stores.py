"""Async snapshot and failover stores: one file per key, the sync SDK's layout.

``{base}/{dataId}+{group}+{namespace}``, UTF-8 text, so folders written by ``acm-sdk-python``
are read here and the other way round. Writes go to a temporary file in the same folder that is
flushed, fsynced and renamed over the target: a reader (or a crash) sees the old file or the new
one, never a torn one. A store that cannot write warns once and goes on: a snapshot is a
fallback, and failing to keep one must never fail a ``get``.

A store made with ``recheck`` (the failover store: read before every ``get`` and every
delivery to a watcher, and nearly always empty) first looks a key up in a listing of its folder
taken at most ``recheck`` seconds ago, and touches the file only when it is listed. A file put
there by hand is therefore used from at most ``recheck`` seconds later on; a listed file is
read afresh every time, so edits and removals count at once.

Every store also answers two questions from such a listing (at most ``WRITTEN_RECHECK``
seconds old, one for all keys): is a file this process wrote still there (else it is written
again), and is there a file to delete at all. A thread hop per key for those cost about as much
CPU as a ``get``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import math
import os
import secrets
import threading
import time

import aiofiles.os

__all__ = ["FAILOVER_RECHECK", "FileStore"]

logger = logging.getLogger(__name__)

#: Seconds a listing of the failover folder is trusted (see the module docstring).
FAILOVER_RECHECK = 1.0
#: Seconds a snapshot this process wrote (or found) is trusted to still be there.
WRITTEN_RECHECK = 1.0

# "~" never appears in a valid key, so a temporary file can never be mistaken for one.
_TMP_MARK = "~"


def _digest(content: str) -> int:
    # The memo only saves a rewrite of what this process wrote itself: Python's own string
    # hash (keyed per process, 64 bits) is plenty, and costs a fraction of an md5 per get.
    return hash(content)


def _list_names(base: str) -> set[str] | None:
    """The names in ``base`` (none if it does not exist); None if it cannot be listed."""
    try:
        with os.scandir(base) as entries:
            return {entry.name for entry in entries}
    except (FileNotFoundError, NotADirectoryError):
        return set()
    except OSError:
        return None


def _read_file(path: str) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


class FileStore:
    """One folder of config files.

    Args:
        base: the folder (created on first write).
        name: what the store is for, in log lines ("snapshot", "failover").
        recheck: if given, look keys up in a listing of the folder at most this many seconds
            old before reading a file (see the module docstring).
    """

    def __init__(self, base: str, *, name: str, recheck: float | None = None) -> None:
        self.base = base
        self.name = name
        self._warned = False
        # What this process last wrote per key: a server read that brings the same content
        # again costs one stat, not a write.
        self._written: dict[str, int] = {}
        self._unreadable: set[str] = set()  # keys whose file could not be read (warned)
        self._seq = itertools.count()  # orders the changes of this store
        self._landed: dict[str, int] = {}  # per key, the number of the change on disk
        # per key, the write on its way: (digest of its content, its thread job)
        self._pending: dict[str, tuple[int, asyncio.Future[bool]]] = {}
        self._lock = threading.Lock()
        self._recheck = recheck
        self._checked: dict[str, float] = {}  # per key, when its file was last known there
        # The folder's names when last listed (less the files this process deleted since)
        self._listing: set[str] | None = None
        self._listed_at = -math.inf
        self._listing_future: asyncio.Future[set[str] | None] | None = None

    def path(self, key: str) -> str:
        """The file of ``key``. Keys are validated upstream; this refuses anything path-like."""
        if not key or key != os.path.basename(key) or key in (".", "..") or _TMP_MARK in key:
            raise ValueError(f"not a store key: {key!r}")
        return os.path.join(self.base, key)

    def known_absent(self, key: str) -> bool:
        """True when a listing of the folder young enough for ``read`` lacks ``key``: ``read``
        would return None without touching the disk. No I/O, no await (the fast path of
        every ``get``, whose failover folder is nearly always empty)."""
        return (
            self._recheck is not None
            and self._listing is not None
            and key not in self._listing
            and time.monotonic() - self._listed_at < self._recheck
        )

    def holds(self, key: str, content: str) -> bool:
        """True when this process wrote ``content`` for ``key`` and saw its file less than
        ``WRITTEN_RECHECK`` seconds ago: ``write`` would do nothing. No I/O, no await."""
        return (
            self._written.get(key) == _digest(content)
            and time.monotonic() - self._checked.get(key, -math.inf) < WRITTEN_RECHECK
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
        if time.monotonic() - self._listed_at < max_age:
            return self._listing
        return await self._names()

    async def _names(self) -> set[str] | None:
        """List the folder again (concurrent readers share one listing): its file names, or
        None if it cannot be listed (then every read goes to the file)."""
        loop = asyncio.get_running_loop()
        future = self._listing_future
        if future is None:
            # Stamped with the time it started: it shows every file that existed by then.
            future = self._listing_future = loop.run_in_executor(None, _list_names, self.base)
            future.add_done_callback(functools.partial(self._listed, time.monotonic()))
        # shield: a reader cancelled while waiting must not cancel the others' listing
        return await asyncio.shield(future)

    def _listed(self, started: float, future: asyncio.Future[set[str] | None]) -> None:
        self._listing_future = None
        if not future.cancelled():
            self._listing, self._listed_at = future.result(), started

    async def _read(self, key: str) -> str | None:
        path = self.path(key)
        try:
            content = await asyncio.to_thread(_read_file, path)
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
            seq = next(self._seq)
            job = asyncio.get_running_loop().run_in_executor(
                None, self._write_file, key, path, content, seq
            )
            pending = self._pending[key] = (digest, job)
            job.add_done_callback(functools.partial(self._wrote, key, path, digest, seq))
        try:
            # shield: a cancelled caller leaves the write to finish for the others
            await asyncio.shield(pending[1])
        except OSError:
            return False  # warned by _wrote
        return True

    async def _still_there(self, key: str, path: str) -> bool:
        """Whether the file this process wrote for ``key`` is still there.

        It may have gone since (a cleaner, a user), and a snapshot that silently stays missing
        fails the next outage; but a stat per key per second was a thread hop per key per
        second, each costing about as much CPU as a get on a small VM. So one listing of the
        folder, at most ``WRITTEN_RECHECK`` seconds old, answers for every key and caller."""
        listing = await self._listing_within(WRITTEN_RECHECK)
        if listing is None:  # the folder cannot be listed: ask for the file itself
            return await aiofiles.os.path.exists(path)
        if key not in listing:
            return False
        self._checked[key] = max(self._listed_at, self._checked.get(key, -math.inf))
        return True

    def _wrote(self, key: str, path: str, digest: int, seq: int, job: asyncio.Future[bool]) -> None:
        if self._pending.get(key, (None, None))[1] is job:
            del self._pending[key]
        if job.cancelled():
            return
        exc = job.exception()
        if isinstance(exc, OSError):
            self._warn(f"cannot write {self.name} file {path}: {exc}")
        elif exc is None and job.result() and self._landed.get(key) == seq:
            self._written[key] = digest
            self._checked[key] = time.monotonic()

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

    # Each operation is one job in a worker thread, start to finish. A caller cancelled
    # meanwhile leaves the job to finish on its own: no file is left open or half-written,
    # and no temporary file stays behind. Jobs can then outlive their caller and finish out
    # of order, so each change gets a number and a change older than the one already on
    # disk is dropped instead of replacing it.

    def _write_file(self, key: str, path: str, content: str, seq: int) -> bool:
        data = content.encode("utf-8")
        try:
            # Already there (another process, or this one before a restart): make sure it is
            # on disk, and save the rewrite.
            with open(path, "rb") as f:
                if f.read(len(data) + 1) == data:
                    os.fsync(f.fileno())
                    with self._lock:
                        if seq < self._landed.get(key, -1):
                            return False
                        self._landed[key] = seq
                    return True
        except OSError:
            pass
        tmp = f"{path}{_TMP_MARK}{os.getpid()}.{secrets.token_hex(4)}.tmp"
        # Fewer system calls than a buffered file and an unconditional makedirs (measured in
        # the 10,000-key watch benchmark); O_EXCL: a temporary name is never reused.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        try:
            try:
                fd = os.open(tmp, flags, 0o666)
            except FileNotFoundError:
                os.makedirs(self.base, exist_ok=True)
                fd = os.open(tmp, flags, 0o666)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            with self._lock:
                if seq < self._landed.get(key, -1):
                    os.remove(tmp)
                    return False
                os.replace(tmp, path)
                self._landed[key] = seq
            return True
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise

    def _delete_file(self, key: str, path: str, seq: int) -> None:
        with self._lock:
            if seq < self._landed.get(key, -1):
                return
            self._landed[key] = seq
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)

    def _warn(self, message: str) -> None:
        if self._warned:
            logger.debug("%s", message)
            return
        self._warned = True
        logger.warning("%s (further %s write errors are logged at DEBUG)", message, self.name)

    def __repr__(self) -> str:
        return f"FileStore(name={self.name!r}, base={self.base!r})"
