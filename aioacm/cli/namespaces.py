"""The commands that manage namespaces in the settings file: add, use, current, show."""

from __future__ import annotations

from ..errors import ACMException
from .adding import AddRequest, add_namespace
from .context import Context
from .exits import OK, CLIError
from .settings import Entry

__all__ = ["add", "current", "show", "use"]

ACCESS_CHECK_TIMEOUT = 3.0


def mask(secret: object) -> str:
    """Enough of a secret to recognise it, not to use it."""
    if not isinstance(secret, str) or not secret:
        return "None"
    return "*" * 8 + (secret[-4:] if len(secret) > 12 else "")


async def add(ctx: Context) -> int:
    """Add or update a namespace, save, then check that it answers (a warning if not)."""
    args = ctx.args
    request = AddRequest(
        spec=args.namespace,
        ak=args.ak,
        sk=args.sk,
        alias=args.alias,
        tls=args.tls,
        kms=args.kms,
        kms_ak=args.kms_ak,
        kms_secret=args.kms_secret,
        key_id=args.key_id,
        region_id=args.region_id,
        ram_role_name=args.ram_role_name,
        kms_endpoint=args.kms_endpoint,
        kms_protocol=args.kms_protocol,
        ram_metadata_url=args.ram_metadata_url,
    )
    settings = ctx.settings
    entry, notes = add_namespace(settings, request)
    settings.save()
    for note in notes:
        ctx.console.print(note)
    await _check_access(ctx, entry)
    return OK


async def _check_access(ctx: Context, entry: Entry) -> None:
    console = ctx.console
    try:
        client = ctx.client_for(entry)
    except CLIError as exc:
        console.warn(f"saved, but not usable by this aioacm: {exc.message}")
        return
    try:
        async with client:
            await client.list(1, 1)
    except ACMException as exc:
        console.warn(f"saved, but the access check failed: {exc}")
        return
    console.print(f"Access check passed: {entry.describe()} answers.")


async def use(ctx: Context) -> int:
    """Make a namespace (alias or ``endpoint:namespace_id``) the one in use."""
    settings = ctx.settings
    entry = settings.resolve(ctx.args.namespace)
    settings.use(entry)
    settings.save()
    ctx.console.print(f"Now using {ctx.console.paint(entry.describe(), 'green')}.")
    return OK


async def current(ctx: Context) -> int:
    """Show the namespace in use and its endpoint (secret keys masked)."""
    entry = ctx.settings.resolve(None)
    console = ctx.console
    ep, ns = entry.endpoint_info, entry.info
    console.print(
        f"Endpoint:       {console.paint(entry.endpoint, 'yellow')}"
        f"  (TLS {_flag(ep.get('tls'))}, KMS {_flag(ep.get('kms_enabled'))},"
        f" region id {ep.get('region_id')})"
    )
    console.print(f"Namespace:      {console.paint(entry.namespace_id, 'green')}")
    console.print(f"  Alias:        {console.paint(entry.alias, 'green')}")
    console.print(f"  RAM role:     {ns.get('ram_role_name')}")
    console.print(f"  AccessKey:    {ns.get('ak')}")
    console.print(f"  SecretKey:    {mask(ns.get('sk'))}")
    if ep.get("kms_enabled"):
        console.print(f"  KMS AccessKey: {ns.get('kms_ak')}")
        console.print(f"  KMS SecretKey: {mask(ns.get('kms_secret'))}")
        console.print(f"  KMS key id:   {ns.get('key_id')}")
    console.print(f"  Updated:      {ns.get('updated')}")
    return OK


def _flag(value: object) -> str:
    return "on" if value else "off"


async def show(ctx: Context) -> int:
    """A table of every namespace; ``*`` marks the one in use. Newest first, as the sync CLI."""
    settings = ctx.settings
    entries = settings.entries()
    if not entries:
        settings.resolve(None)  # raises "no namespace configured yet"
    in_use = settings.current()
    rows = [
        (
            "*" if in_use is not None and entry.spec == in_use.spec else "",
            entry.endpoint,
            entry.namespace_id,
            entry.alias,
            str(entry.info.get("updated") or ""),
        )
        for entry in entries
    ]
    rows.sort(key=lambda row: row[4], reverse=True)
    header = ("", "ENDPOINT", "NAMESPACE_ID", "ALIAS", "UPDATED")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()

    console = ctx.console
    console.print(line(header))
    for row in rows:
        text = line(row)
        console.print(console.paint(text, "green") if row[0] else text)
    return OK
