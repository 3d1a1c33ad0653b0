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
