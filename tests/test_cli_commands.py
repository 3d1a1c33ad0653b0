"""The ``aioacm`` commands, run in-process on the test's loop against the bundled server, with
a fresh HOME (the ``cli_home`` fixture)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
from pathlib import Path

import pytest
from helpers import aioacm_tasks, cli

from aioacm.cli import run
from aioacm.cli.console import Console
from aioacm.cli.exits import (
    ACCESS_DENIED,
    FAILURE,
    NOT_FOUND,
    SETTINGS,
    UNAVAILABLE,
    USAGE,
)
from aioacm.server import LocalACMServer
from aioacm.testing import FakeKMS, FakeMetadataServer, Issued

NS = "ns-1"


@pytest.fixture
async def added(server: LocalACMServer, cli_home: Path) -> str:
    """A namespace of the bundled server, added as alias "local" (the one in use)."""
    result = await cli("add", f"{server.endpoint}:{NS}", "-n", "local")
    assert result.code == 0, result
    return "local"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_add_saves_checks_access_and_uses_the_first_namespace(
    server: LocalACMServer, cli_home: Path
) -> None:
    result = await cli("add", f"{server.endpoint}:{NS}", "-a", "ak", "-s", "sk", "-n", "local")
    assert result.code == 0, result
    assert "Access check passed" in result.err
    settings = json.loads((cli_home / ".acm.json").read_text())
    ns = settings["endpoints"][server.endpoint]["namespaces"][NS]
    assert (ns["ak"], ns["sk"], ns["alias"], ns["is_current"]) == ("ak", "sk", "local", True)
    assert server.request_count("list") == 1
    current = await cli("current")
    assert current.code == 0
    assert server.endpoint in current.out
    assert "local" in current.out
    assert "sk" not in current.out.split("SecretKey:")[1].split()[0]  # masked


async def test_add_warns_but_saves_when_the_server_cannot_be_reached(cli_home: Path) -> None:
    result = await cli("add", f"127.0.0.1:{_closed_port()}:{NS}")
    assert result.code == 0
    assert "access check failed" in result.err
    assert (cli_home / ".acm.json").exists()


async def test_add_refuses_a_bad_endpoint_or_namespace(cli_home: Path) -> None:
    for spec in ("http://h:ns", "h:80:bad/ns", "h:99999:ns"):
        result = await cli("add", spec)
        assert result.code == USAGE, (spec, result)
    assert not (cli_home / ".acm.json").exists()


async def test_kms_and_ram_role_work_through_the_cli(
    server: LocalACMServer, cli_home: Path
) -> None:
    async with FakeMetadataServer("role") as metadata, FakeKMS(("key",)) as kms:

        def trust(sts: Issued) -> None:
            server.add_credentials(*sts.as_tuple())
            kms.add_credentials(*sts.as_tuple())

        metadata.on_issue.append(trust)
        result = await cli(
            "add", f"{server.endpoint}:{NS}", "--kms", "-r", "cn-sh", "-k", "key",
            "-role", "role", "--kms-endpoint", kms.endpoint, "--kms-protocol", "http",
            "--ram-metadata-url", metadata.url,
        )  # fmt: skip
        assert result.code == 0, result
        assert "warning" not in result.err  # the access check passed with the role's keys
        settings = json.loads((cli_home / ".acm.json").read_text())
        endpoint = settings["endpoints"][server.endpoint]
        assert endpoint["kms_enabled"] is True
        assert endpoint["kms_endpoint"] == kms.endpoint
        assert endpoint["namespaces"][NS]["ram_role_name"] == "role"

        pushed = await cli("push", "cipher-kms-aes-128-db", stdin="password=s3cret")
        assert pushed.code == 0, pushed
        stored = server.get_config("cipher-kms-aes-128-db", "DEFAULT_GROUP", tenant=NS)
        assert stored is not None
        assert "s3cret" not in stored
        pulled = await cli("pull", "cipher-kms-aes-128-db")
        assert pulled.out.rstrip("\n") == "password=s3cret"
        issued = {sts.access_key for sts in metadata.issued}  # one per command run
        assert {call.access_key for call in kms.calls} <= issued


async def test_use_show_and_namespace_selection(server: LocalACMServer, added: str) -> None:
    other = await cli("add", f"{server.endpoint}:ns-2", "-n", "other")
    assert other.code == 0
    server.set_config("only-in-2", None, "x", tenant="ns-2")
    assert (await cli("list")).out == ""  # still on "local"
    assert (await cli("list", "-n", "other")).out == "DEFAULT_GROUP/only-in-2\n"
    assert (await cli("list", "-n", f"{server.endpoint}:ns-2")).out == "DEFAULT_GROUP/only-in-2\n"
    used = await cli("use", "other")
    assert used.code == 0
    assert "other" in used.err
    assert (await cli("list")).out == "DEFAULT_GROUP/only-in-2\n"
    shown = await cli("show")
    lines = shown.out.splitlines()
    assert lines[0].split() == ["ENDPOINT", "NAMESPACE_ID", "ALIAS", "UPDATED"]
    (star,) = [line for line in lines if line.startswith("*")]
    assert "ns-2" in star
    assert "other" in star
    unknown = await cli("use", "nope")
    assert unknown.code == SETTINGS
    assert "nope" in unknown.err


async def test_push_pull_list(server: LocalACMServer, added: str, tmp_path: Path) -> None:
    pushed = await cli("push", "G1/app.yaml", stdin="a: 中文\n")
    assert pushed.code == 0, pushed
    assert server.get_config("app.yaml", "G1", tenant=NS) == "a: 中文\n"
    source = tmp_path / "file.properties"
    source.write_bytes(b"k=v\r\nx=1")
    assert (await cli("push", "app.properties", "-f", str(source))).code == 0
    assert server.get_config("app.properties", None, tenant=NS) == "k=v\r\nx=1"
    server.set_config("app.json", "G2", "{}", tenant=NS)

    pulled = await cli("pull", "G1/app.yaml")
    assert (pulled.code, pulled.out) == (0, "a: 中文\n")
    pulled = await cli("pull", "app.properties")
    assert pulled.out == "k=v\r\nx=1"  # exactly as stored, no newline added

    listed = await cli("list")
    assert listed.out.splitlines() == [
        "DEFAULT_GROUP/app.properties",
        "G1/app.yaml",
        "G2/app.json",
    ]
    assert (await cli("list", "-g", "G1")).out == "G1/app.yaml\n"
    assert (await cli("list", "-p", "app.p")).out == "DEFAULT_GROUP/app.properties\n"
    assert list(Path.cwd().iterdir()) == []  # no acm-data/ snapshots in the working folder


async def test_pull_of_a_missing_item(server: LocalACMServer, added: str) -> None:
    result = await cli("pull", "G/missing")
    assert result.code == NOT_FOUND
    assert "G/missing does not exist" in result.err
    assert result.out == ""


@pytest.mark.parametrize("key", ["a/b/c", "bad id", "G/", "中文", "g/d" + "x" * 300])
async def test_invalid_data_id(server: LocalACMServer, added: str, key: str) -> None:
    for command in (["pull", key], ["push", key], ["watch", key]):
        result = await cli(*command, stdin="x")
        assert result.code == USAGE, (command, result)
        assert result.err.startswith("aioacm: error: ")
        assert result.err.count("\n") == 1
    assert server.request_count("get") + server.request_count("publish") == 0


async def test_push_needs_input_and_readable_utf8(
    server: LocalACMServer, added: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = await cli("push", "d", "-f", str(tmp_path / "nope"))
    assert missing.code == USAGE
    assert "cannot read" in missing.err
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe")
    result = await cli("push", "d", "-f", str(binary))
    assert result.code == USAGE
    assert "not UTF-8" in result.err
    emoji = await cli("push", "d", stdin="🙂")
    assert emoji.code == USAGE
    assert "GBK" in emoji.err

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out, err = io.StringIO(), io.StringIO()
    code = await run(["push", "d"], Console(out, err, Terminal(), env={}))
    assert code == USAGE
    assert "pipe" in err.getvalue()
    assert server.request_count("publish") == 0


async def test_no_settings_yet(cli_home: Path) -> None:
    for command in (["list"], ["current"], ["show"], ["pull", "x"], ["use", "x"], ["export"]):
        result = await cli(*command)
        assert result.code == SETTINGS, (command, result)
        assert "aioacm add" in result.err
    assert not (cli_home / ".acm.json").exists()  # reading never creates the file


async def test_unreachable_server(cli_home: Path) -> None:
    port = _closed_port()
    await cli("add", f"127.0.0.1:{port}:{NS}")
    for command in (["list"], ["pull", "x"], ["push", "x"], ["export"], ["watch", "x"]):
        result = await cli(*command, stdin="x")
        assert result.code == UNAVAILABLE, (command, result)
        assert f"127.0.0.1:{port}: connection refused" in result.err, result
        assert result.err.count("\n") == 1
        assert "Error(" not in result.err
        assert "Traceback" not in result.err


async def test_access_denied(cli_home: Path) -> None:
    async with LocalACMServer(credentials={"good-ak": "good-sk"}) as server:
        server.set_config("d", None, "x", tenant=NS)
        added = await cli("add", f"{server.endpoint}:{NS}", "-a", "good-ak", "-s", "bad-sk")
        assert added.code == 0
        assert "access check failed" in added.err
        for command in (["list"], ["pull", "d"], ["push", "d"], ["export"], ["watch", "d"]):
            result = await cli(*command, stdin="x")
            assert result.code == ACCESS_DENIED, (command, result)
            assert "access denied" in result.err
            assert "403" in result.err
        fixed = await cli("add", f"{server.endpoint}:{NS}", "-a", "good-ak", "-s", "good-sk")
        assert "Access check passed" in fixed.err
        assert (await cli("pull", "d")).out == "x"


async def test_a_request_the_server_refuses(server: LocalACMServer, added: str) -> None:
    server.add_fault("publish", status=400, times=1)
    result = await cli("push", "d", stdin="x")
    assert result.code == FAILURE
    assert "400" in result.err


async def test_usage_errors(cli_home: Path) -> None:
    assert (await cli()).code == USAGE
    assert (await cli("frobnicate")).code == USAGE
    assert (await cli("list", "--nope")).code == USAGE
    assert (await cli("--debug", "server")).code == USAGE  # only as the first word


async def test_help_lists_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    from aioacm.cli.exits import EXIT_CODES

    assert await run(["--help"]) == 0
    out = capsys.readouterr().out
    for code, meaning in EXIT_CODES:
        assert f"{code:>3}  {meaning}" in out
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for code, _meaning in EXIT_CODES:
        assert f"| {code} |" in readme


async def test_watch_prints_the_value_then_each_change(server: LocalACMServer, added: str) -> None:
    server.set_config("app.yaml", "G", "v: 1", tenant=NS)
    out, err = io.StringIO(), io.StringIO()
    console = Console(out, err, io.StringIO(), env={})
    task = asyncio.ensure_future(run(["watch", "G/app.yaml", "later", "--json"], console))

    async def lines(count: int) -> list[dict[str, object]]:
        for _ in range(500):
            found = out.getvalue().splitlines()
            if len(found) >= count:
                return [json.loads(line) for line in found]
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {count} lines in {out.getvalue()!r} {err.getvalue()!r}")

    first = await lines(1)
    assert first[0]["content"] == "v: 1"
    assert first[0]["group"] == "G"
    server.set_config("app.yaml", "G", "v: 2", tenant=NS)
    server.set_config("later", None, "new", tenant=NS)
    changes = await lines(3)
    assert {(c["dataId"], c["content"]) for c in changes[1:]} == {
        ("app.yaml", "v: 2"),
        ("later", "new"),
    }
    server.delete_config("later", None, tenant=NS)
    deleted = (await lines(4))[3]
    assert (deleted["dataId"], deleted["deleted"], deleted["content"]) == ("later", True, None)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert aioacm_tasks() == []  # the client was closed on the way out
    assert "Watching 2 items" in err.getvalue()


async def test_watch_text_format(server: LocalACMServer, added: str) -> None:
    server.set_config("k", None, "line", tenant=NS)
    out = io.StringIO()
    task = asyncio.ensure_future(run(["watch", "k"], Console(out, io.StringIO(), io.StringIO())))
    for _ in range(500):
        if out.getvalue():
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    header, content = out.getvalue().splitlines()
    assert header.endswith("DEFAULT_GROUP/k (md5 6438c669e0d0de98e6929c2cc0fac474):")
    assert content == "line"


async def test_the_default_namespace(server: LocalACMServer, cli_home: Path) -> None:
    added = await cli("add", f"{server.endpoint}:", "-n", "plain")
    assert added.code == 0, added
    settings = json.loads((cli_home / ".acm.json").read_text())
    assert list(settings["endpoints"][server.endpoint]["namespaces"]) == ["[default]"]
    assert (await cli("push", "d", stdin="v")).code == 0
    assert server.get_config("d", None, tenant="") == "v"  # no tenant on the wire
    assert (await cli("pull", "d", "-n", f"{server.endpoint}:[default]")).out == "v"
    assert (await cli("export")).code == 0
    assert os.listdir() == [f"{server.endpoint}-[default].zip"]  # the sync CLI's name
