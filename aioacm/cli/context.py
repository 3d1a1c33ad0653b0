"""What every command gets: the parsed arguments, the console, the settings, and clients."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ..client import ACMClient
from ..dialects.acm import normalize_group, validate_data_id
from ..errors import InvalidOptionError, InvalidParameterError
from .console import Console
from .exits import SETTINGS, USAGE, CLIError
from .settings import Entry, Settings, client_kwargs

__all__ = ["Context", "parse_key"]

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

    def client_for(self, entry: Entry) -> ACMClient:
        """A client for one settings entry (not opened: use ``async with``).

        Raises:
            CLIError: (SETTINGS) the entry asks for something this aioacm cannot do, or holds
                invalid values.
        """
        self.entry = entry
        local = self.settings.path.parent / _LOCAL_FOLDER
        try:
            return ACMClient(
                **client_kwargs(entry),
                no_snapshot=True,
                snapshot_base=str(local / "snapshot"),
                failover_base=str(local / "failover"),
            )
        except InvalidOptionError as exc:
            raise CLIError(f"{entry.describe()}: {exc}", SETTINGS) from None
        except InvalidParameterError as exc:
            raise CLIError(
                f"the settings of {entry.describe()} are invalid: {exc}", SETTINGS
            ) from None

    def client(self, name: str | None) -> ACMClient:
        """A client for the namespace ``-n name`` picks (alias or ``endpoint:namespace_id``),
        else the one in use."""
        return self.client_for(self.settings.resolve(name))
