"""The errors as a new user meets them: one readable sentence per failure, the same in the error
and in the warnings; a clear error for a client used from a second event loop; the KMS SDK
imported off the loop; a typo'd option answered with the nearest name; every type of the public
signatures importable."""

from __future__ import annotations

import asyncio
import gc
import importlib
import inspect
import logging
import socket
import ssl
import struct
import threading
import time
import typing
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
import trustme
from helpers import aioacm_tasks

import aioacm
import aioacm.kms
import aioacm.server
from aioacm import (
    AccessDeniedError,
    ACMClient,
    ACMException,
    InvalidOptionError,
    NacosClient,
    ServerUnavailableError,
    WrongEventLoopError,
)
from aioacm.server import LocalACMServer
from aioacm.testing import FakeKMS

KEY = "(key=d+g+)"


def refused_port() -> int:
    """A loopback port nobody listens on, nor on the port 1000 above it (Nacos's gRPC port)."""
    while True:
        with socket.socket() as http, socket.socket() as grpc:
            http.bind(("127.0.0.1", 0))
            port = http.getsockname()[1]
            if port + 1000 > 65535:
                continue
            try:
                grpc.bind(("127.0.0.1", port + 1000))
            except OSError:
                continue
            return port


def aioacm_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("aioacm") and r.levelno >= logging.WARNING
    ]


def assert_readable(text: str) -> None:
    """No URL, no repr of aiohttp's or the OS's objects, no sentence said twice."""
    for noise in ("http://", "https://", "Error(", "ConnectionKey", "errno", "Errno", "switching"):
        assert noise not in text, text


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Any]:
    return {
        "snapshot_base": str(tmp_path / "snapshot"),
        "failover_base": str(tmp_path / "data"),
        "no_snapshot": True,
    }


@pytest.fixture
def caught(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="aioacm")
    return caplog


# -- 1. one sentence per failure, the same in the error and the warnings ----------------------


async def test_refused_says_so_once(
    folders: dict[str, Any], caught: pytest.LogCaptureFixture
) -> None:
    port = refused_port()
    async with ACMClient(f"127.0.0.1:{port}", cai_enabled=False, **folders) as client:
        with pytest.raises(ServerUnavailableError) as info:
            await client.get("d", "g")
    assert str(info.value) == f"cannot reach 127.0.0.1:{port}: connection refused {KEY}"
    assert info.value.server == f"127.0.0.1:{port}"
    assert info.value.key == "d+g+"
    assert info.value.status is None
    assert isinstance(info.value.__cause__, OSError)  # aiohttp's error, chained
    # one server: nothing claims to switch to it again
    assert not [m for m in caught.messages if "switch" in m or "next" in m]


async def test_the_address_server_is_named_as_such(
    folders: dict[str, Any], caught: pytest.LogCaptureFixture
) -> None:
    port = refused_port()
    async with ACMClient(f"127.0.0.1:{port}", namespace="ns", **folders) as client:
        with pytest.raises(ServerUnavailableError) as info:
            await client.get("d", "g")
    sentence = f"cannot reach the address server 127.0.0.1:{port}: connection refused"
    assert str(info.value) == sentence
    assert aioacm_warnings(caught) == []  # said once, by the error


async def test_a_failed_refresh_of_the_server_list_warns_with_the_same_sentence(
    server: LocalACMServer, folders: dict[str, Any], caught: pytest.LogCaptureFixture
) -> None:
    server.set_config("d", "g", "v")
    async with ACMClient(server.endpoint, address_refresh_interval=0.05, **folders) as client:
        assert await client.get("d", "g") == "v"
        server.add_fault("address", status=500)
        for _ in range(100):
            if aioacm_warnings(caught):
                break
            await asyncio.sleep(0.01)
        assert await client.get("d", "g") == "v"  # the list it had is kept
    assert aioacm_warnings(caught)[0] == (
        f"the address server {server.endpoint} answered 500; keeping the server list"
    )


@pytest.mark.parametrize("protocol", ["http", "grpc", "auto"])
async def test_nacos_refused_over_each_protocol(
    protocol: str, folders: dict[str, Any], caught: pytest.LogCaptureFixture
) -> None:
    port = refused_port()
    http = f"cannot reach 127.0.0.1:{port}: connection refused"
    grpc = f"cannot reach 127.0.0.1:{port} over gRPC (port {port + 1000}): connection refused"
    expected = {
        "http": f"{http} {KEY}",
        "grpc": f"{grpc} {KEY}",
        "auto": f"no Nacos server answers: {grpc}; {http}",
    }[protocol]
    async with NacosClient(f"127.0.0.1:{port}", protocol=protocol, **folders) as client:
        with pytest.raises(ServerUnavailableError) as info:
            await client.get("d", "g", timeout=0.5)
    assert str(info.value) == expected
    if protocol != "http":
        assert grpc in aioacm_warnings(caught)  # the gRPC connection's warning, word for word
    assert_readable(str(info.value))


