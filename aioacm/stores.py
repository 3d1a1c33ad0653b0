"""Async snapshot and failover stores: one file per key, the sync SDK's layout.

``{base}/{dataId}+{group}+{namespace}``, UTF-8 text, so folders written by ``acm-sdk-python``
are read here and the other way round. Writes go to a temporary file in the same folder that is
flushed, fsynced and renamed over the target: a reader (or a crash) sees the old file or the new
one, never a torn one. A store that cannot write warns once and goes on: a snapshot is a
fallback, and failing to keep one must never fail a ``get``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets

import aiofiles
import aiofiles.os

__all__ = ["FileStore"]

logger = logging.getLogger(__name__)

# "~" never appears in a valid key, so a temporary file can never be mistaken for one.
_TMP_MARK = "~"


def _digest(content: str) -> bytes:
    return hashlib.md5(content.encode("utf-8"), usedforsecurity=False).digest()


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
        # again costs no file I/O.
        self._written: dict[str, bytes] = {}
        self._unreadable: set[str] = set()  # keys whose file could not be read (warned)

    def path(self, key: str) -> str:
        """The file of ``key``. Keys are validated upstream; this refuses anything path-like."""
        if not key or key != os.path.basename(key) or key in (".", "..") or _TMP_MARK in key:
            raise ValueError(f"not a store key: {key!r}")
        return os.path.join(self.base, key)

    async def read(self, key: str) -> str | None:
        """Return the stored content, or None when there is none or it cannot be read."""
        path = self.path(key)
        try:
            async with aiofiles.open(path, encoding="utf-8", newline="") as f:
                content = await f.read()
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
        tmp = f"{path}{_TMP_MARK}{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            await aiofiles.os.makedirs(self.base, exist_ok=True)
            async with aiofiles.open(tmp, "w", encoding="utf-8", newline="") as f:
                await f.write(content)
                await f.flush()
                await aiofiles.os.wrap(os.fsync)(f.fileno())
            await aiofiles.os.replace(tmp, path)
        except OSError as exc:
            self._written.pop(key, None)
            await self._discard(tmp)
            self._warn(f"cannot write {self.name} file {path}: {exc}")
            return False
        except BaseException:
            # Cancelled mid-write: the target is untouched; do not leave the temporary behind.
            self._written.pop(key, None)
            await self._discard(tmp)
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

    @staticmethod
    async def _discard(tmp: str) -> None:
        with contextlib.suppress(OSError):
            await aiofiles.os.remove(tmp)

    def _warn(self, message: str) -> None:
        if self._warned:
            logger.debug("%s", message)
            return
        self._warned = True
        logger.warning("%s (further %s write errors are logged at DEBUG)", message, self.name)

    def __repr__(self) -> str:
        return f"FileStore(name={self.name!r}, base={self.base!r})"
