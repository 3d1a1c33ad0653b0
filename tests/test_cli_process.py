"""The real entry points as a new user runs them: ``python -m aioacm`` (and the sync CLI) in a
subprocess with a fresh HOME, against the bundled server running in the test's loop."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest
from helpers import cli_process

from aioacm.cli.exits import INTERRUPTED, OK, SETTINGS
from aioacm.server import LocalACMServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and the sync CLI")

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


async def test_a_new_user_session(server: LocalACMServer, cli_home: Path) -> None:
    work = Path.cwd()

    async def aioacm(*argv: str, stdin: bytes = b"") -> str:
        result = await cli_process(*argv, home=cli_home, cwd=work, stdin=stdin)
        assert result.code == OK, result
        assert "Traceback" not in result.err
        return result.out

    added = await cli_process(
        "add", f"{server.endpoint}:ns-1", "-n", "dev", home=cli_home, cwd=work
    )
    assert (added.code, added.out) == (OK, ""), added  # messages go to stderr
    assert "Access check passed" in added.err
    await aioacm("push", "G/app.yaml", stdin="a: 中文\n".encode())
    assert await aioacm("pull", "G/app.yaml") == "a: 中文\n"
    assert await aioacm("list") == "G/app.yaml\n"
    await aioacm("export", "-d", "backup")
    assert (work / "backup" / "G" / "app.yaml").read_text(encoding="utf-8") == "a: 中文\n"
    result = await cli_process("pull", "x", "-n", "nope", home=cli_home, cwd=work)
    assert result.code == SETTINGS
    assert result.err.count("\n") == 1
    assert "nope" in result.err
    assert sorted(p.name for p in work.iterdir()) == ["backup"]  # nothing else left behind


async def test_the_sync_cli_uses_a_namespace_we_added_with_a_port(
    server: LocalACMServer, cli_home: Path
) -> None:
    work = Path.cwd()
    added = await cli_process(
        "add", f"{server.endpoint}:ns-1", "-n", "dev", home=cli_home, cwd=work
    )
    assert added.code == OK, added
    server.set_config("app.yaml", "G", "v: 1", tenant="ns-1")
    pulled = await cli_process("pull", "G/app.yaml", home=cli_home, cwd=work, module="acm.command")
    assert pulled.out == "v: 1", pulled
    listed = await cli_process("list", home=cli_home, cwd=work, module="acm.command")
    assert listed.out == "G/app.yaml\n", listed


async def test_help_and_version(cli_home: Path) -> None:
    result = await cli_process("--help", home=cli_home, cwd=cli_home)
    assert result.code == 0
    for command in ("add", "use", "current", "show", "list", "pull", "push", "export",
                    "import", "watch", "server"):  # fmt: skip
        assert re.search(rf"^\s+{command}\s", result.out, flags=re.MULTILINE), command
    assert "exit codes:" in result.out
    version = await cli_process("--version", home=cli_home, cwd=cli_home)
    assert version.out.startswith("aioacm ")


async def _read_line(stream: asyncio.StreamReader) -> str:
    return (await asyncio.wait_for(stream.readline(), 10)).decode()


async def test_watch_streams_changes_until_ctrl_c(server: LocalACMServer, cli_home: Path) -> None:
    work = Path.cwd()
    added = await cli_process("add", f"{server.endpoint}:ns-1", home=cli_home, cwd=work)
    assert added.code == OK
    server.set_config("app.yaml", "G", "v: 1", tenant="ns-1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aioacm", "watch", "G/app.yaml",
        cwd=work,
        env={**os.environ, "HOME": str(cli_home)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        assert "Watching 1 item" in await _read_line(proc.stderr)
        assert "G/app.yaml" in await _read_line(proc.stdout)
        assert await _read_line(proc.stdout) == "v: 1\n"
        server.set_config("app.yaml", "G", "v: 2", tenant="ns-1")
        assert "G/app.yaml" in await _read_line(proc.stdout)
        assert await _read_line(proc.stdout) == "v: 2\n"
        server.delete_config("app.yaml", "G", tenant="ns-1")
        assert (await _read_line(proc.stdout)).rstrip().endswith("G/app.yaml deleted")
        proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == INTERRUPTED
    rest = (await proc.stderr.read()).decode()
    assert "Traceback" not in rest
    assert "error" not in rest


async def test_the_server_command_runs_the_bundled_server(cli_home: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aioacm", "server", "--port", "0",
        env={**os.environ, "HOME": str(cli_home)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        line = await _read_line(proc.stdout)
        assert line.startswith("aioacm server listening on 127.0.0.1:")
        endpoint = line.split()[-1]
        serving = await _read_line(proc.stdout)
        assert re.search(r"ACM .* Nacos .*gRPC on port \d+", serving), serving
        result = await cli_process("add", f"{endpoint}:ns", home=cli_home, cwd=cli_home)
        assert "Access check passed" in result.err, result
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_the_readme_session_runs(server: LocalACMServer, cli_home: Path) -> None:
    block = re.search(r"```console\n(.*?)```", README, flags=re.DOTALL)
    assert block is not None
    bin_dir = str(Path(sys.executable).parent)  # where the `aioacm` script is installed
    env = {"HOME": str(cli_home), "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    expected: list[str] = []
    commands: list[tuple[str, list[str]]] = []
    for line in block.group(1).splitlines():
        if line.startswith("$ "):
            expected = []
            commands.append((line[2:], expected))
        else:
            expected.append(line)
    ran = 0
    for command, output in commands:
        if command.startswith(("aioacm watch", "aioacm server")):
            continue  # they run until interrupted: see the tests above
        command = command.replace("127.0.0.1:8080", server.endpoint)
        proc = await asyncio.create_subprocess_shell(
            command,
            cwd=Path.cwd(),
            env={**os.environ, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, (command, err.decode())
        if output:
            assert out.decode().splitlines() == output, command
        ran += 1
    assert ran >= 6


async def test_a_reader_that_leaves_early_ends_the_command_quietly(
    server: LocalACMServer, cli_home: Path
) -> None:
    for i in range(3000):  # more than a pipe buffer holds
        server.set_config(f"item-{i:04d}-{'x' * 60}", "G", "v", tenant="ns")
    work = Path.cwd()
    assert (await cli_process("add", f"{server.endpoint}:ns", home=cli_home, cwd=work)).code == 0
    script = f"'{sys.executable}' -m aioacm list | head -1; echo rc=${{PIPESTATUS[0]}}"
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", script,
        cwd=work,
        env={**os.environ, "HOME": str(cli_home)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert out.decode().splitlines() == [f"G/item-0000-{'x' * 60}", "rc=141"]
    assert err.decode() == ""
