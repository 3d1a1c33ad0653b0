"""copy: every item of one namespace to another, ACM or Nacos, exactly as stored.

Both namespaces are read first (list pages, and ``get_item`` for what a page cannot be trusted
with), then compared key by key: *new* (not in the target), *changed* (content, config type or
encrypted data key differ), *same*, *only-in-target*. New and changed items are published as
stored (``publish_raw``: ciphertext, data key and type unchanged; nothing is decrypted, so no
KMS is needed on either side), then read back from the target and compared. ``--delete``
removes the only-in-target items once every copy was verified. A target that refuses to be
listed (Nacos 3.x turns its v1 list off) is read item by item instead, without ``--delete``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from ..base import ConfigClient
from ..dialects.acm import content_md5 as acm_md5
from ..dialects.nacos import content_md5 as utf8_md5
from ..errors import (
    AccessDeniedError,
    ACMException,
    BadRequestError,
    InvalidParameterError,
    ServerUnavailableError,
)
from ..exact import ConfigItem
from ..keys import DEFAULT_GROUP
from ..listing import page_shape
from .console import Console
from .context import Context
from .exits import OK, USAGE, CLIError, classify
from .local import Key
from .settings import Entry
from .transfer import CONCURRENCY, PAGE_SIZE, confirm_delete, fail, plural, run_jobs

__all__ = ["Plan", "copy", "fetch_items", "plan", "read_namespace"]

_CIPHER = "cipher-"
_LABEL_WIDTH = 16
#: the type a Nacos server gives an item published without one: losing it loses nothing
_DEFAULT_TYPE = "text"

Failures = list[tuple[Key, Exception]]


class Mismatch(ValueError):
    """A copied item read back from the target differs from the source."""


class Refused(ValueError):
    """The target cannot take an item (blank content for Nacos, outside GBK for ACM...): a
    failed item (exit 1), not bad input from the user (exit 2)."""


def _from_page(namespace: str, key: Key, entry: dict[str, object]) -> ConfigItem | None:
    """The item a list page shows, when the page can be trusted with it, else None (fetch it).

    Trusted: the content verifies against the page's md5 (ACM's is over GBK, Nacos's over
    UTF-8: either will do). Never for ``cipher-`` items, whose ciphertext and data key are
    always fetched with ``get_item``. A page item without ``type`` (ACM's) means the server
    keeps none.
    """
    if key.data_id.startswith(_CIPHER):
        return None
    content, md5 = entry.get("content"), entry.get("md5")
    if not isinstance(content, str) or not isinstance(md5, str):
        return None
    if md5 != utf8_md5(content) and md5 != acm_md5(content):
        return None
    config_type = entry.get("type")
    kept = config_type if isinstance(config_type, str) and config_type else None
    return ConfigItem(key.data_id, key.group, namespace, content, md5, kept)


async def _pages(client: ConfigClient) -> list[object]:
    """Every page item of the namespace: pages after the first are fetched at once."""
    first = await client.list(1, PAGE_SIZE)
    pages, _total, items = page_shape(first, 1)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def page(number: int) -> list[object]:
        async with limit:
            return page_shape(await client.list(number, PAGE_SIZE), number)[2]

    for rest in await asyncio.gather(*(page(n) for n in range(2, pages + 1))):
        items += rest
    return list(items)


async def read_namespace(
    client: ConfigClient, console: Console, label: str, group: str | None, prefix: str | None
) -> tuple[dict[Key, ConfigItem], Failures]:
    """Every item of the client's namespace (of ``group``, with ``prefix``) as stored.

    Returns:
        The items, and the ones that could not be read.

    Raises:
        ACMException: the namespace could not be listed.
    """
    found: dict[Key, ConfigItem] = {}
    missing: set[Key] = set()
    for entry in await _pages(client):
        if not isinstance(entry, dict):
            continue
        data_id, item_group = entry.get("dataId"), entry.get("group")
        if not isinstance(data_id, str) or not data_id or not isinstance(item_group, str):
            continue
        key = Key(item_group or DEFAULT_GROUP, data_id)
        if (group is not None and key.group != group) or not data_id.startswith(prefix or ""):
            continue
        item = _from_page(client.namespace, key, entry)
        if item is None:
            missing.add(key)
        else:
            found[key] = item
    return found, await fetch_items(client, console, label, sorted(missing), found)


async def fetch_items(
    client: ConfigClient,
    console: Console,
    label: str,
    keys: list[Key],
    found: dict[Key, ConfigItem],
) -> Failures:
    """Read ``keys`` with ``get_item`` into ``found`` (an item that does not exist is left out);
    return the ones that could not be read."""

    def fetch(key: Key) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            item = await client.get_item(key.data_id, key.group)
            if item is not None:
                found[key] = item

        return run

    return await run_jobs(console, label, [(key, fetch(key)) for key in keys])


@dataclass
class Plan:
    """What copying would do, key by key (each list sorted)."""

    new: list[Key] = field(default_factory=list)
    changed: dict[Key, list[str]] = field(default_factory=dict)  # key -> what differs
    same: list[Key] = field(default_factory=list)
    only_in_target: list[Key] = field(default_factory=list)

    @property
    def to_copy(self) -> list[Key]:
        """The new and changed keys, sorted."""
        return sorted([*self.new, *self.changed])

    def lines(self) -> list[str]:
        """One line per key, in key order: ``LABEL  GROUP/DATA_ID`` (and what changed)."""
        rows = [(key, "new", "") for key in self.new]
        rows += [(key, "changed", f" ({', '.join(why)})") for key, why in self.changed.items()]
        rows += [(key, "same", "") for key in self.same]
        rows += [(key, "only-in-target", "") for key in self.only_in_target]
        return [f"{label:<{_LABEL_WIDTH}}{key}{why}" for key, label, why in sorted(rows)]


def differences(source: ConfigItem, target: ConfigItem) -> list[str]:
    """What differs: content, config type (when both sides keep one), encrypted data key."""
    why = []
    if source.content != target.content:
        why.append("content")
    if source.config_type and target.config_type and source.config_type != target.config_type:
        why.append("type")
    if source.encrypted_data_key != target.encrypted_data_key:
        why.append("data key")
    return why


def plan(source: dict[Key, ConfigItem], target: dict[Key, ConfigItem]) -> Plan:
    """Compare the two namespaces."""
    result = Plan()
    for key in sorted(source):
        there = target.get(key)
        if there is None:
            result.new.append(key)
        elif why := differences(source[key], there):
            result.changed[key] = why
        else:
            result.same.append(key)
    result.only_in_target = sorted(set(target) - set(source))
    return result


def _first_per_key(failures: Failures) -> Failures:
    """One failure per key (an item may fail to be read on both sides), in key order."""
    first: dict[Key, Exception] = {}
    for key, exc in sorted(failures, key=lambda failure: failure[0]):
        first.setdefault(key, exc)
    return list(first.items())


def _side_error(entry: Entry, exc: ACMException, doing: str) -> CLIError:
    if isinstance(exc, AccessDeniedError):
        return CLIError(
            f"access denied to {entry.describe()}: {exc}; check its keys ('aioacm show')",
            classify(exc),
        )
    if isinstance(exc, ServerUnavailableError):
        return CLIError(f"cannot reach {entry.describe()}: {exc}", classify(exc))
    return CLIError(f"cannot {doing} {entry.describe()}: {exc}", classify(exc))


@dataclass
class Outcome:
    """What a copy did, for the summary."""

    plan: Plan
    copied: list[Key] = field(default_factory=list)
    verified: list[Key] = field(default_factory=list)
    deleted: list[Key] = field(default_factory=list)
    failures: Failures = field(default_factory=list)

    def rows(self, dry_run: bool) -> list[tuple[str, int]]:
        plan = self.plan
        rows = [
            ("new", len(plan.new)),
            ("changed", len(plan.changed)),
            ("same", len(plan.same)),
            ("only-in-target", len(plan.only_in_target)),
        ]
        if not dry_run:
            failed = len({key for key, _exc in self.failures})
            rows += [("deleted", len(self.deleted)), ("verified", len(self.verified))]
            rows.append(("failed", failed))
        return rows

    def as_json(self, source: Entry, target: Entry, dry_run: bool) -> str:
        plan = self.plan
        document: dict[str, object] = {
            "source": source.spec,
            "target": target.spec,
            "dry_run": dry_run,
            "new": [str(k) for k in plan.new],
            "changed": {str(k): why for k, why in plan.changed.items()},
            "same": [str(k) for k in plan.same],
            "only_in_target": [str(k) for k in plan.only_in_target],
        }
        if not dry_run:
            document["deleted"] = [str(k) for k in self.deleted]
            document["verified"] = [str(k) for k in self.verified]
            document["failed"] = {str(k): str(e) for k, e in _first_per_key(self.failures)}
        return json.dumps(document, ensure_ascii=False)


def _print(ctx: Context, outcome: Outcome, source: Entry, target: Entry) -> None:
    args, console = ctx.args, ctx.console
    if args.json:
        console.print(outcome.as_json(source, target, args.dry_run))
        return
    if args.dry_run:
        for line in outcome.plan.lines():
            console.print(line)
    for label, count in outcome.rows(args.dry_run):
        console.print(f"{label:<{_LABEL_WIDTH}}{count:>7}")


async def _publish_all(
    console: Console, client: ConfigClient, items: list[tuple[ConfigItem, str | None]]
) -> Failures:
    def job(item: ConfigItem, config_type: str | None) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            try:
                await client.publish_raw(
                    item.data_id,
                    item.group,
                    item.content,
                    encrypted_data_key=item.encrypted_data_key,
                    config_type=config_type,
                )
            except InvalidParameterError as exc:  # checked before any request was sent
                raise Refused(f"the target refuses it: {exc}") from None

        return run

    jobs = [(Key(item.group, item.data_id), job(item, kind)) for item, kind in items]
    return await run_jobs(console, "copying", jobs)


async def _verify_all(
    console: Console, client: ConfigClient, items: list[tuple[ConfigItem, str | None]]
) -> tuple[Failures, int]:
    """Read every copied item back; return the mismatches, and how many items lost a config
    type because the target keeps none (ACM)."""
    untyped: list[Key] = []

    def job(item: ConfigItem, config_type: str | None) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            got = await client.get_item(item.data_id, item.group)
            if got is None:
                raise Mismatch("not found on the target after the copy")
            mine, theirs = utf8_md5(item.content), utf8_md5(got.content)
            if mine != theirs:
                raise Mismatch(f"the target holds other content (md5 {theirs}, not {mine})")
            if got.encrypted_data_key != item.encrypted_data_key:
                raise Mismatch("the target holds another encrypted data key")
            if config_type and got.config_type is None:
                if config_type != _DEFAULT_TYPE:
                    untyped.append(Key(item.group, item.data_id))
            elif config_type and got.config_type != config_type:
                raise Mismatch(f"the target keeps type {got.config_type!r}, not {config_type!r}")

        return run

    jobs = [(Key(item.group, item.data_id), job(item, kind)) for item, kind in items]
    return await run_jobs(console, "verifying", jobs), len(untyped)


async def copy(ctx: Context) -> int:
    """Copy every item of namespace SOURCE to namespace TARGET (``aioacm copy``)."""
    args, console = ctx.args, ctx.console
    source, target = ctx.resolve(args.source), ctx.resolve(args.target)
    if source.spec == target.spec:
        raise CLIError(f"SOURCE and TARGET are the same namespace: {source.describe()}", USAGE)
    source_client, target_client = ctx.client_for(source), ctx.client_for(target)
    async with source_client, target_client:
        try:
            items, read_failed = await read_namespace(
                source_client, console, "reading source", args.group, args.prefix
            )
        except ACMException as exc:
            raise _side_error(source, exc, "list") from None
        try:
            there, target_failed = await read_namespace(
                target_client, console, "reading target", args.group, args.prefix
            )
        except BadRequestError as exc:  # a Nacos 3.x turns its v1 list off by default
            if args.delete:
                raise CLIError(
                    f"cannot list {target.describe()}, so --delete cannot know what to delete:"
                    f" {exc}"
                ) from None
            console.warn(
                f"cannot list {target.describe()}: {exc}; reading the source's"
                f" {plural(len(items), 'item')} from it one by one instead (what only it"
                " has is not known)"
            )
            there = {}
            target_failed = await fetch_items(
                target_client, console, "reading target", sorted(items), there
            )
        except ACMException as exc:
            raise _side_error(target, exc, "list") from None
        # an item not read on either side is neither copied nor deleted
        unreadable = {key for key, _exc in read_failed + target_failed}
        outcome = Outcome(
            plan(
                {k: v for k, v in items.items() if k not in unreadable},
                {k: v for k, v in there.items() if k not in unreadable},
            )
        )
        outcome.failures = read_failed + target_failed
        todo = outcome.plan
        if args.dry_run:
            _print(ctx, outcome, source, target)
            note = "dry run: nothing was changed"
            if args.delete and todo.only_in_target:
                note += f"; --delete would delete {plural(len(todo.only_in_target), 'item')}"
            console.info(note)
            if outcome.failures:
                failures = _first_per_key(outcome.failures)
                return fail(console, failures, len(set(items) | unreadable), "they were left out")
            return OK
        stale = todo.only_in_target if args.delete else []
        if stale:
            if not items:
                raise CLIError(
                    f"{source.describe()} holds no items: refusing to delete every item of"
                    f" {target.describe()}"
                )
            confirm_delete(
                ctx,
                f"{plural(len(stale), 'item')} of {target.describe()} not in {source.describe()}:",
                [str(k) for k in stale],
                "Delete them after the copy?",
                "copied",
            )
        # A source that keeps no type (ACM) leaves the type the target has, if any.
        jobs = [
            (items[k], items[k].config_type or (there[k].config_type if k in there else None))
            for k in todo.to_copy
        ]
        console.info(
            f"Copying {plural(len(jobs), 'item')} from {source.describe()} to {target.describe()}"
            f" ({len(todo.same)} unchanged)"
        )
        copy_failed = await _publish_all(console, target_client, jobs)
        failed_keys = {key for key, _exc in copy_failed}
        copied = [
            (item, kind) for item, kind in jobs if Key(item.group, item.data_id) not in failed_keys
        ]
        outcome.copied = [Key(item.group, item.data_id) for item, _kind in copied]
        verify_failed, untyped = await _verify_all(console, target_client, copied)
        bad = {key for key, _exc in verify_failed}
        outcome.verified = [key for key in outcome.copied if key not in bad]
        outcome.failures += copy_failed + verify_failed
        if untyped:
            console.warn(
                f"{target.describe()} keeps no config type: the types of"
                f" {plural(untyped, 'item')} were not copied"
            )
        delete_failed: Failures = []
        if stale and not outcome.failures:

            def remove(key: Key) -> Callable[[], Awaitable[None]]:
                async def run() -> None:
                    await target_client.remove(key.data_id, key.group)

                return run

            delete_failed = await run_jobs(console, "deleting", [(k, remove(k)) for k in stale])
            done = {key for key, _exc in delete_failed}
            outcome.deleted = [key for key in stale if key not in done]
    _print(ctx, outcome, source, target)
    if outcome.failures:
        what = "the others were copied" + ("; nothing was deleted" if stale else "")
        return fail(console, _first_per_key(outcome.failures), len(set(items) | unreadable), what)
    if delete_failed:
        return fail(console, delete_failed, len(stale), "the others were deleted")
    return OK
