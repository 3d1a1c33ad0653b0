"""The benchmark harness still runs: ``benchmarks/run.py --quick`` produces every section.

Benchmarks are not tests: nothing here looks at a timing, only that each measurement ran and
reported something.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the sync SDK forks pollers")

SECTION_TITLES = [
    "## Machine",
    "## 1. Get throughput and latency",
    "## 2. Watch scale",
    "## 3. Change latency",
    "## 4. Idle cost",
    "## 5. CLI: export then import",
    "## 6. Import time",
]


@pytest.mark.timeout(120)
async def test_quick_benchmark_reports_every_section(tmp_path: Path) -> None:
    output = tmp_path / "results.md"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "benchmarks" / "run.py"),
        "--quick",
        "--output",
        str(output),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 110)
    assert proc.returncode == 0, err.decode(errors="replace")

    text = output.read_text(encoding="utf-8")
    for title in SECTION_TITLES:
        assert title in text
    assert "FAILED" not in err.decode(errors="replace")

    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    for client in ("aioacm", "floor", "sync"):
        [run] = results["get"]["runs"][client]
        assert set(run["levels"]) == {"1", "64", "256"}, run
        assert all(level["errors"] == 0 for level in run["levels"].values())
        # each key's first read, measured apart: one run of 20 keys read once each
        [first] = run["first"]
        assert (first["gets"], first["errors"]) == (20, 0), first
    assert "First reads:" in text
    sizes = results["watch"]
    largest = max(sizes, key=int)
    for size, runs in sizes.items():
        for client in ("aioacm", "sync"):
            [run] = runs[client]
            assert run["scale"]["finished"], run
            if size == largest:
                assert run["change"]["lost"] == 0
                assert run["change"]["changes"] > 0
                assert run["idle"]["cpu_s"] >= 0
    [sync_cli] = results["cli"]["runs"]["sync"]
    assert sync_cli["files"] == results["cli"]["items"]
    [aioacm_cli] = results["cli"]["runs"]["aioacm"]
    assert "error" not in aioacm_cli  # ran, or reported "aioacm CLI not installed"
    assert results["import"]["aioacm"]["importtime_ms"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("protocol", ["acm", "nacos"])
async def test_paired_comparison_reports_a_ratio_per_concurrency(
    tmp_path: Path, protocol: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "benchmarks" / "paired.py"),
        *("--rounds", "2", "--gets", "200", "--keys", "10", "--concurrency", "4", "16"),
        *("--protocol", protocol),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 110)
    assert proc.returncode == 0, err.decode(errors="replace")
    rows = [line.split("|") for line in out.decode().splitlines() if line.startswith("| ")]
    assert [row[1].strip() for row in rows[1:]] == ["4", "16"]  # the header, then a row each
    for row in rows[1:]:
        ratio = float(row[2].split()[0])
        assert ratio > 0
        assert row[4].strip() == "2"
    assert err.decode().count("pair ") == 4


async def test_change_stream_over_nacos_counts_every_change(tmp_path: Path) -> None:
    output = tmp_path / "stream.json"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "benchmarks" / "change_stream.py"),
        *("--quick", "--protocol", "nacos", "--json", str(output)),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 110)
    assert proc.returncode == 0, err.decode(errors="replace")
    (run,) = json.loads(output.read_text(encoding="utf-8"))["50"]
    assert run["delivered"] == run["changes"] > 0
    assert run["lost"] == run["doubled"] == 0
    assert run["requests"] >= run["changes"]  # a get per change, plus the polls
