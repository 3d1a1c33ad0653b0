"""Async snapshot and failover stores: one file per key, the sync SDK's layout.

``{base}/{dataId}+{group}+{namespace}``, UTF-8 text, so folders written by ``acm-sdk-python``
are read here and the other way round. Writes go to a temporary file in the same folder that is
flushed, fsynced and renamed over the target: a reader (or a crash) sees the old file or the new
one, never a torn one. A store that cannot write warns once and goes on: a snapshot is a
fallback, and failing to keep one must never fail a ``get``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
import os
import secrets
import threading

import aiofiles.os

__all__ = ["FileStore"]

logger = logging.getLogger(__name__)

# "~" never appears in a valid key, so a temporary file can never be mistaken for one.
_TMP_MARK = "~"


def _digest(content: str) -> bytes:
    return hashlib.md5(content.encode("utf-8"), usedforsecurity=False).digest()


def _read_file(path: str) -> str:
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


class FileStore:
    """One folder of config files.

    Args:
        base: the folder (created on first write).
        name: what the store is for, in log lines ("snapshot", "failover").
    """

    def __init__(self, base: str, *, name: str) -> None:
        self.base = base
        self.name = name
        self._warned = False
        # What this process last wrote per key: a server read that brings the same content
        # again costs one stat, not a write.
        self._written: dict[str, bytes] = {}
        self._unreadable: set[str] = set()  # keys whose file could not be read (warned)
        self._seq = itertools.count()  # orders the changes of this store
        self._landed: dict[str, int] = {}  # per key, the number of the change on disk
        self._lock = threading.Lock()

    def path(self, key: str) -> str:
        """The file of ``key``. Keys are validated upstream; this refuses anything path-like."""
        if not key or key != os.path.basename(key) or key in (".", "..") or _TMP_MARK in key:
            raise ValueError(f"not a store key: {key!r}")
        return os.path.join(self.base, key)

    async def read(self, key: str) -> str | None:
        """Return the stored content, or None when there is none or it cannot be read."""
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
        # The file may have gone since (a cleaner, a user): one stat is still far cheaper
        # than writing, and a snapshot that silently stays missing fails the next outage.
        if self._written.get(key) == digest and await aiofiles.os.path.exists(path):
            return True
        self._written.pop(key, None)
        seq = next(self._seq)
        try:
            landed = await asyncio.to_thread(self._write_file, key, path, content, seq)
        except OSError as exc:
            self._warn(f"cannot write {self.name} file {path}: {exc}")
            return False
        if landed and self._landed.get(key) == seq:
            self._written[key] = digest
        return True

    async def delete(self, key: str) -> None:
        """Remove the file of ``key`` if it exists."""
        path = self.path(key)
        self._written.pop(key, None)
        try:
            await asyncio.to_thread(self._delete_file, key, path, next(self._seq))
        except OSError as exc:
            self._warn(f"cannot delete {self.name} file {path}: {exc}")

    # Each operation is one job in a worker thread, start to finish. A caller cancelled
    # meanwhile leaves the job to finish on its own: no file is left open or half-written,
    # and no temporary file stays behind. Jobs can then outlive their caller and finish out
    # of order, so each change gets a number and a change older than the one already on
    # disk is dropped instead of replacing it.

    def _write_file(self, key: str, path: str, content: str, seq: int) -> bool:
        tmp = f"{path}{_TMP_MARK}{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            os.makedirs(self.base, exist_ok=True)
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
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
