"""``LocalACMServer``: an ACM-compatible server for tests, demos and local development."""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Iterable, Mapping
from types import TracebackType

from aiohttp import web

from ..dialects.acm import encode_content, normalize_group, validate_data_id
from ..keys import validate_namespace
from .app import ACMApplication
from .faults import Fault, FaultInjector
from .grpc_controls import GrpcControls, port_is_free, wait_until
from .nacos import DEFAULT_TOKEN_TTL, NacosUsers
from .nacos_grpc import GRPC_PORT_OFFSET, NacosGrpcServer
from .persist import JsonFilePersistence
from .records import RequestRecord
from .security import SignatureChecker
from .store import ConfigItem, ConfigKey, ConfigStore

__all__ = ["LocalACMServer"]

logger = logging.getLogger("aioacm.server")

_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
#: how many random ports ``start()`` tries to find one whose gRPC port is free too
_PORT_TRIES = 20


def _key(data_id: str, group: str | None, tenant: str | None) -> ConfigKey:
    return ConfigKey(validate_namespace(tenant), normalize_group(group), validate_data_id(data_id))


class LocalACMServer(GrpcControls):
    """An in-process config server speaking ACM (PROTOCOL.md) and Nacos's HTTP and gRPC APIs
    (NACOS.md) over real sockets, on one store.

    It serves ACM's address server, get, publish, remove, list and long poll under
    ``/diamond-server``, and Nacos's v1 config API, listener, login, v3 client read and
    readiness under ``/nacos`` (``aioacm.server.nacos``), all on one port; and Nacos's gRPC
    API (``aioacm.server.nacos_grpc``: config calls, change pushes, health and client
    detection) on that port + 1000, as Nacos does. An item published through one API is read
    through the others. It checks Spas signatures when given credentials and Nacos tokens when
    given users, keeps a log of every request and can be told to fail on purpose
    (:meth:`add_fault`, :meth:`drop_grpc_streams`...)::

        async with LocalACMServer() as server:
            server.set_config("app.yaml", "DEFAULT_GROUP", "k: v")
            ...  # point a client at server.endpoint

    ``stop()`` then ``start()`` listens on the same ports again (to simulate an outage).
    Everything must be used from the event loop thread that runs the server. The gRPC port
    serves plaintext, even when ``ssl_context`` makes the HTTP port serve HTTPS.

    Args:
        host: the address to listen on.
        port: the port; ``0`` picks a free one on the first ``start()`` and keeps it.
        credentials: ``{access_key: secret_key}``; when given, requests must be signed.
        data_file: a JSON file to load the items from on the first start and to save them to
            after every change. Items set before the first start win over the file's.
        signature_window: how far (seconds) a signed request's ``timeStamp`` may be off.
        shutdown_timeout: how long ``stop()`` lets requests in progress finish.
        ssl_context: serve HTTPS with this context (the address server too).
        request_log_limit: keep only this many of the latest requests in :attr:`requests`
            (``None``: all of them, for tests; a long-running server should set a limit).
        users: Nacos users ``{username: password}``; when given, Nacos requests need a login
            token.
        token_ttl: seconds a Nacos login token is valid (short ones for tests).
        grpc: serve Nacos's gRPC API on the HTTP port + 1000 (with ``port=0``, ports are
            picked so that both are free).
        grpc_idle_time: seconds a gRPC connection may be silent before the server sends it a
            ``ClientDetectionRequest`` (Nacos: 20); unanswered, the connection is dropped.
        grpc_ack_timeout: seconds the server waits for the client's answer to a request it
            pushes (change notifications, client detection, connection resets).
        grpc_push_retries: how many times an unanswered change push is sent again (after
            ``n × grpc_retry_delay`` seconds for retry ``n``) before the connection is
            dropped, as Nacos unregisters it.
        grpc_retry_delay: see ``grpc_push_retries`` (Nacos: 2).

    Attributes:
        requests: every request received, in order (:class:`RequestRecord`).
        address_list: what the address server lists (``["host:port", ...]``); ``None`` (the
            default) lists this server itself.
        unit_lists: per-unit address lists for ``/diamond-unit-{unit}``; units not in it get
            ``address_list``.
        store: the items themselves.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        credentials: Mapping[str, str] | None = None,
        data_file: str | os.PathLike[str] | None = None,
        signature_window: float = 60.0,
        shutdown_timeout: float = 1.0,
        ssl_context: ssl.SSLContext | None = None,
        request_log_limit: int | None = None,
        users: Mapping[str, str] | None = None,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        grpc: bool = True,
        grpc_idle_time: float = 20.0,
        grpc_ack_timeout: float = 3.0,
        grpc_push_retries: int = 3,
        grpc_retry_delay: float = 2.0,
    ) -> None:
        self._host = host
        self._port = port
        self._shutdown_timeout = shutdown_timeout
        self._ssl_context = ssl_context
        self._request_log_limit = request_log_limit
        self._checker = SignatureChecker(credentials, signature_window)
        #: the Nacos users and the tokens they were given
        self.nacos_users = NacosUsers(users, token_ttl)
        self._faults = FaultInjector()
        self.store = ConfigStore()
        self.requests: list[RequestRecord] = []
        self.address_list: list[str] | None = None
        self.unit_lists: dict[str, list[str]] = {}
        self._persistence = (
            JsonFilePersistence(data_file, self.store) if data_file is not None else None
        )
        self._loaded = self._persistence is None
        self.store.on_change.append(self._on_change)
        self._runner: web.AppRunner | None = None
        self._app: ACMApplication | None = None
        self._grpc = (
            NacosGrpcServer(
                self.store,
                self.nacos_users,
                self._checker,
                self._faults,
                self._log_request,
                idle_time=grpc_idle_time,
                ack_timeout=grpc_ack_timeout,
                push_retries=grpc_push_retries,
                retry_delay=grpc_retry_delay,
                shutdown_timeout=shutdown_timeout,
            )
            if grpc
            else None
        )

    # -- credentials -----------------------------------------------------------------------

    def add_credentials(
        self, access_key: str, secret_key: str, security_token: str | None = None
    ) -> None:
        """Accept one more access key; with ``security_token`` it is a temporary (STS) key
        whose requests must carry that token. Turns signature checking on."""
        self._checker.add(access_key, secret_key, security_token)

    def revoke_credentials(self, access_key: str) -> None:
        """Refuse an access key from now on (403), e.g. an STS key that expired."""
        self._checker.revoke(access_key)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The port: the real bound one once started (``0`` before the first start)."""
        return self._port

    @property
    def grpc_port(self) -> int | None:
        """The Nacos gRPC port (the HTTP port + 1000); ``None`` when gRPC is off or the port
        is not known yet (``port=0`` before the first start)."""
        if self._grpc is None or not self._port:
            return None
        return self._port + GRPC_PORT_OFFSET

    @property
    def endpoint(self) -> str:
        """``host:port`` for clients (loopback when listening on every address)."""
        host = "127.0.0.1" if self._host in _WILDCARD_HOSTS else self._host
        if ":" in host:
            host = f"[{host}]"
        return f"{host}:{self._port}"

    @property
    def url(self) -> str:
        """``http://host:port`` (``https`` when serving TLS)."""
        return f"{'https' if self._ssl_context else 'http'}://{self.endpoint}"

    @property
    def running(self) -> bool:
        """Whether the server is listening."""
        return self._runner is not None

    async def start(self) -> None:
        """Start listening (on the same ports as before, after a ``stop()``).

        Raises:
            RuntimeError: the server is already running.
            OSError: the port (or the gRPC port) cannot be bound.
            ValueError: the data file is not one this server wrote.
        """
        if self._runner is not None:
            raise RuntimeError("the server is already running")
        if self._persistence is not None and not self._loaded:
            await self._load()
        app = ACMApplication(
            self.store,
            self._faults,
            self._checker,
            self._log_request,
            self._addresses,
            self.nacos_users,
        )
        pick = self._port == 0 and self._grpc is not None
        for attempt in range(_PORT_TRIES if pick else 1):
            runner = await self._serve_http(app)
            port = int(runner.addresses[0][1])
            try:
                await self._serve_grpc(port)
            except OSError:
                await runner.cleanup()
                if attempt + 1 == (_PORT_TRIES if pick else 1):
                    raise
                continue
            break
        self._port = port
        self._runner, self._app = runner, app
        if self._persistence is not None:
            self._persistence.start_background()
        if self._grpc is not None:
            logger.info(
                "config server listening on %s (ACM and Nacos APIs), Nacos gRPC on port %d",
                self.endpoint,
                self.grpc_port,
            )
        else:
            logger.info("config server listening on %s (ACM and Nacos APIs)", self.endpoint)

    async def _serve_http(self, app: ACMApplication) -> web.AppRunner:
        runner = web.AppRunner(
            app.build(),
            handle_signals=False,
            access_log=None,
            shutdown_timeout=self._shutdown_timeout,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, ssl_context=self._ssl_context)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        return runner

    async def _serve_grpc(self, http_port: int) -> None:
        if self._grpc is None:
            return
        port = http_port + GRPC_PORT_OFFSET
        # checked first: grpc's own failure to bind also prints a line to stderr
        if port > 65535 or not port_is_free(self._host, port):
            raise OSError(f"the gRPC port {port} (HTTP port + {GRPC_PORT_OFFSET}) is busy")
        await self._grpc.start(self._host, port)

    async def stop(self) -> None:
        """Stop listening: gRPC streams end, held polls answer at once, open connections
        close. Idempotent."""
        runner, app = self._runner, self._app
        if runner is None or app is None:
            return
        self._runner = self._app = None
        app.stop()
        try:
            if self._grpc is not None:
                await self._grpc.stop()
            await runner.cleanup()
        finally:
            if self._persistence is not None:
                await self._persistence.stop_background()
            logger.info("config server on %s stopped", self.endpoint)

    async def __aenter__(self) -> LocalACMServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def flush(self) -> None:
        """Wait until every change is saved to the data file (if there is one)."""
        if self._persistence is not None and self._loaded:
            await self._persistence.flush()

    async def _load(self) -> None:
        assert self._persistence is not None
        items = await self._persistence.load()
        preset = len(self.store)
        self.store.load(item for item in items if item.key not in self.store)
        self._loaded = True
        logger.info("loaded %d items from %s", len(items), self._persistence.path)
        if preset:
            self._persistence.mark_dirty()
            await self._persistence.flush()

    def _on_change(self) -> None:
        if self._persistence is not None and self._loaded:
            self._persistence.schedule()

    def _log_request(self, record: RequestRecord) -> None:
        self.requests.append(record)
        limit = self._request_log_limit
        if limit is not None and len(self.requests) > limit:
            del self.requests[: len(self.requests) - limit]

    def _addresses(self, request: web.Request, unit: str | None) -> list[str]:
        if unit is not None and unit in self.unit_lists:
            return list(self.unit_lists[unit])
        if self.address_list is not None:
            return list(self.address_list)
        if self._host in _WILDCARD_HOSTS and request.host:
            # Listening everywhere: the address the client reached us on is the one to give.
            return [request.host]
        return [self.endpoint]

    # -- items -----------------------------------------------------------------------------

    def set_config(
        self,
        data_id: str,
        group: str | None,
        content: str,
        tenant: str = "",
        *,
        encrypted_data_key: str | None = None,
        config_type: str | None = None,
    ) -> ConfigItem:
        """Store an item as a publish would, waking the polls that watch it if it changed.

        Args:
            data_id: the dataId.
            group: the group; empty or ``None`` means ``DEFAULT_GROUP``.
            content: the content (must be GBK-encodable, at most 100 KB).
            tenant: the namespace id (``""``: the default namespace).
            encrypted_data_key: served back in the ``Encrypted-Data-Key`` header.
            config_type: the Nacos config type (``Config-Type``), if any.

        Returns:
            The stored item (with its md5).

        Raises:
            aioacm.InvalidParameterError: a bad key or content ACM could not store.
        """
        key = _key(data_id, group, tenant)
        encode_content(content)
        return self.store.put(key, content, encrypted_data_key, config_type)

    def get_config(self, data_id: str, group: str | None = None, tenant: str = "") -> str | None:
        """The content stored under the key, or ``None``."""
        item = self.get_item(data_id, group, tenant)
        return item.content if item is not None else None

    def get_item(
        self, data_id: str, group: str | None = None, tenant: str = ""
    ) -> ConfigItem | None:
        """The whole stored item (md5, encrypted data key...), or ``None``."""
        return self.store.get(_key(data_id, group, tenant))

    def delete_config(self, data_id: str, group: str | None = None, tenant: str = "") -> bool:
        """Delete an item as a remove would (always waking its polls); return if it existed."""
        return self.store.delete(_key(data_id, group, tenant))

    def items(self) -> list[ConfigItem]:
        """Every stored item of every tenant, sorted by (tenant, group, data_id)."""
        return self.store.items()

    @property
    def held_polls(self) -> int:
        """How many long polls are being held right now."""
        return self.store.watch_count

    async def wait_for_held_polls(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until at least ``count`` long polls are held (instead of sleeping in tests).

        Raises:
            TimeoutError: not enough polls were held within ``timeout`` seconds.
        """
        await wait_until(lambda: self.held_polls >= count, timeout, "held polls")

    async def wait_for_requests(
        self, count: int = 1, op: str | None = None, timeout: float = 5.0
    ) -> None:
        """Wait until at least ``count`` requests (of operation ``op``) have arrived.

        Raises:
            TimeoutError: fewer requests arrived within ``timeout`` seconds.
        """
        await wait_until(lambda: self.request_count(op) >= count, timeout, "requests")

    # -- faults and the request log ---------------------------------------------------------

    def add_fault(
        self,
        op: str | Iterable[str] | None = None,
        *,
        status: int | None = None,
        delay: float = 0.0,
        drop: bool = False,
        times: int | None = None,
        body: str | None = None,
        truncate: int | None = None,
    ) -> Fault:
        """Make the server fail on purpose; faults are tried in the order added.

        The first active fault matching a request applies: it sleeps ``delay`` seconds, then
        drops the connection (``drop``), answers ``status`` with ``body``, or (delay only)
        answers normally; with ``truncate`` that answer is cut off after so many body bytes
        and the connection closed. Faulted requests are still logged in :attr:`requests`.

        Args:
            op: the operation(s) to fail: ``"address"``, ``"get"``, ``"publish"``,
                ``"remove"``, ``"list"``, ``"poll"``, ``"other"``; ``None`` for all.
            status: the HTTP status to answer instead.
            delay: seconds to wait before answering.
            drop: close the connection without answering.
            times: how many requests to fail; ``None`` until removed.
            body: the body sent with ``status`` (a short default message).
            truncate: send the headers (announcing the whole body) and only this many bytes
                of the body, then close the connection (a reset mid-body).

        Returns:
            The :class:`Fault` (see ``hits`` and ``remaining``; pass it to
            :meth:`remove_fault`).

        Raises:
            ValueError: an unknown op, or an impossible combination.
        """
        return self._faults.add(
            op, status=status, delay=delay, drop=drop, times=times, body=body, truncate=truncate
        )

    def remove_fault(self, fault: Fault) -> None:
        """Remove one fault."""
        self._faults.remove(fault)

    def clear_faults(self) -> None:
        """Remove every fault."""
        self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        """The faults, in the order they are tried (exhausted ones included)."""
        return list(self._faults)

    def request_count(self, op: str | None = None) -> int:
        """How many requests were received (of operation ``op`` only, when given)."""
        return sum(1 for record in self.requests if op is None or record.op == op)

    def requests_for(self, op: str) -> list[RequestRecord]:
        """The logged requests of operation ``op``."""
        return [record for record in self.requests if record.op == op]

    def clear_requests(self) -> None:
        """Forget the logged requests."""
        self.requests.clear()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LocalACMServer {self.endpoint} {state}, {len(self.store)} items>"
