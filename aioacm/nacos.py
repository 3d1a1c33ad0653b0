"""``NacosClient``: the public client for Nacos (self-hosted, or MSE), over HTTP.

Its own arguments are checked here; everything a client does is ``ConfigClient``'s
(``aioacm.base``), spoken in Nacos's HTTP dialect (``aioacm.dialects.nacos``).
"""

from __future__ import annotations

from typing import Any

import aiohttp

from .auth import CredentialsProvider, StaticCredentialsProvider
from .base import ConfigClient
from .dialects.nacos import (
    CONFIG_TYPES,
    DEFAULT_PORT,
    NacosHttpDialect,
    check_context_path,
    normalize_namespace,
)
from .dialects.nacos_grpc import NacosGrpcDialect
from .errors import InvalidParameterError
from .keys import validate_namespace
from .nacos_auth import NacosLogin
from .servers import parse_server_list
from .transport import ClientTransport, Transport
from .wire import Server

__all__ = ["PROTOCOLS", "NacosClient"]

#: ``NacosClient(protocol=...)``: ``auto`` speaks gRPC when a server answers it (Nacos 2.x and
#: later, on HTTP port + 1000) and HTTP otherwise; ``grpc`` and ``http`` force one.
PROTOCOLS = ("auto", "grpc", "http")


def parse_server_addresses(addresses: object) -> tuple[tuple[Server, ...], bool]:
    """``"host[:port][,host[:port]...]"`` (an ``http://`` or ``https://`` prefix accepted) as
    servers and whether they are reached over TLS."""
    if not isinstance(addresses, str) or not addresses.strip():
        raise InvalidParameterError(
            "server_addresses must be a non-empty 'host[:port][,host[:port]...]' string"
        )
    servers: list[Server] = []
    schemes = set()
    for raw in addresses.split(","):
        entry = raw.strip()
        scheme = "http"
        for prefix in ("http://", "https://"):
            if entry.lower().startswith(prefix):
                scheme, entry = prefix[:-3], entry[len(prefix) :]
        entry = entry.rstrip("/")
        parsed = parse_server_list(entry, DEFAULT_PORT) if "/" not in entry else []
        if len(parsed) != 1:
            raise InvalidParameterError(
                f"bad server address {raw.strip()!r}: expected host[:port] (default port"
                f" {DEFAULT_PORT}), optionally after http:// or https://"
            )
        schemes.add(scheme)
        servers.extend(parsed)
    if len(schemes) > 1:
        raise InvalidParameterError("server_addresses mixes http:// and https://")
    return tuple(dict.fromkeys(servers)), schemes == {"https"}


def _check_secret_pair(first: object, second: object, names: str) -> tuple[str, str] | None:
    if first is None and second is None:
        return None
    if not isinstance(first, str) or not first or not isinstance(second, str) or not second:
        raise InvalidParameterError(f"{names} must be given together, as non-empty strings")
    return first, second


