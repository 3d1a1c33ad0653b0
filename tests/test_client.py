"""ACMClient against the bundled server over real sockets: operations and the lookup chain."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from helpers import aioacm_tasks

from aioacm import (
    AccessDeniedError,
    ACMClient,
    ACMException,
    ACMRequestException,
    ClientClosedError,
    Credentials,
    InvalidParameterError,
    ServerUnavailableError,
)
from aioacm.dialects.acm import normalize_group, validate_data_id
from aioacm.keys import KeyMemo
from aioacm.server import LocalACMServer

MakeClient = Callable[..., ACMClient]


async def test_publish_get_remove_round_trip(
    server: LocalACMServer, make_client: MakeClient
) -> None:
    async with make_client(server.endpoint) as client:
        assert await client.publish("app.props", "G", "k=v\n中文") is True
        assert server.get_config("app.props", "G") == "k=v\n中文"
        assert await client.get("app.props", "G") == "k=v\n中文"
        assert await client.remove("app.props", "G") is True
        assert await client.get("app.props", "G") is None
        assert await client.remove("app.props", "G") is True  # removing a missing item is fine


async def test_empty_group_is_default_group(
    server: LocalACMServer, make_client: MakeClient
) -> None:
    async with make_client(server.endpoint) as client:
        await client.publish("d", "", "v")
        assert server.get_config("d", "DEFAULT_GROUP") == "v"
        assert await client.get("d", None) == "v"
        assert await client.get("d", "DEFAULT_GROUP") == "v"


async def test_namespaces_are_isolated(server: LocalACMServer, make_client: MakeClient) -> None:
    async with (
        make_client(server.endpoint, namespace="ns-a") as a,
        make_client(server.endpoint, namespace="ns-b") as b,
    ):
        await a.publish("d", "g", "from a")
        assert await b.get("d", "g") is None
        assert await a.get("d", "g") == "from a"
        assert server.get_config("d", "g", tenant="ns-a") == "from a"
        assert [r.query.get("tenant") for r in server.requests_for("get")] == ["ns-b", "ns-a"]


async def test_list_and_list_all(server: LocalACMServer, make_client: MakeClient) -> None:
    for i in range(450):
        server.set_config(f"app.{i:03d}", "G1" if i % 3 else "G2", f"v{i}", tenant="ns")
    server.set_config("other", "G1", "x", tenant="elsewhere")
    async with make_client(server.endpoint, namespace="ns") as client:
        page = await client.list(1, 10)
        assert page["totalCount"] == 450
        assert len(page["pageItems"]) == 10
        assert {"dataId", "group", "content"} <= set(page["pageItems"][0])
        items = await client.list_all()
        assert len(items) == 450
        assert items[0].keys() == {"dataId", "group"}
        assert len(await client.list_all(group="G2")) == 150
        assert await client.list_all(prefix="app.00") == [
            {"dataId": f"app.00{i}", "group": "G1" if i % 3 else "G2"} for i in range(10)
        ] or sorted(x["dataId"] for x in await client.list_all(prefix="app.00")) == [
            f"app.00{i}" for i in range(10)
        ]
        assert await client.list_all(group="G2", prefix="nope") == []
    # pages of 200: 3 requests for 450 items per list_all call
    assert all(r.query["pageSize"] == "200" for r in server.requests_for("list")[1:])


async def test_bad_input_is_refused_before_any_request(
    server: LocalACMServer, make_client: MakeClient
) -> None:
    async with make_client(server.endpoint) as client:
        with pytest.raises(InvalidParameterError, match="GBK"):
            await client.publish("d", "g", "emoji 😀")
        with pytest.raises(InvalidParameterError, match="None"):
            await client.publish("d", "g", None)  # type: ignore[arg-type]
        with pytest.raises(InvalidParameterError, match="dataId"):
            await client.get("bad id", "g")
        with pytest.raises(InvalidParameterError):
            await client.get("d", "bad/group")
        with pytest.raises(InvalidParameterError, match="timeout"):
            await client.get("d", "g", timeout=-1)
        with pytest.raises(InvalidParameterError):
            await client.list(0)
    assert server.request_count() == 0


async def test_checked_keys_are_remembered_without_letting_bad_ones_through(
    server: LocalACMServer, make_client: MakeClient
) -> None:
    server.set_config("d", "DEFAULT_GROUP", "v")
    server.set_config("d", "g", "w")
    async with make_client(server.endpoint, cai_enabled=False) as client:
        for _ in range(2):  # the second round is answered from the memo
            assert await client.get("d", None) == "v"
            assert await client.get("d", "") == "v"
            assert await client.get("d", " g ") == "w"
        assert client.stats().remembered_keys == 3
        # other types, hashable or not: checked (and refused) as ever, never remembered
        for data_id, group in ((b"d", None), ("d", b"g"), (["d"], None), ("d", ["g"])):
            with pytest.raises(InvalidParameterError, match="must be a str"):
                await client.get(data_id, group)  # type: ignore[arg-type]
        with pytest.raises(InvalidParameterError, match="dataId"):
            await client.get("bad id", None)
        assert client.stats().remembered_keys == 3
        await client.add_watcher("d", "other", lambda event: None)  # watchers: not remembered
        assert client.stats().remembered_keys == 3
    assert server.request_count("get") == 6  # every get asks the server: only checks are memoised


def test_key_memo_is_bounded_and_checks_every_call_it_does_not_remember() -> None:
    checked: list[tuple[object, object]] = []

    def check(data_id: object, group: object) -> tuple[str, str]:
        checked.append((data_id, group))
        return validate_data_id(data_id), normalize_group(group)

    memo = KeyMemo("ns", check, lambda item: ("read", item.key), size=3)
    first = memo.item("d", None)
    assert first.key == "d+DEFAULT_GROUP+ns"
    assert first.query == ("read", "d+DEFAULT_GROUP+ns")
    assert memo.item("d", None) is first  # remembered: not checked again
    memo.item("d", "")
    memo.item("d", " g ")
    assert len(memo) == 3
    assert len(checked) == 3
    memo.item("w", "g", remember=False)
    assert len(memo) == 3
    memo.item("e", "g")  # a fourth pair: the memo starts over
    assert len(memo) == 1
    memo.item("d", None)
    assert len(checked) == 6
    for data_id, group in ((b"d", None), ("d", b"g"), (["d"], None)):
        with pytest.raises(InvalidParameterError, match="must be a str"):
            memo.item(data_id, group)
    assert len(memo) == 2


# -- the lookup chain -------------------------------------------------------------------------


async def test_failover_file_wins_without_asking_the_server(
    server: LocalACMServer, make_client: MakeClient, tmp_path: Path
) -> None:
    server.set_config("d", "g", "server value")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "d+g+").write_text("failover value", encoding="utf-8")
    async with make_client(server.endpoint, cai_enabled=False) as client:
        assert await client.get("d", "g") == "failover value"
    assert server.request_count("get") == 0


async def test_failover_file_added_later_is_used_within_the_recheck(
    server: LocalACMServer, make_client: MakeClient, tmp_path: Path
) -> None:
    from aioacm.stores import FAILOVER_RECHECK

    server.set_config("d", "g", "server value")
    async with make_client(server.endpoint, cai_enabled=False) as client:
        assert await client.get("d", "g") == "server value"
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / "d+g+").write_text("failover value", encoding="utf-8")
        await asyncio.sleep(FAILOVER_RECHECK + 0.1)
        assert await client.get("d", "g") == "failover value"
        (tmp_path / "data" / "d+g+").unlink()  # a listed file is read every time
        assert await client.get("d", "g") == "server value"
    assert server.request_count("get") == 2


async def test_server_answer_is_saved_as_snapshot(
    server: LocalACMServer, make_client: MakeClient, tmp_path: Path
) -> None:
    server.set_config("d", "g", "v1\r\n中", tenant="ns")
    async with make_client(server.endpoint, namespace="ns") as client:
        assert await client.get("d", "g") == "v1\r\n中"
    assert (tmp_path / "snapshot" / "d+g+ns").read_bytes() == "v1\r\n中".encode()


async def test_not_found_deletes_the_snapshot(
    server: LocalACMServer, make_client: MakeClient, tmp_path: Path
) -> None:
    server.set_config("d", "g", "v")
    async with make_client(server.endpoint) as client:
        assert await client.get("d", "g") == "v"
        assert (tmp_path / "snapshot" / "d+g+").exists()
        server.delete_config("d", "g")
        assert await client.get("d", "g") is None
        assert not (tmp_path / "snapshot" / "d+g+").exists()


@pytest.mark.parametrize("fault", [{"status": 503}, {"status": 500}, {"drop": True}])
async def test_snapshot_served_when_every_server_fails(
    server: LocalACMServer, make_client: MakeClient, fault: dict[str, Any]
) -> None:
    server.set_config("d", "g", "good")
    async with make_client(server.endpoint) as client:
        assert await client.get("d", "g") == "good"
        server.set_config("d", "g", "newer, but unreachable")
        server.add_fault("get", **fault)
        assert await client.get("d", "g") == "good"


async def test_no_snapshot_and_server_down_raises(
    server: LocalACMServer, make_client: MakeClient
) -> None:
    async with make_client(server.endpoint) as client:
        server.add_fault("get", status=503)
        with pytest.raises(ServerUnavailableError) as info:
            await client.get("d", "g")
    assert info.value.key == "d+g+"
    assert info.value.status == 503
    assert info.value.server == server.endpoint
    assert isinstance(info.value, ACMRequestException)


async def test_no_snapshot_flag_writes_nothing_and_never_falls_back(
    server: LocalACMServer, make_client: MakeClient, tmp_path: Path
) -> None:
    server.set_config("d", "g", "v")
    async with make_client(server.endpoint) as client:
        assert await client.get("d", "g", no_snapshot=True) == "v"
        assert not (tmp_path / "snapshot" / "d+g+").exists()
        assert await client.get("d", "g") == "v"  # writes the snapshot
        server.add_fault("get", status=503)
        with pytest.raises(ServerUnavailableError):
            await client.get("d", "g", no_snapshot=True)
        client.set_options(no_snapshot=True)
        with pytest.raises(ServerUnavailableError):
            await client.get("d", "g")
        assert await client.get("d", "g", no_snapshot=False) == "v"


async def test_conflict_is_retried_then_falls_back(
    server: LocalACMServer, make_client: MakeClient
) -> None:
    server.set_config("d", "g", "v")
    async with make_client(server.endpoint) as client:
        server.add_fault("get", status=409, times=2)
        assert await client.get("d", "g", no_snapshot=True) == "v"
        assert server.request_count("get") == 3
        server.add_fault("get", status=409)
        with pytest.raises(ServerUnavailableError) as info:
            await client.get("d", "g", no_snapshot=True)
        assert info.value.status == 409
        server.clear_faults()
        assert await client.get("d", "g") == "v"  # writes the snapshot
        server.add_fault("get", status=409)
        assert await client.get("d", "g") == "v"  # served from it


async def test_forbidden_raises_at_once(make_client: MakeClient) -> None:
    async with LocalACMServer(credentials={"ak": "right"}) as server:
        server.set_config("d", "g", "v", tenant="ns")
        async with make_client(server.endpoint, namespace="ns", ak="ak", sk="wrong") as bad:
            with pytest.raises(AccessDeniedError) as info:
                await bad.get("d", "g")
            assert info.value.status == 403
            assert "wrong" not in str(info.value)
            with pytest.raises(AccessDeniedError):
                await bad.publish("d", "g", "x")
            with pytest.raises(AccessDeniedError):
                await bad.list_all()
        async with make_client(server.endpoint, namespace="ns", ak="ak", sk="right") as good:
            assert await good.get("d", "g") == "v"
            assert await good.publish("d", "g", "w")
            assert await good.list_all() == [{"dataId": "d", "group": "g"}]
            assert await good.remove("d", "g")


# -- servers ---------------------------------------------------------------------------------


async def test_rotation_reaches_the_healthy_server_and_sticks(make_client: MakeClient) -> None:
    async with LocalACMServer() as a, LocalACMServer() as b, LocalACMServer() as c:
        for srv in (a, b, c):
            srv.set_config("d", "g", f"from {srv.port}")
        a.add_fault("get", status=502)
        b.add_fault("get", drop=True)
        a.address_list = [a.endpoint, b.endpoint, c.endpoint]
        async with make_client(a.endpoint) as client:
            for _ in range(5):
                assert await client.get("d", "g") == f"from {c.port}"
        # each failing server was tried at most once: the client stayed on c afterwards
        assert a.request_count("get") <= 1
        # aiohttp itself retries an idempotent request once on a dropped kept-alive connection
        assert b.request_count("get") <= 2
        assert c.request_count("get") == 5


async def test_a_stopped_server_is_skipped(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with LocalACMServer() as a, LocalACMServer() as b:
        a.set_config("d", "g", "a")
        b.set_config("d", "g", "b")
        monkeypatch.setenv("DIAMOND_SERVER_IPS", f"{a.endpoint},{b.endpoint}")
        await a.stop()
        async with make_client("unused.invalid") as client:
            assert await client.get("d", "g") == "b"
        assert a.request_count() == 0


async def test_timeout_moves_to_the_next_server(
    make_client: MakeClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with LocalACMServer() as slow, LocalACMServer() as fast:
        slow.add_fault("get", delay=2.0)
        fast.set_config("d", "g", "fast")
        monkeypatch.setenv("DIAMOND_SERVER_IPS", f"{slow.endpoint},{fast.endpoint}")
        async with make_client("unused.invalid") as client:
            for _ in range(3):
                assert await client.get("d", "g", timeout=0.3) == "fast"


async def test_cai_disabled_uses_the_endpoint_itself(
    server: LocalACMServer, make_client: MakeClient
) -> None:
    server.set_config("d", "g", "v")
    async with make_client(server.endpoint, cai_enabled=False) as client:
        assert await client.get("d", "g") == "v"
    assert server.request_count("address") == 0
    assert aioacm_tasks() == []  # no refresh task without an address server


async def test_address_server_and_unit(server: LocalACMServer, make_client: MakeClient) -> None:
    server.set_config("d", "g", "v")
    server.unit_lists["unit-1"] = [server.endpoint]
    async with make_client(server.endpoint, unit_name="unit-1") as client:
        assert await client.get("d", "g") == "v"
    (address,) = server.requests_for("address")
    assert address.path == "/diamond-server/diamond-unit-unit-1"
    assert address.query_string == "nofix=1"


async def test_address_server_down_then_back(
    server: LocalACMServer, make_client: MakeClient
) -> None:
    server.set_config("d", "g", "v")
    server.add_fault("address", status=500, times=1)
    async with make_client(server.endpoint) as client:
        for _ in range(2):  # the failure, then the same failure remembered for a second
            with pytest.raises(
                ServerUnavailableError,
                match=r"^the address server 127\.0\.0\.1:\d+ answered 500$",
            ) as info:
                await client.get("d", "g")
            assert isinstance(info.value.__cause__, ACMRequestException)
            assert info.value.__cause__.status == 500
        await asyncio.sleep(1.05)  # failures are remembered for a second
        assert await client.get("d", "g") == "v"


async def test_address_server_listing_nothing_says_so(
    server: LocalACMServer, make_client: MakeClient
) -> None:
    server.address_list = []
    async with make_client(server.endpoint) as client:
        with pytest.raises(ServerUnavailableError, match="listed no server") as info:
            await client.get("d", "g")
        assert info.value.__cause__ is None


async def test_address_refresh_switches_servers(make_client: MakeClient) -> None:
    async with LocalACMServer() as a, LocalACMServer() as b:
        a.set_config("d", "g", "a")
        b.set_config("d", "g", "b")
        a.address_list = [a.endpoint]
        async with make_client(a.endpoint, address_refresh_interval=0.1) as client:
            assert await client.get("d", "g") == "a"
            assert "aioacm.servers.refresh" in aioacm_tasks()
            a.address_list = [b.endpoint]  # a leaves the list
            for _ in range(100):
                await asyncio.sleep(0.02)
                if await client.get("d", "g") == "b":
                    break
            assert await client.get("d", "g") == "b"
            a.address_list = []  # an empty list keeps the old one
            await asyncio.sleep(0.3)
            assert await client.get("d", "g") == "b"
        assert aioacm_tasks() == []


# -- lifecycle -------------------------------------------------------------------------------


async def test_nothing_is_started_before_use(server: LocalACMServer, tmp_path: Path) -> None:
    client = ACMClient(server.endpoint, snapshot_base=str(tmp_path / "s"))
    assert client.session is None
    assert not client.stats().open
    assert aioacm_tasks() == []
    assert server.request_count() == 0
    assert not (tmp_path / "s").exists()
    await client.aclose()


async def test_lazy_open_and_idempotent_close(
    server: LocalACMServer, make_client: MakeClient
) -> None:
    server.set_config("d", "g", "v")
    client = make_client(server.endpoint)
    assert await client.get("d", "g") == "v"  # opened lazily
    session = client.session
    assert session is not None
    assert "aioacm.servers.refresh" in aioacm_tasks()
    await client.aclose()
    await client.aclose()
    assert session.closed
    assert client.closed
    assert aioacm_tasks() == []
    with pytest.raises(ClientClosedError):
        await client.get("d", "g")
    with pytest.raises(ClientClosedError):
        await client.publish("d", "g", "v")
    with pytest.raises(ACMException):
        await client.list()


async def test_keep_alive_on_a_given_session(
    server: LocalACMServer, make_client: MakeClient
) -> None:
    server.set_config("d", "g", "v")
    created = 0

    async def on_create(*_: Any) -> None:
        nonlocal created
        created += 1

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_create)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        async with make_client(server.endpoint, cai_enabled=False, session=session) as client:
            for _ in range(20):
                assert await client.get("d", "g") == "v"
            await client.publish("d", "g", "w")
        assert not session.closed  # a given session is the caller's to close
        assert created == 1


async def test_unclosed_client_warns(server: LocalACMServer, tmp_path: Path) -> None:
    server.set_config("d", "g", "v")
    client = ACMClient(server.endpoint, cai_enabled=False, snapshot_base=str(tmp_path))
    await client.get("d", "g")
    session = client.session
    assert session is not None
    with pytest.warns(ResourceWarning, match="unclosed ACMClient"):  # noqa: PT031
        del client  # the last reference: __del__ runs here
        gc.collect()
    await session.close()


async def test_secret_key_is_not_in_repr(server: LocalACMServer, make_client: MakeClient) -> None:
    client = make_client(server.endpoint, ak="AKID", sk="SUPERSECRET")
    assert "SUPERSECRET" not in repr(client)
    assert "AKID" in repr(client)


async def test_a_credentials_provider_signs_requests(make_client: MakeClient) -> None:
    class Rotating:
        """A user-supplied provider: asked once per request."""

        def __init__(self) -> None:
            self.calls = 0

        async def get_credentials(self) -> Credentials:
            self.calls += 1
            return Credentials("ak", "sk")

    provider = Rotating()
    async with LocalACMServer(credentials={"ak": "sk"}) as server:
        server.set_config("d", "g", "v")
        async with make_client(server.endpoint, credentials=provider) as client:
            assert await client.get("d", "g") == "v"
            assert await client.publish("d", "g", "w")
    assert provider.calls == 2
    with pytest.raises(InvalidParameterError):
        ACMClient("h", ak="a", sk="b", credentials=provider)
