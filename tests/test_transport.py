"""The transport's request limit: fair (first come, first served), bounded, timed, cancellable."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from aioacm import ACMClient
from aioacm.server import LocalACMServer
from aioacm.transport import MAX_CONCURRENT_REQUESTS, FairLimiter


async def test_waiters_get_slots_in_arrival_order_and_nobody_jumps_the_queue() -> None:
    limiter = FairLimiter(1)
    assert limiter.try_acquire()
    order: list[int] = []

    async def take(i: int) -> None:
        await limiter.acquire(5)
        order.append(i)

    waiters = [asyncio.create_task(take(i)) for i in range(4)]
    await asyncio.sleep(0)
    # aiohttp's connector limit let a newcomer take a freed connection before the waiters;
    # here a slot freed while others wait goes to the oldest waiter, never to a newcomer
    limiter.release()
    assert not limiter.try_acquire()
    for _ in range(4):
        await asyncio.sleep(0)
        limiter.release()
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2, 3]
    assert limiter.try_acquire()  # every slot came back


async def test_waiting_longer_than_the_timeout_raises_and_leaves_no_waiter() -> None:
    limiter = FairLimiter(1)
    assert limiter.try_acquire()
    with pytest.raises(asyncio.TimeoutError):
        await limiter.acquire(0.01)
    limiter.release()
    assert limiter.try_acquire()


async def test_waiters_with_different_timeouts_each_expire_at_their_own() -> None:
    limiter = FairLimiter(1)
    assert limiter.try_acquire()
    loop = asyncio.get_running_loop()
    started = loop.time()
    expired: dict[float, float] = {}

    async def wait(timeout: float) -> None:
        try:
            await limiter.acquire(timeout)
        except asyncio.TimeoutError:
            expired[timeout] = loop.time() - started
        else:
            limiter.release()

    # one timer serves the queue: a later, shorter deadline must still be kept, and the
    # longest waiter gets the slot once it is released in time
    tasks = [asyncio.create_task(wait(t)) for t in (0.3, 0.05, 0.15, 5)]
    await asyncio.sleep(0.4)
    assert sorted(expired) == [0.05, 0.15, 0.3]
    for timeout, elapsed in expired.items():
        assert timeout <= elapsed < timeout + 0.2  # each at its own deadline, not the first armed
    limiter.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 1)
    assert 5 not in expired
    assert not limiter.timer_armed  # nobody waits: no timer left behind
    assert limiter.try_acquire()


async def test_a_waiter_cancelled_as_its_slot_arrives_passes_the_slot_on() -> None:
    limiter = FairLimiter(1)
    assert limiter.try_acquire()
    first = asyncio.create_task(limiter.acquire(5))
    second = asyncio.create_task(limiter.acquire(5))
    await asyncio.sleep(0)
    limiter.release()  # handed to ``first``...
    first.cancel()  # ...which is cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)  # the slot went on to the next waiter
    assert not limiter.try_acquire()
    limiter.release()
    assert limiter.try_acquire()


async def test_concurrent_gets_beyond_the_limit_all_complete_within_it(
    server: LocalACMServer, tmp_path: Path
) -> None:
    in_flight = peak = 0

    async def started(*_: object) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)

    async def ended(*_: object) -> None:
        nonlocal in_flight
        in_flight -= 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(started)
    trace.on_request_end.append(ended)
    trace.on_request_exception.append(ended)
    server.set_config("d", "g", "v")
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        client = ACMClient(
            server.endpoint,
            cai_enabled=False,
            session=session,
            snapshot_base=str(tmp_path / "snapshot"),
            failover_base=str(tmp_path / "data"),
        )
        async with client:
            count = MAX_CONCURRENT_REQUESTS * 3
            results = await asyncio.gather(*(client.get("d", "g") for _ in range(count)))
    assert results == ["v"] * count
    assert 1 < peak <= MAX_CONCURRENT_REQUESTS
