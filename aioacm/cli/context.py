"""What every command gets: the parsed arguments, the console, the settings, and clients."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import Any

from ..client import ACMClient
from ..dialects.acm import normalize_group, validate_data_id
from ..errors import InvalidOptionError, InvalidParameterError
from ..nacos import NacosClient
from .adding import parse_target
from .console import Console
from .exits import SETTINGS, USAGE, CLIError
from .settings import Entry, Settings, client_kwargs

__all__ = ["PASSWORD_ENV", "Client", "Context", "parse_key"]

#: What the commands work with: either client, through the API both share.
Client = ACMClient | NacosClient

#: Where ``add`` and ad hoc ``nacos://USER@...`` targets find a Nacos password when no
#: ``--password`` was given (before asking on the terminal).
PASSWORD_ENV = "AIOACM_NACOS_PASSWORD"

# The CLI shows the server's answer: it writes no snapshot and falls back to none (no_snapshot),
# and does not read failover files from the working directory as the library does by default.
# Both folders point under the settings directory, where the CLI never creates anything.
_LOCAL_FOLDER = ".aioacm"


def parse_key(text: str) -> tuple[str, str]:
    """``group/dataId`` or ``dataId`` (``DEFAULT_GROUP``) → ``(group, data_id)``, validated.

    Raises:
        CLIError: (USAGE) more than one ``/``, or a group or dataId ACM does not accept.
    """
    if text.count("/") > 1:
        raise CLIError(f"invalid dataId {text!r}: use GROUP/DATA_ID or DATA_ID", USAGE)
    group, _, data_id = text.rpartition("/")
    try:
        return normalize_group(group), validate_data_id(data_id)
    except InvalidParameterError as exc:
        raise CLIError(str(exc), USAGE) from None


@dataclass
class Context:
    """One run of the tool.

    Attributes:
        args: the parsed command line.
        console: where output goes.
        entry: the namespace the command works on, once a client was made (for messages).
    """

    args: argparse.Namespace
    console: Console
    entry: Entry | None = None
    _settings: Settings | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        """The settings file, read on first use."""
        if self._settings is None:
            self._settings = Settings.load()
        return self._settings

    def password(self, username: str, given: str | None = None) -> str | None:
        """A Nacos user's password: ``given`` (``--password``), else ``$AIOACM_NACOS_PASSWORD``,
        else asked on the terminal (not echoed); None when none of them has one."""
        if given:
            return given
        env = os.environ.get(PASSWORD_ENV)
        if env:
            return env
        return self.console.secret(f"Password for Nacos user {username}: ")

    def resolve(self, name: str | None, *, ad_hoc: bool = True) -> Entry:
        """The namespace ``-n name`` picks: an alias, or a target (``ENDPOINT:NAMESPACE_ID``,
        ``nacos://[USER@]HOST[:PORT]/NAMESPACE_ID``) that was added; else, with ``ad_hoc``,
        a target that was never added, used as given (no keys) and saved nowhere. None: the
        namespace in use.

        Raises:
            CLIError: (SETTINGS) no such namespace, none configured or in use; (USAGE) a
                malformed target.
        """
        settings = self.settings
        if name is None:
            return settings.resolve(None)
        entry = settings.find(name)
        if entry is not None:
            return entry
        if ":" not in name:  # an alias: aliases have no ":"
            if not settings.entries():
                settings.resolve(None)  # "no namespace configured yet: run aioacm add ..."
            raise CLIError(
                f"no namespace aliased {name!r}: see 'aioacm show', or give"
                " ENDPOINT:NAMESPACE_ID or nacos://HOST[:PORT]/NAMESPACE_ID",
                SETTINGS,
            )
        endpoint, namespace_id, username = parse_target(name)
        for known in settings.entries():
            same = (known.endpoint, known.namespace_id) == (endpoint, namespace_id)
            if same and username in (None, known.username):
                return known
        if not ad_hoc:
            raise CLIError(f"{name} was never added: run 'aioacm add {name}' first", SETTINGS)
        info: dict[str, object] = {"alias": None}
        if username is not None:
            password = self.password(username)
            if not password:
                raise CLIError(
                    f"no password for the Nacos user {username!r}: set {PASSWORD_ENV}, run on"
                    f" a terminal to be asked, or save it with 'aioacm add {name}'",
                    USAGE,
                )
            info.update(username=username, password=password)
        return Entry(endpoint, namespace_id, {"tls": False, "namespaces": {}}, info)

    def client_for(self, entry: Entry) -> Client:
        """A client for one settings entry (not opened: use ``async with``): an ``ACMClient``,
        or a ``NacosClient`` for a Nacos target.

        Raises:
            CLIError: (SETTINGS) the entry asks for something this aioacm cannot do, or holds
                invalid values.
        """
        self.entry = entry
        local = self.settings.path.parent / _LOCAL_FOLDER
        stores: dict[str, Any] = {
            "no_snapshot": True,
            "snapshot_base": str(local / "snapshot"),
            "failover_base": str(local / "failover"),
        }
        try:
            if entry.kind == "nacos":
                return NacosClient(**client_kwargs(entry), **stores)
            return ACMClient(**client_kwargs(entry), **stores)
        except InvalidOptionError as exc:
            raise CLIError(f"{entry.describe()}: {exc}", SETTINGS) from None
        except InvalidParameterError as exc:
            raise CLIError(
                f"the settings of {entry.describe()} are invalid: {exc}", SETTINGS
            ) from None

    def client(self, name: str | None) -> Client:
        """A client for the namespace ``-n name`` picks (see ``resolve``)."""
        return self.client_for(self.resolve(name))
