"""``ClientStats``: what ``client.stats()`` reads out."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ClientStats"]


@dataclass(frozen=True)
class ClientStats:
    """A read-out of one client (``client.stats()``), for dashboards and tests.

    Attributes:
        protocol: what the client speaks: ``acm``, ``nacos-http``, ``nacos-grpc``
            (``nacos-auto`` while ``protocol="auto"`` has not decided yet).
        open: whether the client has opened and is not closed.
        server: ``host:port`` of the server in use, None before the list is loaded.
        watched_keys: keys watched.
        watchers: watchers (callbacks and ``watch()`` loops), over every key.
        pollers: long polls (or streams) held for the watched keys.
        requests: attempts sent to servers so far (every try of every request).
        failover_reads: values served from failover files (gets and deliveries).
        snapshot_fallbacks: gets served from a snapshot because every server failed.
        remembered_keys: checked keys remembered for gets (bounded).
        connections: gRPC connections made so far (the first, then one per reconnect; 0
            over HTTP).
        connected: whether a gRPC stream is up now (False over HTTP).
    """

    protocol: str
    open: bool
    server: str | None
    watched_keys: int
    watchers: int
    pollers: int
    requests: int
    failover_reads: int
    snapshot_fallbacks: int
    remembered_keys: int
    connections: int = 0
    connected: bool = False
