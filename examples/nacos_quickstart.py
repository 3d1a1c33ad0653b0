"""Publish a config item to Nacos, watch it change, read it back.

With NACOS_SERVER unset this starts the bundled server (it speaks Nacos's HTTP API too)
in-process, with a user ``nacos``, so it runs anywhere. Set NACOS_SERVER (``host[:port],...``)
and, when its auth is on, NACOS_USERNAME and NACOS_PASSWORD to run it against a real Nacos.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from aioacm import NacosClient
from aioacm.server import LocalACMServer


@contextlib.asynccontextmanager
async def nacos_server() -> AsyncIterator[tuple[str, str | None, str | None]]:
    addresses = os.environ.get("NACOS_SERVER")
    if addresses:
        yield addresses, os.environ.get("NACOS_USERNAME"), os.environ.get("NACOS_PASSWORD")
        return
    async with LocalACMServer(users={"nacos": "quickstart-password"}) as server:
        print(f"started the bundled server at {server.endpoint} (Nacos API under /nacos)")
        yield server.endpoint, "nacos", "quickstart-password"


async def main() -> None:
    async with nacos_server() as (addresses, username, password):
        client = NacosClient(addresses, username=username, password=password)
        async with client, contextlib.aclosing(client.watch("quickstart.yaml")) as changes:
            await client.publish(
                "quickstart.yaml", None, "greeting: 你好, Nacos", config_type="yaml"
            )
            first = await anext(changes)
            print(f"watched: {first.content} ({first.config_type})")
            await client.publish(
                "quickstart.yaml", None, "greeting: hello again", config_type="yaml"
            )
            second = await anext(changes)
            print(f"watched: {second.content} ({second.config_type})")
            print(f"read back: {await client.get('quickstart.yaml', None)}")


if __name__ == "__main__":
    asyncio.run(main())
