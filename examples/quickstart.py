"""Publish a config item, read it back, print it.

With ACM_ENDPOINT unset this starts the bundled ACM-compatible server in-process, so it runs
anywhere; set ACM_ENDPOINT (and ACM_NAMESPACE, ACM_AK, ACM_SK) to run it against a real ACM.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from aioacm import ACMClient
from aioacm.server import LocalACMServer


@contextlib.asynccontextmanager
async def acm_endpoint() -> AsyncIterator[str]:
    endpoint = os.environ.get("ACM_ENDPOINT")
    if endpoint:
        yield endpoint
        return
    async with LocalACMServer(host="127.0.0.1", port=0) as server:
        print(f"started the bundled ACM server at {server.endpoint}")
        yield server.endpoint


async def main() -> None:
    async with (
        acm_endpoint() as endpoint,
        ACMClient(
            endpoint,
            namespace=os.environ.get("ACM_NAMESPACE"),
            ak=os.environ.get("ACM_AK"),
            sk=os.environ.get("ACM_SK"),
        ) as client,
    ):
        await client.publish("quickstart.properties", "DEFAULT_GROUP", "greeting=你好, ACM")
        content = await client.get("quickstart.properties", "DEFAULT_GROUP")
        print(f"read back: {content}")


if __name__ == "__main__":
    asyncio.run(main())
