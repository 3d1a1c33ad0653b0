"""Formatting helpers shared by the report's modules."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

# Titles of the report's sections (the smoke test checks that each one is there).
TITLES = {
    "get": "1. Get throughput and latency",
    "watch": "2. Watch scale",
    "change": "3. Change latency",
    "idle": "4. Idle cost",
    "cli": "5. CLI: export then import",
    "import": "6. Import time",
}


def fmt(stats: dict[str, float] | None, digits: int = 1) -> str:
    """``median (min–max)``, or ``–`` when there is nothing."""
    if stats is None:
        return "–"
    if stats["n"] == 1 or stats["min"] == stats["max"]:
        return f"{stats['median']:,.{digits}f}"
    return f"{stats['median']:,.{digits}f} ({stats['min']:,.{digits}f}–{stats['max']:,.{digits}f})"


def ratio(a: dict[str, float] | None, b: dict[str, float] | None) -> float | None:
    if a is None or b is None or not b["median"]:
        return None
    return a["median"] / b["median"]


def fmt_ratio(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.2f}×"


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def ok_runs(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in runs if "error" not in r and "skipped" not in r]


def errors(runs: list[dict[str, Any]]) -> list[str]:
    return [r["error"] for r in runs if "error" in r]
