"""The CLI as a new user meets it: data on stdout and messages on stderr, no half-done work
behind an exit code of 0, settings mistakes with the expected shape, ad hoc targets, and Nacos
targets (``nacos://USER@HOST:PORT/NAMESPACE_ID``) for every command."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import stat
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import CLIResult, cli

from aioacm.cli import run
from aioacm.cli.console import Console
from aioacm.cli.exits import ACCESS_DENIED, FAILURE, SETTINGS, USAGE
from aioacm.cli.main import main
from aioacm.server import LocalACMServer

NS = "ns-1"
PASSWORD = "s3cret-pw-4711"


async def _cli_on_terminal(*argv: str, answers: str) -> CLIResult:
    return await cli(*argv, stdin=answers, terminal=True)


@pytest.fixture
async def added(server: LocalACMServer, cli_home: Path) -> str:
    result = await cli("add", f"{server.endpoint}:{NS}", "-n", "local")
    assert result.code == 0, result
    return "local"


# -- stdout is data, stderr is messages ------------------------------------------------------


async def test_only_data_reaches_stdout(server: LocalACMServer, cli_home: Path) -> None:
    add = await cli("add", f"{server.endpoint}:{NS}", "-n", "local")
    assert (add.code, add.out) == (0, ""), add
    assert "Access check passed" in add.err
    push = await cli("push", "app.properties", stdin="timeout=3")
    assert (push.code, push.out) == (0, ""), push
    assert "Pushed DEFAULT_GROUP/app.properties" in push.err
    pull = await cli("pull", "app.properties")
    assert (pull.code, pull.out, pull.err) == (0, "timeout=3", "")
    listing = await cli("list")
    assert (listing.out, listing.err) == ("DEFAULT_GROUP/app.properties\n", "")
    export = await cli("export", "-d", "out")
    assert (export.code, export.out) == (0, ""), export
    assert "Exported 1 item" in export.err
    imported = await cli("import", "-d", "out")
    assert (imported.code, imported.out) == (0, ""), imported
    assert "Imported 1 item" in imported.err
    await cli("add", f"{server.endpoint}:ns-2", "-n", "other")
    use = await cli("use", "other")
    assert (use.code, use.out) == (0, ""), use
    assert "Now using" in use.err


# -- no silent half-done work ----------------------------------------------------------------


async def test_import_delete_without_a_terminal_or_force_changes_nothing(
    server: LocalACMServer, added: str, tmp_path: Path
) -> None:
    server.set_config("old", None, "stale", tenant=NS)
    source = tmp_path / "src"
    source.mkdir()
    (source / "new").write_text("fresh")
    result = await cli("import", "-d", str(source), "--delete")
    assert result.code == USAGE, result
    assert "--force" in result.err
    assert "nothing was imported or deleted" in result.err
    assert server.get_config("old", None, tenant=NS) == "stale"
    assert server.get_config("new", None, tenant=NS) is None


async def test_a_declined_import_delete_changes_nothing_and_says_so(
    server: LocalACMServer, added: str, tmp_path: Path
) -> None:
    server.set_config("old", None, "stale", tenant=NS)
    source = tmp_path / "src"
    source.mkdir()
    (source / "new").write_text("fresh")
    declined = await _cli_on_terminal("import", "-d", str(source), "--delete", answers="n\n")
    assert declined.code == FAILURE, declined
    assert "cancelled: nothing was imported or deleted" in declined.err
    assert server.get_config("old", None, tenant=NS) == "stale"
    assert server.get_config("new", None, tenant=NS) is None
    accepted = await _cli_on_terminal("import", "-d", str(source), "--delete", answers="y\n")
    assert accepted.code == 0, accepted
    assert server.get_config("old", None, tenant=NS) is None
    assert server.get_config("new", None, tenant=NS) == "fresh"


async def test_a_declined_export_delete_writes_and_deletes_nothing(
    server: LocalACMServer, added: str, tmp_path: Path
) -> None:
    server.set_config("item", None, "v", tenant=NS)
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "extra").write_text("mine")
    result = await _cli_on_terminal("export", "-d", str(folder), "--delete", answers="no\n")
    assert result.code == FAILURE, result
    assert sorted(p.name for p in folder.iterdir()) == ["extra"]


async def test_push_refuses_empty_input(server: LocalACMServer, added: str, tmp_path: Path) -> None:
    piped = await cli("push", "app.properties", stdin="")
    assert piped.code == USAGE, piped
    assert "nothing to push: standard input is empty" in piped.err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    from_file = await cli("push", "app.properties", "-f", str(empty))
    assert from_file.code == USAGE
    assert str(empty) in from_file.err
    assert server.request_count("publish") == 0


@pytest.mark.parametrize(
    ("flag", "where", "why"),
    [
        ("-f", "missing/dir/x.zip", "does not exist"),
        ("-f", ".", "it is a folder"),
        ("-d", "a-file", "exists and is not a folder"),
    ],
)
async def test_export_to_a_bad_local_path_fails_before_any_download(
    server: LocalACMServer, added: str, cli_home: Path, flag: str, where: str, why: str
) -> None:
    server.set_config("item", None, "v", tenant=NS)
    (cli_home.parent / "work" / "a-file").write_text("x")  # the working folder
    before = server.request_count("list")
    result = await cli("export", flag, where)
    assert result.code == USAGE, result
    assert where in result.err, result
    assert why in result.err, result
    assert ".tmp" not in result.err
    assert server.request_count("list") == before


# -- settings --------------------------------------------------------------------------------


async def test_add_host_port_without_a_namespace_is_refused(cli_home: Path) -> None:
    result = await cli("add", "127.0.0.1:8080")
    assert result.code == USAGE, result
    assert "127.0.0.1:8080:NAMESPACE_ID" in result.err
    assert not (cli_home / ".acm.json").exists()


async def test_an_ad_hoc_target_works_and_saves_nothing(
    server: LocalACMServer, added: str, cli_home: Path
) -> None:
    server.set_config("k", None, "elsewhere", tenant="ns-never-added")
    before = (cli_home / ".acm.json").read_bytes()
    result = await cli("pull", "k", "-n", f"{server.endpoint}:ns-never-added")
    assert (result.code, result.out) == (0, "elsewhere"), result
    assert (cli_home / ".acm.json").read_bytes() == before
    use = await cli("use", f"{server.endpoint}:ns-never-added")
    assert use.code == SETTINGS
    assert f"aioacm add {server.endpoint}:ns-never-added" in use.err


async def test_an_unknown_alias_says_how_to_name_a_namespace(added: str) -> None:
    result = await cli("list", "-n", "nope")
    assert result.code == SETTINGS
    assert "aioacm show" in result.err
    assert "ENDPOINT:NAMESPACE_ID" in result.err


async def test_current_and_show_never_print_none(server: LocalACMServer, added: str) -> None:
    for command in ("current", "show"):
        result = await cli(command)
        assert result.code == 0
        assert "None" not in result.out, result


# -- aioacm server ---------------------------------------------------------------------------


def test_server_bad_port_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    for port in ("abc", "70000", "-1"):
        assert main(["server", "--port", port]) == USAGE
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err
        assert err.startswith("aioacm server: error:")
        assert repr(port) in err


def test_server_help_names_the_command_and_its_defaults(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # one help line per option
    assert main(["server", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: aioacm server")
    assert "(default: 8080)" in out
    assert "(default: 127.0.0.1)" in out
    assert "ACM" in out
    assert "Nacos" in out


# -- Nacos targets ---------------------------------------------------------------------------


@pytest.fixture
async def nacos() -> AsyncIterator[LocalACMServer]:
    async with LocalACMServer(users={"nacos": PASSWORD}) as srv:
        yield srv


def _nacos_target(server: LocalACMServer, namespace: str = NS, user: str = "nacos") -> str:
    return f"nacos://{user}@127.0.0.1:{server.port}/{namespace}"


async def test_add_a_nacos_target_with_a_password_from_the_environment(
    nacos: LocalACMServer, cli_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIOACM_NACOS_PASSWORD", PASSWORD)
    result = await cli("add", _nacos_target(nacos), "-n", "nacos")
    assert result.code == 0, result
    assert "Access check passed" in result.err
    path = cli_home / ".acm.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    endpoint = json.loads(path.read_text())["endpoints"][f"nacos://127.0.0.1:{nacos.port}"]
    assert endpoint["namespaces"][NS]["username"] == "nacos"
    for command in ("current", "show"):
        shown = await cli(command)
        assert PASSWORD not in shown.out + shown.err
        assert "None" not in shown.out


async def test_a_nacos_target_needs_a_password_it_never_echoes(
    nacos: LocalACMServer, cli_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIOACM_NACOS_PASSWORD", raising=False)
    nobody = await cli("add", _nacos_target(nacos))
    assert nobody.code == USAGE
    assert "AIOACM_NACOS_PASSWORD" in nobody.err
    assert "--password" in nobody.err
    wrong = await cli("add", _nacos_target(nacos), "--password", "wrong-pw")
    assert wrong.code == 0  # saved, with a warning
    assert "access check failed" in wrong.err
    denied = await cli("pull", "x")
    assert denied.code == ACCESS_DENIED, denied
    assert "password of the Nacos user" in denied.err
    assert "wrong-pw" not in denied.out + denied.err + wrong.out + wrong.err
    fixed = await cli("add", _nacos_target(nacos), "--password", PASSWORD)
    assert fixed.code == 0, fixed
    assert "Access check passed" in fixed.err
    assert stat.S_IMODE((cli_home / ".acm.json").stat().st_mode) == 0o600


async def test_every_command_works_on_a_nacos_target(
    nacos: LocalACMServer, cli_home: Path, tmp_path: Path
) -> None:
    assert (await cli("add", _nacos_target(nacos), "--password", PASSWORD)).code == 0
    assert (await cli("push", "G/app.yaml", stdin="level: 1")).code == 0
    assert nacos.get_config("app.yaml", "G", tenant=NS) == "level: 1"
    pulled = await cli("pull", "G/app.yaml")
    assert pulled.out == "level: 1"
    assert (await cli("list")).out == "G/app.yaml\n"
    folder = tmp_path / "exported"
    assert (await cli("export", "-d", str(folder))).code == 0
    assert (folder / "G" / "app.yaml").read_text() == "level: 1"
    (folder / "G" / "app.yaml").write_text("level: 2")
    assert (await cli("import", "-d", str(folder))).code == 0
    assert nacos.get_config("app.yaml", "G", tenant=NS) == "level: 2"
    zipped = tmp_path / "ns.zip"
    assert (await cli("export", "-f", str(zipped))).code == 0
    with zipfile.ZipFile(zipped) as archive:
        assert archive.read("G/app.yaml") == b"level: 2"

    out, err = io.StringIO(), io.StringIO()
    task = asyncio.ensure_future(
        run(["watch", "G/app.yaml", "--json"], Console(out, err, io.StringIO(), env={}))
    )
    try:
        for _ in range(500):
            if out.getvalue():
                break
            await asyncio.sleep(0.01)
        nacos.set_config("app.yaml", "G", "level: 3", tenant=NS)
        for _ in range(500):
            if len(out.getvalue().splitlines()) >= 2:
                break
            await asyncio.sleep(0.01)
        contents = [json.loads(line)["content"] for line in out.getvalue().splitlines()]
        assert contents == ["level: 2", "level: 3"], err.getvalue()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_an_ad_hoc_nacos_target_takes_its_password_from_the_environment(
    nacos: LocalACMServer, cli_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nacos.set_config("k", None, "v", tenant=NS)
    monkeypatch.delenv("AIOACM_NACOS_PASSWORD", raising=False)
    asked = await cli("pull", "k", "-n", _nacos_target(nacos))
    assert asked.code == USAGE, asked
    assert "AIOACM_NACOS_PASSWORD" in asked.err
    monkeypatch.setenv("AIOACM_NACOS_PASSWORD", PASSWORD)
    result = await cli("pull", "k", "-n", _nacos_target(nacos))
    assert (result.code, result.out) == (0, "v"), result
    assert not (cli_home / ".acm.json").exists()
    public = await cli("list", "-n", f"nacos://nacos@127.0.0.1:{nacos.port}")
    assert public.code == 0, public
    assert os.environ["AIOACM_NACOS_PASSWORD"] not in public.out + public.err


async def test_an_unknown_flag_suggests_the_nearest_one(cli_home: Path) -> None:
    result = await cli("import", "-d", "x", "--forse")
    assert result.code == USAGE
    assert result.err == (
        "aioacm: error: unrecognized arguments: --forse (did you mean --force?);"
        " see 'aioacm import --help'\n"
    )
