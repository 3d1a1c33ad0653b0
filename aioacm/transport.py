"""HTTP to the config servers over one shared aiohttp session.

The transport sends the requests a dialect builds (``aioacm.dialects``) and knows nothing of
any protocol: the dialect gives it the headers every request carries and the signer that adds
auth headers to each attempt. It is the one place where aiohttp and OS errors become aioacm
errors. A request sticks to the current
server and moves to the next one on 5xx, 408, 429, connection errors and timeouts; 409 (item
being rewritten) is retried briefly on the same server first; a 403 is raised at once unless the
dialect renews its credentials (``refused``: a login token, then one retry); other 4xx are raised
at once. Redirects are not followed.

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
from collections.abc import Mapping
from typing import Protocol
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from .errors import (
    AccessDeniedError,
    ACMRequestException,
    BadRequestError,
    ServerUnavailableError,
)
from .failures import answered, unavailable, unreachable
from .options import Options
from .servers import ServerList, format_server
from .wire import Request, Response, Server, ServerPlan, Signer

__all__ = [
    "MAX_CONCURRENT_REQUESTS",
    "ClientTransport",
    "FairLimiter",
    "Framing",
    "Response",
    "Transport",
]

logger = logging.getLogger(__name__)

_CONFLICT_RETRIES = (0.05, 0.1, 0.2)
_SERVER_BUSY = frozenset({408, 409, 429})
_ATTEMPTS = (*_CONFLICT_RETRIES, None)  # the delay before the next try on a 409, None: last
_RETRIABLE_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
#: Requests in flight at once per client (aiohttp's default connection limit), long polls aside.
MAX_CONCURRENT_REQUESTS = 100
# Requests for the same few keys repeat: their URLs are built once (bounded, so reading many
# distinct keys costs at most this many cached URLs).
_URL_CACHE_SIZE = 1024


@functools.lru_cache(maxsize=_URL_CACHE_SIZE)
def _route(
    tls: bool, server: Server, path: str, query: tuple[tuple[str, str | int], ...]
) -> tuple[str, URL]:
    """``(server name, URL)`` of a request (cached: the same few keys are read again and again)."""
    name = format_server(server)
    target = path
    if query:
        target += ("&" if "?" in path else "?") + urlencode(query)
    return name, URL(f"{'https' if tls else 'http'}://{name}{target}", encoded=True)


class FairLimiter:
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

    @property
    def waiting(self) -> int:
        """How many callers wait for a slot (some may have given up already)."""
        return len(self._waiters)

    @property
    def timer_armed(self) -> bool:
        """Whether a deadline timer is pending (never when nobody waits)."""
        return self._timer is not None

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


class Framing(Protocol):
    """What the transport asks of a dialect: where the servers come from, the headers every
    request carries, and the signer of the moment (see ``aioacm.dialects.Dialect``)."""

    def server_plan(self) -> ServerPlan: ...

    def common_headers(self, body: bool) -> Mapping[str, str]: ...

    def signer(self) -> Signer | None: ...

    def denied_hint(self) -> str: ...

    async def refused(
        self, request: Request, reason: str = "", sent: Mapping[str, str] | None = None
    ) -> bool: ...


class ClientTransport(Protocol):
    """What a client sends through: ``Transport`` (HTTP), or a transport of another protocol
    built around one (``aioacm.rpc.transport``)."""

    servers: ServerList

    @property
    def attempts(self) -> int: ...

    @property
    def protocol(self) -> str: ...

    @property
    def connections(self) -> int: ...

    @property
    def connected(self) -> bool: ...

    async def send(
        self,
        request: Request,
        *,
        timeout: float,
        key: str | None = None,
        limited: bool = True,
    ) -> Response: ...

    async def close(self) -> None: ...


class Transport:
    """Sends requests for one client.

    Args:
        session: the client's session (shared by every request, never closed here).
        options: the client's live options (``tls_enabled``, ``tls_ca_file``...).
        framing: the dialect: servers, common headers and the signer.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        options: Options,
        framing: Framing,
    ) -> None:
        self.session = session
        self.options = options
        self.servers = ServerList(framing.server_plan, options, self.fetch_text)
        self._framing = framing
        self._framing_name = str(getattr(framing, "name", "http"))
        self._ssl_contexts: dict[str | None, ssl.SSLContext] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}
        self._limiter = FairLimiter(MAX_CONCURRENT_REQUESTS)
        #: attempts sent to a server (every try of every request)
        self.attempts = 0

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

    @property
    def protocol(self) -> str:
        """The protocol spoken: the dialect's name."""
        return self._framing_name

    @property
    def connections(self) -> int:
        """Connections held open on purpose: none over HTTP (the session pools its own)."""
        return 0

    @property
    def connected(self) -> bool:
        """Whether a stream is up: never over HTTP."""
        return False

    async def close(self) -> None:
        """Stop the server list's refresh (the session is the client's to close)."""
        await self.servers.close()

    async def fetch_text(self, url: str, timeout: float) -> str:
        """A plain GET of the address server: the body as text, or an ACMRequestException
        that says it was the address server."""
        parsed = URL(url)
        server: Server = (parsed.host or "", parsed.port or 80)
        role = "the address server "
        try:
            async with self.session.get(
                url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
            ) as resp:
                body = await resp.read()
        except _RETRIABLE_ERRORS as exc:
            raise ServerUnavailableError(
                unreachable(server, exc, timeout, role=role), server=format_server(server)
            ) from exc
        if resp.status != 200:
            raise ACMRequestException(
                answered(server, resp.status, role=role),
                status=resp.status,
                server=format_server(server),
            )
        return body.decode("utf-8", errors="replace")

    async def _headers(self, request: Request, signer: Signer | None) -> Mapping[str, str]:
        base = self._framing.common_headers(request.body is not None)
        if not request.headers and signer is None:
            return base
        headers = dict(base)
        if request.headers:
            headers.update(request.headers)
        if signer is not None:
            headers.update(await signer(request))
        return headers

    def _timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            if len(self._timeouts) > 64:  # callers passing ever-new timeouts
                self._timeouts.clear()
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
        return timeout

    async def send(
        self,
        request: Request,
        *,
        timeout: float,
        key: str | None = None,
        limited: bool = True,
    ) -> Response:
        """Send one request, moving across servers until one answers.

        Args:
            request: what a dialect built.
            timeout: seconds for one attempt on one server.
            key: the config key, for error messages.
            limited: wait for a turn among ``MAX_CONCURRENT_REQUESTS`` (long polls do not:
                there is one per poller, and each is held for up to ``pulling_timeout``).

        Returns:
            The answer when its status is one of ``request.answers`` (or another 2xx).

        Raises:
            AccessDeniedError: 403.
            BadRequestError: another 4xx.
            ServerUnavailableError: every server failed.
        """
        # The hot path of every get: kept to what a request needs (measured at 64 concurrent
        # gets: every 0.1 µs of Python here costs about 0.4% of the throughput).
        framing = self._framing
        signer = framing.signer() if request.signed else None
        retried = False  # a 403 the dialect answers by renewing its credentials: once
        server_list = self.servers
        servers = server_list.loaded or await server_list.ensure()
        method, path, query, body = request.method, request.path, request.query, request.body
        answers = request.answers
        client_timeout = self._timeout(timeout)
        tls = self.options.tls_enabled
        ssl_param = self._ssl()
        limiter = self._limiter if limited else None
        last_error: BaseException | None = None
        last_status: int | None = None
        failures: list[str] = []  # why each server failed, for the error (no cost on success)
        server: Server = servers[0]
        for _ in range(len(servers)):
            server = server_list.current()
            name, url = _route(tls, server, path, query)
            for delay in _ATTEMPTS:
                try:
                    if signer is not None or request.headers:
                        request_headers = await self._headers(request, signer)
                    else:
                        request_headers = framing.common_headers(body is not None)
                    if limiter is not None and not limiter.try_acquire():
                        await limiter.acquire(timeout)
                    self.attempts += 1
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
                            # No server we speak to redirects; following one would hand the
                            # signature and the STS token to whatever host it names
                            allow_redirects=False,
                        )
                        payload = await resp.read()
                    finally:
                        if limiter is not None:
                            limiter.release()
                except _RETRIABLE_ERRORS as exc:
                    logger.debug("%s %s on %s failed: %r", method, path, name, exc)
                    failures.append(unreachable(server, exc, timeout))
                    last_error, last_status = exc, None
                    break
                status = resp.status
                logger.debug("%s %s on %s: %s", method, path, name, status)
                if status in answers:
                    return Response(status, payload, resp.headers, name)
                if status == 409 and delay is not None:
                    await asyncio.sleep(delay)
                    continue
                # 1xx/3xx: not an answer a config server gives, its body is no content;
                # 408/429 say "not now", not "bad request": all count as this server failing
                if status >= 500 or status in _SERVER_BUSY or status < 200 or 300 <= status < 400:
                    logger.debug("%s %s on %s answered %s", method, path, name, status)
                    failures.append(answered(server, status))
                    last_error, last_status = None, status
                    break
                if status == 403:
                    reason = payload[:200].decode("utf-8", errors="replace")
                    if (
                        signer is not None
                        and not retried
                        and await framing.refused(request, reason, request_headers)
                    ):
                        retried = True
                        continue
                    raise AccessDeniedError(
                        f"access denied by {name} ({status}): {framing.denied_hint()}",
                        status=status,
                        server=name,
                        key=key,
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
            server_list.rotate(server, failures[-1] if failures else None)
        raise ServerUnavailableError(
            unavailable(failures, len(servers)),
            status=last_status,
            server=format_server(server),
            key=key,
        ) from last_error
