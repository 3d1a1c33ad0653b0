"""Bad input, with hypothesis: keys, namespaces, endpoints and contents from arbitrary text, and
malformed server answers fed to the parsers and to the client. Every case ends in a typed
aioacm error or a correct result: never another exception, a file outside the stores' folders,
or a hang.

The example counts come from the hypothesis profile (``tests/conftest.py``): modest by default,
``HYPOTHESIS_PROFILE=thorough`` for a long run.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aioacm import (
    ACMClient,
    ACMRequestException,
    InvalidParameterError,
    ServerUnavailableError,
)
from aioacm.dialects.acm import (
    MAX_CONTENT_BYTES,
    build_poll_response,
    build_probe,
    parse_poll_response,
    parse_probe,
)
from aioacm.keys import DEFAULT_GROUP, cache_key
from aioacm.server import LocalACMServer
from aioacm.servers import parse_server_list

# hypothesis reuses function-scoped fixtures across examples: here that is the point (one
# server, one folder, for every example).
reuse = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

_ALPHABET = re.compile(r"[A-Za-z0-9.:_-]+")

key_text = st.one_of(
    st.text(max_size=300),
    st.from_regex(r"[A-Za-z0-9.:_-]{1,260}", fullmatch=True),
    st.text(alphabet=st.sampled_from("ab./+\x00:_-中 \\~"), max_size=12),
    st.sampled_from(
        [
            *("..", ".", "a/b", "../../etc/passwd", "a+b", "a\x00b", "x" * 128, "x" * 129),
            *("x" * 256, "x" * 257, "中文", " g ", "\u3000", "~", "con", "a\nb", "%2e%2e"),
        ]
    ),
)
optional_key_text = st.one_of(st.none(), key_text)


def is_key_part(value: str, limit: int) -> bool:
    return len(value) <= limit and _ALPHABET.fullmatch(value) is not None


def files_under(root: Path) -> set[str]:
    return {
        os.path.relpath(os.path.join(folder, name), root)
        for folder, _dirs, names in os.walk(root)
        for name in names
    }


@pytest.fixture
async def client_factory(
    server: LocalACMServer, tmp_path: Path
) -> AsyncIterator[Callable[..., ACMClient]]:
    """Clients whose stores live under ``tmp_path/stores``; each closed after the test."""
    clients: list[ACMClient] = []

    def make(**kwargs: Any) -> ACMClient:
        client = ACMClient(
            server.endpoint,
            snapshot_base=str(tmp_path / "stores" / "snapshot"),
            failover_base=str(tmp_path / "stores" / "data"),
            pulling_timeout=1,
            **kwargs,
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@reuse
@given(data_id=key_text, group=optional_key_text, namespace=optional_key_text)
@example(data_id="..", group="..", namespace=None)
@example(data_id="a", group="g", namespace="../x")
@example(data_id="a", group="g/../../x", namespace="n")
@example(data_id="x" * 256, group="g" * 128, namespace="n" * 128)
async def test_any_key_on_every_operation(
    server: LocalACMServer,
    client_factory: Callable[..., ACMClient],
    tmp_path: Path,
    data_id: str,
    group: str | None,
    namespace: str | None,
) -> None:
    cwd_before = set(os.listdir("."))
    requests_before = server.request_count()
    try:
        client = client_factory(namespace=namespace)
    except InvalidParameterError:
        assert namespace  # only a real namespace can be refused
        assert not (is_key_part(namespace, 128) and ".." not in namespace)
        return
    ns = client.namespace
    expected_group = (group or "").strip() or DEFAULT_GROUP
    valid = is_key_part(data_id, 256) and is_key_part(expected_group, 128)
    try:
        async with client:
            await asyncio.wait_for(exercise(client, data_id, group), 10)
    except InvalidParameterError:
        assert not valid, (data_id, group)
        assert server.request_count() == requests_before  # refused before any I/O
    else:
        assert valid, (data_id, group)
        assert server.get_config(data_id, expected_group, ns) is None  # removed at the end
    # the only files are the stores' own, named by the key; nothing outside them
    key = cache_key(data_id, expected_group, ns)
    assert files_under(tmp_path / "stores") <= {os.path.join("snapshot", key)}
    assert set(os.listdir(tmp_path)) <= {"stores"}
    assert set(os.listdir(".")) == cwd_before


async def exercise(client: ACMClient, data_id: str, group: str | None) -> None:
    assert await client.get(data_id, group) is None
    assert await client.publish(data_id, group, "v=1\n中") is True
    assert await client.get(data_id, group) == "v=1\n中"
    seen: list[str | None] = []
    await client.add_watcher(data_id, group, lambda e: seen.append(e["content"]))
    await client.remove_watcher(data_id, group, print)
    assert data_id in {item["dataId"] for item in await client.list_all()}
    assert await client.remove(data_id, group) is True
    assert await client.get(data_id, group) is None


@reuse
@given(endpoint=st.one_of(st.text(max_size=40), st.sampled_from(["a b", "h:", "h:x", "[::1"])))
async def test_any_endpoint(endpoint: str, tmp_path: Path) -> None:
    try:
        client = ACMClient(endpoint, snapshot_base=str(tmp_path / "s"), default_timeout=0.5)
    except InvalidParameterError:
        return
    async with client:
        with pytest.raises(ServerUnavailableError):  # nothing listens there
            await asyncio.wait_for(client.get("d", "g", no_snapshot=True), 10)


# -- content -------------------------------------------------------------------------------


def storable(content: str) -> bool:
    try:
        return len(content.encode("gbk")) <= MAX_CONTENT_BYTES
    except UnicodeEncodeError:
        return False


@reuse
@given(
    content=st.one_of(
        st.text(),
        st.text(st.characters(codec="gbk")),
        st.text(st.characters(min_codepoint=0x1F000)),  # emoji and beyond: not in GBK
        st.just(""),
        st.sampled_from(["\r\n", "\x00", "a\rb", "%00", "+ &=", "\ud800", "€"]),
    )
)
async def test_any_content(
    server: LocalACMServer,
    client_factory: Callable[..., ACMClient],
    tmp_path: Path,
    content: str,
) -> None:
    client = client_factory()
    try:
        await client.publish("d", "g", content)
    except InvalidParameterError:
        assert not storable(content)
        return
    assert storable(content)
    assert server.get_config("d", "g") == content
    assert await client.get("d", "g") == content
    snapshot = tmp_path / "stores" / "snapshot" / "d+g+"
    assert snapshot.read_bytes().decode("utf-8") == content


@pytest.mark.parametrize(
    ("content", "ok"),
    [
        ("a" * MAX_CONTENT_BYTES, True),
        ("a" * (MAX_CONTENT_BYTES + 1), False),
        ("中" * (MAX_CONTENT_BYTES // 2), True),  # two GBK bytes each: the limit is in bytes
        ("中" * (MAX_CONTENT_BYTES // 2) + "a", False),
        ("a" + "中" * (MAX_CONTENT_BYTES // 2 - 1) + "a", True),
        ("a" + "中" * (MAX_CONTENT_BYTES // 2 - 1) + "aa", False),
    ],
    ids=["ascii-at", "ascii-over", "gbk-at", "gbk-over", "mixed-at", "mixed-over"],
)
async def test_content_at_the_100kb_limit(
    server: LocalACMServer,
    client_factory: Callable[..., ACMClient],
    content: str,
    ok: bool,
) -> None:
    assert storable(content) == ok
    client = client_factory()
    if not ok:
        with pytest.raises(InvalidParameterError, match="at most"):
            await client.publish("d", "g", content)
        assert server.request_count("publish") == 0
        return
    assert await client.publish("d", "g", content)
    assert await client.get("d", "g") == content
    with pytest.raises(InvalidParameterError):
        await client.publish("d", "g", content + "ab")


# -- malformed answers ---------------------------------------------------------------------


@settings(max_examples=300)
@given(body=st.one_of(st.binary(), st.text().map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_parse_poll_response_never_raises(body: bytes) -> None:
    keys = parse_poll_response(body)
    assert all(len(key) == 3 and key[0] and key[1] for key in keys)


@settings(max_examples=300)
@given(
    text=st.one_of(
        st.text(),
        st.lists(
            st.one_of(
                st.text(alphabet="0123456789abcdef.:[]%/@ -", max_size=30), st.text(max_size=30)
            )
        ).map("\n".join),
    ),
    port=st.sampled_from([8080, 443]),
)
def test_parse_server_list_gives_only_hosts_and_ports(text: str, port: int) -> None:
    for host, server_port in parse_server_list(text, port):
        assert 0 < server_port < 65536
        assert host
        assert not set(host) & set("/?#@ \t\r\n[]%\\")
        assert parse_server_list(f"{'[' + host + ']' if ':' in host else host}:1", 9) == [(host, 1)]


@settings(max_examples=300)
@given(probe=st.text())
def test_parse_probe_returns_or_raises_value_error(probe: str) -> None:
    try:
        entries = parse_probe(probe)
    except ValueError:
        return
    assert all(len(entry) == 4 for entry in entries)


@given(
    keys=st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9.:_-]{1,20}", fullmatch=True),
            st.from_regex(r"[A-Za-z0-9.:_-]{1,20}", fullmatch=True),
            st.one_of(st.just(""), st.from_regex(r"[A-Za-z0-9.:_-]{1,20}", fullmatch=True)),
        ),
        max_size=20,
    )
)
def test_poll_answer_and_probe_round_trip(keys: list[tuple[str, str, str]]) -> None:
    assert parse_poll_response(build_poll_response(keys).encode()) == keys
    entries = [(d, g, "0" * 32, t) for d, g, t in keys]
    assert parse_probe(build_probe(entries)) == entries


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-3, 3), st.text(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
page_items = st.lists(
    st.one_of(
        json_values,
        st.fixed_dictionaries(
            {"dataId": json_values, "group": json_values}, optional={"content": json_values}
        ),
        st.fixed_dictionaries({"dataId": st.just("d"), "group": st.just("g")}),
    ),
    max_size=3,
)
pages = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "totalCount": json_values,
            "pageNumber": json_values,
            "pagesAvailable": st.one_of(json_values, st.integers(-2, 10**9)),
            "pageItems": st.one_of(json_values, page_items),
        },
    ),
)


@reuse
@given(
    body=st.one_of(
        pages.map(json.dumps), st.text(max_size=20), st.just('{"pageItems": [{"dataId": 1')
    )
)
@example(body='{"totalCount": null, "pageItems": [null]}')  # was AttributeError
@example(body='{"pageItems": true}')  # was TypeError
@example(body='{"pagesAvailable": "x"}')  # was ValueError
# was an endless walk: a billion pages announced, the same item on each
@example(body='{"pagesAvailable": 1000000000, "pageItems": [{"dataId": "d", "group": "g"}]}')
async def test_list_all_on_malformed_pages(
    server: LocalACMServer, client_factory: Callable[..., ACMClient], body: str
) -> None:
    server.clear_faults()
    server.add_fault("list", status=200, body=body)
    client = client_factory()
    try:
        items = await asyncio.wait_for(client.list_all(), 10)
    except ACMRequestException:
        return
    assert all(
        isinstance(item, dict)
        and set(item) == {"dataId", "group"}
        and all(isinstance(v, str) for v in item.values())
        for item in items
    )
