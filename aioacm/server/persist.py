"""Keeping the server's items in a JSON file, so they survive a restart.

The file is rewritten whole after each change: to a temporary file in the same folder, then
renamed over the old one, so a crash never leaves half a file. While the server runs, writes
happen in a worker thread from one background task (coalescing bursts of changes); while it is
stopped, they happen at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from ..dialects.acm import content_md5
from .store import ConfigItem, ConfigStore

__all__ = ["JsonFilePersistence", "read_items", "write_items"]

logger = logging.getLogger("aioacm.server")

FORMAT_VERSION = 1


def _item_to_json(item: ConfigItem) -> dict[str, Any]:
    return {
        "tenant": item.tenant,
        "group": item.group,
        "dataId": item.data_id,
        "content": item.content,
        "md5": item.md5,
        "encryptedDataKey": item.encrypted_data_key,
        "lastModified": item.last_modified,
        "type": item.config_type,
    }


def _item_from_json(raw: Any) -> ConfigItem:
    if not isinstance(raw, dict):
        raise ValueError("each item must be a JSON object")
    data_id, group, tenant, content = (
        raw.get("dataId"),
        raw.get("group"),
        raw.get("tenant", ""),
        raw.get("content"),
    )
    key_key = raw.get("encryptedDataKey")
    modified = raw.get("lastModified", 0.0)
    config_type = raw.get("type")
    if config_type is not None and not isinstance(config_type, str):
        raise ValueError("'type' must be a string or null")
    if not (isinstance(data_id, str) and data_id and isinstance(group, str) and group):
        raise ValueError("each item needs a non-empty 'dataId' and 'group'")
    if not isinstance(tenant, str) or not isinstance(content, str):
        raise ValueError("'tenant' and 'content' must be strings")
    if key_key is not None and not isinstance(key_key, str):
        raise ValueError("'encryptedDataKey' must be a string or null")
    if not isinstance(modified, (int, float)):
        raise ValueError("'lastModified' must be a number")
    # The md5 is derived data: recompute it rather than trust the file.
    return ConfigItem(
        data_id=data_id,
        group=group,
        tenant=tenant,
        content=content,
        md5=content_md5(content),
        encrypted_data_key=key_key,
        last_modified=float(modified),
        config_type=config_type,
    )


def read_items(path: Path) -> list[ConfigItem]:
    """Read the items saved in ``path``; ``[]`` when the file does not exist.

    Raises:
        ValueError: the file is not a data file this server wrote.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from exc
    raw_items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(raw_items, list):
        raise ValueError(f"{path}: expected an object with an 'items' list")
    try:
        return [_item_from_json(raw) for raw in raw_items]
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc


def write_items(path: Path, items: list[ConfigItem]) -> None:
    """Write ``items`` to ``path`` atomically (temporary file, fsync, rename)."""
    document = {"version": FORMAT_VERSION, "items": [_item_to_json(item) for item in items]}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(document, file, ensure_ascii=False, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_name)
        raise


class JsonFilePersistence:
    """Saves a :class:`ConfigStore` to a JSON file after each change."""

    def __init__(self, path: str | os.PathLike[str], store: ConfigStore) -> None:
        self.path = Path(path)
        self._store = store
        self._dirty = False
        self._background = False
        self._task: asyncio.Task[None] | None = None

    async def load(self) -> list[ConfigItem]:
        """Read the file's items (in a worker thread)."""
        return await asyncio.to_thread(read_items, self.path)

    def start_background(self) -> None:
        """From now on, write from a background task on the running loop."""
        self._background = True
        if self._dirty:
            self._spawn()

    async def stop_background(self) -> None:
        """Write what is pending and go back to writing at once."""
        self._background = False
        await self.flush()

    def mark_dirty(self) -> None:
        """Note that the store changed, without writing yet (``flush()`` writes)."""
        self._dirty = True

    def schedule(self) -> None:
        """Note that the store changed; write it soon (or now, while the server is stopped)."""
        self._dirty = True
        if self._background:
            self._spawn()
        else:
            self._write_now()

    async def flush(self) -> None:
        """Wait until every change so far is on disk."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if self._dirty:
            self._dirty = False
            await asyncio.to_thread(write_items, self.path, self._store.items())

    def _write_now(self) -> None:
        self._dirty = False
        write_items(self.path, self._store.items())

    def _spawn(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="aioacm.server.persist"
            )

    async def _run(self) -> None:
        while self._dirty:
            self._dirty = False
            # Snapshot on the loop thread, write in a worker: the file always holds one
            # consistent state, and later snapshots are written after earlier ones.
            items = self._store.items()
            try:
                await asyncio.to_thread(write_items, self.path, items)
            except OSError:
                logger.exception("could not save the server's data to %s", self.path)
