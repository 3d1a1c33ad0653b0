"""Why a server could not be reached, in one sentence a user can act on.

The transport, the server list and the gRPC connection all build their messages here, so the
error a caller gets and the warnings logged on the way say the same thing, in the same words:

- ``cannot reach 127.0.0.1:8080: connection refused`` (``timed out after 3 s``, ``connection
  reset``, ``the server closed the connection``, ``TLS certificate verification failed...``);
- ``cannot resolve acm.example: unknown host, check the server address``;
- ``127.0.0.1:8080 answered 503``;
- ``cannot reach the address server 127.0.0.1:8080: connection refused``;
- ``cannot reach 127.0.0.1:8848 over gRPC (port 9848): connection refused``.

No message carries a URL, a query string or a repr of aiohttp's objects: an error's ``str``
can carry what the server was sent (a Nacos ``accessToken`` travels in the query string).
gRPC errors are read here too, without importing grpc (only clients that speak it load it).
"""

from __future__ import annotations

import asyncio
import errno
import re
import socket
import ssl
import sys

import aiohttp

from .servers import format_server
from .wire import Server

__all__ = ["UNKNOWN_HOST", "answered", "reason", "unavailable", "unreachable"]

#: the reason given for a host name that does not resolve
UNKNOWN_HOST = "unknown host"

_ERRNO_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ECONNABORTED: "connection aborted",
    errno.EPIPE: "connection lost",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "no route to the host",
    errno.ENETUNREACH: "network unreachable",
}
_TLS_CA_HINT = "check tls_ca_file"
_TLS_PORT_HINT = "is it a TLS port? check tls_enabled"
# an OpenSSL reason inside a gRPC error's details: "...:WRONG_VERSION_NUMBER: ..."
_OPENSSL_REASON = re.compile(r"\b([A-Z][A-Z0-9]+(?:_[A-Z0-9]+)+)\b")


def _timed_out(timeout: float | None) -> str:
    return f"timed out after {timeout:g} s" if timeout is not None else "timed out"


def _tls(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = exc.verify_message or exc.reason or "certificate verify failed"
        return f"TLS certificate verification failed ({detail}); {_TLS_CA_HINT}"
    return f"TLS handshake failed ({exc.reason or type(exc).__name__}); {_TLS_PORT_HINT}"


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLError):
        return _tls(exc)
    if isinstance(exc, socket.gaierror):
        return UNKNOWN_HOST
    if exc.errno in _ERRNO_REASONS:
        return _ERRNO_REASONS[exc.errno]
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return "timed out"
    text = exc.strerror or type(exc).__name__
    return text[:1].lower() + text[1:]


def _grpc_reason(exc: BaseException, timeout: float | None) -> str | None:
    """The reason of a ``grpc.aio.AioRpcError``, None for any other exception."""
    grpc_aio = sys.modules.get("grpc.aio")
    if grpc_aio is None or not isinstance(exc, grpc_aio.AioRpcError):
        return None
    code = exc.code()
    details = str(exc.details() or "")
    lowered = details.lower()
    if code.name == "DEADLINE_EXCEEDED":
        return _timed_out(timeout)
    if "connection refused" in lowered:
        return "connection refused"
    if "resolv" in lowered or "domain name not found" in lowered or "dns" in lowered:
        return UNKNOWN_HOST
    if "handshake" in lowered or "ssl" in lowered or "certificate" in lowered:
        names = _OPENSSL_REASON.findall(details)
        if "CERTIFICATE_VERIFY_FAILED" in names:
            return f"TLS certificate verification failed; {_TLS_CA_HINT}"
        detail = next((n for n in names if not n.startswith(("SSL_", "TSI_"))), "TLS error")
        return f"TLS handshake failed ({detail}); {_TLS_PORT_HINT}"
    if "connection reset" in lowered:
        return "connection reset"
    if "socket closed" in lowered or "connection closed" in lowered or "goaway" in lowered:
        return "the server closed the connection"
    # grpc's details repeat the address and the status; the last clause is the reason
    last = details.rsplit(": ", 1)[-1].strip() if details else ""
    return last[:1].lower() + last[1:] if last else str(code.name).lower()


def reason(exc: BaseException, timeout: float | None = None) -> str:
    """Why one attempt failed, in a few words: ``connection refused``, ``timed out after 3 s``,
    ``unknown host``, ``connection reset``, ``TLS certificate verification failed: ...``.

    Args:
        exc: what aiohttp, the OS, asyncio or grpc raised.
        timeout: the attempt's timeout in seconds (said when it expired).
    """
    grpc_reason = _grpc_reason(exc, timeout)
    if grpc_reason is not None:
        return grpc_reason
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        certificate_error = exc.certificate_error
        if isinstance(certificate_error, ssl.SSLError):
            return _tls(certificate_error)
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return _timed_out(timeout)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _os_reason(exc.os_error)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut short"
    if isinstance(exc, aiohttp.ClientResponseError):
        # never str(exc): it names the URL, query string and all
        return f"not an HTTP answer ({exc.message})" if exc.message else "not an HTTP answer"
    if isinstance(exc, OSError):
        return _os_reason(exc)
    if isinstance(exc, aiohttp.ClientConnectionError):
        return "connection failed"
    return type(exc).__name__  # never str(): some errors carry the request


def _host(server: Server) -> str:
    host = server[0]
    return f"[{host}]" if ":" in host else host


def unreachable(
    server: Server,
    exc: BaseException,
    timeout: float | None = None,
    *,
    role: str = "",
    via: str = "",
) -> str:
    """The sentence for a server that could not be reached.

    Args:
        server: ``(host, port)`` as the user knows it.
        exc: what was raised (see ``reason``).
        timeout: the attempt's timeout in seconds.
        role: ``"the address server "`` for an address server.
        via: how it was reached, when not plain HTTP: ``" over gRPC (port 9848)"``.

    Returns:
        ``cannot reach 127.0.0.1:8080: connection refused``, or for a host name that does not
        resolve ``cannot resolve acm.example: unknown host, check the server address``.
    """
    why = reason(exc, timeout)
    if why == UNKNOWN_HOST:
        what = "the endpoint" if role else "the server address"
        return f"cannot resolve {role}{_host(server)}: {UNKNOWN_HOST}, check {what}"
    return f"cannot reach {role}{format_server(server)}{via}: {why}"


def answered(server: Server, status: int, *, role: str = "") -> str:
    """The sentence for a server that answered a status meaning it cannot serve now (5xx,
    408, 429, a redirect): ``127.0.0.1:8080 answered 503``."""
    return f"{role}{format_server(server)} answered {status}"


def unavailable(failures: list[str], tried: int) -> str:
    """The message of a request every server failed: the one server's sentence, or each
    server's (at most three) after ``no server answered (N tried)``."""
    if len(failures) == 1:
        return failures[0]
    head = f"no server answered ({tried} tried)"
    if not failures:
        return head
    more = len(failures) - 3
    return f"{head}: " + "; ".join(failures[:3]) + (f"; and {more} more" if more > 0 else "")
