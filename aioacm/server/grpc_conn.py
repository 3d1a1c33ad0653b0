"""One client connection of the bundled server's gRPC API: its stream, what it listens to and
the server requests waiting for its answer.

A connection is the client's TCP connection, named by its peer address (unary calls of one
channel share it with the stream). It exists from the moment the stream opens and counts as
registered once a ``ConnectionSetupRequest`` arrived on it. Everything the server sends goes
through one outbox the stream handler writes from, so writes never overlap.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..rpc.codec import Message, encode
from .grpc_config import Listens

__all__ = ["ConnectionClosed", "GrpcConnection", "connection_id", "succeeded"]

_push_ids = itertools.count(1)


class ConnectionClosed(Exception):
    """The connection ended before the client answered."""


def connection_id(peer: str, now: float | None = None) -> str:
    """An id in Nacos's form, ``{ms}_{ip}_{port}``, for a gRPC peer (``ipv4:1.2.3.4:5``)."""
    _, _, address = peer.partition(":")
    host, _, port = address.rpartition(":")
    millis = int((time.time() if now is None else now) * 1000)
    return f"{millis}_{host.strip('[]') or address}_{port}"


def succeeded(response: Message) -> bool:
    """Whether a client's answer reports success (Java's default ``resultCode`` is 200)."""
    code: object = response.body.get("resultCode", 200)
    return code == 200


class GrpcConnection:
    """The server's side of one client's stream.

    Args:
        peer: the client's address as gRPC names it.
        connection_id: the id given to the client (``ServerCheckResponse``).
        clock: the monotonic clock idle times are measured with.

    Attributes:
        registered: whether the client sent its ``ConnectionSetupRequest``.
        setup: the body of that request (clientVersion, tenant, labels...).
        client_ip: the ``clientIp`` of its metadata.
        listens: the keys it listens to.
        last_active: when it last called or answered (``clock()``).
        probing: a ``ClientDetectionRequest`` is waiting for its answer.
        closed: the stream is ending (or has ended).
        close_error: why it was dropped, when it ends with an error status.
    """

    def __init__(
        self, peer: str, connection_id: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.peer = peer
        self.id = connection_id
        self._clock = clock
        self.registered = False
        self.setup: Mapping[str, Any] = {}
        self.client_ip = ""
        self.listens: Listens = {}
        self.last_active = clock()
        self.probing = False
        self.closed = False
        self.close_error: str | None = None
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._pending: dict[str, asyncio.Future[Message]] = {}

    def __repr__(self) -> str:
        state = "registered" if self.registered else "unregistered"
        return f"<GrpcConnection {self.id} {state}, {len(self.listens)} listens>"

    def touch(self) -> None:
        """Record activity (a call, an answer): the connection is not idle."""
        self.last_active = self._clock()

    def idle_for(self) -> float:
        """Seconds since the last activity."""
        return self._clock() - self.last_active

    def send(self, type_name: str, body: Mapping[str, Any]) -> None:
        """Queue a server request that expects no answer (``SetupAckRequest``)."""
        if not self.closed:
            self._outbox.put_nowait(encode(type_name, {"headers": {}, **body}))

    async def request(self, type_name: str, body: Mapping[str, Any], timeout: float) -> Message:
        """Push a server request with a fresh ``requestId`` and wait for the client's answer.

        Raises:
            ConnectionClosed: the connection ended first.
            asyncio.TimeoutError: no answer within ``timeout`` seconds.
        """
        if self.closed:
            raise ConnectionClosed(self.id)
        request_id = str(next(_push_ids))
        answer: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        self._outbox.put_nowait(encode(type_name, {"headers": {}, "requestId": request_id, **body}))
        try:
            return await asyncio.wait_for(answer, timeout)
        finally:
            self._pending.pop(request_id, None)

    def answer(self, response: Message) -> bool:
        """Hand a client's response to the request waiting for it; False if none waits."""
        self.touch()
        waiting = self._pending.get(str(response.body.get("requestId")))
        if waiting is None or waiting.done():
            return False
        waiting.set_result(response)
        return True

    def close(self, error: str | None = None) -> None:
        """End the stream: cleanly, or with ``error`` (an UNAVAILABLE status). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.close_error = error
        self._outbox.put_nowait(None)
        for waiting in self._pending.values():
            if not waiting.done():
                waiting.set_exception(ConnectionClosed(self.id))

    async def outgoing(self) -> bytes | None:
        """The next message to write on the stream; None once the stream is to end."""
        return await self._outbox.get()
