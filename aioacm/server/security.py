"""Checking the Spas signature headers the way ACM does (PROTOCOL.md section 4).

The server only checks what it was told to: with no credentials configured every request
passes. With credentials, a request must name a known access key in ``Spas-AccessKey``; where
the client has something to sign (a tenant or a group), ``Spas-Signature`` must be
base64(HMAC-SHA1(secret, sign string)) and ``timeStamp`` within the window of the server's
clock. The long poll, which the sync SDK never signs, only needs the known key; a signature it
does carry must still be valid. Temporary (STS) keys are registered with their security token,
and a request made with one must carry that token in ``Spas-SecurityToken``.

Nacos requests are checked with Nacos's rules instead: over HTTP (``check_nacos``) and over
gRPC (``check_nacos_grpc``, the headers of the request's metadata), which sign slightly
different strings.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterable, Mapping

from multidict import CIMultiDict, CIMultiDictProxy

from ..auth import sign
from ..dialects.acm import sign_string
from ..dialects.nacos import nacos_sign_string

__all__ = ["AccessDenied", "SignatureChecker", "grpc_sign_string"]


def grpc_sign_string(tenant: str | None, group: str | None, timestamp: str) -> str:
    """What a Nacos gRPC request's AK/SK signature covers: ``resource+ts``, where the resource
    is ``tenant+group``, the group or the tenant alone (whichever are not blank), or just the
    timestamp when neither is set (a batch listen).

    Java's client builds it so (``ConfigResourceInjector``); unlike the HTTP rule, a tenant
    without a group signs ``tenant+ts``, not ``tenant++ts``.
    """
    parts = [part for part in (tenant, group) if part and part.strip()]
    return "+".join([*parts, timestamp])


class AccessDenied(Exception):
    """A request failed the check; the message says why (it never holds a secret)."""


class SignatureChecker:
    """Verifies the Spas headers of requests against a fixed set of access keys.

    Args:
        credentials: ``{access_key: secret_key}``; ``None`` or empty turns checking off.
        window: how far (seconds) ``timeStamp`` may be from the server's clock.
        clock: returns the current time in seconds (for tests).
    """

    def __init__(
        self,
        credentials: Mapping[str, str] | None,
        window: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if window <= 0:
            raise ValueError("the signature window must be positive")
        self._credentials = dict(credentials or {})
        self._tokens: dict[str, str] = {}
        # once on, checking stays on: revoking the last key must not open the door
        self._enabled = bool(self._credentials)
        self.window = window
        self._clock = clock

    def add(self, access_key: str, secret_key: str, security_token: str | None = None) -> None:
        """Accept one more key (an STS key with its token); this turns checking on."""
        if not access_key or not secret_key:
            raise ValueError("access_key and secret_key must be non-empty")
        self._credentials[access_key] = secret_key
        self._enabled = True
        if security_token is None:
            self._tokens.pop(access_key, None)
        else:
            self._tokens[access_key] = security_token

    def revoke(self, access_key: str) -> None:
        """Stop accepting a key (an expired STS key, say)."""
        self._credentials.pop(access_key, None)
        self._tokens.pop(access_key, None)

    @property
    def enabled(self) -> bool:
        """Whether requests are checked at all."""
        return self._enabled

    def check(
        self,
        headers: CIMultiDictProxy[str],
        signed_parts: Iterable[tuple[str | None, str | None]],
        *,
        require_signature: bool,
    ) -> None:
        """Check one request's headers.

        Args:
            headers: the request headers.
            signed_parts: the ``(tenant, group)`` pairs a valid signature may cover; the sign
                string is ``sign_string(tenant, group, timeStamp)``, or the bare timestamp
                when both are empty.
            require_signature: whether a request without ``Spas-Signature`` is refused.

        Raises:
            AccessDenied: the request must be answered 403.
        """
        if not self.enabled:
            return
        secret = self._secret(headers)
        signature = headers.get("Spas-Signature")
        if signature is None:
            if require_signature:
                raise AccessDenied("no Spas-Signature header")
            return
        timestamp = self._timestamp(headers, "timeStamp")
        for tenant, group in signed_parts:
            text = sign_string(tenant, group, timestamp) or timestamp
            if hmac.compare_digest(sign(secret, text), signature):
                return
        raise AccessDenied("signature does not match")

    def check_nacos(
        self, headers: CIMultiDictProxy[str], tenant: str | None, group: str | None
    ) -> None:
        """Check a Nacos request's Spas headers as MSE does: a known key, its STS token, a
        ``Timestamp`` in the window and a signature over Nacos's sign string.

        Raises:
            AccessDenied: the request must be answered 403.
        """
        if not self.enabled:
            return
        secret = self._secret(headers)
        timestamp = self._timestamp(headers, "Timestamp")
        expected = sign(secret, nacos_sign_string(tenant, group, timestamp))
        if not hmac.compare_digest(expected, headers.get("Spas-Signature", "")):
            raise AccessDenied("signature does not match")

    def check_nacos_grpc(
        self, headers: Mapping[str, str], tenant: str | None, group: str | None
    ) -> None:
        """Check a Nacos gRPC request's ``metadata.headers`` (names case-insensitive, as Java's
        request headers are): a known key, its STS token, a ``Timestamp`` in the window and a
        ``Spas-Signature`` over :func:`grpc_sign_string` of the request's own tenant and group.

        Raises:
            AccessDenied: the request must be refused (errorCode 403).
        """
        if not self.enabled:
            return
        found = CIMultiDict(headers)
        secret = self._secret(found)
        timestamp = self._timestamp(found, "Timestamp")
        expected = sign(secret, grpc_sign_string(tenant, group, timestamp))
        if not hmac.compare_digest(expected, found.get("Spas-Signature", "")):
            raise AccessDenied("signature does not match")

    def _secret(self, headers: Mapping[str, str]) -> str:
        """The secret of the request's known access key, its STS token checked."""
        access_key = headers.get("Spas-AccessKey")
        if not access_key:
            raise AccessDenied("no Spas-AccessKey header")
        secret = self._credentials.get(access_key)
        if secret is None:
            raise AccessDenied("unknown access key")
        self.check_security_token(access_key, headers.get("Spas-SecurityToken"))
        return secret

    def _timestamp(self, headers: Mapping[str, str], name: str) -> str:
        """The request's timestamp header ``name`` (ms), refused when missing or off the
        server clock by more than the window."""
        timestamp = headers.get(name, "")
        if not timestamp.isdigit():
            raise AccessDenied(f"no valid {name} header")
        skew = abs(self._clock() * 1000 - int(timestamp)) / 1000
        if skew > self.window:
            raise AccessDenied(f"{name} is {skew:.0f} s away from the server clock")
        return timestamp

    def check_security_token(self, access_key: str, token: str | None) -> None:
        """Check ``Spas-SecurityToken``: an STS key needs its token; a permanent key none.

        Raises:
            AccessDenied: the token is missing or not the one registered for ``access_key``.
        """
        expected = self._tokens.get(access_key)
        if expected is None:
            if token is not None:
                raise AccessDenied("a security token was sent with a permanent access key")
            return
        if token is None:
            raise AccessDenied("no Spas-SecurityToken header for a temporary access key")
        if not hmac.compare_digest(token.encode("utf-8"), expected.encode("utf-8")):
            raise AccessDenied("security token does not match")
