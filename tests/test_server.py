"""The bundled ACM server, over real loopback sockets with a plain aiohttp client."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import aiohttp
import pytest

from aioacm.auth import Credentials, sign
from aioacm.dialects.acm import (
    build_probe,
    content_md5,
    encode_form,
    parse_poll_response,
    sign_headers,
)
from aioacm.server import LocalACMServer
from aioacm.server.__main__ import main

PREFIX = "/diamond-server"
FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=GBK"}
GBK_TEXT = "k=v\n中文"


@pytest.fixture
async def server() -> AsyncIterator[LocalACMServer]:
    async with LocalACMServer() as srv:
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # force_close: a fresh connection per request, so aiohttp never silently retries a GET
    # on a reused connection that a fault dropped.
    # A short total timeout: a poll the server wrongly holds fails the test fast.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True),
        timeout=aiohttp.ClientTimeout(total=5),
    ) as session:
        yield session


def now_ms() -> int:
    return int(time.time() * 1000)


def key_params(data_id: str, group: str | None, tenant: str | None) -> list[tuple[str, str]]:
    params = [("dataId", data_id)]
    if group is not None:
        params.append(("group", group))
    if tenant:
        params.append(("tenant", tenant))
    return params


async def get(
    http: aiohttp.ClientSession,
    server: LocalACMServer,
    data_id: str,
    group: str | None = "DEFAULT_GROUP",
    tenant: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes, Mapping[str, str]]:
    async with http.get(
        f"{server.url}{PREFIX}/config.co",
        params=key_params(data_id, group, tenant),
        headers=headers,
    ) as resp:
        return resp.status, await resp.read(), resp.headers


async def post(
    http: aiohttp.ClientSession,
    server: LocalACMServer,
    path_qs: str,
    fields: list[tuple[str, str]],
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    async with http.post(
        f"{server.url}{PREFIX}/{path_qs}",
        data=encode_form(fields),
        headers={**FORM, **(headers or {})},
    ) as resp:
        return resp.status, await resp.read()


async def publish(
    http: aiohttp.ClientSession,
    server: LocalACMServer,
    data_id: str,
    group: str | None,
    content: str,
    tenant: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    fields = [*key_params(data_id, group, tenant), ("content", content)]
    return await post(http, server, "basestone.do?method=syncUpdateAll", fields, headers)


async def remove(
    http: aiohttp.ClientSession,
    server: LocalACMServer,
    data_id: str,
    group: str | None,
    tenant: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    fields = key_params(data_id, group, tenant)
    return await post(http, server, "datum.do?method=deleteAllDatums", fields, headers)


async def list_page(
    http: aiohttp.ClientSession,
    server: LocalACMServer,
    page_no: int | str,
    page_size: int | str,
    tenant: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    params = [("method", "getAllConfigByTenant"), ("pageNo", page_no), ("pageSize", page_size)]
    if tenant:
        params.append(("tenant", tenant))
    async with http.get(
        f"{server.url}{PREFIX}/basestone.do", params=params, headers=headers
    ) as resp:
        return resp.status, await resp.read()


async def poll(
    http: aiohttp.ClientSession,
    server: LocalACMServer,
    probe: str,
    timeout_ms: int | None = 30_000,
    no_hang_up: bool = False,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, bytes]:
    all_headers = dict(headers or {})
    if timeout_ms is not None:
        all_headers["longPullingTimeout"] = str(timeout_ms)
    if no_hang_up:
        all_headers["longPullingNoHangUp"] = "true"
    return await post(http, server, "config.co", [("Probe-Modify-Request", probe)], all_headers)


# -- get / publish / remove --------------------------------------------------------------


async def test_publish_get_remove_round_trip_with_gbk_content(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    assert await publish(http, server, "app.conf", "G1", GBK_TEXT) == (200, b"true")
    assert server.get_config("app.conf", "G1") == GBK_TEXT

    status, body, headers = await get(http, server, "app.conf", "G1")
    assert (status, body) == (200, GBK_TEXT.encode("gbk"))
    assert headers["Content-Type"] == "text/plain;charset=GBK"
    assert headers["Content-MD5"] == hashlib.md5(GBK_TEXT.encode("gbk")).hexdigest()
    assert "Encrypted-Data-Key" not in headers

    assert await remove(http, server, "app.conf", "G1") == (200, b"true")
    assert server.get_config("app.conf", "G1") is None
    assert (await get(http, server, "app.conf", "G1"))[0] == 404
    # Removing what is not there succeeds too.
    assert await remove(http, server, "app.conf", "G1") == (200, b"true")


async def test_publish_body_is_decoded_from_percent_encoded_gbk(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    body = b"dataId=d&group=G&content=k%3Dv%0A%D6%D0%CE%C4"
    async with http.post(
        f"{server.url}{PREFIX}/basestone.do?method=syncUpdateAll", data=body, headers=FORM
    ) as resp:
        assert resp.status == 200
    assert server.get_config("d", "G") == GBK_TEXT


async def test_publish_honours_a_utf8_charset(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    body = b"dataId=d&group=G&content=k%3Dv%0A%E4%B8%AD%E6%96%87"
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}
    async with http.post(
        f"{server.url}{PREFIX}/basestone.do?method=syncUpdateAll", data=body, headers=headers
    ) as resp:
        assert resp.status == 200
    assert server.get_config("d", "G") == GBK_TEXT
    assert server.requests[-1].form()["content"] == GBK_TEXT


async def test_publish_refuses_what_acm_cannot_store(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    # No content field at all.
    status, _ = await post(
        http, server, "basestone.do?method=syncUpdateAll", [("dataId", "d"), ("group", "G")]
    )
    assert status == 400
    # An emoji (sent as UTF-8): GBK has no such character.
    body = b"dataId=d&group=G&content=%F0%9F%98%80"
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"}
    async with http.post(
        f"{server.url}{PREFIX}/basestone.do?method=syncUpdateAll", data=body, headers=headers
    ) as resp:
        assert resp.status == 400
    assert server.items() == []


async def test_encrypted_data_key_is_stored_and_served(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    fields = [
        ("dataId", "cipher-kms-aes-128-x"),
        ("group", "G"),
        ("content", "c2VjcmV0"),
        ("encryptedDataKey", "blob=="),
    ]
    assert (await post(http, server, "basestone.do?method=syncUpdateAll", fields))[0] == 200
    item = server.get_item("cipher-kms-aes-128-x", "G")
    assert item is not None
    assert item.encrypted_data_key == "blob=="
    _, body, headers = await get(http, server, "cipher-kms-aes-128-x", "G")
    assert (body, headers["Encrypted-Data-Key"]) == (b"c2VjcmV0", "blob==")


async def test_tenants_are_isolated(server: LocalACMServer, http: aiohttp.ClientSession) -> None:
    assert (await publish(http, server, "d", "G", "default"))[0] == 200
    assert (await publish(http, server, "d", "G", "in ns1", tenant="ns1"))[0] == 200
    assert (await get(http, server, "d", "G"))[1] == b"default"
    assert (await get(http, server, "d", "G", tenant="ns1"))[1] == b"in ns1"
    assert (await get(http, server, "d", "G", tenant="ns2"))[0] == 404
    assert server.get_config("d", "G", tenant="ns1") == "in ns1"

    assert (await remove(http, server, "d", "G", tenant="ns1"))[0] == 200
    assert server.get_config("d", "G", tenant="ns1") is None
    assert server.get_config("d", "G") == "default"


async def test_empty_group_means_default_group(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    assert (await publish(http, server, "d", "", "v"))[0] == 200
    assert server.get_config("d", "DEFAULT_GROUP") == "v"
    assert (await get(http, server, "d", ""))[1] == b"v"
    assert (await get(http, server, "d", None))[1] == b"v"


@pytest.mark.parametrize(
    "params",
    [
        [("group", "G")],  # no dataId
        [("dataId", ""), ("group", "G")],
        [("dataId", "a/b"), ("group", "G")],
        [("dataId", "d"), ("group", "G"), ("tenant", "../x")],
    ],
)
async def test_get_with_bad_parameters_is_400(
    server: LocalACMServer, http: aiohttp.ClientSession, params: list[tuple[str, str]]
) -> None:
    async with http.get(f"{server.url}{PREFIX}/config.co", params=params) as resp:
        assert resp.status == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", f"{PREFIX}/nope"),
        ("GET", f"{PREFIX}/datum.do?method=deleteAllDatums"),
        ("POST", f"{PREFIX}/basestone.do?method=unknown"),
        ("GET", f"{PREFIX}/diamond-unit-"),
    ],
)
async def test_unknown_paths_are_404(
    server: LocalACMServer, http: aiohttp.ClientSession, method: str, path: str
) -> None:
    async with http.request(method, f"{server.url}{path}") as resp:
        assert resp.status == 404
    assert server.requests[-1].op == "other"


# -- list ----------------------------------------------------------------------------------


async def test_list_pages_through_one_tenant_in_a_stable_order(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    for data_id, group in [("b", "G2"), ("a", "G2"), ("c", "G1"), ("z", "G1"), ("m", "G3")]:
        server.set_config(data_id, group, f"{data_id}@{group}=中文")
    server.set_config("other", "G1", "x", tenant="ns1")

    pages = []
    for page_no in (1, 2, 3, 4):
        status, body = await list_page(http, server, page_no, 2)
        assert status == 200
        # ASCII JSON: valid GBK as declared, and valid UTF-8 for the sync SDK that assumes it.
        body.decode("ascii")
        pages.append(json.loads(body))
    assert [page["pageNumber"] for page in pages] == [1, 2, 3, 4]
    assert {(page["totalCount"], page["pagesAvailable"]) for page in pages} == {(5, 3)}
    keys = [(item["group"], item["dataId"]) for page in pages for item in page["pageItems"]]
    assert keys == [("G1", "c"), ("G1", "z"), ("G2", "a"), ("G2", "b"), ("G3", "m")]
    assert pages[3]["pageItems"] == []
    first = pages[0]["pageItems"][0]
    assert first == {
        "dataId": "c",
        "group": "G1",
        "content": "c@G1=中文",
        "tenant": "",
        "md5": content_md5("c@G1=中文"),
    }

    status, body = await list_page(http, server, 1, 200, tenant="ns1")
    page = json.loads(body)
    assert [(i["dataId"], i["tenant"]) for i in page["pageItems"]] == [("other", "ns1")]
    status, body = await list_page(http, server, 1, 200, tenant="ns-empty")
    assert json.loads(body) == {
        "totalCount": 0,
        "pageNumber": 1,
        "pagesAvailable": 0,
        "pageItems": [],
    }


@pytest.mark.parametrize(
    ("page_no", "page_size"), [("x", 10), (1, "y"), (0, 10), (1, 0), (-1, 10), ("", "-5")]
)
async def test_list_refuses_bad_numbers(
    server: LocalACMServer, http: aiohttp.ClientSession, page_no: str | int, page_size: str | int
) -> None:
    assert (await list_page(http, server, page_no, page_size))[0] == 400


async def test_list_caps_the_page_size(server: LocalACMServer, http: aiohttp.ClientSession) -> None:
    for i in range(501):
        server.set_config(f"d{i:03}", "G", "v")
    status, body = await list_page(http, server, 1, 100_000)
    page = json.loads(body)
    assert (status, len(page["pageItems"]), page["pagesAvailable"]) == (200, 500, 2)


# -- address server ----------------------------------------------------------------------


async def test_address_server_lists_the_server_itself_by_default(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    for path in ("diamond", "diamond-unit-u1?nofix=1"):
        async with http.get(f"{server.url}{PREFIX}/{path}") as resp:
            assert (resp.status, await resp.text()) == (200, server.endpoint)
    assert server.request_count("address") == 2


async def test_address_server_on_every_address_gives_the_address_reached(
    http: aiohttp.ClientSession,
) -> None:
    async with LocalACMServer(host="0.0.0.0") as server:
        assert server.endpoint == f"127.0.0.1:{server.port}"
        async with http.get(f"http://localhost:{server.port}{PREFIX}/diamond") as resp:
            assert await resp.text() == f"localhost:{server.port}"


async def test_address_server_lists_what_it_is_told(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server.address_list = ["127.0.0.1:1234", "10.0.0.1"]
    server.unit_lists["east"] = ["10.1.1.1:8080"]
    async with http.get(f"{server.url}{PREFIX}/diamond") as resp:
        assert (await resp.text()).splitlines() == ["127.0.0.1:1234", "10.0.0.1"]
    async with http.get(f"{server.url}{PREFIX}/diamond-unit-east?nofix=1") as resp:
        assert await resp.text() == "10.1.1.1:8080"
    async with http.get(f"{server.url}{PREFIX}/diamond-unit-west?nofix=1") as resp:
        assert (await resp.text()).splitlines() == ["127.0.0.1:1234", "10.0.0.1"]


# -- long poll -----------------------------------------------------------------------------


def probe_for(*entries: tuple[str, str, str, str]) -> str:
    return build_probe(entries)


async def test_poll_answers_at_once_with_every_key_whose_md5_differs(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server.set_config("a", "G", "1")
    server.set_config("b", "G", "2")
    server.set_config("c", "G", "3", tenant="ns1")
    probe = probe_for(
        ("a", "G", content_md5("1"), ""),  # up to date
        ("b", "G", "", ""),  # the client has no value
        ("c", "G", "stale", "ns1"),  # outdated
        ("missing", "G", "", ""),  # missing on both sides: no change
        ("gone", "G", "old", ""),  # the client has a value the server does not
    )
    started = time.monotonic()
    status, body = await poll(http, server, probe)
    assert time.monotonic() - started < 1
    assert status == 200
    assert parse_poll_response(body) == [("b", "G", ""), ("c", "G", "ns1"), ("gone", "G", "")]
    # The tenant travels only when there is one.
    assert b"%02G%01" in body


async def test_poll_accepts_three_field_records(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server.set_config("a", "G", "1")
    status, body = await poll(http, server, "a\x02G\x02\x01")
    assert (status, parse_poll_response(body)) == (200, [("a", "G", "")])


async def test_poll_with_no_hang_up_answers_at_once_when_nothing_changed(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server.set_config("a", "G", "1")
    started = time.monotonic()
    result = await poll(http, server, probe_for(("a", "G", content_md5("1"), "")), no_hang_up=True)
    assert result == (200, b"")
    assert time.monotonic() - started < 1


async def test_poll_holds_for_the_timeout_minus_half_a_second(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server.set_config("a", "G", "1")
    probe = probe_for(("a", "G", content_md5("1"), ""))
    started = time.monotonic()
    task = asyncio.create_task(poll(http, server, probe, timeout_ms=700))
    await server.wait_for_held_polls(1)
    # Writing the same content again is no change.
    server.set_config("a", "G", "1")
    assert await task == (200, b"")
    assert 0.15 <= time.monotonic() - started < 0.6
    assert server.held_polls == 0


async def test_poll_without_timeout_header_holds_30_seconds(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    task = asyncio.create_task(poll(http, server, probe_for(("a", "G", "", "")), timeout_ms=None))
    await server.wait_for_held_polls(1)
    await asyncio.sleep(0.3)
    assert not task.done()
    server.set_config("a", "G", "new")
    assert await asyncio.wait_for(task, 2) == (200, b"a%02G%01")


async def test_poll_wakes_early_on_publish(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server.set_config("a", "G", "1")
    server.set_config("b", "G", "2", tenant="ns1")
    probe = probe_for(("a", "G", content_md5("1"), ""), ("b", "G", content_md5("2"), "ns1"))
    task = asyncio.create_task(poll(http, server, probe))
    await server.wait_for_held_polls(1)
    started = time.monotonic()
    assert (await publish(http, server, "b", "G", "changed", tenant="ns1"))[0] == 200
    status, body = await asyncio.wait_for(task, 2)
    assert time.monotonic() - started < 1
    assert (status, parse_poll_response(body)) == (200, [("b", "G", "ns1")])


async def test_poll_wakes_early_on_delete(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server.set_config("a", "G", "1")
    task = asyncio.create_task(poll(http, server, probe_for(("a", "G", content_md5("1"), ""))))
    await server.wait_for_held_polls(1)
    assert (await remove(http, server, "a", "G"))[0] == 200
    assert await asyncio.wait_for(task, 2) == (200, b"a%02G%01")

    # The Python API wakes pollers too; a poller waiting for a missing key sees its creation.
    task = asyncio.create_task(poll(http, server, probe_for(("a", "G", "", ""))))
    await server.wait_for_held_polls(1)
    server.set_config("a", "G", "back")
    assert parse_poll_response((await asyncio.wait_for(task, 2))[1]) == [("a", "G", "")]


@pytest.mark.parametrize(
    ("fields", "headers"),
    [
        ([], {}),  # no probe
        ([("Probe-Modify-Request", "")], {}),  # an empty probe
        ([("Probe-Modify-Request", "a\x02G\x01")], {}),  # two fields
        ([("Probe-Modify-Request", "a/b\x02G\x02\x02\x01")], {}),  # bad dataId
        ([("Probe-Modify-Request", "a\x02G\x02\x02\x01")], {"longPullingTimeout": "soon"}),
        (
            [("Probe-Modify-Request", build_probe([(f"k{i}", "G", "", "") for i in range(10001)]))],
            {},
        ),
    ],
)
async def test_bad_polls_are_400(
    server: LocalACMServer,
    http: aiohttp.ClientSession,
    fields: list[tuple[str, str]],
    headers: dict[str, str],
) -> None:
    assert (await post(http, server, "config.co", fields, headers))[0] == 400


async def test_a_probe_of_10000_keys_is_accepted(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server.set_config("k9999", "G", "v")
    probe = build_probe([(f"k{i}", "G", "", "") for i in range(10000)])
    status, body = await poll(http, server, probe)
    assert (status, parse_poll_response(body)) == (200, [("k9999", "G", "")])


# -- signatures ----------------------------------------------------------------------------

CREDENTIALS = Credentials("ak1", "sk1")


@pytest.fixture
async def secure_server() -> AsyncIterator[LocalACMServer]:
    async with LocalACMServer(credentials={"ak1": "sk1", "ak2": "sk2"}) as srv:
        srv.set_config("d", "G", "v")
        srv.set_config("d", "G", "v-ns1", tenant="ns1")
        yield srv


def signed(
    tenant: str | None,
    group: str | None,
    credentials: Credentials = CREDENTIALS,
    timestamp_ms: int | None = None,
) -> dict[str, str]:
    return sign_headers(credentials, tenant, group, timestamp_ms or now_ms())


async def test_signed_requests_pass(
    secure_server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server = secure_server
    assert (await get(http, server, "d", "G", headers=signed(None, "G")))[1] == b"v"
    assert (await get(http, server, "d", "G", "ns1", signed("ns1", "G")))[1] == b"v-ns1"
    assert (await publish(http, server, "e", "G", "x", "ns1", signed("ns1", "G")))[0] == 200
    assert (await remove(http, server, "e", "G", "ns1", signed("ns1", "G")))[0] == 200
    assert (await list_page(http, server, 1, 10, "ns1", signed("ns1", None)))[0] == 200
    # A list without a namespace has nothing to sign (the sync SDK sends no signature).
    assert (await list_page(http, server, 1, 10, None, signed(None, None)))[0] == 200


async def test_sts_keys_need_their_token(
    secure_server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server = secure_server
    server.add_credentials("sts-ak", "sts-sk", "token-1")
    sts = Credentials("sts-ak", "sts-sk", "token-1")
    assert (await get(http, server, "d", "G", headers=signed(None, "G", sts)))[0] == 200
    for refused in (
        Credentials("sts-ak", "sts-sk"),  # no token
        Credentials("sts-ak", "sts-sk", "token-2"),  # another token
        Credentials("sts-ak", "wrong", "token-1"),  # signed with another secret
        Credentials("ak2", "sk2", "token-1"),  # a permanent key does not take a token
    ):
        assert (await get(http, server, "d", "G", headers=signed(None, "G", refused)))[0] == 403
    server.revoke_credentials("sts-ak")
    assert (await get(http, server, "d", "G", headers=signed(None, "G", sts)))[0] == 403


async def test_revoking_every_key_does_not_turn_checking_off(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server.set_config("d", "G", "v")
    assert (await get(http, server, "d", "G"))[0] == 200  # no credentials: no checks
    server.add_credentials("only", "secret")
    server.revoke_credentials("only")
    assert (await get(http, server, "d", "G"))[0] == 403


@pytest.mark.parametrize(
    "make_headers",
    # built when the test runs, not at collection: a suite running for over a minute would
    # otherwise bring "too far ahead" back into the 60 s window
    [
        lambda: {},
        lambda: {"Spas-AccessKey": "ak1", "timeStamp": str(now_ms())},  # no signature
        lambda: signed(None, "G", Credentials("nobody", "sk1")),
        lambda: signed(None, "G", Credentials("ak1", "wrong")),
        lambda: signed(None, "OTHER"),  # signs another group
        lambda: signed("ns1", "G"),  # signs a tenant the request does not carry
        lambda: signed(None, "G", timestamp_ms=now_ms() - 120_000),  # too old
        lambda: signed(None, "G", timestamp_ms=now_ms() + 120_000),  # too far ahead
        lambda: {**signed(None, "G"), "timeStamp": "yesterday"},
    ],
)
async def test_unsigned_or_badly_signed_requests_are_403(
    secure_server: LocalACMServer,
    http: aiohttp.ClientSession,
    make_headers: Callable[[], dict[str, str]],
) -> None:
    server = secure_server
    headers = make_headers()
    assert (await get(http, server, "d", "G", headers=headers))[0] == 403
    assert (await publish(http, server, "d", "G", "hacked", headers=headers))[0] == 403
    assert (await remove(http, server, "d", "G", headers=headers))[0] == 403
    assert server.get_config("d", "G") == "v"


async def test_list_in_a_namespace_needs_a_signature(
    secure_server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server = secure_server
    assert (await list_page(http, server, 1, 10, "ns1", signed(None, None)))[0] == 403
    assert (await list_page(http, server, 1, 10, "ns1", signed("ns2", None)))[0] == 403
    assert (await list_page(http, server, 1, 10, None, {}))[0] == 403


async def test_the_signature_window_is_configurable(http: aiohttp.ClientSession) -> None:
    async with LocalACMServer(credentials={"ak1": "sk1"}, signature_window=300) as server:
        server.set_config("d", "G", "v")
        old = signed(None, "G", timestamp_ms=now_ms() - 120_000)
        assert (await get(http, server, "d", "G", headers=old))[0] == 200
        older = signed(None, "G", timestamp_ms=now_ms() - 400_000)
        assert (await get(http, server, "d", "G", headers=older))[0] == 403


async def test_poll_needs_a_known_access_key_but_no_signature(
    secure_server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server = secure_server
    probe = probe_for(("d", "G", "", ""), ("d", "G", "", "ns1"))
    expected = [("d", "G", ""), ("d", "G", "ns1")]
    unsigned = {"Spas-AccessKey": "ak1", "timeStamp": str(now_ms())}
    status, body = await poll(http, server, probe, headers=unsigned)
    assert (status, parse_poll_response(body)) == (200, expected)
    # A signature over the timestamp, or tenant+timestamp, is fine too.
    ts = now_ms()
    for text in (str(ts), f"ns1+{ts}"):
        headers = {**unsigned, "timeStamp": str(ts), "Spas-Signature": sign("sk1", text)}
        assert (await poll(http, server, probe, headers=headers))[0] == 200

    for bad in (
        {},
        {"Spas-AccessKey": "nobody"},
        {**unsigned, "Spas-Signature": "forged"},
    ):
        assert (await poll(http, server, probe, headers=bad))[0] == 403


# -- faults --------------------------------------------------------------------------------


async def test_status_fault_answers_n_times_then_stops(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server.set_config("d", "G", "v")
    fault = server.add_fault(op="get", status=503, times=2)
    statuses = [(await get(http, server, "d", "G"))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert (fault.hits, fault.remaining, fault.active) == (2, 0, False)
    assert [r.fault is fault for r in server.requests] == [True, True, False]
    assert [r.status for r in server.requests] == [503, 503, 200]
    # Other operations are not affected.
    assert (await publish(http, server, "d", "G", "w"))[0] == 200


async def test_conflict_fault_and_fault_order(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server.set_config("d", "G", "v")
    server.add_fault(op="get", status=409, times=3)
    server.add_fault(op=["get", "list"], status=500, times=1)
    statuses = [(await get(http, server, "d", "G"))[0] for _ in range(5)]
    assert statuses == [409, 409, 409, 500, 200]


async def test_fault_for_every_request_until_cleared(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    fault = server.add_fault(status=500, body="boom")
    status, body, _ = await get(http, server, "d", "G")
    assert (status, body) == (500, b"boom")
    async with http.get(f"{server.url}{PREFIX}/diamond") as resp:
        assert resp.status == 500
    assert fault.hits == 2
    assert fault.remaining is None
    assert server.faults == [fault]
    server.clear_faults()
    assert server.faults == []
    async with http.get(f"{server.url}{PREFIX}/diamond") as resp:
        assert resp.status == 200


async def test_delay_fault_delays_the_real_answer(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server.set_config("d", "G", "v")
    server.add_fault(op="get", delay=0.3, times=1)
    started = time.monotonic()
    assert (await get(http, server, "d", "G"))[:2] == (200, b"v")
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert (await get(http, server, "d", "G"))[0] == 200
    assert time.monotonic() - started < 0.3


async def test_drop_fault_closes_the_connection_without_answer(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server.set_config("d", "G", "v")
    fault = server.add_fault(op="poll", drop=True, times=1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await poll(http, server, probe_for(("d", "G", "", "")))
    assert (server.requests[-1].op, server.requests[-1].status) == ("poll", None)
    assert server.requests[-1].fault is fault
    assert await poll(http, server, probe_for(("d", "G", "", ""))) == (200, b"d%02G%01")

    server.add_fault(op="get", drop=True, delay=0.1)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await get(http, server, "d", "G")


async def test_truncate_fault_cuts_the_body_and_hangs_up(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    server.set_config("d", "G", "0123456789")
    fault = server.add_fault(op="get", truncate=4, times=1)
    async with http.get(f"{server.url}{PREFIX}/config.co?dataId=d&group=G") as resp:
        assert resp.status == 200
        assert resp.content_length == 10
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    assert (fault.hits, server.requests[-1].status) == (1, 200)
    assert (await get(http, server, "d", "G"))[:2] == (200, b"0123456789")

    server.add_fault(op="get", status=503, body="x" * 100, truncate=0, times=1)
    async with http.get(f"{server.url}{PREFIX}/config.co?dataId=d&group=G") as resp:
        assert resp.status == 503
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()


async def test_removing_a_fault(server: LocalACMServer, http: aiohttp.ClientSession) -> None:
    fault = server.add_fault(op="get", status=503)
    assert (await get(http, server, "d", "G"))[0] == 503
    server.remove_fault(fault)
    server.remove_fault(fault)  # harmless
    assert (await get(http, server, "d", "G"))[0] == 404


@pytest.mark.parametrize(
    "kwargs",
    [
        {"op": "fetch", "status": 500},
        {"op": "get"},  # does nothing
        {"status": 500, "drop": True},
        {"status": 42},
        {"status": 500, "times": 0},
        {"delay": -1.0},
        {"truncate": -1},
        {"truncate": 3, "drop": True},
    ],
)
def test_impossible_faults_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        LocalACMServer().add_fault(**kwargs)  # type: ignore[arg-type]


# -- request log ---------------------------------------------------------------------------


async def test_request_log_records_what_was_sent_and_answered(
    server: LocalACMServer, http: aiohttp.ClientSession
) -> None:
    await publish(http, server, "d", "G", GBK_TEXT, headers={"Diamond-Client-AppName": "t"})
    await get(http, server, "d", "G")
    await list_page(http, server, 1, 10)
    await remove(http, server, "d", "G")
    async with http.get(f"{server.url}{PREFIX}/diamond"):
        pass
    assert [r.op for r in server.requests] == ["publish", "get", "list", "remove", "address"]
    record = server.requests[0]
    assert (record.method, record.path, record.query_string) == (
        "POST",
        f"{PREFIX}/basestone.do",
        "method=syncUpdateAll",
    )
    assert record.headers["diamond-client-appname"] == "t"
    assert b"content=k%3Dv%0A%D6%D0%CE%C4" in record.body
    assert record.form()["content"] == GBK_TEXT
    assert record.status == 200
    assert server.requests[1].query["dataId"] == "d"
    assert server.request_count() == 5
    assert server.request_count("get") == 1
    assert server.requests_for("list") == [server.requests[2]]
    server.clear_requests()
    assert server.request_count() == 0


async def test_request_log_limit_keeps_the_latest(http: aiohttp.ClientSession) -> None:
    async with LocalACMServer(request_log_limit=2) as server:
        for data_id in ("a", "b", "c"):
            await get(http, server, data_id, "G")
        assert [r.query["dataId"] for r in server.requests] == ["b", "c"]


# -- lifecycle and persistence -------------------------------------------------------------


async def test_stop_then_start_listens_on_the_same_port(http: aiohttp.ClientSession) -> None:
    server = LocalACMServer()
    await server.start()
    try:
        port = server.port
        assert port > 0
        assert server.endpoint == f"127.0.0.1:{port}"
        server.set_config("d", "G", "v")
        with pytest.raises(RuntimeError):
            await server.start()
        await server.stop()
        await server.stop()  # idempotent
        assert not server.running
        with pytest.raises(aiohttp.ClientConnectionError):
            await get(http, server, "d", "G")
        await server.start()
        assert server.port == port
        assert (await get(http, server, "d", "G"))[1] == b"v"
    finally:
        await server.stop()


async def test_stop_ends_held_polls_and_delays_promptly(http: aiohttp.ClientSession) -> None:
    server = LocalACMServer()
    await server.start()
    polls = [
        asyncio.create_task(poll(http, server, probe_for((f"k{i}", "G", "", "")))) for i in range(3)
    ]
    server.add_fault(op="get", delay=30)
    delayed = asyncio.create_task(get(http, server, "d", "G"))
    await server.wait_for_held_polls(3)
    await server.wait_for_requests(1, op="get")
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started < 1.5
    for task in [*polls, delayed]:
        try:
            result = await asyncio.wait_for(task, 2)
        except aiohttp.ClientError:
            continue
        assert result[:2] in ((200, b""), (404, b"config data not exist"))


async def test_data_file_survives_a_restart(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    data_file = tmp_path / "sub" / "acm.json"
    async with LocalACMServer(data_file=data_file) as first:
        fields = [("dataId", "d"), ("group", "G"), ("content", GBK_TEXT), ("encryptedDataKey", "k")]
        assert (await post(http, first, "basestone.do?method=syncUpdateAll", fields))[0] == 200
        first.set_config("e", "G", "x", tenant="ns1")
        first.set_config("gone", "G", "x")
        first.delete_config("gone", "G")
        await first.flush()
        saved = json.loads(data_file.read_text(encoding="utf-8"))
        assert {(i["tenant"], i["dataId"]) for i in saved["items"]} == {("", "d"), ("ns1", "e")}
    assert not list(data_file.parent.glob("*.tmp"))

    second = LocalACMServer(data_file=data_file)
    second.set_config("e", "G", "preset wins", tenant="ns1")
    async with second:
        assert (await get(http, second, "d", "G"))[1] == GBK_TEXT.encode("gbk")
        item = second.get_item("d", "G")
        assert item is not None
        assert (item.encrypted_data_key, item.md5) == ("k", content_md5(GBK_TEXT))
        assert second.get_config("e", "G", "ns1") == "preset wins"
        # Restarting the same instance keeps everything too.
        await second.stop()
        second.set_config("f", "G", "while stopped")
        await second.start()
        assert second.get_config("f", "G") == "while stopped"
    reloaded = json.loads(data_file.read_text(encoding="utf-8"))
    assert len(reloaded["items"]) == 3


async def test_a_corrupt_data_file_refuses_to_start(tmp_path: Path) -> None:
    data_file = tmp_path / "acm.json"
    data_file.write_text("{not json", encoding="utf-8")
    server = LocalACMServer(data_file=data_file)
    with pytest.raises(ValueError, match="not JSON"):
        await server.start()
    assert not server.running


# -- command line --------------------------------------------------------------------------


async def test_python_m_aioacm_server_serves_until_terminated(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    data_file = tmp_path / "data.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "aioacm.server",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--data",
        str(data_file),
        "--credentials",
        "ak1:sk1",
        "ak2:sk2",
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode()
        match = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        assert match, line
        url = f"http://{match.group(1)}{PREFIX}"
        async with http.get(f"{url}/diamond") as resp:
            assert await resp.text() == match.group(1)
        headers = {**FORM, **signed(None, "G", Credentials("ak2", "sk2"))}
        body = encode_form([("dataId", "d"), ("group", "G"), ("content", "v")])
        async with http.post(
            f"{url}/basestone.do?method=syncUpdateAll", data=body, headers=headers
        ) as resp:
            assert resp.status == 200
        async with http.get(f"{url}/config.co", params={"dataId": "d", "group": "G"}) as resp:
            assert resp.status == 403
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert json.loads(data_file.read_text(encoding="utf-8"))["items"][0]["content"] == "v"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_main_refuses_bad_credentials(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--credentials", "no-colon"]) == 2
    err = capsys.readouterr().err
    assert "ACCESS_KEY:SECRET_KEY" in err
    assert err.count("\n") == 1  # one line: the usage is one --help away
