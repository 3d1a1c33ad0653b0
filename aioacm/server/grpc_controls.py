"""The Nacos gRPC read-outs and faults of ``LocalACMServer``, and the waiting helpers its
``wait_for_*`` methods share."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from .nacos_grpc import NacosGrpcServer

__all__ = ["GrpcControls", "port_is_free", "wait_until"]


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` every 5 ms until it holds.

    Raises:
        TimeoutError: it did not hold within ``timeout`` seconds (``what`` names it).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


def port_is_free(host: str, port: int) -> bool:
    """Whether ``port`` can be bound on ``host`` now (a hint: it may be taken a moment later)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]") or "0.0.0.0", port))
        except OSError:
            return False
    return True


class GrpcControls:
    """What tests see of, and do to, a server's Nacos gRPC side (mixed into
    ``LocalACMServer``, which sets ``_grpc``)."""

    _grpc: NacosGrpcServer | None

    def _grpc_on(self) -> NacosGrpcServer:
        if self._grpc is None:
            raise RuntimeError("gRPC is off on this server (LocalACMServer(grpc=False))")
        return self._grpc

    @property
    def grpc_connection_count(self) -> int:
        """How many gRPC connections are registered (streams that sent their setup)."""
        return 0 if self._grpc is None else len(self._grpc.connections)

    @property
    def grpc_listens(self) -> dict[str, int]:
        """How many keys each registered gRPC connection listens to, by connection id."""
        if self._grpc is None:
            return {}
        return {conn.id: len(conn.listens) for conn in self._grpc.connections}

    @property
    def grpc_listener_count(self) -> int:
        """How many (connection, key) listens are registered over gRPC in all."""
        return sum(self.grpc_listens.values())

    async def wait_for_grpc_connections(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` gRPC connections are registered.

        Raises:
            TimeoutError: fewer were registered within ``timeout`` seconds.
        """
        await wait_until(lambda: self.grpc_connection_count >= count, timeout, "gRPC connections")

    async def wait_for_grpc_listeners(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` keys are listened to over gRPC (all connections
        together; see :attr:`grpc_listener_count`).

        Raises:
            TimeoutError: fewer were listened to within ``timeout`` seconds.
        """
        await wait_until(lambda: self.grpc_listener_count >= count, timeout, "gRPC listeners")

    def drop_grpc_streams(self, error: bool = True) -> int:
        """End every open gRPC stream now and unregister its connection: with an UNAVAILABLE
        status (``error``), or as a clean end of stream. The server keeps listening; clients
        must reconnect (their unary calls meanwhile get errorCode 301).

        Returns:
            How many streams were ended.

        Raises:
            RuntimeError: gRPC is off.
        """
        return self._grpc_on().drop_streams(error)

    def reset_grpc_connections(
        self, server_ip: str | None = None, server_port: int | None = None
    ) -> int:
        """Push a ``ConnectResetRequest`` to every registered gRPC connection, as a Nacos
        server shedding load does; with ``server_ip`` (and ``server_port``, an HTTP port) it
        names the server to move to. Answers are logged as ``grpc:ConnectResetResponse``.

        Returns:
            How many connections it was sent to.

        Raises:
            RuntimeError: gRPC is off.
        """
        return self._grpc_on().reset_connections(server_ip, server_port)

    def pause_grpc_health_checks(self) -> None:
        """Stop answering ``HealthCheckRequest``: the calls hang (until the client's deadline,
        :meth:`resume_grpc_health_checks` or ``stop()``), as from a stuck server.

        Raises:
            RuntimeError: gRPC is off.
        """
        self._grpc_on().pause_health_checks()

    def resume_grpc_health_checks(self) -> None:
        """Answer health checks again (hanging ones at once).

        Raises:
            RuntimeError: gRPC is off.
        """
        self._grpc_on().resume_health_checks()
