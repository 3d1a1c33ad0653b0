"""The settings file ``~/.acm.json``, in the sync CLI's format so existing setups keep working.

The file is ``{"endpoints": {endpoint: {"tls", "is_current", "region_id", "kms_enabled",
"namespaces": {namespace_id: {"ak", "sk", "alias", "is_current", "updated", "kms_ak",
"kms_secret", "key_id", "ram_role_name"}}}}}``; the default namespace is ``[default]``. It is
read and written as a plain dict, so fields another tool added survive. Writes go to a
temporary file (mode 0600: the file holds secret keys) that is fsynced and renamed over the
target, following a symlink to the real file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import InvalidParameterError
from ..protocol import validate_namespace
from .exits import SETTINGS, USAGE, CLIError

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_NAMESPACE",
    "SETTINGS_NAME",
    "Entry",
    "Settings",
    "check_endpoint",
    "client_kwargs",
    "settings_path",
    "split_spec",
]

SETTINGS_NAME = ".acm.json"
DEFAULT_ENDPOINT = "acm.aliyun.com"
DEFAULT_NAMESPACE = "[default]"
_ADD_HINT = "aioacm add ENDPOINT:NAMESPACE_ID -a ACCESS_KEY -s SECRET_KEY"


def _now() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def settings_path() -> Path:
    """``$HOME/.acm.json``; without HOME, the home directory of the user's account."""
    home = os.environ.get("HOME")
    if not home:
        try:
            home = str(Path.home())  # POSIX: the password database; Windows: USERPROFILE
        except (RuntimeError, KeyError):
            raise CLIError(
                "cannot find a home directory for the settings file ~/.acm.json: set HOME",
                SETTINGS,
            ) from None
    return Path(home) / SETTINGS_NAME


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
class Entry:
    """One namespace of the settings file, with its endpoint's settings (both live dicts)."""

    endpoint: str
    namespace_id: str
    endpoint_info: dict[str, Any]
    info: dict[str, Any]

    @property
    def spec(self) -> str:
        """``endpoint:namespace_id``."""
        return f"{self.endpoint}:{self.namespace_id}"

    @property
    def alias(self) -> str:
        """The alias (the namespace id when none was set)."""
        alias = self.info.get("alias")
        return alias if isinstance(alias, str) and alias else self.namespace_id

    @property
    def namespace(self) -> str | None:
        """The namespace id to give the client (None for the default namespace)."""
        return None if self.namespace_id in ("", DEFAULT_NAMESPACE) else self.namespace_id

    def describe(self) -> str:
        """``endpoint:namespace_id (alias)``."""
        if self.alias == self.namespace_id:
            return self.spec
        return f"{self.spec} ({self.alias})"


def client_kwargs(entry: Entry) -> dict[str, Any]:
    """The ``ACMClient(...)`` keyword arguments for one settings entry.

    Mirrors the sync CLI: ak/sk and the RAM role name for the namespace, ``tls`` as
    ``tls_enabled``, and the KMS settings only when the endpoint has ``kms_enabled``.

    Raises:
        CLIError: only one of the AccessKey and the SecretKey is set.
    """
    info, endpoint_info = entry.info, entry.endpoint_info
    kwargs: dict[str, Any] = {"endpoint": entry.endpoint, "namespace": entry.namespace}
    ak, sk = info.get("ak"), info.get("sk")
    if ak and sk:
        kwargs["ak"], kwargs["sk"] = ak, sk
    elif ak or sk:
        raise CLIError(
            f"{entry.spec} has an AccessKey or a SecretKey but not both:"
            f" run 'aioacm add {entry.spec} -a ACCESS_KEY -s SECRET_KEY'",
            SETTINGS,
        )
    if info.get("ram_role_name"):
        kwargs["ram_role_name"] = info["ram_role_name"]
    if endpoint_info.get("tls"):
        kwargs["tls_enabled"] = True
    if endpoint_info.get("kms_enabled"):
        kwargs["kms_enabled"] = True
        for name, value in (
            ("region_id", endpoint_info.get("region_id")),
            ("key_id", info.get("key_id")),
            ("kms_ak", info.get("kms_ak")),
            ("kms_secret", info.get("kms_secret")),
        ):
            if value:
                kwargs[name] = value
    return kwargs


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


