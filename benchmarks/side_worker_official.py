"""The official async Nacos client (PyPI ``nacos-sdk-python`` 3.x, module ``v2.nacos``) as a
worker of ``official_side_by_side.py``.

Run with the official client's own interpreter, never aioacm's (it does not import aioacm)::

    tests/.peers/nacos3/bin/python benchmarks/side_worker_official.py CONFIG_JSON

CONFIG as for ``side_worker_aioacm.py``, plus ``log_level`` (the client's, ``ERROR`` by default:
at ``WARNING`` it logs a "File not found" for the failover file it looks for on every get, at
``INFO`` a line for every request). Its cache and log folders go to ``workdir``. One
``NacosConfigService`` for the process's life; one ``async def`` listener for every key.

Watching a key (``watch_mode``): ``listen`` (the default) is ``add_listener`` alone, into an
empty cache folder: the client then holds an empty value for the key (md5 ""), its next listen
round (at once on a push, else within 5 s) finds every such key changed on the server, fetches
each one and calls its listener with the value: its first callback, as aioacm's watcher gets
one. ``get-listen`` is ``get_config`` then ``add_listener``, key after key (the usual way to use
it: the listener is then not called for the value read, which counts as the first one). The two
differ after: the client marks a key "in sync" only when a listen round finds it changed, and
every round re-sends every key not in sync; keys read first (and, after a reconnect, keys that
did not change meanwhile) stay out of sync, so each round then carries all of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

from _side import Recorder, serve


class OfficialAdapter:
    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.group = cfg["group"]
        self.service: Any = None
        self.recorder: Recorder | None = None

    async def open(self) -> None:
        from v2.nacos import ClientConfigBuilder, NacosConfigService

        cfg = self.cfg
        builder = (
            ClientConfigBuilder()
            .server_address(cfg["server"])
            .namespace_id(cfg["namespace"])
            .cache_dir(os.path.join(cfg["workdir"], "cache"))
            .log_dir(os.path.join(cfg["workdir"], "logs"))
            .log_level(getattr(logging, cfg.get("log_level", "ERROR")))
        )
        if cfg.get("username"):
            builder.username(cfg["username"]).password(os.environ.get("AIOACM_NACOS_PASSWORD", ""))
        self.service = await NacosConfigService.create_config_service(builder.build())
        # create_config_service returns even when it could not connect: ask
        if not await self.service.server_health():
            raise RuntimeError("the official client could not open its gRPC connection")
        await self.get(cfg["warm_key"])

    async def get(self, key: str) -> str | None:
        from v2.nacos import ConfigParam

        value: str = await self.service.get_config(ConfigParam(data_id=key, group=self.group))
        return value

    async def _listener(self, tenant: str, group: str, data_id: str, content: str) -> None:
        assert self.recorder is not None
        self.recorder.seen(data_id, content)

    async def watch(self, key: str, recorder: Recorder) -> None:
        self.recorder = recorder
        if self.cfg.get("watch_mode") == "get-listen":
            # read the value first (the client caches it), then listen: the listener is not
            # called for a value the cache already holds, so the value read is the first one
            recorder.seen(key, await self.get(key))
        await self.service.add_listener(key, self.group, self._listener)

    def stats(self) -> dict[str, Any]:
        proxy = self.service.grpc_client_proxy
        caches = proxy.config_subscribe_manager.subscribe_cache_map
        clients = getattr(proxy.rpc_client_manager, "client_map", {})
        return {
            "watched_keys": len(caches),
            "rpc_clients": len(clients),
            "connected": sum(1 for c in clients.values() if c.is_running()),
            "listen_tasks": len({c.task_id for c in caches.values()}),
            # keys its next listen round sends again (it sends every key not "in sync")
            "not_in_sync": sum(1 for c in caches.values() if not c.is_sync_with_server),
        }

    async def close(self) -> dict[str, Any]:
        if self.service is None:
            return {}
        await self.service.shutdown()
        # what the client leaves running after shutdown(): report, then cancel
        current = asyncio.current_task()
        left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        names = sorted(getattr(t.get_coro(), "__qualname__", repr(t.get_coro())) for t in left)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        return {"tasks_left": len(left), "tasks_left_names": names}


def main() -> None:
    cfg = json.loads(sys.argv[1])
    asyncio.run(serve(OfficialAdapter(cfg)))


if __name__ == "__main__":
    main()
