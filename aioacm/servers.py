"""The list of data servers: where it comes from, which one is in use, and its refresh task.

Sources, first match wins: the ``DIAMOND_SERVER_IPS`` environment variable (comma-separated
``host[:port]``); the address server (``cai_enabled``, optionally per unit); else the endpoint
itself. The list is shuffled once so clients spread over servers; the client then sticks to one
server and moves round-robin only when it fails.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable

from ._tasks import cancel_and_wait
from .errors import ServerUnavailableError
from .options import Options
from .protocol import parse_server_list

__all__ = ["ADDRESS_TIMEOUT", "Server", "ServerList"]

logger = logging.getLogger(__name__)

Server = tuple[str, int]

ADDRESS_TIMEOUT = 3.0
# After the address server failed, requests in the next second fail fast instead of each
# waiting for it again.
_RETRY_AFTER_FAILURE = 1.0


@functools.lru_cache(maxsize=256)
def format_server(server: Server) -> str:
    """``host:port``, with brackets for IPv6."""
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ServerList:
    """The servers one client talks to.

    Args:
        endpoint: the endpoint given to the client (``host[:port]``).
        unit_name: the address-server unit, if any.
        options: the client's options (read at each load: tls and cai may change).
        fetch: ``fetch(url, timeout)`` returning the body of a plain GET as text; raises on
            failure (the transport's).
    """

    def __init__(
        self,
        endpoint: str,
        unit_name: str | None,
        options: Options,
        fetch: Callable[[str, float], Awaitable[str]],
    ) -> None:
        self._endpoint = endpoint
        self._unit_name = unit_name
        self._options = options
        self._fetch = fetch
        self._servers: list[Server] = []
        self._index = 0
        self._lock = asyncio.Lock()
        self._failed_at = 0.0
        # why the last load found no server, for the error the callers get
        self._failure: tuple[str, BaseException | None] | None = None
        self._refresh_task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def servers(self) -> list[Server]:
        """The current list (empty until loaded)."""
        return list(self._servers)

    @property
    def loaded(self) -> list[Server]:
        """The list if it is loaded, else an empty one (then ``await ensure()``). No I/O: the
        fast path of every request."""
        return self._servers

    def current(self) -> Server:
        """The server in use. Only valid after ``ensure()``."""
        return self._servers[self._index % len(self._servers)]

    def rotate(self, failed: Server) -> None:
        """Move to the next server, unless another request already moved away from ``failed``."""
        if self._servers and self.current() == failed:
            self._index = (self._index + 1) % len(self._servers)
            logger.info(
                "server %s failed, switching to %s",
                format_server(failed),
                format_server(self.current()),
            )

    def invalidate(self) -> None:
        """Forget the list (an option it depends on changed); the next request loads it again."""
        self._servers = []
        self._index = 0
        self._failed_at = 0.0

    @property
    def _default_port(self) -> int:
        return 443 if self._options.tls_enabled else 8080

    def _address_url(self) -> str:
        endpoint = self._endpoint if ":" in self._endpoint else f"{self._endpoint}:8080"
        if self._unit_name:
            return f"http://{endpoint}/diamond-server/diamond-unit-{self._unit_name}?nofix=1"
        return f"http://{endpoint}/diamond-server/diamond"

    @property
    def uses_address_server(self) -> bool:
        """Whether the list comes from the address server (and so is refreshed)."""
        return not os.environ.get("DIAMOND_SERVER_IPS", "").strip() and self._options.cai_enabled

    async def _load(self) -> list[Server]:
        static = os.environ.get("DIAMOND_SERVER_IPS", "").strip()
        if static:
            return parse_server_list(static.replace(",", "\n"), self._default_port)
        if not self._options.cai_enabled:
            return parse_server_list(self._endpoint, self._default_port)
        url = self._address_url()
        try:
            text = await self._fetch(url, ADDRESS_TIMEOUT)
        except Exception as exc:
            logger.warning("address server %s failed: %s", url, exc)
            self._failure = (f"address server {url} failed: {exc}", exc)
            return []
        servers = parse_server_list(text, self._default_port)
        if not servers:
            logger.warning("address server %s listed no server", url)
            self._failure = (f"address server {url} listed no server", None)
        return servers

    def _unavailable(self) -> ServerUnavailableError:
        """The error for "no server": with the address server's failure as reason and cause."""
        message = f"no server available for {self._endpoint}"
        if self._failure is None:
            return ServerUnavailableError(message)
        reason, cause = self._failure
        error = ServerUnavailableError(f"{message}: {reason}")
        error.__cause__ = cause
        return error

    async def ensure(self) -> list[Server]:
        """Load the list if it is not loaded; raise ServerUnavailableError if it stays empty."""
        if self._servers:
            return self._servers
        async with self._lock:
            if not self._servers:
                if time.monotonic() - self._failed_at < _RETRY_AFTER_FAILURE:
                    raise self._unavailable()
                self._failure = None
                servers = await self._load()
                if not servers:
                    self._failed_at = time.monotonic()
                    raise self._unavailable()
                random.shuffle(servers)
                self._servers, self._index = servers, 0
                logger.info(
                    "servers for %s: %s",
                    self._endpoint,
                    ", ".join(format_server(s) for s in servers),
                )
            self._start_refresh()
        return self._servers

    def _start_refresh(self) -> None:
        if self._closed or self._refresh_task is not None or not self.uses_address_server:
            return
        self._refresh_task = asyncio.get_running_loop().create_task(
            self._refresh_loop(), name="aioacm.servers.refresh"
        )

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._options.address_refresh_interval)
            try:
                await self.refresh()
            except Exception:  # never let the refresh die: the next round may succeed
                logger.exception("server list refresh failed")

    async def refresh(self) -> None:
        """Fetch the list again; keep the old one if the new one is empty."""
        servers = await self._load()
        if not servers:
            return
        if set(servers) == set(self._servers):
            return
        current = self.current() if self._servers else None
        random.shuffle(servers)
        self._servers = servers
        if current in servers:
            self._index = servers.index(current)
        else:
            self._index = 0
            logger.info("server list changed; now using %s", format_server(servers[0]))

    async def close(self) -> None:
        """Cancel and await the refresh task."""
        self._closed = True
        task, self._refresh_task = self._refresh_task, None
        await cancel_and_wait(task)