class Settings:
    """The parsed settings file.

    Args:
        path: where it lives.
        data: its content (``{"endpoints": {...}}``).
        exists: whether the file existed.
    """

    def __init__(self, path: Path, data: dict[str, Any], *, exists: bool) -> None:
        self.path = path
        self.data = data
        self.exists = exists

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        """Read the file; a missing file gives empty settings (nothing is written)."""
        path = settings_path() if path is None else path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path, {"endpoints": {}}, exists=False)
        except (OSError, UnicodeDecodeError) as exc:
            raise CLIError(f"cannot read {path}: {exc}", SETTINGS) from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CLIError(f"{path} is not valid JSON: {exc}", SETTINGS) from None
        endpoints = data.get("endpoints") if isinstance(data, dict) else None
        if not isinstance(endpoints, dict) or not all(
            isinstance(info, dict) and isinstance(info.get("namespaces", {}), dict)
            for info in endpoints.values()
        ):
            raise CLIError(f"{path} is not an ACM CLI settings file (no 'endpoints')", SETTINGS)
        for info in endpoints.values():
            namespaces = info.setdefault("namespaces", {})
            if not all(isinstance(ns, dict) for ns in namespaces.values()):
                raise CLIError(f"{path} has a malformed namespace entry", SETTINGS)
        return cls(path, data, exists=True)

    def save(self) -> None:
        """Write the file atomically with mode 0600 (through a symlink to its target)."""
        target = Path(os.path.realpath(self.path))
        text = json.dumps(self.data, indent=4)  # the sync CLI's layout
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f"{target.name}.", suffix=".tmp", dir=target.parent)
        except OSError as exc:
            raise CLIError(f"cannot write {self.path}: {exc}", SETTINGS) from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise CLIError(f"cannot write {self.path}: {exc}", SETTINGS) from None
        self.exists = True

    # -- reading --------------------------------------------------------------------------

    @property
    def endpoints(self) -> dict[str, dict[str, Any]]:
        """``{endpoint: endpoint settings}``."""
        endpoints: dict[str, dict[str, Any]] = self.data["endpoints"]
        return endpoints

    def entries(self) -> list[Entry]:
        """Every namespace, in file order."""
        return [
            Entry(endpoint, namespace_id, info, ns_info)
            for endpoint, info in self.endpoints.items()
            for namespace_id, ns_info in info["namespaces"].items()
        ]

    def current(self) -> Entry | None:
        """The namespace in use: the current namespace of the current endpoint."""
        for entry in self.entries():
            if entry.endpoint_info.get("is_current") and entry.info.get("is_current"):
                return entry
        return None

    def find(self, name: str) -> Entry | None:
        """The namespace with alias ``name``, else the one whose ``endpoint:namespace_id`` it is."""
        entries = self.entries()
        for entry in entries:
            if entry.info.get("alias") == name:
                return entry
        for entry in entries:
            if entry.spec == name:
                return entry
        return None

    def resolve(self, name: str | None) -> Entry:
        """``find(name)``, or the current namespace when ``name`` is None.

        Raises:
            CLIError: (SETTINGS) no such namespace, or none configured or current.
        """
        if not self.entries():
            raise CLIError(
                f"no namespace configured yet ({self.path} has none): run '{_ADD_HINT}'",
                SETTINGS,
            )
        if name is not None:
            entry = self.find(name)
            if entry is None:
                raise CLIError(
                    f"no namespace named or aliased {name!r}: see 'aioacm show'", SETTINGS
                )
            return entry
        entry = self.current()
        if entry is None:
            raise CLIError(
                "no namespace is in use: run 'aioacm use ALIAS' or pass -n ALIAS", SETTINGS
            )
        return entry

    # -- changing -------------------------------------------------------------------------

    def use(self, entry: Entry) -> None:
        """Make ``entry`` the namespace in use (the sync CLI's flags: one endpoint, and one
        namespace within it, marked current)."""
        for endpoint, info in self.endpoints.items():
            info["is_current"] = endpoint == entry.endpoint
        for namespace_id, ns_info in entry.endpoint_info["namespaces"].items():
            ns_info["is_current"] = namespace_id == entry.namespace_id

    def _unique_alias(self, request: AddRequest, endpoint: str, namespace_id: str) -> str:
        def taken_by(alias: str) -> Entry | None:
            for entry in self.entries():
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

    def add(self, request: AddRequest) -> tuple[Entry, list[str]]:
        """Add a namespace, or update the one that exists, as ``acm add`` does.

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
        alias = self._unique_alias(request, endpoint, namespace_id)
        old_endpoint = self.endpoints.get(endpoint)
        old = (old_endpoint or {}).get("namespaces", {}).get(namespace_id)
        if request.kms:
            region = request.region_id or (old_endpoint or {}).get("region_id")
            if not region:
                raise CLIError("KMS needs a region id: add -r REGION_ID", USAGE)
            old_ns = old or {}
            role = request.ram_role_name or old_ns.get("ram_role_name")
            if not role:
                if not (request.kms_ak or old_ns.get("kms_ak") or request.ak or old_ns.get("ak")):
                    raise CLIError(
                        "KMS needs an AccessKey (-a or -ka) or a RAM role (-role)", USAGE
                    )
                if not (
                    request.kms_secret or old_ns.get("kms_secret") or request.sk or old_ns.get("sk")
                ):
                    raise CLIError("KMS needs a SecretKey (-s or -ks) or a RAM role (-role)", USAGE)

        notes: list[str] = []
        first = self.current() is None
        if old_endpoint is None:
            old_endpoint = self.endpoints[endpoint] = {
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

        namespaces = old_endpoint["namespaces"]
        if old is None:
            ns = namespaces[namespace_id] = {
                "ak": request.ak,
                "sk": request.sk,
                "alias": alias,
                "is_current": False,
                "updated": _now(),
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
            ns["updated"] = _now()
            notes.append(f"Updated namespace {namespace_id} of {endpoint}.")
        entry = Entry(endpoint, namespace_id, old_endpoint, ns)
        if first:
            self.use(entry)
            notes.append(f"Now using {entry.describe()}.")
        elif (current := self.current()) is None or current.spec != entry.spec:
            notes.append(f"Switch to it with: aioacm use {entry.alias}")
        return entry, notes
