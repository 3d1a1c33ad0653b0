"""HTTP to the ACM servers over one shared aiohttp session.

The one place where aiohttp and OS errors become aioacm errors. A request sticks to the current
server and moves to the next one on 5xx, 408, 429, connection errors and timeouts; 409 (item
being rewritten) is retried briefly on the same server first; 403 and other 4xx are raised at
once. Redirects are not followed.

At most ``MAX_CONCURRENT_REQUESTS`` requests (long polls aside) are in flight per client; more
wait their turn first come, first served. aiohttp's own connector limit is not fair: a request
arriving as a connection is freed takes it before the ones already waiting, so at a few hundred
concurrent gets some callers waited over a second. Waiting for a turn counts against the
request's timeout, as waiting for a pooled connection did.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import math
import ssl
import time
from collections.abc import Mapping, Sequence

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

__all__ = ["FORM_CONTENT_TYPE", "MAX_CONCURRENT_REQUESTS", "Response", "Transport"]

logger = logging.getLogger(__name__)

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=GBK"
_CONFLICT_RETRIES = (0.05, 0.1, 0.2)
_SERVER_BUSY = frozenset({408, 409, 429})
_ATTEMPTS = (*_CONFLICT_RETRIES, None)  # the delay before the next try on a 409, None: last
_RETRIABLE_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
#: Requests in flight at once per client (aiohttp's default connection limit), long polls aside.
MAX_CONCURRENT_REQUESTS = 100
# Requests for the same few keys repeat: their URLs are built once (bounded, so reading many
# distinct keys costs at most this many cached URLs).
_URL_CACHE_SIZE = 1024


class Response:
    """A server's answer that the caller has to interpret (2xx or 404). A slotted class, not
    a NamedTuple: one is made per request, and this is cheaper to make."""

    __slots__ = ("body", "headers", "server", "status")

    def __init__(
        self, status: int, body: bytes, headers: CIMultiDictProxy[str], server: str
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.server = server

    def __repr__(self) -> str:  # never the body: it may be a secret config
        return f"Response(status={self.status}, server={self.server!r}, {len(self.body)} bytes)"


@functools.lru_cache(maxsize=_URL_CACHE_SIZE)
def _route(
    tls: bool, server: Server, path: str, query: tuple[tuple[str, str | int], ...]
) -> tuple[str, URL]:
    """``(server name, URL)`` of a request (cached: the same few keys are read again and again)."""
    name = format_server(server)
    target = path
    if query:
        target += ("&" if "?" in path else "?") + encode_query(query)
    return name, URL(f"{'https' if tls else 'http'}://{name}{target}", encoded=True)


class _FairLimiter:
    """At most ``size`` holders at once; the others are served strictly in arrival order (a
    releasing holder hands its slot straight to the oldest waiter, so nobody jumps the queue).

    Waiting has a deadline, kept by one timer for the whole queue rather than one per waiter:
    at a few hundred concurrent gets a timer per waiter (made, heaped, cancelled) was a
    noticeable share of each get."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._waiters: collections.deque[tuple[float, asyncio.Future[None]]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody waits for one (no I/O, no await)."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return False

    async def acquire(self, timeout: float) -> None:
        """Wait at most ``timeout`` seconds for a slot; asyncio.TimeoutError if none came."""
        if self.try_acquire():
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        deadline = loop.time() + timeout
        self._waiters.append((deadline, waiter))
        if deadline < self._timer_at:
            self._arm(loop, deadline)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over as we were cancelled: pass it on
            raise

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = loop.call_at(when, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the waiters whose deadline passed; arm the timer for the next deadline."""
        self._timer, self._timer_at = None, math.inf
        now = loop.time()
        waiting: collections.deque[tuple[float, asyncio.Future[None]]] = collections.deque()
        for deadline, waiter in self._waiters:
            if waiter.done():
                continue
            if deadline <= now:
                waiter.set_exception(asyncio.TimeoutError())
            else:
                waiting.append((deadline, waiter))
        self._waiters = waiting
        if waiting:
            self._arm(loop, min(deadline for deadline, _ in waiting))

    def release(self) -> None:
        """Give the slot to the oldest waiter, or free it."""
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1
        if self._timer is not None:  # nobody waits: no deadline to keep
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf


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
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._limiter = _FairLimiter(MAX_CONCURRENT_REQUESTS)
        # (app_name, has a body) -> the headers every request carries
        self._common_headers: dict[tuple[str, bool], dict[str, str]] = {}

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

    def _base_headers(self, form: bool) -> dict[str, str]:
        # Shared by every request: aiohttp copies the headers it is given, and nothing here
        # changes this dict once built.
        app_name = self.options.app_name
        headers = self._common_headers.get((app_name, form))
        if headers is None:
            headers = {
                "Diamond-Client-AppName": app_name,
                "Client-Version": __version__,
                "exConfigInfo": "true",
            }
            if form:
                headers["Content-Type"] = FORM_CONTENT_TYPE
            self._common_headers[(app_name, form)] = headers
        return headers

    async def _headers(
        self,
        form: bool,
        sign: tuple[str | None, str | None],
        extra: Mapping[str, str] | None,
    ) -> Mapping[str, str]:
        base = self._base_headers(form)
        signing = self.auth_enabled and self.credentials is not None
        if not extra and not signing:
            return base
        headers = dict(base)
        if extra:
            headers.update(extra)
        if signing:
            assert self.credentials is not None
            credentials = await self.credentials.get_credentials()
            tenant, group = sign
            headers.update(sign_headers(credentials, tenant, group, int(time.time() * 1000)))
        return headers

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            if len(self._timeouts) > 64:  # callers passing ever-new timeouts
                self._timeouts.clear()
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str | int]] = (),
        form: Sequence[tuple[str, str]] | None = None,
        body: bytes | None = None,
        sign: tuple[str | None, str | None] = (None, None),
        headers: Mapping[str, str] | None = None,
        timeout: float,
        key: str | None = None,
        limited: bool = True,
    ) -> Response:
        """Send one request, moving across servers until one answers.

        Args:
            method: "GET" or "POST".
            path: the path, with a fixed query part if any (``/diamond-server/...``).
            query: query parameters (appended in order).
            form: form fields, sent GBK-encoded.
            body: a form body already encoded (instead of ``form``).
            sign: the ``(tenant, group)`` this request carries, for the signature.
            headers: extra headers.
            timeout: seconds for one attempt on one server.
            key: the config key, for error messages.
            limited: wait for a turn among ``MAX_CONCURRENT_REQUESTS`` (long polls do not:
                there is one per poller, and each is held for up to ``pulling_timeout``).

        Returns:
            The answer when it is 2xx or 404.

        Raises:
            AccessDeniedError: 403.
            BadRequestError: another 4xx.
            ServerUnavailableError: every server failed.
        """
        # The hot path of every get: kept to what a request needs (measured at 64 concurrent
        # gets: every 0.1 µs of Python here costs about 0.4% of the throughput).
        signing = self.auth_enabled
        if signing and self.credentials is None:
            raise InvalidParameterError("auth_enabled is on but no ak/sk or RAM role is set")
        server_list = self.servers
        servers = server_list.loaded or await server_list.ensure()
        query = tuple(query)
        if form is not None:
            body = encode_form(form)
        has_body = body is not None
        client_timeout = self._timeout(timeout)
        tls = self.options.tls_enabled
        ssl_param = self._ssl()
        limiter = self._limiter if limited else None
        last_error: BaseException | None = None
        last_status: int | None = None
        server: Server = servers[0]
        for _ in range(len(servers)):
            server = server_list.current()
            name, url = _route(tls, server, path, query)
            for delay in _ATTEMPTS:
                try:
                    if signing or headers:
                        request_headers = await self._headers(has_body, sign, headers)
                    else:
                        request_headers = self._base_headers(has_body)
                    if limiter is not None and not limiter.try_acquire():
                        await limiter.acquire(timeout)
                    try:
                        # Not ``async with``: two coroutines fewer per request. read() leaves
                        # the connection released (or closed, on an error or a cancellation)
                        # and the body writer finished, so nothing is left to release.
                        resp = await self.session.request(
                            method,
                            url,
                            data=body,
                            headers=request_headers,
                            timeout=client_timeout,
                            ssl=ssl_param,
                            # ACM never redirects; following one would hand the signature and
                            # the STS token to whatever host it names
                            allow_redirects=False,
                        )
                        payload = await resp.read()
                    finally:
                        if limiter is not None:
                            limiter.release()
                except _RETRIABLE_ERRORS as exc:
                    logger.warning("%s %s on %s failed: %r", method, path, name, exc)
                    last_error, last_status = exc, None
                    break
                status = resp.status
                logger.debug("%s %s on %s: %s", method, path, name, status)
                if status == 200 or status == 404:
                    return Response(status, payload, resp.headers, name)
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
                if 400 <= status < 500:
                    detail = payload[:200].decode("utf-8", errors="replace").strip()
                    raise BadRequestError(
                        f"Request refused: {detail}" if detail else "Request refused",
                        status=status,
                        server=name,
                        key=key,
                    )
                return Response(status, payload, resp.headers, name)
            server_list.rotate(server)
        raise ServerUnavailableError(
            f"no server available: {len(servers)} tried"
            + (f", last error {last_error!r}" if last_error is not None else ""),
            status=last_status,
            server=format_server(server),
            key=key,
        ) from last_error
