"""The transport of a client that speaks Nacos's gRPC: gRPC requests on the client's
connection, everything else (login, list, the address server) over HTTP.

It is the HTTP ``Transport``'s peer: the same ``send(request, timeout=, key=, limited=)``,
the same error tree. A gRPC answer becomes a ``Response`` whose status is 200 for a success
and Nacos's errorCode otherwise, with the decoded answer in ``data``; 403 renews the login
once (the dialect's ``refused``), as over HTTP.

``protocol="auto"``: the first request decides, once per client. If some server of the list
answers gRPC (``ServerCheckRequest`` on HTTP port + 1000), the client speaks gRPC; if none
does, HTTP (every gRPC request is then built again by the HTTP dialect: ``Request.op``). The
choice is logged at INFO.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from multidict import CIMultiDict, CIMultiDictProxy

from ..dialects.nacos_grpc import GRPC_METHOD, NacosGrpcDialect
from ..errors import AccessDeniedError, BadRequestError, ServerUnavailableError
from ..transport import Transport
from ..wire import Request, Response, Send, Server
from .connection import GRPC_PORT_OFFSET, RpcConnection
from .feed import PushFeed

if TYPE_CHECKING:
    from ..options import Options
    from ..watch import ChangeFeed, ChangeSink

__all__ = ["RpcTransport"]

logger = logging.getLogger(__name__)

_NO_HEADERS: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
#: what ``auto`` asks over HTTP to see whether the port answers at all (any status will do)
_PROBE_PATH = "/v1/console/health/readiness"
#: errorCode of a query that met a write in progress, and how often to ask again
_CONFLICT, _CONFLICT_RETRIES = 400, 3


class RpcTransport:
    """Sends one client's requests: gRPC ones on its connection, the others over HTTP.

    Args:
        http: the client's HTTP transport (its server list is the connection's too).
        dialect: the client's gRPC dialect.
        options: the client's live options.
        protocol: ``"grpc"``, or ``"auto"`` (gRPC if a server answers it, else HTTP).
    """

    def __init__(
        self, http: Transport, dialect: NacosGrpcDialect, options: Options, protocol: str
    ) -> None:
        self.http = http
        self.servers = http.servers
        self._dialect = dialect
        self._options = options
        self._mode: str | None = "grpc" if protocol == "grpc" else None
        self._deciding = asyncio.Lock()
        self.connection = RpcConnection(
            self._server_list,
            self.servers.rotate,
            self.servers.current,
            dialect.namespace,
            lambda: options.app_name,
            lambda: (options.tls_enabled, options.tls_ca_file),
        )
        dialect.rpc = self

    @property
    def attempts(self) -> int:
        """Requests sent to a server (every attempt), over both protocols."""
        return self.http.attempts + self.connection.attempts

    @property
    def protocol(self) -> str:
        """``nacos-grpc``, ``nacos-http`` once ``auto`` chose HTTP, ``nacos-auto`` before."""
        mode = self._mode or "auto"
        return f"nacos-{mode}"

    @property
    def connections(self) -> int:
        """gRPC connections made so far."""
        return self.connection.generation

    @property
    def connected(self) -> bool:
        """Whether the gRPC stream is up now."""
        return self.connection.connected

    async def _server_list(self) -> list[Server]:
        return self.servers.loaded or await self.servers.ensure()

    async def mode(self) -> str:
        """``"grpc"`` or ``"http"``: what this client speaks (decided once, for ``auto``)."""
        if self._mode is None:
            async with self._deciding:
                if self._mode is None:
                    await self._decide()
        assert self._mode is not None
        return self._mode

    async def _decide(self) -> None:
        servers = await self._server_list()
        if await self.connection.wait_attempted(len(servers)):
            self._mode = "grpc"
            logger.info(
                "Nacos at %s answers gRPC (port +%d): using gRPC",
                self.connection.server,
                GRPC_PORT_OFFSET,
            )
            return
        # No gRPC answer. If HTTP answers, the server has no gRPC (Nacos 1.x, a proxy that
        # passes only the HTTP port): HTTP for good. If nothing answers, decide nothing yet:
        # a client started before its servers must not be stuck on HTTP.
        probe = Request(
            "GET",
            self._dialect.context_path + _PROBE_PATH,
            answers=frozenset(range(200, 600)),
            signed=False,
        )
        try:
            await self.http.send(probe, timeout=self._options.default_timeout)
        except ServerUnavailableError as exc:
            reasons = [self.connection.last_error, exc.message]
            raise ServerUnavailableError(
                "no Nacos server answers: " + "; ".join(r for r in reasons if r),
                status=exc.status,
                server=exc.server,
            ) from exc
        await self.connection.close()
        self._mode = "http"
        logger.info(
            "no gRPC answer from %s (port +%d): using HTTP",
            self.servers.current_name,
            GRPC_PORT_OFFSET,
        )

    async def send(
        self,
        request: Request,
        *,
        timeout: float,
        key: str | None = None,
        limited: bool = True,
    ) -> Response:
        """Send one request (see ``Transport.send``)."""
        if request.method != GRPC_METHOD:
            return await self.http.send(request, timeout=timeout, key=key, limited=limited)
        if self._mode != "grpc" and await self.mode() == "http":
            http_request = self._dialect.as_http(request)
            return await self.http.send(http_request, timeout=timeout, key=key, limited=limited)
        return await self._send_grpc(request, timeout, key)

    async def _send_grpc(self, request: Request, timeout: float, key: str | None) -> Response:
        dialect = self._dialect
        signer = dialect.signer() if request.signed else None
        retried = False
        conflicts = 0
        type_name = request.path
        while True:
            headers = await signer(request) if signer is not None else {}
            try:
                message = await self.connection.request(
                    type_name, request.body or b"{}", headers, timeout
                )
            except ServerUnavailableError as exc:
                if exc.key is None:  # the connection knows no keys: the error says which
                    exc.key = key
                raise
            data = message.body
            server = self.connection.server or "Nacos"
            code = data.get("errorCode")
            status = (
                200 if data.get("resultCode") == 200 else code if isinstance(code, int) else 500
            )
            if status in request.answers:
                return Response(status, b"", _NO_HEADERS, server, data)
            reason = data.get("message") or message.type
            conflict = status == _CONFLICT and type_name == "ConfigQueryRequest"
            if conflict and conflicts < _CONFLICT_RETRIES:
                conflicts += 1
                await asyncio.sleep(0.1 * conflicts)
                continue
            if status == 403:
                refused = signer is not None and not retried
                if refused and await dialect.refused(request, str(reason), headers):
                    retried = True
                    continue
                raise AccessDeniedError(
                    f"access denied by {server} ({status}): {dialect.denied_hint()}",
                    status=status,
                    server=server,
                    key=key,
                )
            if status >= 500 or status == 300:
                raise ServerUnavailableError(
                    f"{server} answered {status} to a {type_name} over gRPC: {reason}",
                    status=status,
                    server=server,
                    key=key,
                )
            raise BadRequestError(
                f"Request refused: {reason}", status=status, server=server, key=key
            )

    def change_feed(self, sink: ChangeSink, send: Send, options: Options) -> ChangeFeed:
        """The client's change feed: pushes on this transport's connection (or long polls,
        when HTTP was chosen)."""
        return PushFeed(sink, send, self._dialect, options, self)

    async def close(self) -> None:
        """Close the connection and stop the server list's refresh."""
        try:
            await self.connection.close()
        finally:
            await self.http.close()
