"""export and import: many requests at once (bounded), a progress bar on a terminal, and
deletions (``--delete``) only after every transfer succeeded.

The sync CLI deletes first and then transfers one item at a time, so a failure half-way leaves
a namespace or folder with items deleted and others not yet copied; here a failure deletes
nothing. It also exits at the first failed item; here every item is tried and every failure
reported.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from ..dialects.acm import content_md5
from ..errors import ACMException, InvalidParameterError
from ..keys import DEFAULT_GROUP
from .console import Console
from .context import Client, Context
from .exits import FAILURE, OK, USAGE, CLIError, classify
from .local import (
    Key,
    LocalItem,
    delete_paths,
    read_folder,
    read_zip,
    stale_paths,
    write_items,
    write_zip,
)
from .settings import Entry

__all__ = [
    "CONCURRENCY",
    "check_export_target",
    "confirm_delete",
    "export",
    "import_",
    "list_namespace",
]

# Requests in flight at once: enough to hide the round trip, few enough not to flood a server.
CONCURRENCY = 32
PAGE_SIZE = 200
WRITE_BATCH = 200
_SHOWN_FAILURES = 20

Job = tuple[Key, Callable[[], Awaitable[None]]]


def plural(count: int, noun: str) -> str:
    """``1 item``, ``2 items``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def default_zip(entry: Entry) -> Path:
    """The sync CLI's default zip name: ``endpoint-namespace_id.zip`` in the working folder."""
    return Path(f"{entry.endpoint}-{entry.namespace_id}.zip")


async def list_namespace(client: Client) -> dict[Key, str | None]:
    """Every item of the namespace, with its content when the list page carries it verifiably.

    Pages after the first are fetched at once. A page item's content is kept only when its
    ``md5`` (the server's, over GBK) matches, and never for ``cipher-`` items (those must be
    decrypted by ``get``); the others map to None and are fetched one by one.
    """
    first = await client.list(1, PAGE_SIZE)
    pages = int(first.get("pagesAvailable") or 0)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def page(number: int) -> dict[str, object]:
        async with limit:
            return await client.list(number, PAGE_SIZE)

    rest = await asyncio.gather(*(page(n) for n in range(2, pages + 1)))
    found: dict[Key, str | None] = {}
    for data in (first, *rest):
        for item in data.get("pageItems") or []:
            if not isinstance(item, dict):
                continue
            data_id, group = item.get("dataId"), item.get("group")
            if not isinstance(data_id, str) or not isinstance(group, str) or not data_id:
                continue
            content, md5 = item.get("content"), item.get("md5")
            verified = (
                isinstance(content, str)
                and isinstance(md5, str)
                and not data_id.startswith("cipher-")
                and content_md5(content) == md5
            )
            found[Key(group or DEFAULT_GROUP, data_id)] = content if verified else None
    return found


async def run_jobs(console: Console, label: str, jobs: list[Job]) -> list[tuple[Key, Exception]]:
    """Run ``jobs`` at most CONCURRENCY at a time; return the failures, in key order."""
    progress = console.progress(label, len(jobs))
    failures: list[tuple[Key, Exception]] = []
    queue: Iterator[Job] = iter(jobs)

    async def worker() -> None:
        for key, job in queue:  # one shared iterator: each job is taken by one worker
            try:
                await job()
            except (ACMException, OSError, ValueError) as exc:
                failures.append((key, exc))
                progress.advance(ok=False)
            else:
                progress.advance()

    try:
        await asyncio.gather(*(worker() for _ in range(min(CONCURRENCY, len(jobs)))))
    finally:
        progress.close()
    return sorted(failures, key=lambda failure: failure[0])


