"""Exit codes of the ``aioacm`` command, and the one place errors become them.

Every failure the tool can foresee leaves with one line on stderr and one of these codes,
never with a traceback (``--debug`` adds the traceback of an unexpected error).
"""

from __future__ import annotations

from ..errors import (
    AccessDeniedError,
    ACMException,
    InvalidOptionError,
    InvalidParameterError,
    ServerUnavailableError,
)

__all__ = [
    "ACCESS_DENIED",
    "BROKEN_PIPE",
    "EXIT_CODES",
    "FAILURE",
    "INTERRUPTED",
    "NOT_FOUND",
    "OK",
    "SETTINGS",
    "UNAVAILABLE",
    "USAGE",
    "CLIError",
    "classify",
]

OK = 0
FAILURE = 1
USAGE = 2
SETTINGS = 3
NOT_FOUND = 4
UNAVAILABLE = 5
ACCESS_DENIED = 6
INTERRUPTED = 130
BROKEN_PIPE = 141  # 128 + SIGPIPE: stdout was closed by its reader (``aioacm list | head``)

# Shown by ``aioacm --help`` and in the README; a test keeps the three in step.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (OK, "success"),
    (FAILURE, "a request failed, some items of an export/import/copy failed, or cancelled"),
    (USAGE, "bad input: unknown flag, invalid target, dataId or group, bad local path"),
    (SETTINGS, "settings: unknown alias, no namespace configured, unusable ~/.acm.json"),
    (NOT_FOUND, "pull: the config item does not exist"),
    (UNAVAILABLE, "no server could be reached"),
    (ACCESS_DENIED, "access denied (403): check the AccessKey/SecretKey or Nacos password"),
    (INTERRUPTED, "interrupted (Ctrl-C); 143 for SIGTERM"),
    (BROKEN_PIPE, "whoever read stdout stopped reading (e.g. '| head')"),
)


class CLIError(Exception):
    """A failure to report as one line, leaving with ``code``."""

    def __init__(self, message: str, code: int = FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def classify(exc: ACMException) -> int:
    """The exit code for an aioacm error."""
    if isinstance(exc, AccessDeniedError):
        return ACCESS_DENIED
    if isinstance(exc, ServerUnavailableError):
        return UNAVAILABLE
    if isinstance(exc, InvalidOptionError):
        return SETTINGS
    if isinstance(exc, InvalidParameterError):
        return USAGE
    return FAILURE
