"""Opening a channel to one Nacos server's gRPC port and the first exchange on it.

``open_channel`` makes a channel of the client's own (a local subchannel pool: two clients
never share a TCP connection), in plaintext or TLS; ``server_check`` asks
``ServerCheckRequest`` (unary) and returns the connection id; ``setup_message`` is the
``ConnectionSetupRequest`` the stream starts with. ``grpc_via`` names the gRPC port in the
messages of ``aioacm.failures``.
"""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio

from .._version import __version__
from ..failures import unreachable
from ..servers import format_server
from ..wire import Server
from .codec import UNARY_METHOD, decode, encode, encode_request

__all__ = [
    "GRPC_PORT_OFFSET",
    "SERVER_STARTING",
    "Unary",
    "grpc_target",
    "grpc_via",
    "open_channel",
    "server_check",
    "setup_message",
]

#: Nacos's gRPC port is its HTTP port plus this.
GRPC_PORT_OFFSET = 1000
#: errorCode of a server check while the server is starting
SERVER_STARTING = 300

Unary = grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]

_OPTIONS = [("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", -1)]


def grpc_target(server: Server) -> str:
    """``host:port`` of a server's gRPC port."""
    host, port = server
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port + GRPC_PORT_OFFSET}"


async def open_channel(server: Server, tls: bool, cafile: str | None) -> grpc.aio.Channel:
    """A new channel to ``server``'s gRPC port (nothing is sent yet)."""
    target = grpc_target(server)
    if tls:
        credentials = await asyncio.to_thread(_credentials, cafile)
        return grpc.aio.secure_channel(target, credentials, options=_OPTIONS)
    return grpc.aio.insecure_channel(target, options=_OPTIONS)


def grpc_via(server: Server) -> str:
    """How messages name a server's gRPC port: `` over gRPC (port 9848)``."""
    return f" over gRPC (port {server[1] + GRPC_PORT_OFFSET})"


async def server_check(
    channel: grpc.aio.Channel, server: Server, timeout: float
) -> tuple[Unary, str]:
    """Ask ``ServerCheckRequest``: the channel's unary method and the connection id.

    Raises:
        ConnectionError: no answer, or the server refused (it may still be starting); its
            message is the sentence of ``aioacm.failures``.
    """
    unary: Unary = channel.unary_unary(UNARY_METHOD)
    try:
        data = await unary(encode_request("ServerCheckRequest", b"{}", {}, "0"), timeout=timeout)
    except grpc.aio.AioRpcError as exc:
        raise ConnectionError(unreachable(server, exc, timeout, via=grpc_via(server))) from None
    check = decode(data).body
    if check.get("resultCode") != 200:
        code = check.get("errorCode")
        reason = "the server is starting" if code == SERVER_STARTING else f"error {code}"
        raise ConnectionError(
            f"{format_server(server)} refused the connection{grpc_via(server)}: {reason}"
        )
    return unary, str(check.get("connectionId") or "")


def setup_message(namespace: str, app_name: str) -> bytes:
    """The ``ConnectionSetupRequest`` a stream starts with (an ability table, even empty, asks
    a 2.3+ server for its ``SetupAckRequest``)."""
    labels = {"source": "sdk", "module": "config", "taskId": "0"}
    if app_name:
        labels["AppName"] = app_name
    setup = {
        "headers": {},
        "clientVersion": f"aioacm/{__version__}",
        "tenant": namespace,
        "labels": labels,
        "abilityTable": {},
    }
    return encode("ConnectionSetupRequest", setup)


def _credentials(cafile: str | None) -> grpc.ChannelCredentials:
    """grpc's TLS credentials: the CA file's certificates, or the system's (blocking: run in a
    thread)."""
    if cafile:
        with open(cafile, "rb") as handle:
            return grpc.ssl_channel_credentials(root_certificates=handle.read())
    return grpc.ssl_channel_credentials()
