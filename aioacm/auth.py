"""Request signing (pure) and credential providers.

Signing follows the sync SDK byte for byte: ``Spas-AccessKey`` and ``timeStamp`` on every
request once auth is on, and ``Spas-Signature`` = base64(HMAC-SHA1(secret, sign string)) where
the sign string is ``tenant+group+ts``, ``group+ts`` or ``tenant+ts`` from the parameters the
request carries (none for the long poll, which the sync SDK sends unsigned).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "Credentials",
    "CredentialsProvider",
    "StaticCredentialsProvider",
    "sign",
    "sign_headers",
    "sign_string",
]


@dataclass(frozen=True)
class Credentials:
    """One set of credentials. ``repr`` never shows the secret or the token."""

    access_key: str
    secret_key: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


@runtime_checkable
class CredentialsProvider(Protocol):
    """Anything with an async ``get_credentials()``: static keys, a RAM role, your own."""

    async def get_credentials(self) -> Credentials:
        """Return credentials valid for at least the next request."""
        ...


class StaticCredentialsProvider:
    """Fixed AccessKey / SecretKey (and optional STS token)."""

    def __init__(self, access_key: str, secret_key: str, security_token: str | None = None):
        self._credentials = Credentials(access_key, secret_key, security_token)

    async def get_credentials(self) -> Credentials:
        """Return the fixed credentials."""
        return self._credentials

    def __repr__(self) -> str:
        return f"StaticCredentialsProvider(access_key={self._credentials.access_key!r})"


def sign_string(tenant: str | None, group: str | None, timestamp: str) -> str:
    """The string the sync SDK signs; ``""`` when the request carries neither tenant nor group."""
    prefix = "".join(f"{part}+" for part in (tenant, group) if part)
    return f"{prefix}{timestamp}" if prefix else ""


def sign(secret_key: str, text: str) -> str:
    """base64(HMAC-SHA1(secret_key, text)), standard alphabet, padded, no newline."""
    digest = hmac.new(secret_key.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def sign_headers(
    credentials: Credentials, tenant: str | None, group: str | None, timestamp_ms: int
) -> dict[str, str]:
    """The auth headers for one request."""
    ts = str(timestamp_ms)
    headers = {"Spas-AccessKey": credentials.access_key, "timeStamp": ts}
    if credentials.security_token:
        headers["Spas-SecurityToken"] = credentials.security_token
    text = sign_string(tenant, group, ts)
    if text:
        headers["Spas-Signature"] = sign(credentials.secret_key, text)
    return headers
