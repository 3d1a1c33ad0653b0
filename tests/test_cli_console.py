"""Terminal behaviour: colours and the progress bar only on a terminal, ``NO_COLOR``, prompts."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from helpers import cli

from aioacm.cli import run
from aioacm.cli.console import Console, Progress, wants_color
from aioacm.cli.exits import INTERRUPTED, CLIError
from aioacm.server import LocalACMServer


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("tty", "env", "expected"),
    [
        (True, {}, True),
        (False, {}, False),
        (True, {"NO_COLOR": "1"}, False),
        (True, {"NO_COLOR": ""}, True),  # no-color.org: only a non-empty value counts
        (True, {"TERM": "dumb"}, False),
    ],
)
def test_wants_color(tty: bool, env: dict[str, str], expected: bool) -> None:
    stream = Terminal() if tty else io.StringIO()
    assert wants_color(stream, env) is expected


def test_errors_are_red_only_on_a_terminal() -> None:
    err = Terminal()
    Console(io.StringIO(), err, io.StringIO(), env={}).error("boom")
    assert err.getvalue() == "aioacm: \033[31merror:\033[0m boom\n"
    plain = io.StringIO()
    Console(io.StringIO(), plain, io.StringIO(), env={}).error("boom")
    assert plain.getvalue() == "aioacm: error: boom\n"
    no_color = Terminal()
    Console(io.StringIO(), no_color, io.StringIO(), env={"NO_COLOR": "x"}).error("boom")
    assert "\033" not in no_color.getvalue()


def test_progress_draws_in_place_and_ends_its_line() -> None:
    stream = Terminal()
    progress = Progress(stream, "exporting", 4, enabled=True)
    progress.advance()
    progress.advance(ok=False)
    progress.advance()
    progress.advance()
    progress.close()
    text = stream.getvalue()
    assert text.startswith("\rexporting [")
    assert text.endswith("4/4 (1 failed)\033[K\n")
    assert progress.render(80).count("#") == 40


def test_progress_is_silent_when_disabled() -> None:
    stream = io.StringIO()
    progress = Progress(stream, "importing", 3, enabled=False)
    for _ in range(3):
        progress.advance()
    progress.close()
    assert stream.getvalue() == ""


@pytest.mark.parametrize(("answers", "expected"), [("y\n", True), ("x\nNO\n", False), ("", False)])
def test_confirm(answers: str, expected: bool) -> None:
    err = io.StringIO()
    console = Console(io.StringIO(), err, io.StringIO(answers), env={})
    assert console.confirm("Delete?") is expected
    assert err.getvalue().startswith("Delete? (y/n) ")


def test_ctrl_c_at_a_prompt_is_an_interruption() -> None:
    class Interrupting(io.StringIO):
        def readline(self, size: int | None = -1) -> str:
            raise KeyboardInterrupt

    console = Console(io.StringIO(), io.StringIO(), Interrupting(), env={})
    with pytest.raises(CLIError) as info:
        console.confirm("Delete?")
    assert info.value.code == INTERRUPTED


async def test_transfers_show_a_progress_bar_only_on_a_terminal(
    server: LocalACMServer, cli_home: Path, tmp_path: Path
) -> None:
    assert (await cli("add", f"{server.endpoint}:ns")).code == 0
    for i in range(5):
        server.set_config(f"d{i}", None, "x", tenant="ns")
    folder = str(tmp_path / "a")
    for argv, label in (
        (["export", "-d", folder], "writing"),
        (["import", "-d", folder], "importing"),
    ):
        err = Terminal()
        assert await run(argv, Console(io.StringIO(), err, io.StringIO())) == 0
        assert f"\r{label} [" in err.getvalue()
        assert "5/5" in err.getvalue()
        piped = await cli(*argv)
        assert "\r" not in piped.err
        assert "\033" not in piped.err + piped.out