class NacosClient(ConfigClient):
    """An asyncio client for one Nacos namespace, with ``ACMClient``'s API.

    Use it as ``async with NacosClient(...) as client:``, or call ``await client.aclose()``;
    it opens lazily on first use. Nothing is created in ``__init__``.

    Args:
        server_addresses: ``"host[:port][,host[:port]...]"`` (port 8848 by default; an
            ``http://`` or ``https://`` prefix is accepted, ``https`` turns ``tls_enabled``
            on). None when ``endpoint`` names an address server.
        namespace: the namespace id; None, "" or "public" for the public namespace.
        username: log in as this Nacos user (with ``password``).
        password: the user's password: only ever sent in a login form.
        ak: AccessKey for MSE's AK/SK signatures (with ``sk``).
        sk: SecretKey.
        ram_role_name: sign with this ECS RAM role's temporary credentials instead.
        endpoint: ``host[:port]`` of an address server (``/nacos/serverlist``; port 8080 by
            default), instead of ``server_addresses``.
        context_path: the servers' context path (``/nacos``).
        credentials: any ``CredentialsProvider`` (instead of ak/sk).
        session: an ``aiohttp.ClientSession`` to use; the client never closes one it was given.
        protocol: ``"auto"`` (the default: gRPC when a server of the list answers on its gRPC
            port, HTTP port + 1000, else HTTP; decided once, at the first request, and logged
            at INFO), ``"grpc"`` (Nacos 2.x and later; the only way to watch on 3.2+) or
            ``"http"`` (the v1 HTTP API: Nacos 1.x to 3.1).
        **options: any option of ``set_options``.

    Raises:
        InvalidParameterError: a bad address, namespace, context path or credential pair.
        InvalidOptionError: an unknown option or a bad value.
    """

    def __init__(
        self,
        server_addresses: str | None = None,
        namespace: str | None = None,
        *,
        username: str | None = None,
        password: str | None = None,
        ak: str | None = None,
        sk: str | None = None,
        ram_role_name: str | None = None,
        endpoint: str | None = None,
        context_path: str = "/nacos",
        credentials: CredentialsProvider | None = None,
        session: aiohttp.ClientSession | None = None,
        protocol: str = "auto",
        **options: Any,
    ) -> None:
        if protocol not in PROTOCOLS:
            raise InvalidParameterError(
                f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}"
            )
        if endpoint is not None:
            if server_addresses is not None:
                raise InvalidParameterError("give server_addresses or endpoint, not both")
            address_server, _tls = parse_server_addresses(endpoint)
            if len(address_server) != 1:
                raise InvalidParameterError("endpoint must be one address server, host[:port]")
            servers: tuple[Server, ...] = ()
            self._endpoint: str | None = endpoint.strip()
        else:
            servers, tls = parse_server_addresses(server_addresses)
            self._endpoint = None
            if tls:
                options = {"tls_enabled": True, **options}
        checked_namespace = normalize_namespace(validate_namespace(namespace))
        ctx = check_context_path(context_path)
        login_pair = _check_secret_pair(username, password, "username and password")
        pair = _check_secret_pair(ak, sk, "ak and sk")
        if pair is not None and credentials is not None:
            raise InvalidParameterError("give either ak/sk or credentials, not both")
        if ram_role_name is not None:
            options = {**options, "ram_role_name": ram_role_name}
        self._servers = servers
        self._ak = pair[0] if pair else None
        self._setup(
            checked_namespace,
            StaticCredentialsProvider(*pair) if pair else credentials,
            session,
            options,
            lambda opts, creds: (NacosHttpDialect if protocol == "http" else NacosGrpcDialect)(
                servers,
                self._endpoint,
                ctx,
                checked_namespace,
                opts,
                creds,
                NacosLogin(*login_pair, ctx, lambda: opts.default_timeout) if login_pair else None,
            ),
            role_allowed=credentials is None,
        )
        self._username = login_pair[0] if login_pair else None
        self._protocol = protocol

    @property
    def protocol(self) -> str:
        """The protocol asked for: ``"auto"``, ``"grpc"`` or ``"http"``."""
        return self._protocol

    def _transport(self, http: Transport) -> ClientTransport:
        if self._protocol == "http":
            return http
        from .rpc.transport import RpcTransport  # imports grpcio: only for gRPC clients

        assert isinstance(self._dialect, NacosGrpcDialect)
        return RpcTransport(http, self._dialect, self.options, self._protocol)

    @property
    def server_addresses(self) -> str:
        """The servers given (``host:port,...``), or the address server's endpoint."""
        if self._endpoint is not None:
            return self._endpoint
        return ",".join(f"{host}:{port}" for host, port in self._servers)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open" if self.session is not None else "new"
        return (
            f"NacosClient(server_addresses={self.server_addresses!r},"
            f" namespace={self.namespace!r}, protocol={self._protocol!r},"
            f" username={self._username!r}, ak={self._ak!r}, {state})"
        )

    async def publish(
        self,
        data_id: str,
        group: str | None,
        content: str,
        timeout: float | None = None,
        config_type: str | None = None,
        cas_md5: str | None = None,
    ) -> bool:
        """Create or replace one config item.

        Args:
            config_type: the Nacos config type to keep with it (``text``, ``json``, ``xml``,
                ``yaml``, ``html``, ``properties``, ``toml``); None leaves it to the server.
            cas_md5: compare and set: write only if the item's md5 is still this one (the
                ``md5`` of the ``ConfigChange`` last seen); a missing item is created.

        Returns:
            True.

        Raises:
            InvalidParameterError: a bad argument, None or blank content, an unknown config
                type (before any I/O).
            AccessDeniedError: 403 (a refused login too).
            ServerUnavailableError: every server failed.
            KMSError: KMS could not encrypt a ``cipher-`` item; nothing was sent.
            ConflictError: ``cas_md5`` no longer matches: nothing was written.
        """
        if cas_md5 is not None and (not isinstance(cas_md5, str) or not cas_md5.strip()):
            raise InvalidParameterError(f"cas_md5 must be an md5 (a str) or None, not {cas_md5!r}")
        if config_type is not None and config_type not in CONFIG_TYPES:
            raise InvalidParameterError(
                f"config_type must be one of {sorted(CONFIG_TYPES)} or None, not {config_type!r}"
            )
        return await self._publish(data_id, group, content, timeout, config_type, cas_md5)