@pytest.fixture
async def resetting_server() -> AsyncIterator[int]:
    """A port whose server resets every connection (RST) once the request arrives."""

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await reader.read(10)
        writer.transport.abort()

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"delay": 2.0}, "cannot reach {server}: timed out after 0.3 s"),
        ({"status": 503}, "{server} answered 503"),
        ({"drop": True}, "cannot reach {server}: the server closed the connection"),
        ({"truncate": 2}, "cannot reach {server}: the answer was cut short"),
    ],
    ids=["timeout", "503", "disconnected", "cut-short"],
)
async def test_each_failure_reads_as_one_sentence(
    server: LocalACMServer,
    folders: dict[str, Any],
    fault: dict[str, Any],
    reason: str,
) -> None:
    server.set_config("d", "g", "v" * 100)
    server.add_fault("get", **fault)
    async with ACMClient(server.endpoint, cai_enabled=False, **folders) as client:
        with pytest.raises(ServerUnavailableError) as info:
            await client.get("d", "g", timeout=0.3)
    text = str(info.value)
    assert text == reason.format(server=server.endpoint) + f" {KEY}"
    assert_readable(text)
    assert info.value.server == server.endpoint
    assert info.value.status == fault.get("status")


async def test_a_reset_connection(resetting_server: int, folders: dict[str, Any]) -> None:
    endpoint = f"127.0.0.1:{resetting_server}"
    async with ACMClient(endpoint, cai_enabled=False, **folders) as client:
        with pytest.raises(ServerUnavailableError) as info:
            await client.get("d", "g")
    assert str(info.value) == f"cannot reach {endpoint}: connection reset {KEY}"


async def test_an_unknown_host_says_to_check_it(folders: dict[str, Any]) -> None:
    async with ACMClient("no-such-host.invalid:8080", cai_enabled=False, **folders) as client:
        with pytest.raises(ServerUnavailableError) as info:
            await client.get("d", "g", timeout=5)
    assert str(info.value) == (
        f"cannot resolve no-such-host.invalid: unknown host, check the server address {KEY}"
    )
    assert info.value.server == "no-such-host.invalid:8080"  # kept, but not said twice


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_tls_failures_say_what_to_check(
    ca: trustme.CA, server: LocalACMServer, folders: dict[str, Any]
) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    async with LocalACMServer(ssl_context=context) as tls_server:
        endpoint = f"localhost:{tls_server.port}"
        async with ACMClient(endpoint, cai_enabled=False, tls_enabled=True, **folders) as client:
            with pytest.raises(ServerUnavailableError) as untrusted:
                await client.get("d", "g")
    plain = f"localhost:{server.port}"
    async with ACMClient(plain, cai_enabled=False, tls_enabled=True, **folders) as client:
        with pytest.raises(ServerUnavailableError) as not_tls:
            await client.get("d", "g")
    text = str(untrusted.value)
    assert text.startswith(f"cannot reach {endpoint}: TLS certificate verification failed (")
    assert text.endswith(f"; check tls_ca_file {KEY}")
    text = str(not_tls.value)
    assert text.startswith(f"cannot reach {plain}: TLS handshake failed (")
    assert text.endswith(f"); is it a TLS port? check tls_enabled {KEY}")


