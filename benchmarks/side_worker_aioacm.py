"""aioacm's ``NacosClient`` (``protocol="grpc"``) as a worker of ``official_side_by_side.py``.

``python side_worker_aioacm.py CONFIG_JSON``; CONFIG has ``server`` (``host:port``, the HTTP
port: gRPC is port + 1000), ``namespace``, ``group``, ``username`` (the password comes from the
environment variable ``AIOACM_NACOS_PASSWORD``), ``warm_key`` (read once at the start, so the
connection is up), ``protocol`` (``grpc``, or ``http`` to compare) and ``workdir`` (its
snapshot and failover folders go there). Driven by the commands of ``_side.serve``: one client
for the process's life, default options otherwise; the watch callback is an ``async def`` (run
on the event loop, as the official client's listener is).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

from _side import Recorder, serve


class AioacmAdapter:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.group = cfg["group"]
        self.client: Any = None
        self.recorder: Recorder | None = None

    async def open(self) -> None:
        from aioacm import NacosClient

        cfg = self.cfg
        auth = {}
        if cfg.get("username"):
            auth = {
                "username": cfg["username"],
                "password": os.environ.get("AIOACM_NACOS_PASSWORD", ""),
            }
        self.client = NacosClient(
            cfg["server"],
            cfg["namespace"] or None,
            protocol=cfg.get("protocol", "grpc"),
            snapshot_base=os.path.join(cfg["workdir"], "snapshot"),
            failover_base=os.path.join(cfg["workdir"], "data"),
            **auth,
        )
        await self.client.__aenter__()
        await self.client.get(cfg["warm_key"], self.group)  # the connection is up

    async def get(self, key: str) -> str | None:
        value: str | None = await self.client.get(key, self.group)
        return value

    async def _callback(self, event: dict[str, Any]) -> None:
        assert self.recorder is not None
        self.recorder.seen(event["data_id"], event["content"])

    async def watch(self, key: str, recorder: Recorder) -> None:
        self.recorder = recorder
        await self.client.add_watcher(key, self.group, self._callback)

    def stats(self) -> dict[str, Any]:
        stats = self.client.stats()
        return {
            "protocol": stats.protocol,
            "pollers": stats.pollers,
            "connections_made": stats.connections,
            "connected": stats.connected,
            "requests": stats.requests,
            "watched_keys": stats.watched_keys,
        }

    async def close(self) -> dict[str, Any]:
        if self.client is not None:
            await self.client.aclose()
        current = asyncio.current_task()
        left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        return {"tasks_left": len(left)}


def main() -> None:
    cfg = json.loads(sys.argv[1])
    asyncio.run(serve(AioacmAdapter(cfg)))


if __name__ == "__main__":
    main()
