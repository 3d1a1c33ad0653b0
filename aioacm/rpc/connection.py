"""One client's gRPC connection to a Nacos cluster: the channel, the stream, and keeping both up.

The connection is owned by its transport and runs one supervisor task (``aioacm.grpc.connect``)
that, for as long as the client is open:

1. picks a server from the client's server list (or the one a ``ConnectResetRequest`` named)
   and opens a channel to its gRPC port (HTTP port + 1000), a channel of its own (a local
   subchannel pool, so two clients never share one TCP connection);
2. asks ``ServerCheckRequest`` (unary), opens the bi-directional stream, sends
   ``ConnectionSetupRequest`` and waits for the server's ``SetupAckRequest`` (Nacos 2.3+);
3. reports the new connection to its listeners (the change feed re-sends every listen then,
   with the md5s it holds), and serves it: a reader task answers what the server pushes
   (``ConfigChangeNotifyRequest``, ``ClientDetectionRequest``, ``ConnectResetRequest``...), a
   health task sends ``HealthCheckRequest`` after ``HEALTH_IDLE`` seconds without traffic;
4. when the stream ends (an error, a clean end of stream, a reset request, a failed health
   check, a unary call answered "unregistered"), closes the channel and starts again with the
   next server, after a capped, jittered backoff when connecting keeps failing.

A stream that goes quiet without ending is found by the health check: at most ``HEALTH_IDLE +
HEALTH_TIMEOUT`` seconds (8 s) after the last message the server sent or answered.

Unary requests (``request``) wait for a connection, and when the connection breaks under them
they wait for the next one, within their timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
import grpc.aio

from .._tasks import cancel_and_wait
from ..errors import ACMException, ClientClosedError, ServerUnavailableError
from ..failures import reason, unreachable
from ..servers import format_server
from ..watch import backoff_delay
from ..wire import Server
from .channel import (
    GRPC_PORT_OFFSET,
    grpc_target,
    grpc_via,
    open_channel,
    server_check,
    setup_message,
)
from .codec import STREAM_METHOD, CodecError, Message, decode, encode, encode_request, reset_target

__all__ = ["GRPC_PORT_OFFSET", "HEALTH_IDLE", "HEALTH_TIMEOUT", "RpcConnection", "grpc_target"]

logger = logging.getLogger(__name__)

#: seconds without traffic before a health check (the Java client's figure)
HEALTH_IDLE = 5.0
#: seconds a health check or a server check may take
HEALTH_TIMEOUT = 3.0
#: seconds to wait for the server's SetupAckRequest (older servers send none)
SETUP_ACK_TIMEOUT = 3.0
#: the longest pause between two attempts to connect (a restarted server is found within it)
RECONNECT_CAP = 2.0
#: seconds between two warnings while connecting keeps failing
WARN_EVERY = 60.0
#: Nacos's errorCode for a connection it does not know (reconnect)
UNREGISTERED = 301

_UNAVAILABLE_CODES = frozenset(
    (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.ABORTED,
    )
)

#: what the server pushes and what the client answers
_ANSWERS = {
    "ConfigChangeNotifyRequest": "ConfigChangeNotifyResponse",
    "ClientDetectionRequest": "ClientDetectionResponse",
    "ConnectResetRequest": "ConnectResetResponse",
    "SetupAckRequest": "SetupAckResponse",
}

Push = Callable[[Message], None]


class _Lost(Exception):
    """The connection in use is gone; why, for the log."""


class RpcConnection:
    """The gRPC connection of one client (see the module docstring).

    Args:
        servers: ``() -> list of servers`` (awaitable): the client's server list, loaded.
        rotate: ``rotate(server)``: move the server list past a server that failed.
        current: ``() -> server``: the server list's current server.
        namespace: the namespace given in the connection setup.
        app_name: the ``AppName`` label (may be empty).
        tls: ``() -> (tls_enabled, ca_file)``: the options of the moment.
        on_push: called with every ``ConfigChangeNotifyRequest`` (after it was acknowledged).
    """

    def __init__(
        self,
        servers: Callable[[], Awaitable[list[Server]]],
        rotate: Callable[[Server], None],
        current: Callable[[], Server],
        namespace: str,
        app_name: Callable[[], str],
        tls: Callable[[], tuple[bool, str | None]],
        on_push: Push | None = None,
    ) -> None:
        self._servers = servers
        self._rotate = rotate
        self._current = current
        self._namespace = namespace
        self._app_name = app_name
        self._tls = tls
        self.on_push = on_push
        self._on_connect: list[Callable[[int], None]] = []
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._attempted = asyncio.Event()  # set after every attempt to connect
        self._failed_attempts = 0
        self._lost = asyncio.Event()
        self._closing = asyncio.Event()
        self._channel: grpc.aio.Channel | None = None
        self._unary: Any = None
        self._preferred: Server | None = None
        self._pending_read: asyncio.Future[Any] | None = None
        self._closed = False
        self._last_active = 0.0
        # why the last attempt to connect failed (a sentence), and the server it was to
        self._last_error: str | None = None
        self._last_failed: str | None = None
        self._peer: Server | None = None
        self._warned_at = 0.0
        #: the number of connections made so far (0 until the first)
        self.generation = 0
        #: ``host:port`` (the HTTP port) of the server connected to, None when not connected
        self.server: str | None = None
        #: connection id the server gave the current connection
        self.connection_id: str | None = None
        #: unary requests sent (every attempt)
        self.attempts = 0

    # -- life ------------------------------------------------------------------------------

    def on_connect(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(generation)`` on every new connection (from the supervisor task:
        it must not block). Registering the same callback twice is one registration."""
        if callback not in self._on_connect:
            self._on_connect.append(callback)

    def start(self) -> None:
        """Start connecting (idempotent; a no-op once closed)."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(
                self._supervise(), name="aioacm.grpc.connect"
            )

    @property
    def connected(self) -> bool:
        """Whether a stream is up now."""
        return self._ready.is_set()

    @property
    def last_error(self) -> str | None:
        """Why the last attempt to connect failed (None once one succeeded): the sentence of
        ``aioacm.failures``, ``cannot reach 127.0.0.1:8848 over gRPC (port 9848): ...``."""
        return self._last_error

    async def wait_attempted(self, attempts: int = 1) -> bool:
        """Wait until a connection is made or ``attempts`` more attempts failed; whether one
        was."""
        self.start()
        target = self._failed_attempts + attempts
        while self.generation == 0 and self._failed_attempts < target and not self._closed:
            self._attempted.clear()
            await self._attempted.wait()
        return self.generation > 0

    async def close(self) -> None:
        """Cancel and await the supervisor; the channel is closed with it. Idempotent."""
        self._closed = True
        self._closing.set()
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self._ready.clear()

    # -- requests --------------------------------------------------------------------------

    async def request(
        self, type_name: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> Message:
        """Send one unary request and decode its answer (whatever its resultCode).

        Waits for a connection, and for the next one when this one breaks under it, all
        within ``timeout``.

        Raises:
            ServerUnavailableError: no connection, or no answer, within ``timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self.start()
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0 or not await self._wait_ready(remaining):
                raise self._unavailable(type_name, timeout)
            generation, unary, channel, peer = (
                self.generation,
                self._unary,
                self._channel,
                self._peer,
            )
            payload = encode_request(type_name, body, headers, str(next(self._ids)))
            self.attempts += 1
            try:
                data = await unary(payload, timeout=max(0.001, deadline - loop.time()))
            except asyncio.CancelledError:
                # grpc cancels the calls of a channel it closes: that is the connection being
                # replaced (or the client closing), not our caller being cancelled
                task = asyncio.current_task()
                cancelling = getattr(task, "cancelling", None)  # Python 3.11+
                if self._channel is channel or (cancelling is not None and cancelling()):
                    raise
                if self._closed:
                    raise ClientClosedError("the client was closed") from None
                continue
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED and peer is not None:
                    raise ServerUnavailableError(
                        unreachable(peer, exc, timeout, via=grpc_via(peer)),
                        server=format_server(peer),
                    ) from exc
                if exc.code() not in _UNAVAILABLE_CODES:
                    raise ServerUnavailableError(
                        f"{self.server or 'Nacos'} answered {type_name} over gRPC with"
                        f" {exc.code().name}: {reason(exc, timeout)}",
                        server=self.server,
                    ) from exc
                self._broken(generation, f"{type_name} failed: {exc.code().name}")
                continue
            try:
                message = decode(data)
            except CodecError as exc:
                raise ServerUnavailableError(
                    f"{type_name} on {self.server}: unreadable answer ({exc})", server=self.server
                ) from exc
            self._last_active = loop.time()
            if message.body.get("errorCode") == UNREGISTERED:
                self._broken(generation, "the server no longer knows this connection")
                continue
            return message

    async def _wait_ready(self, timeout: float) -> bool:
        if self._ready.is_set():
            return True
        if self._closed:
            raise ClientClosedError("the client was closed")
        waiters = [asyncio.ensure_future(e.wait()) for e in (self._ready, self._closing)]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self._ready.is_set():
            return True
        if self._closed:
            raise ClientClosedError("the client was closed")
        return False

    def _unavailable(self, type_name: str, timeout: float) -> ServerUnavailableError:
        if self._last_error:  # the sentence the warning said: "cannot reach ... over gRPC"
            return ServerUnavailableError(self._last_error, server=self._last_failed)
        return ServerUnavailableError(
            f"no gRPC connection to Nacos within {timeout:g} s (for a {type_name})"
        )

    def _broken(self, generation: int, reason: str) -> None:
        """The connection of ``generation`` failed a request: have the supervisor replace it."""
        if generation == self.generation and self._ready.is_set():
            logger.info("gRPC connection to %s lost: %s", self.server, reason)
            self._ready.clear()
            self._lost.set()

    # -- the supervisor --------------------------------------------------------------------

    async def _supervise(self) -> None:
        failures = 0
        while True:
            server: Server | None = None
            try:
                server = await self._pick()
                call = await self._connect(server)
            except asyncio.CancelledError:
                await self._drop_channel()
                raise
            except Exception as exc:
                self._last_error = _describe(exc, server)
                self._last_failed = format_server(server) if server is not None else None
                # the first failure in a row is a warning, then one a minute (not a storm)
                now = asyncio.get_running_loop().time()
                if failures == 0 or now - self._warned_at >= WARN_EVERY:
                    self._warned_at = now
                    logger.warning("%s", self._last_error)
                else:
                    logger.debug("%s", self._last_error)
                await self._drop_channel()
                self._failed_attempts += 1
                self._attempted.set()
                failures += 1
                await asyncio.sleep(backoff_delay(failures, cap=RECONNECT_CAP))
                continue
            failures = 0
            self._attempted.set()
            reason = await self._serve(call)
            logger.info("gRPC stream to %s ended: %s; reconnecting", self.server, reason)
            await self._drop_channel()
            await asyncio.sleep(backoff_delay(0, cap=RECONNECT_CAP))

    async def _pick(self) -> Server:
        servers = await self._servers()
        preferred, self._preferred = self._preferred, None
        if preferred is not None:
            return preferred
        if len(servers) > 1 and (self.generation > 0 or self._last_error is not None):
            self._rotate(self._current())  # the one just used failed or ended: the next one
        return self._current()

    async def _connect(self, server: Server) -> grpc.aio.StreamStreamCall[Any, Any]:
        name, target = format_server(server), grpc_target(server)
        tls, cafile = self._tls()
        channel = self._channel = await open_channel(server, tls, cafile)
        unary, connection_id = await server_check(channel, server, HEALTH_TIMEOUT)
        stream: grpc.aio.StreamStreamMultiCallable[bytes, bytes] = channel.stream_stream(
            STREAM_METHOD
        )
        call = stream()
        await call.write(setup_message(self._namespace, self._app_name()))
        if not await self._await_setup_ack(call, name):
            logger.debug("%s sent no SetupAckRequest: going on without it", target)
        self._unary = unary
        self._peer = server
        self.connection_id = connection_id
        self.server = name
        self.generation += 1
        self._last_error = None
        self._last_active = asyncio.get_running_loop().time()
        self._lost.clear()
        self._ready.set()
        logger.info("gRPC connection to %s (%s) ready", name, target)
        for callback in list(self._on_connect):
            callback(self.generation)
        return call

    async def _await_setup_ack(self, call: grpc.aio.StreamStreamCall[Any, Any], name: str) -> bool:
        """Read the stream until the server's SetupAckRequest (answered); False if none came."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SETUP_ACK_TIMEOUT
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            # not wait_for (3.11's can swallow a cancellation), and a read still pending at
            # the deadline is handed to the reader, not cancelled (that would end the call)
            reading = asyncio.ensure_future(call.read())
            try:
                done, _ = await asyncio.wait([reading], timeout=remaining)
            except asyncio.CancelledError:
                reading.cancel()
                raise
            if not done:
                self._pending_read = reading
                return False
            try:
                data = reading.result()
            except grpc.aio.AioRpcError as exc:
                raise ConnectionError(
                    f"the gRPC stream to {name} ended during setup: {reason(exc)}"
                ) from None
            if not isinstance(data, bytes):  # grpc.aio.EOF
                raise ConnectionError(f"the gRPC stream to {name} ended during setup")
            message = decode(data)
            await self._answer(call, message)
            if message.type == "SetupAckRequest":
                return True

    async def _serve(self, call: grpc.aio.StreamStreamCall[Any, Any]) -> str:
        """Run the reader and the health check until the connection is lost; why it was."""
        loop = asyncio.get_running_loop()
        reader = loop.create_task(self._read(call), name="aioacm.grpc.read")
        health = loop.create_task(self._health(), name="aioacm.grpc.health")
        lost = loop.create_task(self._lost.wait(), name="aioacm.grpc.lost")
        tasks = (reader, health, lost)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._ready.clear()
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)
        for task in (reader, health):
            if task.done() and not task.cancelled():
                exc = task.exception()
                if exc is not None:
                    return str(exc) or type(exc).__name__
        return "a request found the connection gone"

    async def _read(self, call: grpc.aio.StreamStreamCall[Any, Any]) -> None:
        while True:
            pending, self._pending_read = self._pending_read, None
            try:
                data = await (pending if pending is not None else call.read())
            except grpc.aio.AioRpcError as exc:
                raise _Lost(f"stream error {exc.code().name}") from None
            if not isinstance(data, bytes):  # grpc.aio.EOF
                raise _Lost("the server ended the stream")
            self._last_active = asyncio.get_running_loop().time()
            try:
                message = decode(data)
            except CodecError as exc:
                logger.warning("unreadable push from %s: %s", self.server, exc)
                continue
            await self._answer(call, message)
            if message.type == "ConnectResetRequest":
                self._preferred = reset_target(message.body)
                where = format_server(self._preferred) if self._preferred else "another server"
                raise _Lost(f"the server asked to move to {where}")
            if message.type == "ConfigChangeNotifyRequest" and self.on_push is not None:
                self.on_push(message)

    async def _answer(self, call: grpc.aio.StreamStreamCall[Any, Any], message: Message) -> None:
        """Answer a request the server pushed (every push carries a requestId to echo)."""
        if not message.type.endswith("Request"):
            return  # a response to nothing we sent on the stream
        answer = _ANSWERS.get(message.type)
        body: dict[str, Any] = {"requestId": message.body.get("requestId"), "resultCode": 200}
        if answer is None:
            answer = "ErrorResponse"
            body.update(resultCode=500, errorCode=501, message=f"no handler for {message.type}")
        try:
            await call.write(encode(answer, body))
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError) as exc:
            raise _Lost(f"cannot answer {message.type}") from exc

    async def _health(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            idle_until = self._last_active + HEALTH_IDLE
            if loop.time() < idle_until:
                await asyncio.sleep(idle_until - loop.time())
                continue
            try:
                data = await self._unary(
                    encode_request("HealthCheckRequest", b"{}", {}, str(next(self._ids))),
                    timeout=HEALTH_TIMEOUT,
                )
            except grpc.aio.AioRpcError as exc:
                raise _Lost(f"health check failed: {exc.code().name}") from None
            body = decode(data).body
            if body.get("resultCode") != 200:
                raise _Lost(f"health check answered error {body.get('errorCode')}")
            self._last_active = loop.time()

    async def _drop_channel(self) -> None:
        pending, self._pending_read = self._pending_read, None
        if pending is not None:
            pending.cancel()
        channel, self._channel = self._channel, None
        self._unary = self._peer = None
        self.server = self.connection_id = None
        if channel is not None:
            await channel.close()


def _describe(exc: Exception, server: Server | None) -> str:
    """Why an attempt to connect failed, as a sentence (see ``aioacm.failures``)."""
    if isinstance(exc, ACMException):  # no server list: the address server's failure
        return exc.message
    if type(exc) is ConnectionError and str(exc):  # the sentences of server_check and setup
        return str(exc)
    if server is None:
        return f"cannot connect over gRPC: {reason(exc)}"
    return unreachable(server, exc, via=grpc_via(server))
