"""Async snapshot and failover stores: one file per key, the sync SDK's layout.

``{base}/{dataId}+{group}+{namespace}``, UTF-8 text, so folders written by ``acm-sdk-python``
are read here and the other way round. Writes go to a temporary file in the same folder that is
flushed, fsynced and renamed over the target: a reader (or a crash) sees the old file or the new
one, never a torn one. A store that cannot write warns once and goes on: a snapshot is a
fallback, and failing to keep one must never fail a ``get``.

Every file operation is one blocking function run in the loop's default executor (through
``aiofiles.os.wrap``): one thread hop per read or write, never a blocking call on the loop.

A store made with ``recheck`` (the failover store: read before every ``get`` and every
delivery to a watcher, and nearly always empty) first looks a key up in a listing of its folder
taken at most ``recheck`` seconds ago, and touches the file only when it is listed. A file put
there by hand is therefore used from at most ``recheck`` seconds later on; a listed file is
read afresh every time, so edits and removals count at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import os
import secrets

import aiofiles.os

__all__ = ["FAILOVER_RECHECK", "FileStore"]

logger = logging.getLogger(__name__)

#: Seconds a listing of the failover folder is trusted (see the module docstring).
FAILOVER_RECHECK = 1.0

# "~" never appears in a valid key, so a temporary file can never be mistaken for one.
_TMP_MARK = "~"
_SEPARATORS = tuple(sep for sep in (os.sep, os.altsep) if sep)


def _digest(content: str) -> int:
    # The memo only saves a rewrite of what this process wrote itself: Python's own string
    # hash (keyed per process, 64 bits) is plenty, and costs a fraction of an md5 per get.
    return hash(content)


def _read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    # newline="" semantics: the content exactly as stored, \r\n included
    return data.decode("utf-8")


def _replace_file(base: str, path: str, tmp: str, data: bytes) -> None:
    """Make ``path`` hold ``data`` durably: unchanged if it already does (made durable), else
    a fsynced temporary file renamed over it. The folder is made only when missing."""
    try:
        with open(path, "rb") as f:
            if f.read(len(data) + 1) == data:
                os.fsync(f.fileno())  # what another writer left may not be on disk yet
                return
    except OSError:
        pass
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)  # (no \n -> \r\n)
    try:
        fd = os.open(tmp, flags, 0o666)
    except FileNotFoundError:
        os.makedirs(base, exist_ok=True)
        fd = os.open(tmp, flags, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _list_names(base: str) -> frozenset[str] | None:
    """The names in ``base`` (none if it does not exist); None if it cannot be listed."""
    try:
        with os.scandir(base) as entries:
            return frozenset(entry.name for entry in entries)
    except (FileNotFoundError, NotADirectoryError):
        return frozenset()
    except OSError:
        return None


_read_text_async = aiofiles.os.wrap(_read_text)
_replace_file_async = aiofiles.os.wrap(_replace_file)


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
        self._prefix = os.path.join(base, "")
        self._warned = False
        # What this process last wrote per key: a server read that brings the same content
        # again costs no file I/O.
        self._written: dict[str, int] = {}
        self._recheck = recheck
        self._listing: frozenset[str] | None = None
        self._listed_at = -math.inf
        self._listing_future: asyncio.Future[frozenset[str] | None] | None = None

    def path(self, key: str) -> str:
        """The file of ``key``. Keys are validated upstream; this refuses anything path-like."""
        if (
            not key
            or key in (".", "..")
            or _TMP_MARK in key
            or any(sep in key for sep in _SEPARATORS)
        ):
            raise ValueError(f"not a store key: {key!r}")
        return self._prefix + key

    async def read(self, key: str) -> str | None:
        """Return the stored content, or None when there is none or it cannot be read."""
        if self._recheck is not None:
            return await self.read_if_listed(key, self._recheck)
        return await self._read(key)

    async def read_if_listed(self, key: str, max_age: float) -> str | None:
        """Like ``read``, but look the key up in a listing of the folder at most ``max_age``
        seconds old first: a file created since may be missed. For callers to whom the file
        is a hint (and for the failover store, whose ``read`` is this)."""
        if asyncio.get_running_loop().time() - self._listed_at < max_age:
            listing = self._listing
        else:
            listing = await self._names()
        if listing is not None and key not in listing:
            return None  # (a name that is not listed is never touched, so not checked)
        return await self._read(key)

    async def _read(self, key: str) -> str | None:
        path = self.path(key)
        try:
            return await _read_text_async(path)
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("%s file %s cannot be read: %s", self.name, path, exc)
            return None

    async def _names(self) -> frozenset[str] | None:
        """List the folder again (concurrent readers share one listing): its file names, or
        None if it cannot be listed (then every read goes to the file)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        future = self._listing_future
        if future is None:
            # Concurrent readers share one listing. It is stamped with the time it started:
            # it shows at least every file that existed by then.
            future = self._listing_future = loop.run_in_executor(None, _list_names, self.base)
            future.add_done_callback(functools.partial(self._listed, now))
        # shield: a reader cancelled while waiting must not cancel the others' listing
        return await asyncio.shield(future)

    def _listed(self, started: float, future: asyncio.Future[frozenset[str] | None]) -> None:
        self._listing_future = None
        if not future.cancelled():
            self._listing, self._listed_at = future.result(), started

    async def write(self, key: str, content: str) -> bool:
        """Atomically replace the file of ``key``; return False (and warn once) on failure."""
        digest = _digest(content)
        if self._written.get(key) == digest:
            return True  # (only keys checked by path() below ever get here)
        path = self.path(key)
        tmp = f"{path}{_TMP_MARK}{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            # One thread hop for the whole write. If this task is cancelled meanwhile, the
            # thread still finishes the write (or removes its temporary file): either way the
            # target holds a whole file.
            await _replace_file_async(self.base, path, tmp, content.encode("utf-8"))
        except OSError as exc:
            self._written.pop(key, None)
            self._warn(f"cannot write {self.name} file {path}: {exc}")
            return False
        except BaseException:
            self._written.pop(key, None)
            raise
        self._written[key] = digest
        return True

    async def delete(self, key: str) -> None:
        """Remove the file of ``key`` if it exists."""
        path = self.path(key)
        self._written.pop(key, None)
        try:
            await aiofiles.os.remove(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._warn(f"cannot delete {self.name} file {path}: {exc}")

    def _warn(self, message: str) -> None:
        if self._warned:
            logger.debug("%s", message)
            return
        self._warned = True
        logger.warning("%s (further %s write errors are logged at DEBUG)", message, self.name)

    def __repr__(self) -> str:
        return f"FileStore(name={self.name!r}, base={self.base!r})"
