"""Nacos's gRPC API for the bundled server (NACOS.md §4), over the same store as the HTTP APIs.

A ``grpc.aio`` server with two raw-bytes methods, read and written with ``aioacm.rpc.codec``:

- ``/Request/request`` (unary): ``ServerCheckRequest`` answers the connection id at any time;
  every other call needs a connection registered by its stream, else an ``ErrorResponse`` with
  errorCode 301 (302 for a type the server has no handler for), as Nacos's request acceptor
  does. ``HealthCheckRequest`` and the config calls (``grpc_config``) follow.
- ``/BiRequestStream/requestBiStream``: a ``ConnectionSetupRequest`` registers the connection
  and the server answers with a ``SetupAckRequest`` (when the setup carried an ability table,
  as 2.3+ servers do). The server pushes ``ConfigChangeNotifyRequest`` for listened keys that
  change (retried ``push_retries`` times, waiting ``retry_delay`` × try in between, then the
  connection is dropped, as Nacos unregisters it), ``ClientDetectionRequest`` after
  ``idle_time`` without traffic (no answer within ``ack_timeout``: dropped) and, on demand,
  ``ConnectResetRequest``. Clients answer on the stream with the request's ``requestId``.

Unary calls (and what arrives on streams) are logged as ``grpc:<type>`` operations; faults
naming such an operation (or every operation) apply to unary calls: a delay, a status answered
as ``errorCode`` with resultCode 500, or a drop (the call fails UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import grpc
import grpc.aio
from multidict import CIMultiDict

from .._tasks import cancel_and_wait
from ..rpc.codec import STREAM_METHOD, UNARY_METHOD, CodecError, Message, decode, decode_payload
from ..rpc.codec import encode as encode_message
from .faults import GRPC_OP_PREFIX, FaultInjector
from .grpc_config import CONFIG_RESPONSES, ConfigCalls, Reply, failure, success
from .grpc_conn import ConnectionClosed, GrpcConnection, connection_id, succeeded
from .nacos import NacosUsers
from .records import RequestRecord
from .security import SignatureChecker
from .store import ConfigKey, ConfigStore

__all__ = ["GRPC_PORT_OFFSET", "NacosGrpcServer", "grpc_address"]

logger = logging.getLogger("aioacm.server")

#: Nacos's gRPC port is its HTTP port plus this.
GRPC_PORT_OFFSET = 1000
#: Nacos's server takes messages up to 10 MB.
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
#: how many peers' connection ids are remembered (the oldest are forgotten)
MAX_IDS = 4096
UN_REGISTER = 301
NO_HANDLER = 302
BAD_GATEWAY = 502


def grpc_address(host: str, port: int) -> str:
    """The ``host:port`` gRPC binds, for the HTTP server's host (wildcards kept)."""
    if host in ("", "0.0.0.0"):
        return f"0.0.0.0:{port}"
    if ":" in host:
        return f"[{host.strip('[]')}]:{port}"
    return f"{host}:{port}"


