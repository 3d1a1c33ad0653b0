"""Load with faults: 10,000 watched keys and rounds of 1,000 concurrent gets against three
bundled servers while faults come and go, for ``AIOACM_LOAD_SECONDS`` of wall time: 20 s in
the default suite (which must stay under 6 minutes on a 2-core machine), a minute or more on
request (``nox -s soak`` runs it for 300 s).

Bounded and self-stopping: the load runs for the set time, then faults are cleared and the
watchers get a bounded time to catch up. Every change is accounted for: each watcher's history
is a subsequence of what was published to its key, with nothing twice in a row, ending with
the key's final value; keys never changed were never reported; every get answered the one
value its key has.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import assert_history, cluster

import aioacm.watch
from aioacm import ACMClient, ServerUnavailableError
from aioacm.server import LocalACMServer
from aioacm.server.faults import Fault

SECONDS = float(os.environ.get("AIOACM_LOAD_SECONDS", "20"))
WATCHED = 10_000
GETS = 1_000
CHANGES_PER_SECOND = 60
CATCH_UP_SECONDS = 60.0


def fault_kinds() -> list[dict[str, Any]]:
    return [
        {"status": 503},
        {"status": 500},
        {"status": 409},
        {"drop": True},
        {"delay": 0.4},
        {"truncate": 3},
        {"status": 200, "body": "<html>bad gateway</html>"},  # garbles polls and gets
    ]


async def inject_faults(
    servers: list[LocalACMServer], rng: random.Random, injected: list[Fault]
) -> None:
    """Until cancelled: put a random fault on a random server (sometimes on all of them)
    for a random while, then lift it. Every fault goes into ``injected``."""
    try:
        while True:
            targets = servers if rng.random() < 0.15 else [rng.choice(servers)]
            kind = rng.choice(fault_kinds())
            ops = rng.choice([None, "get", "poll", ["get", "publish"]])
            if kind.get("status") == 200:
                ops = "poll"  # a 200 to a get is content, whatever it says: garble polls only
            faults = [(srv, srv.add_fault(ops, **kind)) for srv in targets]
            injected += [fault for _, fault in faults]
            await asyncio.sleep(rng.uniform(0.1, 0.6))
            for srv, fault in faults:
                srv.remove_fault(fault)
            await asyncio.sleep(rng.uniform(0.05, 0.4))
    except asyncio.CancelledError:
        for srv in servers:
            srv.clear_faults()
        raise


@pytest.mark.timeout(SECONDS + CATCH_UP_SECONDS + 90)
async def test_load_with_faults(
    make_client: Callable[..., ACMClient], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aioacm.watch, "BACKOFF_CAP", 1.0)
    rng = random.Random(int(os.environ.get("AIOACM_LOAD_SEED", "11")))
    async with cluster(3, request_log_limit=1000) as servers:
        store_server = servers[0]
        for i in range(GETS):
            store_server.set_config(f"get.{i}", "g", f"value of get.{i}")
        monkeypatch.setenv("DIAMOND_SERVER_IPS", ",".join(s.endpoint for s in servers))
        client = make_client("unused.invalid", pulling_timeout=3, default_timeout=1)

        # -- 10,000 watched keys, none of which exists yet -------------------------------
        history: dict[str, list[str | None]] = collections.defaultdict(list)

        def watcher(key: str) -> Callable[[dict[str, Any]], Any]:
            async def on_change(event: dict[str, Any]) -> None:
                history[key].append(event["content"])

            return on_change

        keys = [f"w.{i}" for i in range(WATCHED)]
        for key in keys:
            await client.add_watcher(key, "g", watcher(key))
        assert client.stats().pollers == 4

        # -- warm the snapshots of the get keys: with faults, gets may need them ---------
        assert await asyncio.gather(*(client.get(f"get.{i}", "g") for i in range(GETS))) == [
            f"value of get.{i}" for i in range(GETS)
        ]

        published: dict[str, list[str | None]] = collections.defaultdict(list)
        get_rounds = 0
        injected: list[Fault] = []
        fault_task = asyncio.create_task(inject_faults(servers, rng, injected))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SECONDS

        async def publish_changes() -> None:
            n = 0
            while loop.time() < deadline:
                key = rng.choice(keys[:2000]) if rng.random() < 0.7 else rng.choice(keys)
                n += 1
                if rng.random() < 0.05 and published[key]:
                    store_server.delete_config(key, "g")
                    published[key].append(None)
                else:
                    store_server.set_config(key, "g", f"{key} change {n}")
                    published[key].append(f"{key} change {n}")
                await asyncio.sleep(1 / CHANGES_PER_SECOND)

        async def storm_gets() -> None:
            nonlocal get_rounds
            while loop.time() < deadline:
                answers = await asyncio.gather(
                    *(client.get(f"get.{i}", "g") for i in range(GETS)), return_exceptions=True
                )
                for i, answer in enumerate(answers):
                    if isinstance(answer, ServerUnavailableError):
                        raise AssertionError(f"get.{i}: no answer although snapshotted")
                    assert answer == f"value of get.{i}", answer
                get_rounds += 1
                await asyncio.sleep(0.5)

        try:
            await asyncio.gather(publish_changes(), storm_gets())
        finally:
            fault_task.cancel()
            await asyncio.gather(fault_task, return_exceptions=True)

        # -- faults lifted: every change must arrive, within a bound ----------------------
        def behind() -> list[str]:
            # a key that never existed for the watcher (created and deleted unseen) is None
            return [k for k, v in published.items() if (history[k] or [None])[-1] != v[-1]]

        catch_up_deadline = loop.time() + CATCH_UP_SECONDS
        while behind():
            if loop.time() > catch_up_deadline:
                missing = behind()
                raise AssertionError(f"{len(missing)} keys never caught up: {missing[:10]}")
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.3)  # nothing more may come

    changes = sum(len(v) for v in published.values())
    hits = sum(fault.hits for fault in injected)
    print(
        f"load: {changes} changes to {len(published)} keys, {get_rounds} rounds of {GETS} gets,"
        f" {len(injected)} faults injected, {hits} requests faulted"
    )
    assert hits > 10 * SECONDS  # the faults did meet the load
    assert get_rounds >= 2
    assert len(published) > 100
    for key, values in published.items():
        if history[key] or values[-1] is not None:
            assert_history(history[key], values)
    unchanged = set(keys) - set(published)
    assert all(history[k] == [] for k in unchanged)
