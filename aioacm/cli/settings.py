"""The settings file ``~/.acm.json``, in the sync CLI's format so existing setups keep working.

The file is ``{"endpoints": {endpoint: {"tls", "is_current", "region_id", "kms_enabled",
"namespaces": {namespace_id: {"ak", "sk", "alias", "is_current", "updated", "kms_ak",
"kms_secret", "key_id", "ram_role_name"}}}}}``; the default namespace is ``[default]``. A Nacos
target is an endpoint named ``nacos://HOST[:PORT][,...]`` whose namespaces may also hold
``username`` and ``password`` (the sync CLI lists such an endpoint and leaves it alone). It is
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

from .exits import SETTINGS, CLIError

__all__ = [
    "DEFAULT_ENDPOINT",
    "DEFAULT_NAMESPACE",
    "NACOS_SCHEME",
    "SETTINGS_NAME",
    "Entry",
    "Settings",
    "client_kwargs",
    "now",
    "settings_path",
]

SETTINGS_NAME = ".acm.json"
DEFAULT_ENDPOINT = "acm.aliyun.com"
DEFAULT_NAMESPACE = "[default]"
NACOS_SCHEME = "nacos://"
_ADD_HINT = "aioacm add ENDPOINT:NAMESPACE_ID -a ACCESS_KEY -s SECRET_KEY"


def now() -> str:
    """A timestamp as the sync CLI writes ``updated``."""
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


@dataclass
class Entry:
    """One namespace of the settings file, with its endpoint's settings (both live dicts)."""

    endpoint: str
    namespace_id: str
    endpoint_info: dict[str, Any]
    info: dict[str, Any]

    @property
    def kind(self) -> str:
        """``"nacos"`` for a Nacos target (``nacos://...``), else ``"acm"``."""
        return "nacos" if self.endpoint.startswith(NACOS_SCHEME) else "acm"

    @property
    def spec(self) -> str:
        """``endpoint:namespace_id`` (ACM), ``nacos://servers/namespace_id`` (Nacos)."""
        if self.kind == "nacos":
            return f"{self.endpoint}/{'' if self.namespace is None else self.namespace_id}"
        return f"{self.endpoint}:{self.namespace_id}"

    @property
    def username(self) -> str | None:
        """The Nacos user name, if the target logs in."""
        name = self.info.get("username")
        return name if isinstance(name, str) and name else None

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
    """The ``ACMClient(...)`` (or, for a Nacos target, ``NacosClient(...)``) keyword arguments
    for one settings entry.

    Mirrors the sync CLI: ak/sk and the RAM role name for the namespace, ``tls`` as
    ``tls_enabled``, and the KMS settings only when the endpoint has ``kms_enabled``. A Nacos
    target gives its servers, and its user name and password when it logs in.

    Raises:
        CLIError: only one of the AccessKey and the SecretKey is set, or a Nacos user has no
            password.
    """
    info, endpoint_info = entry.info, entry.endpoint_info
    kwargs: dict[str, Any] = {"namespace": entry.namespace}
    if entry.kind == "nacos":
        kwargs["server_addresses"] = entry.endpoint[len(NACOS_SCHEME) :]
        if entry.username is not None:
            password = info.get("password")
            if not isinstance(password, str) or not password:
                raise CLIError(
                    f"{entry.spec}: the user {entry.username!r} has no password: run"
                    f" 'aioacm add {NACOS_SCHEME}{entry.username}@"
                    f"{entry.spec[len(NACOS_SCHEME) :]}' again",
                    SETTINGS,
                )
            kwargs["username"], kwargs["password"] = entry.username, password
    else:
        kwargs["endpoint"] = entry.endpoint
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
        if endpoint_info.get("ram_metadata_url"):
            kwargs["ram_metadata_url"] = endpoint_info["ram_metadata_url"]
    if endpoint_info.get("tls"):
        kwargs["tls_enabled"] = True
    if endpoint_info.get("kms_enabled"):
        kwargs["kms_enabled"] = True
        for name, value in (
            ("region_id", endpoint_info.get("region_id")),
            ("key_id", info.get("key_id")),
            ("kms_ak", info.get("kms_ak")),
            ("kms_secret", info.get("kms_secret")),
            ("kms_endpoint", endpoint_info.get("kms_endpoint")),
            ("kms_protocol", endpoint_info.get("kms_protocol")),
        ):
            if value:
                kwargs[name] = value
    return kwargs


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
