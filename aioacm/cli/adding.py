"""``aioacm add``: parsing ``endpoint:namespace_id`` and adding or updating a namespace of the
settings, with the sync CLI's rules (aliases unique, KMS needs a region and keys) and two fixes:
an endpoint may carry a port, and the first namespace of a file becomes the one in use."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidParameterError
from ..keys import validate_namespace
from .exits import USAGE, CLIError
from .settings import DEFAULT_ENDPOINT, DEFAULT_NAMESPACE, Entry, Settings, now

__all__ = ["AddRequest", "add_namespace", "check_endpoint", "split_spec"]


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
    id is the default namespace, ``[default]``.
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
    endpoint, namespace_id = split_spec(request.spec)
    check_endpoint(endpoint)
    _check_namespace_id(namespace_id)
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
