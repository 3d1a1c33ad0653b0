"""The file-system calls of a ``FileStore``, made in worker threads: one overridable class.

A store never touches the disk but through its ``StoreIO``, so a test (or an application with
unusual needs) hands it a subclass to count listings, record what is written, fail a write, or
stand in for ``syncfs``. Every method runs in a worker thread (never on the event loop) and
reports failure by raising ``OSError``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import sys
from collections.abc import Callable

__all__ = ["TMP_MARK", "StoreIO", "is_temporary"]

#: In the name of every temporary file, and in no key: "~" never appears in a valid key, so a
#: temporary file (one a killed writer left behind, say) can never be mistaken for one.
TMP_MARK = "~"


def is_temporary(name: str) -> bool:
    """Whether ``name`` (a file name in a store's folder) is a temporary file, not a key's."""
    return TMP_MARK in name


@functools.cache
def _load_syncfs() -> Callable[[int], None] | None:
    """``syncfs(fd)`` of the C library (raising OSError on failure) on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        func = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int]
    func.restype = ctypes.c_int

    def syncfs(fd: int) -> None:
        if func(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs: {os.strerror(err)}")

    return syncfs


class StoreIO:
    """The file-system calls a ``FileStore`` makes, each in a worker thread.

    The default does them on the local disk; a subclass overrides what it needs (and may call
    ``super()`` for the rest). One instance may serve any number of stores, and its methods may
    run in several threads at once.

    A store lists its folder with ``list_names`` and reads a key with ``read_file``. A batch of
    writes (one thread job) asks ``syncfs`` once if it has at least ``stores.SYNCFS_MIN_FILES``
    files, calls ``stage`` for each, then ``sync_folder`` once if it got a ``syncfs`` (fsync is
    asked of ``stage`` otherwise), then ``replace`` for each staged file; ``remove`` deletes a
    key's file, or a temporary file that was not renamed into place.
    """

    def list_names(self, base: str) -> set[str] | None:
        """The names in the folder ``base``.

        Returns:
            The set of its file names (empty if it does not exist), or None if it cannot be
            listed (then the store reads every file it is asked for).
        """
        try:
            with os.scandir(base) as entries:
                return {entry.name for entry in entries}
        except (FileNotFoundError, NotADirectoryError):
            return set()
        except OSError:
            return None

    def read_file(self, path: str) -> str:
        """The content of the file ``path``, decoded as UTF-8, line endings as they are.

        Raises:
            FileNotFoundError, NotADirectoryError: there is no such file (nor folder).
            OSError, UnicodeDecodeError: it cannot be read.
        """
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()

    def exists(self, path: str) -> bool:
        """Whether ``path`` exists (asked only when its folder cannot be listed)."""
        return os.path.exists(path)

    def stage(self, path: str, content: str, *, fsync: bool) -> str | None:
        """Put ``content`` (as UTF-8) in a new temporary file next to ``path``, creating the
        folder if needed; the store then renames it over ``path`` with ``replace``.

        Args:
            path: the file the content is for.
            content: what it is to hold.
            fsync: flush the file to disk before returning (else the store flushes the whole
                batch with ``sync_folder``).

        Returns:
            The temporary file (its name holds ``TMP_MARK``), or None when ``path`` already
            holds ``content`` (and, if ``fsync``, is flushed to disk): nothing to rename.

        Raises:
            OSError: the file cannot be written; no temporary file is left behind.
        """
        data = content.encode("utf-8")
        try:
            # Already there (another process, or this one before a restart): save the rewrite.
            with open(path, "rb") as f:
                if f.read(len(data) + 1) == data:
                    if fsync:
                        os.fsync(f.fileno())
                    return None
        except OSError:
            pass
        tmp = f"{path}{TMP_MARK}{os.getpid()}.{secrets.token_hex(4)}.tmp"
        # Fewer system calls than a buffered file and an unconditional makedirs (measured in
        # the 10,000-key watch benchmark); O_EXCL: a temporary name is never reused.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
        try:
            fd = os.open(tmp, flags, 0o666)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(tmp, flags, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        os.close(fd)
        return tmp

    def syncfs(self) -> Callable[[int], None] | None:
        """The ``syncfs(fd)`` to flush a batch of staged files with, or None to fsync each.

        Asked once per batch of at least ``stores.SYNCFS_MIN_FILES`` files. The default is the C
        library's ``syncfs`` on Linux (raising OSError when it fails), None elsewhere.
        """
        return _load_syncfs()

    def sync_folder(self, base: str, syncfs: Callable[[int], None]) -> None:
        """Flush the file system holding the folder ``base`` to disk with ``syncfs``."""
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(base, flags)
        try:
            syncfs(fd)
        finally:
            os.close(fd)

    def replace(self, tmp: str, path: str) -> None:
        """Rename the staged file ``tmp`` over ``path``, atomically."""
        os.replace(tmp, path)

    def remove(self, path: str) -> None:
        """Remove the file ``path`` (FileNotFoundError if there is none)."""
        os.remove(path)
