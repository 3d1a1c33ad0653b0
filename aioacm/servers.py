"""The list of data servers: where it comes from, which one is in use, and its refresh task.

Where the list comes from is the dialect's ``ServerPlan``, read again at every load: a fixed
list, or an address server (one ``host[:port]`` a line) asked again every
``address_refresh_interval`` seconds. The list is shuffled once so clients spread over servers;
the client then sticks to one server and moves round-robin only when it fails.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable

from ._tasks import cancel_and_wait
from .errors import ACMException, ServerUnavailableError
from .options import Options
from .wire import Server, ServerPlan

__all__ = ["ADDRESS_TIMEOUT", "Server", "ServerList", "format_server", "parse_server_list"]

logger = logging.getLogger(__name__)

ADDRESS_TIMEOUT = 3.0
# After the address server failed, requests in the next second fail fast instead of each
# waiting for it again.
_RETRY_AFTER_FAILURE = 1.0


@functools.lru_cache(maxsize=256)
def format_server(server: Server) -> str:
    """``host:port``, with brackets for IPv6."""
    host, port = server
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# A server in an address server's list: a DNS name or an IPv4 address (IPv6 is checked with
# ipaddress). Underscores occur in real internal names, so they are let through.
_HOST_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")


def _valid_host(host: str) -> bool:
    if _HOST_NAME.fullmatch(host):
        return True
    if "%" in host:  # a zone id would need escaping in every URL
        return False
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def parse_server_list(text: str, default_port: int) -> list[Server]:
    """Parse a server list: one ``host``, ``host:port`` or ``[v6]:port`` a line.

    Blank lines are skipped, and so is any line that is not a plain host name or IP address
    with an optional decimal port: an error page or a line like ``evil/x?`` must never become
    a server, nor smuggle a path into the URLs built from it.
    """
    servers: list[Server] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        host, port_text = line, ""
        if line.startswith("["):
            end = line.find("]")
            if end < 0:
                continue
            host, rest = line[1:end], line[end + 1 :]
            if rest:
                if not rest.startswith(":"):
                    continue
                port_text = rest[1:]
        elif line.count(":") == 1:
            host, _, port_text = line.partition(":")
        port = default_port
        if port_text or line.endswith(":"):
            if not (port_text.isascii() and port_text.isdigit()):
                continue
            port = int(port_text)
        if not 0 < port < 65536 or not _valid_host(host):
            continue
        servers.append((host, port))
    return servers


class ServerList:
    """The servers one client talks to.

    Args:
        plan: the dialect's ``server_plan`` (called at each load: options may have changed).
        options: the client's options (``address_refresh_interval``).
        fetch: ``fetch(url, timeout)`` returning the body of a plain GET as text; raises on
            failure (the transport's).
    """

    def __init__(
        self,
        plan: Callable[[], ServerPlan],
        options: Options,
        fetch: Callable[[str, float], Awaitable[str]],
    ) -> None:
        self._plan = plan
        self._name = plan().name
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

    @property
    def current_name(self) -> str | None:
        """``host:port`` of the server in use, None before the list is loaded. No I/O."""
        return format_server(self.current()) if self._servers else None

    def current(self) -> Server:
        """The server in use. Only valid after ``ensure()``."""
        return self._servers[self._index % len(self._servers)]

    def rotate(self, failed: Server, reason: str | None = None) -> None:
        """Move to the next server, unless another request already moved away from ``failed``.

        ``reason``: why it failed, the sentence the caller's error will carry; logged as a
        warning with the server tried next. With one server there is nowhere to go: the
        caller's error (or its warning, for a poller) says it, nothing is logged here.
        """
        servers = self._servers
        moved = len(servers) > 1 and self.current() == failed
        if moved:
            self._index = (self._index + 1) % len(servers)
        if reason is not None:
            if moved:
                logger.warning("%s; trying %s next", reason, format_server(self.current()))
            else:
                logger.debug("%s", reason)
        elif moved:
            logger.info(
                "leaving server %s for %s", format_server(failed), format_server(self.current())
            )

    def invalidate(self) -> None:
        """Forget the list (an option it depends on changed); the next request loads it again."""
        self._servers = []
        self._index = 0
        self._failed_at = 0.0

    @property
    def uses_address_server(self) -> bool:
        """Whether the list comes from an address server (and so is refreshed)."""
        return self._plan().address_url is not None

    async def _load(self) -> list[Server]:
        plan = self._plan()
        self._name = plan.name
        url = plan.address_url
        if url is None:
            return list(plan.servers)
        try:
            text = await self._fetch(url, ADDRESS_TIMEOUT)
        except Exception as exc:
            # the fetch says it was the address server, and why, in its message
            reason = (
                exc.message
                if isinstance(exc, ACMException)
                else f"the address server {plan.name} failed: {exc!r}"
            )
            self._failure = (reason, exc)
            return []
        servers = parse_server_list(text, plan.default_port)
        if not servers:
            self._failure = (f"the address server {plan.name} listed no server", None)
        return servers

    def _unavailable(self) -> ServerUnavailableError:
        """The error for "no server": the address server's failure, as reason and cause."""
        if self._failure is None:
            return ServerUnavailableError(f"no server available for {self._name}")
        reason, cause = self._failure
        error = ServerUnavailableError(
            reason,
            status=cause.status if isinstance(cause, ACMException) else None,
            server=cause.server if isinstance(cause, ACMException) else None,
        )
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
                if not servers:  # the caller's error says why (a warning would say it twice)
                    self._failed_at = time.monotonic()
                    raise self._unavailable()
                random.shuffle(servers)
                self._servers, self._index = servers, 0
                logger.info(
                    "servers for %s: %s",
                    self._name,
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
        self._failure = None
        servers = await self._load()
        if not servers:
            if self._failure is not None:  # nobody else will say it: a warning
                logger.warning("%s; keeping the server list", self._failure[0])
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
