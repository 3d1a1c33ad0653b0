"""The aioacm exception tree.

The two roots keep the sync SDK's names, so code migrating from ``acm-sdk-python`` still
catches what it caught before::

    ACMException
    ├── InvalidParameterError        a bad argument, refused before I/O (also ValueError)
    │   └── InvalidOptionError       unknown option or a value of the wrong type (also TypeError)
    ├── ClientClosedError            the client was used after ``aclose()``
    ├── WrongEventLoopError          used from an event loop other than its own (also RuntimeError)
    └── ACMRequestException          a request to ACM did not succeed
        ├── AccessDeniedError        403: no permission (never retried on another server)
        ├── BadRequestError          400 and other 4xx the server refused
        ├── ConflictError            a publish with ``cas_md5``: the item changed meanwhile
        ├── ConfigNotFoundError      404 where a missing item is an error
        ├── ServerUnavailableError   every server failed (5xx, 409, timeouts, refused)
        ├── CredentialsError         credentials could not be obtained (RAM role metadata)
        └── KMSError                 KMS refused, failed or could not decrypt a cipher- item

Every error carries ``status``, ``server`` and ``key`` (``dataId+group+namespace``) where they
apply, and says them in its message, once (what the message names already is not repeated). No
error ever carries a secret.
"""

from __future__ import annotations

__all__ = [
    "ACMException",
    "ACMRequestException",
    "AccessDeniedError",
    "BadRequestError",
    "ClientClosedError",
    "ConfigNotFoundError",
    "ConflictError",
    "CredentialsError",
    "InvalidOptionError",
    "InvalidParameterError",
    "KMSError",
    "ServerUnavailableError",
    "WrongEventLoopError",
]


class ACMException(Exception):
    """Root of every aioacm error (the sync SDK's name).

    Attributes:
        status: the HTTP status that caused the error, if any.
        server: the ``host:port`` that answered (or failed), if any.
        key: the config key ``dataId+group+namespace`` concerned, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        server: str | None = None,
        key: str | None = None,
    ) -> None:
        self.message = message
        self.status = status
        self.server = server
        self.key = key
        super().__init__(message)

    def __str__(self) -> str:
        # what the message says already is not said again ("cannot reach 127.0.0.1:8080:
        # connection refused", not "... (server=127.0.0.1:8080)"); a message naming the
        # server's host names the server ("cannot resolve acm.example: ...")
        message = self.message
        server = self.server
        if server is not None and server.rpartition(":")[0] in message:
            server = None
        details = [
            f"{name}={value}"
            for name, value in (("key", self.key), ("server", server), ("status", self.status))
            if value is not None and str(value) not in message
        ]
        return f"{message} ({', '.join(details)})" if details else message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class InvalidParameterError(ACMException, ValueError):
    """An argument was refused before any I/O (data_id, group, namespace, content, ...)."""


class InvalidOptionError(InvalidParameterError, TypeError):
    """An unknown option name, or an option value of the wrong type or range."""


class ClientClosedError(ACMException):
    """The client was used after it was closed."""


class WrongEventLoopError(ACMException, RuntimeError):
    """The client was used from an event loop other than the one that first used it (a
    second ``asyncio.run()``, or a loop in another thread). A client belongs to the event loop
    that first used it: its connections and tasks live there. Create one client per loop (and
    close it on that loop). Nothing was sent, and nothing was started on the other loop."""


class ACMRequestException(ACMException):
    """A request to an ACM server did not succeed (the sync SDK's name)."""


class AccessDeniedError(ACMRequestException):
    """The server answered 403: the credentials have no right to this item or namespace."""


class BadRequestError(ACMRequestException):
    """The server refused the request (400 or another 4xx)."""


class ConflictError(ACMRequestException):
    """A compare-and-set publish (Nacos's ``cas_md5``) found the item's md5 changed: nothing
    was written. Read the item again and decide."""


class ConfigNotFoundError(ACMRequestException):
    """The item does not exist, where that is an error rather than a ``None`` answer."""


class ServerUnavailableError(ACMRequestException):
    """No server could answer: every server was tried, or the server list is empty."""


class CredentialsError(ACMRequestException):
    """Credentials could not be obtained (for example from the RAM role metadata service)."""


class KMSError(ACMRequestException):
    """KMS could not encrypt or decrypt a ``cipher-`` item (refused, unreachable, bad data).

    Attributes:
        code: KMS's error code (e.g. ``Forbidden.KeyNotFound``), if KMS answered one.
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        server: str | None = None,
        key: str | None = None,
    ) -> None:
        self.code = code
        super().__init__(message, status=status, server=server, key=key)