async def test_several_servers_each_say_why_and_rotation_names_the_next(
    folders: dict[str, Any], caught: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = refused_port(), refused_port()
    monkeypatch.setenv("DIAMOND_SERVER_IPS", f"127.0.0.1:{first},127.0.0.1:{second}")
    async with ACMClient("unused", **folders) as client:
        with pytest.raises(ServerUnavailableError) as info:
            await client.get("d", "g")
    sentences = {f"cannot reach 127.0.0.1:{p}: connection refused" for p in (first, second)}
    head, _, rest = str(info.value).partition(": ")
    assert head == "no server answered (2 tried)"
    assert rest.endswith(f" {KEY}")
    assert set(rest.removesuffix(f" {KEY}").split("; ")) == sentences
    warnings = aioacm_warnings(caught)
    assert len(warnings) == 2
    for warning in warnings:
        sentence, _, going = warning.partition("; trying ")
        assert sentence in sentences
        assert going.endswith(" next")
        assert going.removesuffix(" next") not in sentence


async def test_a_poller_warns_with_the_same_sentence(
    folders: dict[str, Any], caught: pytest.LogCaptureFixture
) -> None:
    port = refused_port()
    sentence = f"cannot reach 127.0.0.1:{port}: connection refused"
    async with ACMClient(f"127.0.0.1:{port}", cai_enabled=False, **folders) as client:
        await client.add_watcher("d", "g", lambda change: None)
        for _ in range(200):
            if aioacm_warnings(caught):
                break
            await asyncio.sleep(0.01)
    assert aioacm_warnings(caught)[0] == f"poller 0: {sentence}"
    assert all(sentence in w and "next" not in w for w in aioacm_warnings(caught))


async def test_access_denied_says_what_to_check(folders: dict[str, Any]) -> None:
    async with LocalACMServer(credentials={"ak": "sk"}) as server:
        endpoint = server.endpoint
        wrong = ACMClient(endpoint, ak="ak", sk="not-the-sk", cai_enabled=False, **folders)
        async with wrong, ACMClient(endpoint, cai_enabled=False, **folders) as anonymous:
            with pytest.raises(AccessDeniedError) as keys:
                await wrong.get("d", "g")
            with pytest.raises(AccessDeniedError) as none:
                await anonymous.get("d", "g")
    assert str(keys.value) == (
        f"access denied by {endpoint} (403): check the AccessKey/SecretKey and that they may"
        f" use this namespace {KEY}"
    )
    assert "not-the-sk" not in str(keys.value)
    assert str(none.value) == (
        f"access denied by {endpoint} (403): the server wants credentials: give ak and sk"
        f" (or ram_role_name) {KEY}"
    )
    assert keys.value.status == 403
    assert keys.value.server == endpoint


async def test_a_refused_nacos_login_says_to_check_the_password(
    folders: dict[str, Any],
) -> None:
    async with LocalACMServer(users={"nacos": "pw"}) as server:
        client = NacosClient(server.endpoint, username="nacos", password="nope", **folders)
        async with client:
            with pytest.raises(AccessDeniedError) as info:
                await client.get("d", "g")
    assert str(info.value) == (
        f"Nacos at {server.endpoint} refused the login of user 'nacos':"
        " check the username and password (status=403)"
    )


# -- 2. a client used from a second event loop ------------------------------------------------


def test_a_second_asyncio_run_gets_a_clear_error(folders: dict[str, Any]) -> None:
    client = ACMClient(f"127.0.0.1:{refused_port()}", cai_enabled=False, **folders)

    async def first() -> None:
        with pytest.raises(ServerUnavailableError):
            await client.get("d", "g")  # opens the client on this loop

    async def second() -> None:
        with pytest.raises(WrongEventLoopError) as info:
            await client.get("d", "g")
        message = str(info.value)
        assert "event loop that is closed now" in message
        assert "a client belongs to the event loop that first used it" in message
        assert "create one client per loop" in message
        assert isinstance(info.value, ACMException)
        assert isinstance(info.value, RuntimeError)
        assert aioacm_tasks() == []  # nothing started on this loop
        await client.aclose()  # lets go of the client (its loop is gone)
        assert client.closed
        assert client.session is None

    asyncio.run(first())
    asyncio.run(second())
    gc.collect()  # an unclosed session would warn here (and warnings are errors)


_T = TypeVar("_T")


async def test_a_loop_in_another_thread_gets_a_clear_error(
    server: LocalACMServer, folders: dict[str, Any]
) -> None:
    server.set_config("d", "g", "v")
    other = asyncio.new_event_loop()

    def run_other() -> None:
        other.run_forever()
        other.run_until_complete(other.shutdown_default_executor())
        other.close()

    thread = threading.Thread(target=run_other, name="other-loop")
    thread.start()

    def on_other(coro: Coroutine[Any, Any, _T]) -> asyncio.Future[_T]:
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, other))

    client = ACMClient(server.endpoint, cai_enabled=False, **folders)
    try:
        assert await on_other(client.get("d", "g")) == "v"
        with pytest.raises(WrongEventLoopError, match="another event loop"):
            await client.get("d", "g")
        with pytest.raises(WrongEventLoopError):
            await client.add_watcher("d", "g", lambda change: None)
        with pytest.raises(WrongEventLoopError):
            await anext(client.watch("d", "g"))
        with pytest.raises(WrongEventLoopError, match="close it there"):
            await client.aclose()  # it is closed on its own loop
        assert not client.closed
        assert aioacm_tasks() == []  # nothing started on this loop
        assert server.request_count("get") == 1  # nothing sent from this loop
    finally:
        await on_other(client.aclose())
        other.call_soon_threadsafe(other.stop)
        await asyncio.to_thread(thread.join)
    assert client.closed


