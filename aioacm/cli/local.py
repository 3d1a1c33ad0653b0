"""The local side of export and import: the sync CLI's folder and zip layout.

An item of ``DEFAULT_GROUP`` is the file ``dataId`` at the top; any other item is
``group/dataId``. Names starting with ``.`` are skipped when reading (so a folder can be a git
work tree) and never deleted. These functions block: callers run them in a thread.
"""

from __future__ import annotations

import os
import secrets
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..keys import DEFAULT_GROUP

__all__ = [
    "MAX_FILE_BYTES",
    "Key",
    "LocalItem",
    "delete_paths",
    "read_folder",
    "read_zip",
    "stale_paths",
    "write_item",
    "write_items",
    "write_zip",
]

# ACM stores at most 100 KB of GBK; anything much larger is refused without reading it all.
MAX_FILE_BYTES = 1024 * 1024


@dataclass(frozen=True, order=True)
class Key:
    """One config item's address."""

    group: str
    data_id: str

    @property
    def path(self) -> str:
        """Its place in a folder or zip (``/``-separated)."""
        return self.data_id if self.group == DEFAULT_GROUP else f"{self.group}/{self.data_id}"

    def unsafe_name(self) -> str | None:
        """Why this key cannot be a file name here, or None (a server may list anything)."""
        for part in (self.group, self.data_id):
            if part in ("", ".", "..") or "/" in part or "\\" in part or "\0" in part:
                return f"{part!r} cannot be a file name"
        return None

    def __str__(self) -> str:
        return f"{self.group}/{self.data_id}"


@dataclass(frozen=True)
class LocalItem:
    """One item read from a folder or zip: its content, or why it could not be read."""

    key: Key
    content: str | None
    error: str | None = None


def _decode(key: Key, data: bytes) -> LocalItem:
    if len(data) > MAX_FILE_BYTES:
        return LocalItem(key, None, f"larger than {MAX_FILE_BYTES} bytes")
    try:
        return LocalItem(key, data.decode("utf-8"))
    except UnicodeDecodeError:
        return LocalItem(key, None, "not UTF-8 text")


def _read_file(key: Key, path: Path) -> LocalItem:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return LocalItem(key, None, f"larger than {MAX_FILE_BYTES} bytes")
        return _decode(key, path.read_bytes())
    except OSError as exc:
        return LocalItem(key, None, f"cannot read {path}: {exc.strerror or exc}")


def _visible(entries: list[os.DirEntry[str]]) -> list[os.DirEntry[str]]:
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def read_folder(root: Path) -> tuple[list[LocalItem], list[str]]:
    """Every item of an export folder, and notes about what was skipped."""
    items: list[LocalItem] = []
    notes: list[str] = []
    with os.scandir(root) as it:
        top = _visible(list(it))
    for entry in top:
        if entry.is_file():
            key = Key(DEFAULT_GROUP, entry.name)
            items.append(_read_file(key, Path(entry.path)))
        elif entry.is_dir():
            with os.scandir(entry.path) as it:
                inner = _visible(list(it))
            for sub in inner:
                if sub.is_file():
                    items.append(_read_file(Key(entry.name, sub.name), Path(sub.path)))
                else:
                    notes.append(f"skipped {sub.path}: only GROUP/DATA_ID files are imported")
    return items, notes


def read_zip(path: Path) -> tuple[list[LocalItem], list[str]]:
    """Every item of an export zip, and notes about entries that were skipped."""
    items: list[LocalItem] = []
    notes: list[str] = []
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                parts = info.filename.split("/")
                if any(p.startswith(".") for p in parts):
                    continue
                if len(parts) == 1:
                    key = Key(DEFAULT_GROUP, parts[0])
                elif len(parts) == 2 and parts[0] and parts[1]:
                    key = Key(parts[0], parts[1])
                else:
                    notes.append(f"skipped {info.filename}: not DATA_ID or GROUP/DATA_ID")
                    continue
                if info.file_size > MAX_FILE_BYTES:
                    items.append(LocalItem(key, None, f"larger than {MAX_FILE_BYTES} bytes"))
                    continue
                with archive.open(info) as f:
                    items.append(_decode(key, f.read(MAX_FILE_BYTES + 1)))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ValueError(f"{path} is not a readable zip file: {exc}") from None
    return items, notes


def _temporary(path: Path) -> Path:
    # hidden, so neither import nor export --delete ever sees a leftover one
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


def write_item(root: Path, key: Key, content: str) -> None:
    """Write one item under ``root`` (temporary file + rename: never a torn file)."""
    reason = key.unsafe_name()
    if reason is not None:
        raise ValueError(reason)
    path = root / key.path
    if key.group != DEFAULT_GROUP:
        path.parent.mkdir(exist_ok=True)
    tmp = _temporary(path)
    try:
        tmp.write_bytes(content.encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_items(root: Path, items: list[tuple[Key, str]]) -> list[tuple[Key, Exception]]:
    """``write_item`` for each item; return the ones that failed, with why."""
    failures: list[tuple[Key, Exception]] = []
    for key, content in items:
        try:
            write_item(root, key, content)
        except (OSError, ValueError) as exc:
            failures.append((key, exc))
    return failures


def write_zip(path: Path, contents: list[tuple[Key, str]]) -> None:
    """Write the zip to a temporary file and rename it over ``path`` once complete."""
    for key, _content in contents:
        reason = key.unsafe_name()
        if reason is not None:
            raise ValueError(f"{key}: {reason}")
    tmp = _temporary(path.absolute())
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for key, content in contents:
                archive.writestr(key.path, content.encode("utf-8"))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def stale_paths(root: Path, keys: set[Key]) -> list[Path]:
    """What in an export folder no listed item accounts for (``export --delete``): files and
    folders that an export of ``keys`` would not have written. Hidden names are left alone."""
    top_files = {k.data_id for k in keys if k.group == DEFAULT_GROUP}
    groups: dict[str, set[str]] = {}
    for key in keys:
        if key.group != DEFAULT_GROUP:
            groups.setdefault(key.group, set()).add(key.data_id)
    stale: list[Path] = []
    with os.scandir(root) as it:
        top = _visible(list(it))
    for entry in top:
        if entry.is_dir(follow_symlinks=False):
            ids = groups.get(entry.name)
            if ids is None:
                stale.append(Path(entry.path))
                continue
            with os.scandir(entry.path) as it:
                inner = _visible(list(it))
            stale.extend(
                Path(sub.path)
                for sub in inner
                if sub.is_dir(follow_symlinks=False) or sub.name not in ids
            )
        elif entry.name not in top_files:
            stale.append(Path(entry.path))
    return stale


def delete_paths(paths: list[Path]) -> list[str]:
    """Delete files and folders (a symlink itself, never its target); return the errors."""
    errors = []
    for path in paths:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            errors.append(f"cannot delete {path}: {exc.strerror or exc}")
    return errors
