"""``aioacm watch``: print every change of some items until interrupted."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime

from ..dispatch import ConfigChange
from .console import Console
from .context import Client, Context, parse_key

__all__ = ["format_change", "watch"]


def format_change(change: ConfigChange, console: Console, as_json: bool) -> str:
    """One change as text: a header line and the content, or one JSON object."""
    stamp = datetime.now().isoformat(timespec="seconds")
    if as_json:
        return json.dumps(
            {
                "time": stamp,
                "namespace": change.namespace,
                "group": change.group,
                "dataId": change.data_id,
                "md5": change.md5,
                "deleted": change.deleted,
                "content": change.content,
            },
            ensure_ascii=False,
        )
    name = console.paint(f"{change.group}/{change.data_id}", "green")
    if change.deleted:
        return f"{console.paint(stamp, 'dim')} {name} {console.paint('deleted', 'red')}"
    content = change.content or ""
    header = f"{console.paint(stamp, 'dim')} {name} (md5 {change.md5}):"
    return f"{header}\n{content}" + ("" if content.endswith("\n") or not content else "\n")


async def _follow(client: Client, group: str, data_id: str, ctx: Context) -> None:
    async for change in client.watch(data_id, group):
        text = format_change(change, ctx.console, ctx.args.json)
        ctx.console.print(text.removesuffix("\n"))


async def watch(ctx: Context) -> int:
    """Print the current value of each item (if it exists), then every change, until Ctrl-C.

    Each item is read once first, so a bad key, an unreachable server or a refused access
    ends the command at once with its exit code instead of retrying in the background.
    """
    keys = list(dict.fromkeys(parse_key(text) for text in ctx.args.data_ids))
    async with ctx.client(ctx.args.namespace) as client:
        await asyncio.gather(*(client.get(data_id, group) for group, data_id in keys))
        where = ctx.entry.describe() if ctx.entry is not None else ""
        count = "1 item" if len(keys) == 1 else f"{len(keys)} items"
        ctx.console.info(f"Watching {count} of {where}; Ctrl-C to stop.")
        await asyncio.gather(*(_follow(client, group, data_id, ctx) for group, data_id in keys))
    return 0  # the client was closed under us: nothing more will come
