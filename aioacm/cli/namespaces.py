"""The commands that manage namespaces in the settings file: add, use, current, show."""

from __future__ import annotations

from ..errors import ACMException
from .adding import AddRequest, add_namespace, parse_target
from .context import PASSWORD_ENV, Context
from .exits import OK, USAGE, CLIError
from .settings import Entry

__all__ = ["add", "current", "show", "use"]

ACCESS_CHECK_TIMEOUT = 3.0


NOT_SET = "(not set)"


def mask(secret: object) -> str:
    """Enough of a secret to recognise it, not to use it."""
    if not isinstance(secret, str) or not secret:
        return NOT_SET
    return "*" * 8 + (secret[-4:] if len(secret) > 12 else "")


def _shown(value: object) -> str:
    """A setting as shown to the user: never Python's ``None``."""
    return NOT_SET if value is None or value == "" else str(value)


def _password(ctx: Context) -> str | None:
    """The password for ``add nacos://USER@...``: --password, the environment, or a prompt."""
    _endpoint, _namespace_id, username = parse_target(ctx.args.namespace)
    if username is None:
        given: str | None = ctx.args.password
        return given
    password = ctx.password(username, ctx.args.password)
    if not password:
        raise CLIError(
            f"no password for the Nacos user {username!r}: pass --password PASSWORD, set"
            f" {PASSWORD_ENV}, or run on a terminal to be asked",
            USAGE,
        )
    return password


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
        password=_password(ctx),
    )
    settings = ctx.settings
    entry, notes = add_namespace(settings, request)
    settings.save()
    for note in notes:
        ctx.console.info(note)
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
            if entry.kind == "nacos":  # Nacos 3.x may refuse v1 listing; a read checks as much
                await client.get("aioacm.access-check", None)
            else:
                await client.list(1, 1)
    except ACMException as exc:
        console.warn(f"saved, but the access check failed: {exc}")
        return
    console.info(f"Access check passed: {entry.describe()} answers.")


async def use(ctx: Context) -> int:
    """Make a namespace (alias or ``endpoint:namespace_id``) the one in use."""
    settings = ctx.settings
    entry = ctx.resolve(ctx.args.namespace, ad_hoc=False)
    settings.use(entry)
    settings.save()
    ctx.console.info(f"Now using {entry.describe()}.")
    return OK


async def current(ctx: Context) -> int:
    """Show the namespace in use and its endpoint (secret keys masked)."""
    entry = ctx.settings.resolve(None)
    console = ctx.console
    ep, ns = entry.endpoint_info, entry.info
    region = f", region id {ep['region_id']}" if ep.get("region_id") else ""
    console.print(
        f"Endpoint:       {console.paint(entry.endpoint, 'yellow')}"
        f"  ({entry.kind.upper()}, TLS {_flag(ep.get('tls'))}, KMS {_flag(ep.get('kms_enabled'))}"
        f"{region})"
    )
    console.print(f"Namespace:      {console.paint(entry.namespace_id, 'green')}")
    console.print(f"  Alias:        {console.paint(entry.alias, 'green')}")
    if entry.kind == "nacos":
        console.print(f"  User:         {_shown(entry.username)}")
        if entry.username is not None:
            console.print(f"  Password:     {mask(ns.get('password'))}")
    console.print(f"  RAM role:     {_shown(ns.get('ram_role_name'))}")
    console.print(f"  AccessKey:    {_shown(ns.get('ak'))}")
    console.print(f"  SecretKey:    {mask(ns.get('sk'))}")
    if ep.get("kms_enabled"):
        console.print(f"  KMS AccessKey: {_shown(ns.get('kms_ak'))}")
        console.print(f"  KMS SecretKey: {mask(ns.get('kms_secret'))}")
        console.print(f"  KMS key id:   {_shown(ns.get('key_id'))}")
    console.print(f"  Updated:      {_shown(ns.get('updated'))}")
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
