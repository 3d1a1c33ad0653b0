"""``aioacm add``: parsing ``endpoint:namespace_id`` and adding or updating a namespace of the
settings, with the sync CLI's rules (aliases unique, KMS needs a region and keys) and two fixes:
an endpoint may carry a port, and the first namespace of a file becomes the one in use."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidParameterError
from ..keys import validate_namespace
from .exits import USAGE, CLIError
from .settings import DEFAULT_ENDPOINT, DEFAULT_NAMESPACE, NACOS_SCHEME, Entry, Settings, now

__all__ = [
    "NACOS_SCHEME",
    "AddRequest",
    "add_namespace",
    "check_endpoint",
    "parse_target",
    "split_nacos_spec",
    "split_spec",
]

NACOS_SHAPE = "expected nacos://[USER@]HOST[:PORT][,HOST[:PORT]...]/NAMESPACE_ID"


def check_endpoint(endpoint: str) -> str:
    """Return ``endpoint`` if it is ``host`` or ``host:port``; raise a USAGE CLIError if not."""
    host, port = endpoint, ""
    if endpoint.startswith("["):
        end = endpoint.find("]")
        host, port = endpoint[: end + 1], endpoint[end + 1 :].removeprefix(":")
    elif ":" in endpoint:
        host, port = endpoint.split(":", 1)
    bad = (
        not host
        or host == "[]"
        or any(c.isspace() or c in "/@?#\\" for c in host)
        or (port != "" and not (port.isdigit() and 0 < int(port) < 65536))
        or (endpoint.startswith("[") and "]" not in endpoint)
    )
    if bad:
        raise CLIError(f"invalid endpoint {endpoint!r}: expected HOST or HOST:PORT", USAGE)
    return endpoint


def split_spec(text: str) -> tuple[str, str]:
    """Split ``endpoint:namespace_id`` as ``add`` takes it.

    The endpoint may carry a port (``127.0.0.1:8080:ns-1``): a number between the first two
    colons is a port. Without a colon the endpoint is ``acm.aliyun.com``. An empty namespace
    id is the default namespace, ``[default]``. A Nacos target (``nacos://...``) is split by
    ``split_nacos_spec`` instead.
    """
    if text.startswith("["):  # [IPv6]:port:namespace
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise CLIError(f"invalid namespace {text!r}: expected ENDPOINT:NAMESPACE_ID", USAGE)
        host, rest = text[: end + 1], text[end + 2 :]
    elif ":" in text:
        host, rest = text.split(":", 1)
    else:
        host, rest = DEFAULT_ENDPOINT, text
    port, sep, namespace = rest.partition(":")
    if sep and port.isdigit():
        host, rest = f"{host}:{port}", namespace
    return host, rest or DEFAULT_NAMESPACE


def split_nacos_spec(text: str) -> tuple[str, str, str | None]:
    """Split ``nacos://[USER@]HOST[:PORT][,HOST[:PORT]...][/NAMESPACE_ID]``.

    Returns:
        ``(endpoint, namespace_id, username)``: the endpoint is ``nacos://`` and the servers
        (the settings file's key for them), the namespace id ``[default]`` (Nacos's public
        namespace) when none is given, the username None when none is given.

    Raises:
        CLIError: (USAGE) no servers, a bad server, or a bad namespace id.
    """
    rest = text[len(NACOS_SCHEME) :]
    servers, _slash, namespace_id = rest.partition("/")
    username: str | None = None
    if "@" in servers:
        username, _at, servers = servers.rpartition("@")
        if not username:
            raise CLIError(f"invalid Nacos target {text!r}: empty user name before '@'", USAGE)
    if not servers:
        raise CLIError(f"invalid Nacos target {text!r}: {NACOS_SHAPE}", USAGE)
    for server in servers.split(","):
        try:
            check_endpoint(server)
        except CLIError:
            raise CLIError(
                f"invalid Nacos server {server!r} in {text!r}: {NACOS_SHAPE}", USAGE
            ) from None
    namespace_id = namespace_id.rstrip("/")
    if namespace_id in ("", "public"):
        namespace_id = DEFAULT_NAMESPACE
    return NACOS_SCHEME + servers, namespace_id, username


def parse_target(text: str) -> tuple[str, str, str | None]:
    """An ACM (``ENDPOINT:NAMESPACE_ID``) or Nacos (``nacos://...``) target, checked.

    Returns:
        ``(endpoint, namespace_id, username)`` (username only for Nacos targets).

    Raises:
        CLIError: (USAGE) a malformed target, with the shape expected; in particular
            ``HOST:PORT`` without a namespace id (ambiguous: the port would become the
            namespace id).
    """
    if text.lower().startswith(NACOS_SCHEME):
        endpoint, namespace_id, username = split_nacos_spec(NACOS_SCHEME + text[8:])
        _check_namespace_id(namespace_id)
        return endpoint, namespace_id, username
    if "://" in text:
        raise CLIError(
            f"invalid namespace {text!r}: expected ENDPOINT:NAMESPACE_ID for ACM"
            f" or {NACOS_SHAPE.removeprefix('expected ')} for Nacos",
            USAGE,
        )
    endpoint, namespace_id = split_spec(text)
    check_endpoint(endpoint)
    if ":" not in endpoint.rpartition("]")[2] and _looks_like_port(namespace_id):
        raise CLIError(
            f"{text!r} looks like HOST:PORT without a namespace id: use"
            f" {text}:NAMESPACE_ID (or {text}: for the default namespace)",
            USAGE,
        )
    _check_namespace_id(namespace_id)
    return endpoint, namespace_id, None


def _looks_like_port(text: str) -> bool:
    return text.isdigit() and 0 < int(text) < 65536


def _check_namespace_id(namespace_id: str) -> str:
    if namespace_id == DEFAULT_NAMESPACE:
        return namespace_id
    try:
        return validate_namespace(namespace_id)
    except InvalidParameterError as exc:
        raise CLIError(str(exc), USAGE) from None


@dataclass
class AddRequest:
    """What ``aioacm add`` was asked (None: not given)."""

    spec: str
    ak: str | None = None
    sk: str | None = None
    alias: str | None = None
    tls: bool = False
    kms: bool = False
    kms_ak: str | None = None
    kms_secret: str | None = None
    key_id: str | None = None
    region_id: str | None = None
    ram_role_name: str | None = None
    # aioacm's own endpoint settings (the sync CLI ignores these keys in ~/.acm.json)
    kms_endpoint: str | None = None
    kms_protocol: str | None = None
    ram_metadata_url: str | None = None
    # Nacos targets: the password of the user named in ``nacos://USER@...``
    password: str | None = None


def _unique_alias(settings: Settings, request: AddRequest, endpoint: str, namespace_id: str) -> str:
    def taken_by(alias: str) -> Entry | None:
        for entry in settings.entries():
            mine = entry.endpoint == endpoint and entry.namespace_id == namespace_id
            if entry.info.get("alias") == alias and not mine:
                return entry
        return None

    if request.alias is not None:
        if not request.alias or ":" in request.alias:
            raise CLIError(f'invalid alias {request.alias!r}: empty, or has ":"', USAGE)
        other = taken_by(request.alias)
        if other is not None:
            raise CLIError(
                f"alias {request.alias!r} is taken by {other.spec}: choose another one",
                USAGE,
            )
        return request.alias
    alias = namespace_id
    if taken_by(alias) is not None:
        alias = f"{endpoint}-{namespace_id}"
        if taken_by(alias) is not None:
            raise CLIError(f"alias {alias!r} is taken: give one with -n ALIAS", USAGE)
    return alias


def add_namespace(settings: Settings, request: AddRequest) -> tuple[Entry, list[str]]:
    """Add a namespace to ``settings``, or update the one that exists, as ``acm add`` does.

    Nothing is changed when the request is refused. The first namespace of a file becomes
    the one in use (the sync CLI instead keeps its placeholder ``acm.aliyun.com`` in use).

    Returns:
        The entry and the notes to show the user.

    Raises:
        CLIError: (USAGE) a bad endpoint, namespace id or alias, or missing KMS settings.
    """
    endpoint, namespace_id, username = parse_target(request.spec)
    if endpoint.startswith(NACOS_SCHEME):
        if request.password is not None and username is None:
            raise CLIError(
                f"a password needs a user: {NACOS_SCHEME}USER@{endpoint[len(NACOS_SCHEME) :]}/...",
                USAGE,
            )
        if username is not None and not request.password:
            raise CLIError(f"no password given for the Nacos user {username!r}", USAGE)
    elif request.password is not None:
        raise CLIError("a password is for Nacos targets (nacos://USER@HOST/NAMESPACE_ID)", USAGE)
    alias = _unique_alias(settings, request, endpoint, namespace_id)
    old_endpoint = settings.endpoints.get(endpoint)
    old = (old_endpoint or {}).get("namespaces", {}).get(namespace_id)
    if request.kms:
        region = request.region_id or (old_endpoint or {}).get("region_id")
        if not region:
            raise CLIError("KMS needs a region id: add -r REGION_ID", USAGE)
        old_ns = old or {}
        role = request.ram_role_name or old_ns.get("ram_role_name")
        if not role:
            if not (request.kms_ak or old_ns.get("kms_ak") or request.ak or old_ns.get("ak")):
                raise CLIError("KMS needs an AccessKey (-a or -ka) or a RAM role (-role)", USAGE)
            if not (
                request.kms_secret or old_ns.get("kms_secret") or request.sk or old_ns.get("sk")
            ):
                raise CLIError("KMS needs a SecretKey (-s or -ks) or a RAM role (-role)", USAGE)

    notes: list[str] = []
    first = settings.current() is None
    if old_endpoint is None:
        old_endpoint = settings.endpoints[endpoint] = {
            "tls": request.tls,
            "is_current": False,
            "region_id": request.region_id,
            "kms_enabled": request.kms,
            "namespaces": {},
        }
        notes.append(f"Added endpoint {endpoint} (TLS {'on' if request.tls else 'off'}).")
    else:
        if old_endpoint.get("tls") != request.tls:
            old_endpoint["tls"] = request.tls
            notes.append(f"TLS of {endpoint} is now {'on' if request.tls else 'off'}.")
        if old_endpoint.get("kms_enabled") != request.kms:
            old_endpoint["kms_enabled"] = request.kms
            notes.append(f"KMS of {endpoint} is now {'on' if request.kms else 'off'}.")
        if request.region_id is not None and old_endpoint.get("region_id") != request.region_id:
            old_endpoint["region_id"] = request.region_id
            notes.append(f"Region id of {endpoint} is now {request.region_id}.")

    for name in ("kms_endpoint", "kms_protocol", "ram_metadata_url"):
        value = getattr(request, name)
        if value is not None and old_endpoint.get(name) != value:
            old_endpoint[name] = value
            notes.append(f"{name} of {endpoint} is now {value}.")

    namespaces = old_endpoint["namespaces"]
    if old is None:
        ns = namespaces[namespace_id] = {
            "ak": request.ak,
            "sk": request.sk,
            "alias": alias,
            "is_current": False,
            "updated": now(),
            "kms_ak": None,
            "kms_secret": None,
            "key_id": None,
            "ram_role_name": request.ram_role_name,
        }
        if username is not None:
            ns["username"], ns["password"] = username, request.password
        if request.kms:
            ns["kms_ak"] = request.kms_ak or request.ak
            ns["kms_secret"] = request.kms_secret or request.sk
            ns["key_id"] = request.key_id
        notes.append(f"Added namespace {namespace_id} ({alias}) to {endpoint}.")
    else:
        ns = old
        for name in ("ak", "sk", "kms_ak", "kms_secret", "key_id", "ram_role_name"):
            value = getattr(request, name)
            if value is not None:
                ns[name] = value
        if username is not None:
            ns["username"], ns["password"] = username, request.password
        if request.alias is not None:
            ns["alias"] = alias
        if request.kms:
            ns["kms_ak"] = ns.get("kms_ak") or ns.get("ak")
            ns["kms_secret"] = ns.get("kms_secret") or ns.get("sk")
        ns["updated"] = now()
        notes.append(f"Updated namespace {namespace_id} of {endpoint}.")
    entry = Entry(endpoint, namespace_id, old_endpoint, ns)
    if first:
        settings.use(entry)
        notes.append(f"Now using {entry.describe()}.")
    elif (current := settings.current()) is None or current.spec != entry.spec:
        notes.append(f"Switch to it with: aioacm use {entry.alias}")
    return entry, notes
