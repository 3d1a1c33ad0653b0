"""What an open client holds (``Rooms``: its session, transport, lookup chain and watches), and
the event loop it belongs to.

A client belongs to the event loop that first used it: its session's connections and its
background tasks live there. Used from any other loop (a second ``asyncio.run()``, a loop in
another thread) it raises ``WrongEventLoopError`` before doing anything (``check_loop``): nothing
is sent, and no task is started on the other loop. Closed from another loop, it is let go of if
its own loop is closed already (its tasks ended with it), and refused otherwise (``let_go``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import aiohttp

from .errors import WrongEventLoopError

if TYPE_CHECKING:
    from .lookup import Lookup
    from .transport import ClientTransport
    from .watch import WatchManager

__all__ = ["Rooms", "wrong_loop"]

logger = logging.getLogger(__name__)


def wrong_loop(client: str, loop: asyncio.AbstractEventLoop) -> WrongEventLoopError:
    """The error for a client (named ``client``) of ``loop`` used from another loop."""
    if loop.is_closed():
        where = "an event loop that is closed now (each asyncio.run() makes a new one)"
    else:
        where = "another event loop (one running in another thread?)"
    return WrongEventLoopError(
        f"this {client} was opened on {where}: a client belongs to the event loop that first"
        f" used it; create one client per loop (e.g. 'async with {client}(...)' in the"
        " coroutine you run) and close it there"
    )


class Rooms:
    """What an open client holds: made on first use (on the running loop), dropped by
    ``aclose()``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        owned: bool,
        transport: ClientTransport,
        lookup: Lookup,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.session = session
        self.owned = owned
        self.transport = transport
        self.lookup = lookup
        self.watches: WatchManager | None = None

    def check_loop(self, client: str) -> None:
        """Raise ``WrongEventLoopError`` unless called on the loop the client belongs to."""
        if self.loop is not asyncio.get_running_loop():
            raise wrong_loop(client, self.loop)

    def let_go(self, client: str) -> None:
        """Give up what the client holds, from another loop than its own: only when its own
        loop is closed (its tasks ended with it; its connections cannot be closed from here).

        Raises:
            WrongEventLoopError: the client's loop is not closed: close the client there.
        """
        if not self.loop.is_closed():
            raise wrong_loop(client, self.loop)
        if self.owned:
            self.session.detach()  # closed, without touching the dead loop's connections
        logger.warning(
            "closing a %s whose event loop is closed: connections it held there are left"
            " to the garbage collector (close a client on its own loop)",
            client,
        )