# -- 3. the KMS SDK is imported off the event loop -------------------------------------------


async def test_the_kms_sdk_is_imported_without_stalling_the_loop(
    server: LocalACMServer, folders: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    imports: list[tuple[str, int]] = []

    def slow_import(name: str) -> ModuleType:
        imports.append((name, threading.get_ident()))
        if name == aioacm.kms.SDK_MODULES[0]:
            time.sleep(0.5)  # as a first import of the Tea SDK does (about a second)
        return importlib.import_module(name)

    monkeypatch.setattr(aioacm.kms, "import_module", slow_import)
    server.add_credentials("ak", "sk")
    gaps: list[float] = []
    stop = asyncio.Event()

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = loop.time()
            gaps.append(now - last)
            last = now

    async with FakeKMS(("key-1",)) as kms:
        kms.add_credentials("ak", "sk")
        settings: dict[str, Any] = {
            "kms_enabled": True,
            "region_id": "cn-hangzhou",
            "key_id": "key-1",
            "kms_endpoint": kms.endpoint,
            "kms_protocol": "http",
        }
        client = ACMClient(
            server.endpoint, ak="ak", sk="sk", cai_enabled=False, **settings, **folders
        )
        async with client:
            ticker = asyncio.create_task(tick())
            await asyncio.sleep(0.02)
            # two first uses at once: the SDK is imported once
            await asyncio.gather(
                client.publish("cipher-a", "g", "one"),
                client.publish("cipher-kms-aes-128-b", "g", "two"),
            )
            stop.set()
            await ticker
            assert await client.get("cipher-a", "g") == "one"
    assert [name for name, _ in imports] == list(aioacm.kms.SDK_MODULES)
    assert threading.get_ident() not in {thread for _, thread in imports}
    assert max(gaps) < 0.25, max(gaps)


# -- 4. an unknown option suggests the nearest name ------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: ACMClient("x", pulling_timeot=5),
        lambda: NacosClient("127.0.0.1:8848", pulling_timeot=5),
        lambda: ACMClient("x").set_options(pulling_timeot=5),
    ],
    ids=["ACMClient", "NacosClient", "set_options"],
)
def test_an_unknown_option_suggests_the_nearest_name(make: Callable[[], object]) -> None:
    with pytest.raises(InvalidOptionError) as info:
        make()
    assert str(info.value) == "unknown option 'pulling_timeot'; did you mean 'pulling_timeout'?"


def test_an_option_like_no_other_lists_the_known_ones() -> None:
    with pytest.raises(InvalidOptionError) as info:
        ACMClient("x", zzz=1)
    assert str(info.value).startswith("unknown option 'zzz' (known: address_refresh_interval,")
    assert "did you mean" not in str(info.value)


# -- 5. every type of the public signatures is importable ------------------------------------


def _aioacm_types(annotation: object) -> set[type]:
    found: set[type] = set()
    if isinstance(annotation, type) and annotation.__module__.startswith("aioacm"):
        found.add(annotation)
    for part in (typing.get_origin(annotation), *typing.get_args(annotation)):
        if part is not None:
            found |= _aioacm_types(part)
    return found


def _public_signature_types(cls: type) -> set[type]:
    found: set[type] = set()
    for name, member in inspect.getmembers(cls):
        if name.startswith("_") and name not in ("__init__", "__aenter__"):
            continue
        function = member.fget if isinstance(member, property) else member
        if not callable(function):
            continue
        for annotation in typing.get_type_hints(function).values():
            found |= _aioacm_types(annotation)
    return found


@pytest.mark.parametrize(
    ("cls", "package"),
    [(ACMClient, aioacm), (NacosClient, aioacm), (LocalACMServer, aioacm.server)],
    ids=["ACMClient", "NacosClient", "LocalACMServer"],
)
def test_every_type_in_a_public_signature_is_exported(cls: type, package: ModuleType) -> None:
    """The clients' types come from ``aioacm``; the bundled server's from ``aioacm.server``
    (``import aioacm`` does not load the server, and it has a ``ConfigItem`` of its own)."""
    found = _public_signature_types(cls)
    assert found  # the walk sees something
    for kind in found:
        assert kind.__name__ in package.__all__, kind
        assert getattr(package, kind.__name__) is kind, kind


def test_the_watch_callback_type_is_exported() -> None:
    hints = typing.get_type_hints(ACMClient.add_watcher)
    assert hints["cb"] == aioacm.WatchCallback
    assert "WatchCallback" in aioacm.__all__
