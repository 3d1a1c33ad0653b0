"""The README stays true: its set-up commands are what CI runs, its snippets and the examples run,
and the public API is what ``__all__`` says."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

import aioacm

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


async def run_python(args: list[str], cwd: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode(errors="replace")
    return out.decode()


def test_readme_starts_with_the_two_setup_commands_and_ci_runs_the_second() -> None:
    first_block = re.search(r"```sh\n(.*?)```", README, flags=re.DOTALL)
    assert first_block is not None
    assert README.index(first_block.group(0)) < README.index("\n## ")
    commands = first_block.group(1).strip().splitlines()
    assert len(commands) == 2
    assert "examples/quickstart.py" in commands[0]
    assert "nox -s tests" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
async def test_readme_snippet_runs(index: int, tmp_path: Path) -> None:
    script = tmp_path / "snippet.py"
    script.write_text(SNIPPETS[index], encoding="utf-8")
    out = await run_python([str(script)], tmp_path)
    # every "# value" comment after a print() in the snippet is what it must print
    expected = re.findall(r"print\(.*\)\s+# (.+)", SNIPPETS[index])
    for value in expected:
        assert value in out


def output_block(snippet: str) -> str | None:
    """The lines of a snippet's closing ``# Output:`` comment block: what it prints, exactly."""
    found = re.search(r"^# Output:\n((?:# .*\n)+)\Z", snippet, flags=re.MULTILINE)
    if found is None:
        return None
    return "".join(line[2:] + "\n" for line in found.group(1).splitlines())


OUTPUT_SNIPPETS = [i for i, snippet in enumerate(SNIPPETS) if output_block(snippet) is not None]


def test_the_watching_snippet_says_its_output() -> None:
    watching = README.split("## Watching", 1)[1]
    assert any(output_block(SNIPPETS[i]) and SNIPPETS[i] in watching for i in OUTPUT_SNIPPETS)


@pytest.mark.parametrize("index", OUTPUT_SNIPPETS)
async def test_readme_snippet_prints_its_output_every_time(index: int, tmp_path: Path) -> None:
    """A snippet with an ``# Output:`` block prints exactly those lines, in that order, on
    every run (three runs: an order left to threads or timing shows up)."""
    script = tmp_path / "snippet.py"
    script.write_text(SNIPPETS[index], encoding="utf-8")
    runs = []
    for n in range(3):
        folder = tmp_path / str(n)
        folder.mkdir()
        runs.append(run_python([str(script)], folder))
    outputs = await asyncio.gather(*runs)
    assert outputs == [output_block(SNIPPETS[index])] * 3


def test_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 3


async def test_quickstart_runs_on_the_embedded_server(tmp_path: Path) -> None:
    out = await run_python([str(ROOT / "examples" / "quickstart.py")], tmp_path)
    assert "read back: greeting=你好, ACM" in out


async def test_nacos_quickstart_runs_on_the_embedded_server(tmp_path: Path) -> None:
    out = await run_python([str(ROOT / "examples" / "nacos_quickstart.py")], tmp_path)
    assert "watched: greeting: 你好, Nacos (yaml)" in out
    assert "read back: greeting: hello again" in out


def test_public_api() -> None:
    # (ruff's RUF022 keeps it sorted)
    assert len(aioacm.__all__) == len(set(aioacm.__all__))
    for name in aioacm.__all__:
        assert hasattr(aioacm, name), name
    assert {"ACMClient", "ACMException", "ACMRequestException", "ConfigChange"} <= set(
        aioacm.__all__
    )
