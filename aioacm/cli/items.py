"""The commands on single items: list, pull, push."""

from __future__ import annotations

from pathlib import Path

from .context import Context, parse_key
from .exits import NOT_FOUND, OK, USAGE, CLIError

__all__ = ["list_items", "pull", "push"]


async def list_items(ctx: Context) -> int:
    """Print ``group/dataId`` of every item (``-g`` group, ``-p`` dataId prefix), sorted."""
    args = ctx.args
    async with ctx.client(args.namespace) as client:
        items = await client.list_all(args.group, args.prefix)
    for item in sorted(items, key=lambda i: (i["group"], i["dataId"])):
        ctx.console.print(f"{item['group']}/{item['dataId']}")
    return OK


async def pull(ctx: Context) -> int:
    """Write one item's content to stdout, exactly as stored."""
    group, data_id = parse_key(ctx.args.data_id)
    async with ctx.client(ctx.args.namespace) as client:
        content = await client.get(data_id, group)
    if content is None:
        raise CLIError(f"{group}/{data_id} does not exist in {_where(ctx)}", NOT_FOUND)
    ctx.console.write_data(content)
    return OK


def _where(ctx: Context) -> str:
    return ctx.entry.describe() if ctx.entry is not None else "the namespace"


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CLIError(f"{source} is not UTF-8 text", USAGE) from None


def read_input(ctx: Context, file: str | None) -> str:
    """The content to push: ``file``, else stdin when it is not a terminal."""
    if file is not None:
        try:
            return _decode(Path(file).read_bytes(), file)
        except OSError as exc:
            raise CLIError(f"cannot read {file}: {exc.strerror or exc}", USAGE) from None
    stdin = ctx.console.inp
    if stdin.isatty():
        raise CLIError("nothing to push: give -f FILE or pipe the content in", USAGE)
    buffer = getattr(stdin, "buffer", None)
    if buffer is None:
        return stdin.read()
    return _decode(buffer.read(), "standard input")


async def push(ctx: Context) -> int:
    """Publish one item from ``-f FILE`` or stdin."""
    group, data_id = parse_key(ctx.args.data_id)
    content = read_input(ctx, ctx.args.file)
    if not content:  # an empty pipe is almost always a mistake upstream (`cat missing |`)
        source = ctx.args.file or "standard input"
        raise CLIError(
            f"nothing to push: {source} is empty; pipe the content in or give -f FILE", USAGE
        )
    async with ctx.client(ctx.args.namespace) as client:
        await client.publish(data_id, group, content)
    ctx.console.info(f"Pushed {group}/{data_id} to {_where(ctx)}.")
    return OK
