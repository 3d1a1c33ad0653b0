"""The shapes that dialects, the transport and the server list share: a request as a dialect
builds it, a response as the transport returns it, a fetched item, a server and where the
server list comes from. Plain data, no behaviour: every room may import it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from multidict import CIMultiDictProxy

__all__ = ["Fetched", "Request", "Response", "Send", "Server", "ServerPlan", "Signer"]

#: A server: ``(host, port)``.
Server = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Request:
    """One request as a dialect builds it; the transport only sends it.

    Attributes:
        method: the HTTP method.
        path: the path, with a fixed query part if any.
        query: query parameters, appended in order.
        body: the encoded body, if any (its Content-Type is in the dialect's common headers).
        headers: headers beyond the dialect's common ones.
        scope: ``(namespace, group)`` the request is about: what a signature covers.
        answers: the statuses the caller interprets itself (others are failures the
            transport maps to errors or to the next server).
        signed: whether the dialect's signer signs it (a login does not).
        op: what the request does, as ``(name, *arguments)`` of the dialect method that built
            it (``("query", item)``): lets a transport that finds the server does not speak
            this protocol have another dialect build the same request.
    """

    method: str
    path: str
    query: tuple[tuple[str, str | int], ...] = ()
    body: bytes | None = None
    headers: Mapping[str, str] | None = None
    scope: tuple[str | None, str | None] = (None, None)
    answers: frozenset[int] = frozenset((200, 404))
    signed: bool = True
    op: tuple[Any, ...] | None = None


class Response:
    """A server's answer that the caller interprets (a status in ``Request.answers``). A
    slotted class, not a NamedTuple: one is made per request, and this is cheaper to make."""

    __slots__ = ("body", "data", "headers", "server", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: CIMultiDictProxy[str],
        server: str,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.headers = headers
        self.server = server
        #: the decoded answer of a gRPC request (None over HTTP)
        self.data = data

    def __repr__(self) -> str:  # never the body: it may be a secret config
        return f"Response(status={self.status}, server={self.server!r}, {len(self.body)} bytes)"


class Fetched(NamedTuple):
    """One item as a server answered it.

    Attributes:
        content: the content as stored (still encrypted for ``cipher-`` items).
        data_key: the encrypted data key of an envelope-encrypted item, if the server sent one.
        config_type: the config type the server keeps (Nacos: ``text``, ``yaml``...), if any.
    """

    content: str
    data_key: str | None = None
    config_type: str | None = None


@dataclass(frozen=True)
class ServerPlan:
    """Where the server list comes from.

    Attributes:
        name: what the list is for, in messages (the endpoint).
        servers: a fixed list (used when ``address_url`` is None).
        address_url: ask this address server (one ``host[:port]`` a line) instead.
        default_port: the port of a server given without one.
    """

    name: str
    servers: tuple[Server, ...] = ()
    address_url: str | None = None
    default_port: int = 80


#: Adds the auth headers to one attempt of a request (called again for every attempt).
Signer = Callable[[Request], Awaitable[Mapping[str, str]]]
#: Sends a request: ``send(request, timeout=, key=, limited=)`` (the transport's).
Send = Callable[..., Coroutine[Any, Any, Response]]
