"""HTTP to the ACM servers over one shared aiohttp session.

The one place where aiohttp and OS errors become aioacm errors. A request sticks to the current
server and moves to the next one on 5xx, 408, 429, connection errors and timeouts; 409 (item
being rewritten) is retried briefly on the same server first; 403 and other 4xx are raised at
once. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from ._version import __version__
from .auth import CredentialsProvider, sign_headers
from .errors import (
    AccessDeniedError,
    ACMRequestException,
    BadRequestError,
    InvalidParameterError,
    ServerUnavailableError,
)
from .options import Options
from .protocol import encode_form, encode_query
from .servers import Server, ServerList, format_server

__all__ = ["FORM_CONTENT_TYPE", "Response", "Transport"]

logger = logging.getLogger(__name__)

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=GBK"
_CONFLICT_RETRIES = (0.05, 0.1, 0.2)
_SERVER_BUSY = frozenset({408, 409, 429})
_RETRIABLE_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


@dataclass(frozen=True)
class Response:
    """A server's answer that the caller has to interpret (2xx or 404)."""

    status: int
    body: bytes
    headers: CIMultiDictProxy[str]
    server: str


class Transport:
    """Sends requests for one client.

    Args:
        session: the client's session (shared by every request, never closed here).
        endpoint: the client's endpoint.
        unit_name: the address-server unit, if any.
        options: the client's live options.
        credentials: signs requests when auth is on.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        endpoint: str,
        unit_name: str | None,
        options: Options,
        credentials: CredentialsProvider | None,
    ) -> None:
        self.session = session
        self.options = options
        self.credentials = credentials
        self.servers = ServerList(endpoint, unit_name, options, self.fetch_text)
        self._ssl_contexts: dict[str | None, ssl.SSLContext] = {}

    @property
    def auth_enabled(self) -> bool:
        """Whether requests are signed (the option, else "when credentials were given")."""
        enabled = self.options.auth_enabled
        return self.credentials is not None if enabled is None else enabled

    def _ssl(self) -> ssl.SSLContext | bool:
        if not self.options.tls_enabled:
            return True
        cafile = self.options.tls_ca_file
        if cafile is None:
            return True  # aiohttp's default: verify against the system store
        context = self._ssl_contexts.get(cafile)
        if context is None:
            context = ssl.create_default_context(cafile=cafile)
            self._ssl_contexts[cafile] = context
        return context

    async def fetch_text(self, url: str, timeout: float) -> str:
        """A plain GET (the address server): the body as text, or an ACMRequestException."""
        try:
            async with self.session.get(
                url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
            ) as resp:
                body = await resp.read()
        except _RETRIABLE_ERRORS as exc:
            raise ServerUnavailableError(f"{url} failed: {exc!r}") from exc
        if resp.status != 200:
            raise ACMRequestException(f"{url} answered {resp.status}", status=resp.status)
        return body.decode("utf-8", errors="replace")

    async def _headers(
        self,
        form: bool,
        sign: tuple[str | None, str | None],
        extra: Mapping[str, str] | None,
    ) -> dict[str, str]:
        headers = {
            "Diamond-Client-AppName": self.options.app_name,
            "Client-Version": __version__,
            "exConfigInfo": "true",
        }
        if form:
            headers["Content-Type"] = FORM_CONTENT_TYPE
        if extra:
            headers.update(extra)
        if self.auth_enabled and self.credentials is not None:
            credentials = await self.credentials.get_credentials()
            tenant, group = sign
            headers.update(sign_headers(credentials, tenant, group, int(time.time() * 1000)))
        return headers

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str | int]] = (),
        form: Sequence[tuple[str, str]] | None = None,
        sign: tuple[str | None, str | None] = (None, None),
        headers: Mapping[str, str] | None = None,
        timeout: float,
        key: str | None = None,
    ) -> Response:
        """Send one request, moving across servers until one answers.

        Args:
            method: "GET" or "POST".
            path: the path, with a fixed query part if any (``/diamond-server/...``).
            query: query parameters (appended in order).
            form: form fields, sent GBK-encoded.
            sign: the ``(tenant, group)`` this request carries, for the signature.
            headers: extra headers.
            timeout: seconds for one attempt on one server.
            key: the config key, for error messages.

        Returns:
            The answer when it is 2xx or 404.

        Raises:
            AccessDeniedError: 403.
            BadRequestError: another 4xx.
            ServerUnavailableError: every server failed.
        """
        if self.auth_enabled and self.credentials is None:
            raise InvalidParameterError("auth_enabled is on but no ak/sk or RAM role is set")
        servers = await self.servers.ensure()
        target = path
        if query:
            target += ("&" if "?" in path else "?") + encode_query(query)
        body = encode_form(form) if form is not None else None
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        last_error: BaseException | None = None
        last_status: int | None = None
        server: Server = self.servers.current()
        for _ in range(len(servers)):
            server = self.servers.current()
            name = format_server(server)
            scheme = "https" if self.options.tls_enabled else "http"
            url = URL(f"{scheme}://{name}{target}", encoded=True)
            for delay in (*_CONFLICT_RETRIES, None):
                try:
                    request_headers = await self._headers(body is not None, sign, headers)
                    async with self.session.request(
                        method,
                        url,
                        data=body,
                        headers=request_headers,
                        timeout=client_timeout,
                        ssl=self._ssl(),
                        # ACM never redirects; following one would hand the signature and
                        # the STS token to whatever host it names
                        allow_redirects=False,
                    ) as resp:
                        payload = await resp.read()
                        status, resp_headers = resp.status, resp.headers
                except _RETRIABLE_ERRORS as exc:
                    logger.warning("%s %s on %s failed: %r", method, path, name, exc)
                    last_error, last_status = exc, None
                    break
                logger.debug("%s %s on %s: %s", method, path, name, status)
                if status == 409 and delay is not None:
                    await asyncio.sleep(delay)
                    continue
                # 1xx/3xx: not an answer ACM gives, its body is no content; 408/429 say
                # "not now", not "bad request": all count as this server failing
                if status >= 500 or status in _SERVER_BUSY or status < 200 or 300 <= status < 400:
                    logger.warning("%s %s on %s answered %s", method, path, name, status)
                    last_error, last_status = None, status
                    break
                if status == 403:
                    raise AccessDeniedError(
                        "Insufficient privilege", status=status, server=name, key=key
                    )
                if 400 <= status < 500 and status != 404:
                    detail = payload[:200].decode("utf-8", errors="replace").strip()
                    raise BadRequestError(
                        f"Request refused: {detail}" if detail else "Request refused",
                        status=status,
                        server=name,
                        key=key,
                    )
                return Response(status, payload, resp_headers, name)
            self.servers.rotate(server)
        raise ServerUnavailableError(
            f"no server available: {len(servers)} tried"
            + (f", last error {last_error!r}" if last_error is not None else ""),
            status=last_status,
            server=format_server(server),
            key=key,
        ) from last_error
