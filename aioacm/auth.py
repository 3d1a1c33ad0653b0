"""Credentials and the HMAC they sign with.

Credentials come from a ``CredentialsProvider``: fixed keys, an ECS RAM role (temporary STS
credentials from the instance metadata service, refreshed before they expire), or the user's own.
``ClientCredentials`` is the one live provider a client hands to everything that signs (its
dialect and KMS): it follows the client's options, so changing ``ram_role_name`` rewires
nothing by hand. What is signed and where the signature goes is each dialect's business.
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import email.utils
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import quote

import aiohttp

from .errors import CredentialsError

if TYPE_CHECKING:
    from .options import Options

__all__ = [
    "ClientCredentials",
    "Credentials",
    "CredentialsProvider",
    "RamRoleCredentialsProvider",
    "StaticCredentialsProvider",
    "sign",
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


logger = logging.getLogger(__name__)

METADATA_TOKEN_TTL = 21600  # seconds a hardened-mode metadata token lives (ECS's maximum)


@dataclass(frozen=True)
class _Lease:
    credentials: Credentials
    expires_at: float  # on the local clock


class RamRoleCredentialsProvider:
    """Temporary (STS) credentials of an ECS RAM role, from the instance metadata service.

    The credentials are fetched on first use over the given session, cached, and fetched again
    when less than ``refresh_margin`` seconds remain; the expiry is corrected for the local
    clock's skew using the metadata response's ``Date``. Concurrent callers share one fetch.
    The hardened metadata mode (a ``PUT /latest/api/token`` first, its token on the GET) is tried
    first, falling back to the plain GET. When a refresh fails while the cached credentials
    are still valid, those are used (and the fetch is retried after ``retry_interval``).

    Args:
        role_name: the RAM role attached to the instance.
        session: the aiohttp session to fetch with (not closed here).
        metadata_url: the metadata service (``http://100.100.100.200`` on ECS).
        timeout: seconds for each metadata request.
        refresh_margin: refresh when fewer seconds than this remain (3 minutes).
        retry_interval: after a failed refresh, seconds before the next attempt while the
            cached credentials are still valid.
        clock: the local clock in seconds since the epoch (for tests).

    Raises (from ``get_credentials``):
        CredentialsError: the credentials could not be fetched (the message names the role and
            the reason, never a secret).
    """

    def __init__(
        self,
        role_name: str,
        *,
        session: aiohttp.ClientSession,
        metadata_url: str = "http://100.100.100.200",
        timeout: float = 3.0,
        refresh_margin: float = 180.0,
        retry_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.role_name = role_name
        self.metadata_url = metadata_url.rstrip("/")
        self._session = session
        self.timeout = timeout
        self._refresh_margin = refresh_margin
        self._retry_interval = retry_interval
        self._clock = clock
        self._lease: _Lease | None = None
        self._retry_after = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many times the metadata service was asked (for tests, stats)

    def __repr__(self) -> str:
        return (
            f"RamRoleCredentialsProvider(role_name={self.role_name!r},"
            f" metadata_url={self.metadata_url!r})"
        )

    def _fresh(self, lease: _Lease | None) -> bool:
        return lease is not None and lease.expires_at - self._clock() > self._refresh_margin

    async def get_credentials(self) -> Credentials:
        """Return the role's current credentials, fetching them first when due."""
        lease = self._lease
        if lease is not None and self._fresh(lease):
            return lease.credentials
        async with self._lock:
            lease = self._lease
            if lease is not None and self._fresh(lease):
                return lease.credentials  # another caller refreshed while we waited
            now = self._clock()
            if lease is not None and lease.expires_at > now and now < self._retry_after:
                return lease.credentials  # a refresh failed a moment ago: keep the old ones
            try:
                self._lease = await self._fetch()
            except CredentialsError as exc:
                if lease is None or lease.expires_at <= self._clock():
                    raise
                self._retry_after = self._clock() + self._retry_interval
                logger.warning(
                    "%s; using the current credentials until they expire in %.0f s",
                    exc,
                    lease.expires_at - self._clock(),
                )
                return lease.credentials
            return self._lease.credentials

    def _error(self, reason: str) -> CredentialsError:
        return CredentialsError(
            f"cannot get credentials of RAM role {self.role_name!r}"
            f" from {self.metadata_url}: {reason}"
        )

    async def _metadata_token(self) -> str | None:
        """The hardened mode's token, or None when the service does not offer it."""
        url = f"{self.metadata_url}/latest/api/token"
        headers = {"X-aliyun-ecs-metadata-token-ttl-seconds": str(METADATA_TOKEN_TTL)}
        try:
            async with self._session.put(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            logger.debug("metadata token for %r unavailable: %r", self.role_name, exc)
            return None
        token = body.decode("ascii", errors="replace").strip()
        if status != 200 or not token:
            logger.debug("metadata token for %r unavailable: HTTP %s", self.role_name, status)
            return None
        return token

    async def _fetch(self) -> _Lease:
        self.fetches += 1
        token = await self._metadata_token()
        headers = {"X-aliyun-ecs-metadata-token": token} if token else {}
        url = (
            f"{self.metadata_url}/latest/meta-data/ram/security-credentials/"
            f"{quote(self.role_name, safe='')}"
        )
        try:
            async with self._session.get(
                url, headers=headers, timeout=aiohttp.ClientTimeout(total=self.timeout)
            ) as resp:
                body = await resp.read()
                status, date = resp.status, resp.headers.get("Date")
        except asyncio.TimeoutError:
            raise self._error(f"no answer within {self.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._error(type(exc).__name__) from None
        if status != 200:
            raise self._error(f"HTTP {status}")
        return self._lease_from(body, date)

    def _lease_from(self, body: bytes, date: str | None) -> _Lease:
        # The body holds the secret: nothing of it may reach a message.
        try:
            data: Any = json.loads(body)
        except ValueError:
            raise self._error("the answer is not JSON") from None
        if not isinstance(data, dict):
            raise self._error("the answer is not a JSON object")
        code = data.get("Code")
        if code != "Success":
            shown = code if isinstance(code, str) and code.isalnum() else "?"
            raise self._error(f"Code is {shown!r}, not 'Success'")
        fields = {}
        for name in ("AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"):
            value = data.get(name)
            if not isinstance(value, str) or not value:
                raise self._error(f"the answer has no {name}")
            fields[name] = value
        try:
            expiration = calendar.timegm(time.strptime(fields["Expiration"], "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            raise self._error("Expiration is not YYYY-MM-DDTHH:MM:SSZ") from None
        skew = 0.0  # the metadata service's clock minus ours
        if date:
            try:
                skew = email.utils.parsedate_to_datetime(date).timestamp() - self._clock()
            except (TypeError, ValueError):
                logger.debug("metadata Date header %r is not a date; no skew correction", date)
        credentials = Credentials(
            fields["AccessKeyId"], fields["AccessKeySecret"], fields["SecurityToken"]
        )
        logger.debug(
            "RAM role %r: credentials for %s valid %.0f s (clock skew %.1f s)",
            self.role_name,
            credentials.access_key,
            expiration - skew - self._clock(),
            skew,
        )
        return _Lease(credentials, expiration - skew)


def sign(secret_key: str, text: str) -> str:
    """base64(HMAC-SHA1(secret_key, text)), standard alphabet, padded, no newline."""
    digest = hmac.new(secret_key.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


class ClientCredentials:
    """The credentials of one client, as its options say now: the RAM role's when
    ``ram_role_name`` is set (it wins over ak/sk, as in the sync SDK), else the provider the
    client was given (its ak/sk, or ``credentials=``), else none.

    One object is shared by everything that signs; the RAM role's provider is made on first
    use and made again when the role or the metadata URL changes.

    Args:
        given: the client's own provider, if any.
        options: the client's live options.
    """

    def __init__(self, given: CredentialsProvider | None, options: Options) -> None:
        self.given = given
        self._options = options
        self._session: aiohttp.ClientSession | None = None
        self._role: RamRoleCredentialsProvider | None = None

    def __repr__(self) -> str:
        return f"ClientCredentials(provider={self.provider()!r})"

    def bind(self, session: aiohttp.ClientSession | None) -> None:
        """The session RAM role credentials are fetched over (None: the client closed)."""
        self._session = session
        self._role = None

    @property
    def configured(self) -> bool:
        """Whether there are credentials to sign with (a role, or a given provider)."""
        return bool(self._options.ram_role_name) or self.given is not None

    def provider(self) -> CredentialsProvider | None:
        """The provider in force now (no I/O)."""
        options = self._options
        role = options.ram_role_name
        if not role:
            return self.given
        current = self._role
        if (
            current is None
            or current.role_name != role
            or current.metadata_url != options.ram_metadata_url.rstrip("/")
        ):
            if self._session is None:
                raise CredentialsError(f"RAM role {role!r}: the client is not open")
            current = self._role = RamRoleCredentialsProvider(
                role,
                session=self._session,
                metadata_url=options.ram_metadata_url,
                timeout=options.default_timeout,
            )
        current.timeout = options.default_timeout  # kept live, like every other option
        return current

    async def get_credentials(self) -> Credentials:
        """The credentials to sign with now.

        Raises:
            CredentialsError: there are none, or the RAM role's could not be fetched.
        """
        provider = self.provider()
        if provider is None:
            raise CredentialsError("no credentials: give ak/sk, credentials= or a RAM role")
        return await provider.get_credentials()