class NacosGrpcServer:
    """The gRPC side of one ``LocalACMServer`` (restartable: ``stop()`` then ``start()``).

    Args:
        store: the items (shared with the HTTP APIs).
        users: the Nacos users and tokens.
        checker: the access keys.
        faults: the server's faults.
        log: called with the record of every call as it arrives.
        idle_time: seconds without traffic before a ``ClientDetectionRequest``.
        ack_timeout: seconds the server waits for the answer to anything it pushes.
        push_retries: how many times an unanswered change push is sent again.
        retry_delay: the pause before a push's retry ``n`` is ``n × retry_delay``.
        shutdown_timeout: how long ``stop()`` lets calls in progress finish.
    """

    def __init__(
        self,
        store: ConfigStore,
        users: NacosUsers,
        checker: SignatureChecker,
        faults: FaultInjector,
        log: Callable[[RequestRecord], None],
        *,
        idle_time: float = 20.0,
        ack_timeout: float = 3.0,
        push_retries: int = 3,
        retry_delay: float = 2.0,
        shutdown_timeout: float = 1.0,
    ) -> None:
        if idle_time <= 0 or ack_timeout <= 0 or retry_delay < 0 or push_retries < 0:
            raise ValueError("gRPC idle time and ack timeout must be positive, retries >= 0")
        self._store = store
        self._calls = ConfigCalls(store, users, checker)
        self._faults = faults
        self._log = log
        self.idle_time = idle_time
        self.ack_timeout = ack_timeout
        self.push_retries = push_retries
        self.retry_delay = retry_delay
        self._shutdown_timeout = shutdown_timeout
        self._server: grpc.aio.Server | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._streams: set[GrpcConnection] = set()  # every open stream
        self._connections: dict[str, GrpcConnection] = {}  # registered, by peer
        self._ids: OrderedDict[str, str] = OrderedDict()  # peer -> connection id
        self._tasks: set[asyncio.Task[object]] = set()
        self._stopping = asyncio.Event()
        self._health_paused = False
        self._health_gate = asyncio.Event()  # set: health checks are answered
        self._health_gate.set()
        self.port: int | None = None

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether it is listening."""
        return self._server is not None

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: any free port) and return the port.

        Raises:
            RuntimeError: already running.
            OSError: the port cannot be bound.
        """
        if self._server is not None:
            raise RuntimeError("the gRPC server is already running")
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),  # never share a port with another server
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ]
        )
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "Request", {"request": grpc.unary_unary_rpc_method_handler(self._unary)}
                ),
                grpc.method_handlers_generic_handler(
                    "BiRequestStream",
                    {"requestBiStream": grpc.stream_stream_rpc_method_handler(self._stream)},
                ),
            )
        )
        address = grpc_address(host, port)
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            await server.stop(None)
            raise OSError(errno.EADDRINUSE, f"cannot listen for gRPC on {address}") from exc
        await server.start()
        self._server, self.port = server, bound
        self._stopping.clear()
        if self._health_paused:  # a pause outlives a restart
            self._health_gate.clear()
        else:
            self._health_gate.set()
        self._unsubscribe = self._store.subscribe(self._changed)
        self._spawn(self._detect(), "detect")
        return bound

    async def stop(self) -> None:
        """End every stream cleanly (clients see the end of their stream), then stop
        listening; calls still hanging after ``shutdown_timeout`` are cancelled."""
        server = self._server
        if server is None:
            return
        self._server = None
        self._stopping.set()
        self._health_gate.set()  # hung health checks fail now
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for conn in list(self._streams):
            conn.close()
        self._connections.clear()
        for task in list(self._tasks):
            await cancel_and_wait(task)
        await server.stop(self._shutdown_timeout)

    def _spawn(self, work: Coroutine[Any, Any, object], name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=f"aioacm-server.grpc.{name}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s failed", task.get_name(), exc_info=task.exception())

    async def _sleep(self, seconds: float) -> bool:
        """Sleep, cut short when the server stops; True if it is stopping."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
        return self._stopping.is_set()

    # -- read-outs and faults --------------------------------------------------------------

    @property
    def connections(self) -> list[GrpcConnection]:
        """The registered connections."""
        return list(self._connections.values())

    def drop_streams(self, error: bool = True) -> int:
        """End every open stream now (with an UNAVAILABLE status, or cleanly); return how
        many. The clients' connections are unregistered."""
        streams = list(self._streams)
        for conn in streams:
            self._drop(conn, "stream dropped by the test server" if error else None)
        return len(streams)

    def reset_connections(
        self, server_ip: str | None = None, server_port: int | None = None
    ) -> int:
        """Push ``ConnectResetRequest`` to every registered connection; return how many."""
        connections = self.connections
        for conn in connections:
            body: dict[str, Any] = {"module": "internal"}
            if server_ip:  # Nacos names the connection only when it names a server
                port = None if server_port is None else str(server_port)
                body.update(serverIp=server_ip, serverPort=port, connectionId=conn.id)
            self._spawn(self._ask(conn, "ConnectResetRequest", body), "reset")
        return len(connections)

    def pause_health_checks(self) -> None:
        """Stop answering ``HealthCheckRequest`` (calls hang until resumed or stopped)."""
        self._health_paused = True
        self._health_gate.clear()

    def resume_health_checks(self) -> None:
        """Answer health checks again (hanging ones are answered now)."""
        self._health_paused = False
        self._health_gate.set()

    # -- connections ----------------------------------------------------------------------

    def _connection_id(self, peer: str) -> str:
        known = self._ids.get(peer)
        if known is None:
            known = self._ids[peer] = connection_id(peer)
            while len(self._ids) > MAX_IDS:
                self._ids.popitem(last=False)
        return known

    def _register(self, conn: GrpcConnection, message: Message) -> None:
        previous = self._connections.get(conn.peer)
        if previous is not None and previous is not conn:
            self._drop(previous, "replaced by a new stream on the same connection")
        conn.setup, conn.client_ip = message.body, message.client_ip
        conn.registered = True
        conn.touch()
        self._connections[conn.peer] = conn
        logger.debug("gRPC connection %s registered", conn.id)
        if message.body.get("abilityTable") is not None:
            # Nacos sends it without a requestId: the client does not answer it
            conn.send("SetupAckRequest", {"abilityTable": {}, "module": "internal"})

    def _unregister(self, conn: GrpcConnection) -> None:
        if self._connections.get(conn.peer) is conn:
            del self._connections[conn.peer]
            logger.debug("gRPC connection %s unregistered", conn.id)

    def _drop(self, conn: GrpcConnection, error: str | None) -> None:
        self._unregister(conn)
        conn.close(error)

    # -- pushes ---------------------------------------------------------------------------

    def _changed(self, key: ConfigKey) -> None:
        for conn in self.connections:
            named = conn.listens.get(key)
            if named is not None:
                data_id, group, tenant = named
                body = {"dataId": data_id, "group": group, "tenant": tenant, "module": "config"}
                self._spawn(self._push(conn, body), "push")

    async def _ask(self, conn: GrpcConnection, type_name: str, body: dict[str, Any]) -> bool:
        """Push one request; True if the client answered it with success in time."""
        try:
            return succeeded(await conn.request(type_name, body, self.ack_timeout))
        except (ConnectionClosed, asyncio.TimeoutError):
            return False

    async def _push(self, conn: GrpcConnection, body: dict[str, Any]) -> None:
        for attempt in range(1, self.push_retries + 2):
            if await self._ask(conn, "ConfigChangeNotifyRequest", body):
                return
            if conn.closed or attempt > self.push_retries:
                break
            if await self._sleep(attempt * self.retry_delay):
                return
        if not conn.closed:
            logger.info(
                "gRPC connection %s left a change push unanswered %d times: dropping it",
                conn.id,
                self.push_retries + 1,
            )
            self._drop(conn, "change push not acknowledged")

    async def _detect(self) -> None:
        interval = min(3.0, self.idle_time / 4)
        while not await self._sleep(interval):
            for conn in self.connections:
                if not conn.probing and conn.idle_for() >= self.idle_time:
                    conn.probing = True
                    self._spawn(self._probe(conn), "detect")

    async def _probe(self, conn: GrpcConnection) -> None:
        try:
            alive = await self._ask(conn, "ClientDetectionRequest", {"module": "internal"})
        finally:
            conn.probing = False
        if alive:
            conn.touch()
        elif not conn.closed:
            logger.info("gRPC connection %s did not answer a client detection", conn.id)
            self._drop(conn, "no answer to ClientDetectionRequest")

    # -- the stream -----------------------------------------------------------------------

    async def _stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> None:
        peer = context.peer()
        conn = GrpcConnection(peer, self._connection_id(peer))
        self._streams.add(conn)
        reader = asyncio.get_running_loop().create_task(
            self._read(requests, conn), name="aioacm-server.grpc.read"
        )
        try:
            while (data := await conn.outgoing()) is not None:
                await context.write(data)
        finally:
            self._streams.discard(conn)
            self._unregister(conn)
            conn.close()
            await cancel_and_wait(reader)
        if conn.close_error is not None:
            await context.abort(grpc.StatusCode.UNAVAILABLE, conn.close_error)

    async def _read(self, requests: AsyncIterator[bytes], conn: GrpcConnection) -> None:
        try:
            async for data in requests:
                try:
                    message = decode(data)
                except CodecError as exc:
                    logger.debug("gRPC connection %s sent a bad payload: %s", conn.id, exc)
                    continue
                self._record(message, data, STREAM_METHOD)
                if message.type == "ConnectionSetupRequest":
                    self._register(conn, message)
                elif message.type.endswith("Response"):
                    conn.answer(message)
                else:
                    logger.debug("gRPC stream %s: ignored a %s", conn.id, message.type)
        except Exception as exc:  # the stream broke under us: it ends
            logger.debug("gRPC stream %s ended: %r", conn.id, exc)
        finally:
            conn.close()  # the client finished writing: end our side too, as Nacos does

    # -- unary calls ----------------------------------------------------------------------

    def _record(self, message: Message, data: bytes, path: str) -> RequestRecord:
        _, raw, _, _ = decode_payload(data)
        record = RequestRecord(
            op=GRPC_OP_PREFIX + message.type,
            method="GRPC",
            path=path,
            query_string="",
            headers=CIMultiDict(message.headers),
            body=raw,
        )
        self._log(record)
        return record

    async def _unary(self, data: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        try:
            message = decode(data)
        except CodecError as exc:
            return encode_message(*failure("ErrorResponse", BAD_GATEWAY, str(exc)))
        record = self._record(message, data, UNARY_METHOD)
        type_name, body = await self._answer(message, context, record)
        request_id = message.body.get("requestId")
        if isinstance(request_id, str) and request_id:
            body["requestId"] = request_id
        record.status, record.error_code = body.get("resultCode"), body.get("errorCode")
        return encode_message(type_name, body)

    async def _answer(
        self,
        message: Message,
        context: grpc.aio.ServicerContext[bytes, bytes],
        record: RequestRecord,
    ) -> Reply:
        response_type = CONFIG_RESPONSES.get(message.type, "ErrorResponse")
        fault = self._faults.take(record.op)
        if fault is not None:
            record.fault = fault
            if fault.delay and await self._sleep(fault.delay):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is stopping")
            if fault.drop:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "dropped by a fault")
            if fault.status is not None:
                return failure(response_type, fault.status, fault.body)
        peer = context.peer()
        if message.type == "ServerCheckRequest":
            return success(
                "ServerCheckResponse",
                connectionId=self._connection_id(peer),
                supportAbilityNegotiation=True,
            )
        if message.type != "HealthCheckRequest" and message.type not in CONFIG_RESPONSES:
            return failure(
                "ErrorResponse",
                NO_HANDLER,
                f"RequestHandler Not Found: this server has no handler for {message.type!r}",
            )
        conn = self._connections.get(peer)
        if conn is None:
            return failure("ErrorResponse", UN_REGISTER, "Connection is unregistered.")
        conn.touch()
        if message.type == "HealthCheckRequest":
            await self._health_gate.wait()
            if self._stopping.is_set():
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the server is stopping")
            return success("HealthCheckResponse")
        return self._calls.handle(message, conn.listens)