def _reason(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


def fail(console: Console, failures: list[tuple[Key, Exception]], total: int, what: str) -> int:
    """Report failed items (the first few in full) and return the exit code: the one all of
    them share (e.g. 403 for all), else FAILURE."""
    for key, exc in failures[:_SHOWN_FAILURES]:
        console.error(f"{key}: {_reason(exc)}")
    if len(failures) > _SHOWN_FAILURES:
        console.error(f"... and {len(failures) - _SHOWN_FAILURES} more")
    console.error(f"{len(failures)} of {total} items failed; {what}")
    codes = {classify(e) if isinstance(e, ACMException) else FAILURE for _k, e in failures}
    return codes.pop() if len(codes) == 1 else FAILURE


def confirm_delete(ctx: Context, header: str, what: list[str], question: str, verb: str) -> None:
    """Show what ``--delete`` would delete and ask first, unless ``--force``.

    Nothing was changed yet when this raises: a declined deletion cancels the whole command
    rather than leaving it half done behind an exit code of 0.

    Raises:
        CLIError: (USAGE) nobody to ask (stdin is not a terminal) and no ``--force``;
            (FAILURE) the user said no.
    """
    console = ctx.console
    console.info(header)
    for line in what[:_SHOWN_FAILURES]:
        console.info(f"  - {line}")
    if len(what) > _SHOWN_FAILURES:
        console.info(f"  ... and {len(what) - _SHOWN_FAILURES} more")
    if ctx.args.force:
        return
    if not console.can_ask:
        raise CLIError(
            f"--delete needs a yes on a terminal, or --force: nothing was {verb} or deleted",
            USAGE,
        )
    if not console.confirm(question):
        raise CLIError(
            f"cancelled: nothing was {verb} or deleted (run without --delete to keep those)",
            FAILURE,
        )


def check_export_target(folder: Path | None, zip_path: Path) -> None:
    """Refuse a local path ``export`` cannot write, before anything is downloaded; create the
    export folder.

    Raises:
        CLIError: (USAGE) naming the user's path and what is wrong with it.
    """
    if folder is not None:
        if folder.exists() and not folder.is_dir():
            raise CLIError(f"cannot export to {folder}: it exists and is not a folder", USAGE)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CLIError(f"cannot create the folder {folder}: {_reason(exc)}", USAGE) from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise CLIError(f"cannot write into {folder}: permission denied", USAGE)
        return
    if zip_path.is_dir():
        raise CLIError(f"cannot export to {zip_path}: it is a folder (use -d for a folder)", USAGE)
    parent = zip_path.absolute().parent
    if not parent.is_dir():
        raise CLIError(f"cannot write {zip_path}: the folder {parent} does not exist", USAGE)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CLIError(f"cannot write {zip_path}: permission denied in {parent}", USAGE)
    if zip_path.exists() and not os.access(zip_path, os.W_OK):
        raise CLIError(f"cannot write {zip_path}: permission denied", USAGE)


async def export(ctx: Context) -> int:
    """Copy every item of a namespace to a folder (``-d``) or a zip (``-f``)."""
    args, console = ctx.args, ctx.console
    entry = ctx.resolve(args.namespace)
    folder = Path(args.dir) if args.dir else None
    target = folder if folder is not None else Path(args.file) if args.file else default_zip(entry)
    if folder is None and (args.delete or args.force):
        console.warn("--delete and --force apply to export folders (-d) only: ignored")
    check_export_target(folder, target)
    async with ctx.client_for(entry) as client:
        listed = await list_namespace(client)
        keys = sorted(listed)
        stale: list[Path] = []
        if folder is not None and args.delete:
            stale = await asyncio.to_thread(stale_paths, folder, set(keys))
            if stale:
                confirm_delete(
                    ctx,
                    f"{plural(len(stale), 'path')} in {folder} not in {entry.describe()}:",
                    [str(p) for p in stale],
                    "Delete them after the export?",
                    "exported",
                )
        console.info(f"Exporting {plural(len(keys), 'item')} of {entry.describe()} to {target}")
        # Content the listing carried (md5-checked) needs no request; the rest is fetched.
        contents = {key: content for key, content in listed.items() if content is not None}

        def fetch(key: Key) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                content = await client.get(key.data_id, key.group)
                if content is None:  # removed since the listing: nothing to copy
                    console.warn(f"{key} was removed during the export; skipped")
                else:
                    contents[key] = content

            return run

        missing = [key for key in keys if listed[key] is None]
        failures = await run_jobs(console, "fetching", [(k, fetch(k)) for k in missing])
    if folder is not None:
        failures = sorted(failures + await write_folder(console, folder, sorted(contents.items())))
    if failures:
        what = f"{target} was not written"
        if folder is not None:
            what = "the others were written" + ("; nothing was deleted" if stale else "")
        return fail(console, failures, len(keys), what)
    if folder is None:
        try:
            await asyncio.to_thread(write_zip, target, sorted(contents.items()))
        except (OSError, ValueError) as exc:
            raise CLIError(f"cannot write {target}: {_reason(exc)}") from None
    errors = await asyncio.to_thread(delete_paths, stale)
    for error in errors:
        console.error(error)
    done = f"Exported {plural(len(keys), 'item')} to {target}"
    console.info(done + (f"; deleted {plural(len(stale), 'path')}." if stale else "."))
    return FAILURE if errors else OK


async def write_folder(
    console: Console, folder: Path, items: list[tuple[Key, str]]
) -> list[tuple[Key, Exception]]:
    """Write items into an export folder, a batch per thread hop (one hop per file costs
    more than the write); return the failures."""
    progress = console.progress("writing", len(items))
    failures: list[tuple[Key, Exception]] = []
    try:
        for start in range(0, len(items), WRITE_BATCH):
            batch = items[start : start + WRITE_BATCH]
            failed = await asyncio.to_thread(write_items, folder, batch)
            failures += failed
            failed_keys = {key for key, _exc in failed}
            for key, _content in batch:
                progress.advance(ok=key not in failed_keys)
    finally:
        progress.close()
    return failures


def _read_source(folder: Path | None, zip_path: Path) -> tuple[list[LocalItem], list[str]]:
    if folder is not None:
        if not folder.is_dir():
            raise CLIError(f"{folder} does not exist or is not a folder", USAGE)
        return read_folder(folder)
    if not zip_path.is_file():
        raise CLIError(f"{zip_path} does not exist", USAGE)
    try:
        return read_zip(zip_path)
    except (OSError, ValueError) as exc:
        raise CLIError(_reason(exc), USAGE) from None


def _one_per_key(items: list[LocalItem]) -> list[LocalItem]:
    """A key found twice (``x`` and ``DEFAULT_GROUP/x``) is an error, not a race to win."""
    seen: dict[Key, int] = {}
    for item in items:
        seen[item.key] = seen.get(item.key, 0) + 1
    twice = {key for key, count in seen.items() if count > 1}
    unique = [item for item in items if item.key not in twice]
    return unique + [LocalItem(key, None, "found twice in the source") for key in sorted(twice)]


async def import_(ctx: Context) -> int:
    """Publish every file of a folder (``-d``) or zip (``-f``) to a namespace."""
    args, console = ctx.args, ctx.console
    entry = ctx.resolve(args.namespace)
    folder = Path(args.dir) if args.dir else None
    source = folder if folder is not None else Path(args.file) if args.file else default_zip(entry)
    items, notes = await asyncio.to_thread(_read_source, folder, source)
    items = _one_per_key(items)
    for note in notes:
        console.warn(note)
    local = {item.key for item in items}
    async with ctx.client_for(entry) as client:
        stale: list[Key] = []
        if args.delete:
            if not items:
                raise CLIError(
                    f"{source} holds no items: refusing to delete every item of {entry.describe()}"
                )
            remote = await client.list_all()
            stale = sorted(
                k
                for k in (Key(i["group"] or DEFAULT_GROUP, i["dataId"]) for i in remote)
                if k not in local
            )
            if stale:
                confirm_delete(
                    ctx,
                    f"{plural(len(stale), 'item')} of {entry.describe()} not in {source}:",
                    [str(k) for k in stale],
                    "Delete them after the import?",
                    "imported",
                )
        console.info(f"Importing {plural(len(items), 'item')} from {source} to {entry.describe()}")

        def job(item: LocalItem) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                if item.content is None:  # unreadable: bad input, as an invalid name is
                    raise InvalidParameterError(item.error or "unreadable")
                await client.publish(item.key.data_id, item.key.group, item.content)

            return run

        jobs = [(item.key, job(item)) for item in items]
        failures = await run_jobs(console, "importing", jobs)
        if failures:
            what = "the others were imported" + ("; nothing was deleted" if stale else "")
            return fail(console, failures, len(items), what)

        def remove(key: Key) -> Callable[[], Awaitable[None]]:
            async def run() -> None:
                await client.remove(key.data_id, key.group)

            return run

        failures = await run_jobs(console, "deleting", [(k, remove(k)) for k in stale])
        if failures:
            return fail(console, failures, len(stale), "the others were deleted")
    done = f"Imported {plural(len(items), 'item')} to {entry.describe()}"
    console.info(done + (f"; deleted {plural(len(stale), 'item')}." if stale else "."))
    return OK
