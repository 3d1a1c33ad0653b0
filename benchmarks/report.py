"""Turning the benchmark's raw results into ``results.md``.

Only the part between the two ``GENERATED`` markers is rewritten; notes written by hand around
it (what was changed and what it bought) are kept.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from _common import spread

BEGIN = "<!-- GENERATED: benchmarks/run.py rewrites everything from here -->"
END = "<!-- GENERATED: end -->"
PACKAGES = ("aioacm", "aiohttp", "aiofiles", "acm-sdk-python", "psutil", "yarl", "multidict")

# Titles of the report's sections (the smoke test checks that each one is there).
TITLES = {
    "get": "1. Get throughput and latency",
    "watch": "2. Watch scale",
    "change": "3. Change latency",
    "idle": "4. Idle cost",
    "cli": "5. CLI: export then import",
    "import": "6. Import time",
}


def machine(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """What the run ran on, and with what."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    try:
        fs = subprocess.run(
            ["df", "--output=fstype", os.path.realpath(os.environ.get("TMPDIR", "/tmp"))],
            capture_output=True,
            text=True,
        ).stdout.split()[-1]
    except (OSError, IndexError):
        fs = "?"
    settings = {
        k: v
        for k, v in vars(args).items()
        if k not in ("output", "json", "keep") and not isinstance(v, Path)
    }
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "platform": platform.platform(),
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory_gb": round(memory, 1),
        "python": sys.version.split()[0],
        "versions": versions,
        "scratch_fs": fs,
        "load_before": os.getloadavg(),
        "command": "python benchmarks/run.py " + " ".join(argv),
        "settings": settings,
    }


# -- one-line summaries for the progress log --------------------------------------------------


def brief_get(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"FAILED {result['error']}"
    return ", ".join(
        f"c={c} {r['rps']:.0f}/s p99 {r['p99_ms']:.1f} ms {r['cpu_per_get_us']:.0f} us/get"
        + (f" ({r['errors']} errors)" if r["errors"] else "")
        for c, r in result["levels"].items()
    )


def brief_watch(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"FAILED {result['error']}"
    scale = result["scale"]
    if not scale["finished"]:
        return f"did not finish in {scale['timeout_s']:.0f} s ({scale['arrived']} callbacks)"
    text = f"ready {scale['ready_s']:.2f} s, +{scale['rss_added_mb']:.1f} MB RSS"
    if "change" in result:
        change = result["change"]
        if change["p99_ms"] is not None:
            text += f", change p99 {change['p99_ms']:.1f} ms"
    if "idle" in result:
        text += f", idle {result['idle']['cpu_s']:.3f} CPU s"
    return text


def brief_cli(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return result["skipped"]
    if "error" in result:
        return f"FAILED {result['error']}"
    return f"export {result['export']['wall_s']:.2f} s, import {result['import']['wall_s']:.2f} s"


# -- formatting -------------------------------------------------------------------------------


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


# -- sections ---------------------------------------------------------------------------------


def get_stats(results: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """client -> level -> figure -> spread."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for client, runs in results["runs"].items():
        good = ok_runs(runs)
        out[client] = {}
        for level, _gets in results["levels"]:
            rows = [r["levels"][str(level)] for r in good]
            out[client][str(level)] = {
                name: spread(row[name] for row in rows)
                for name in ("rps", "p50_ms", "p99_ms", "cpu_per_get_us")
            }
            out[client][str(level)]["errors"] = sum(row["errors"] for row in rows)
    return out


def section_get(results: dict[str, Any]) -> list[str]:
    stats = get_stats(results)
    lines = [f"## {TITLES['get']}", ""]
    lines.append(
        f"{results['keys']} distinct keys read round-robin (each level: a fresh client and an "
        "empty snapshot folder, so first reads, with their snapshot writes, are included); gets "
        "per level: "
        + ", ".join(f"{g} at concurrency {c}" for c, g in results["levels"])
        + ". Latency is what the caller sees (queueing for a connection or a thread included). "
        "CPU is the client process's CPU time over the level, divided by the gets."
    )
    lines.append("")
    rows = []
    for level, _ in results["levels"]:
        for client in ("aioacm", "floor", "sync"):
            s = stats.get(client, {}).get(str(level))
            if not s:
                continue
            name = {"floor": "floor (bare aiohttp)", "sync": "sync SDK, 32 threads"}.get(
                client, client
            )
            err = f" ({s['errors']} errors)" if s["errors"] else ""
            rows.append(
                [
                    str(level),
                    name + err,
                    fmt(s["rps"], 0),
                    fmt(s["p50_ms"], 2),
                    fmt(s["p99_ms"], 2),
                    fmt(s["cpu_per_get_us"], 0),
                ]
            )
    lines += table(["concurrency", "client", "req/s", "p50 ms", "p99 ms", "CPU µs/get"], rows)
    rows = []
    for level, _ in results["levels"]:
        a, f, s = (stats.get(c, {}).get(str(level), {}) for c in ("aioacm", "floor", "sync"))
        rows.append(
            [
                str(level),
                fmt_ratio(ratio(a.get("rps"), f.get("rps"))),
                fmt_ratio(ratio(a.get("cpu_per_get_us"), f.get("cpu_per_get_us"))),
                fmt_ratio(ratio(a.get("rps"), s.get("rps"))),
                fmt_ratio(ratio(a.get("p99_ms"), f.get("p99_ms"))),
            ]
        )
    lines.append("Ratios of medians (goals: req/s ≥ 0.85× the floor at 64 and 256; CPU ≤ 1.5×):")
    lines.append("")
    lines += table(
        [
            "concurrency",
            "aioacm/floor req/s",
            "aioacm/floor CPU",
            "aioacm/sync req/s",
            "aioacm/floor p99",
        ],
        rows,
    )
    for client, runs in results["runs"].items():
        for error in errors(runs):
            lines += [f"- {client} run failed: {error}", ""]
    return lines


def watch_figures(runs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """The finished runs, and a note when some did not finish."""
    good = ok_runs(runs)
    finished = [r for r in good if r["scale"]["finished"]]
    note = None
    unfinished = [r for r in good if not r["scale"]["finished"]]
    if unfinished:
        r = unfinished[0]["scale"]
        note = (
            f"did not finish in {r['timeout_s']:.0f} s ({r['arrived']:,} of {r['keys']:,} "
            f"initial callbacks; {len(unfinished)} of {len(good)} runs)"
        )
    return finished, note


def section_watch(results: dict[str, Any]) -> list[str]:
    lines = [f"## {TITLES['watch']}", ""]
    lines.append(
        "One plain-function watcher added per existing key, one `add_watcher` after the other; "
        "ready = until every initial callback arrived. Memory is added RSS (and PSS, which "
        "shares the pages forked processes have in common fairly) summed over the process "
        "tree, measured after the last callback. Pollers: long polls held (aioacm's poller "
        "tasks, the sync SDK's puller processes); connections: every TCP connection to the "
        "server at that moment, pooled idle ones from the first fetches included (see idle "
        "for the steady state). Default options for both (pulling_config_size 3000)."
    )
    lines.append("")
    rows = []
    for size, by_client in results.items():
        for client in ("aioacm", "sync"):
            runs = by_client.get(client, [])
            finished, note = watch_figures(runs)
            name = "sync SDK" if client == "sync" else client
            if not finished:
                text = note or "; ".join(errors(runs)) or "not run"
                rows.append([f"{int(size):,}", name, text, "", "", "", "", "", ""])
                continue
            scale = [r["scale"] for r in finished]

            def s(name: str, scale: list[dict[str, Any]] = scale) -> dict[str, float] | None:
                return spread(x.get(name) for x in scale)

            rows.append(
                [
                    f"{int(size):,}",
                    name + (f" ({note})" if note else ""),
                    fmt(s("ready_s"), 2),
                    fmt(s("rss_added_mb"), 1),
                    fmt(s("pss_added_mb"), 1),
                    fmt(s("pollers"), 0),
                    fmt(s("connections"), 0),
                    fmt(s("processes"), 0),
                    fmt(s("threads"), 0),
                ]
            )
    lines += table(
        [
            "keys",
            "client",
            "ready s",
            "RSS added MB",
            "PSS added MB",
            "pollers",
            "connections",
            "processes",
            "threads",
        ],
        rows,
    )
    return lines


def section_change(results: dict[str, Any]) -> list[str]:
    largest = max(results, key=int)
    lines = [f"## {TITLES['change']}", ""]
    lines.append(
        f"With {int(largest):,} keys watched: publish a new value of one key (through the same "
        "client), wait for its callback, next; keys spread over every poller. Time from the "
        "publish call to the callback starting. *At rest*: each publish a pause after the "
        "previous callback, so the pollers are back in a held poll (a change in a quiet "
        "system, the usual case); *back to back*: the next publish as soon as the callback "
        "ran, so it races the pollers' re-probes (a burst of changes)."
    )
    lines.append("")
    rows = []
    for client in ("aioacm", "sync"):
        finished, note = watch_figures(results[largest].get(client, []))
        name = "sync SDK" if client == "sync" else client
        for key, label in (("change", "at rest"), ("change_burst", "back to back")):
            changes = [r[key] for r in finished if key in r]
            if not changes:
                rows.append([name, label, note or "not run", "", "", "", ""])
                continue
            if key == "change":
                label += f" ({changes[0]['gap_s'] * 1000:g} ms apart)"
            done = sum(c["changes"] for c in changes)
            lost = sum(c["lost"] for c in changes)
            rows.append(
                [
                    name,
                    label,
                    fmt(spread(c["p50_ms"] for c in changes), 1),
                    fmt(spread(c["p99_ms"] for c in changes), 1),
                    fmt(spread(c["max_ms"] for c in changes), 1),
                    f"{done:,}",
                    str(lost),
                ]
            )
    lines += table(
        ["client", "changes", "p50 ms", "p99 ms", "max ms", "changes timed", "lost"], rows
    )
    return lines


def section_idle(results: dict[str, Any]) -> list[str]:
    largest = max(results, key=int)
    lines = [f"## {TITLES['idle']}", ""]
    rows = []
    seconds = None
    for client in ("aioacm", "sync"):
        finished, note = watch_figures(results[largest].get(client, []))
        idle = [r["idle"] for r in finished if "idle" in r]
        name = "sync SDK" if client == "sync" else client
        if not idle:
            rows.append([name, note or "not run", ""])
            continue
        seconds = idle[0]["seconds"]
        rows.append(
            [
                name,
                fmt(spread(i["cpu_s"] for i in idle), 3),
                fmt(spread(i["connections_after"] for i in idle), 0),
            ]
        )
    lines.append(
        f"CPU seconds (process tree, user + system) used in {seconds or 0:g} s of watching "
        f"{int(largest):,} keys that do not change, right after the change-latency run."
    )
    lines.append("")
    lines += table(["client", "CPU s", "connections at the end"], rows)
    return lines


def section_cli(results: dict[str, Any]) -> list[str]:
    lines = [f"## {TITLES['cli']}", ""]
    lines.append(
        f"`export -d DIR` then `import -d DIR --force` of {results['items']:,} items (two "
        "groups), each CLI in its own `$HOME`. Wall seconds, and CPU seconds of the CLI process."
    )
    lines.append("")
    rows = []
    stats: dict[str, dict[str, Any]] = {}
    for kind in ("aioacm", "sync"):
        runs = results["runs"].get(kind, [])
        name = "aioacm CLI" if kind == "aioacm" else "sync CLI (`acm`)"
        skipped = [r["skipped"] for r in runs if "skipped" in r]
        good = ok_runs(runs)
        if not good:
            rows.append([name, (skipped or errors(runs) or ["not run"])[0], "", "", ""])
            continue

        def s(step: str, what: str, good: list[dict[str, Any]] = good) -> dict[str, float] | None:
            return spread(r[step][what] for r in good)

        stats[kind] = {"export": s("export", "wall_s"), "import": s("import", "wall_s")}
        rows.append(
            [
                name,
                fmt(s("export", "wall_s"), 2),
                fmt(s("import", "wall_s"), 2),
                fmt(s("export", "cpu_s"), 2),
                fmt(s("import", "cpu_s"), 2),
            ]
        )
    lines += table(["CLI", "export s", "import s", "export CPU s", "import CPU s"], rows)
    if "aioacm" in stats and "sync" in stats:
        for step in ("export", "import"):
            r = ratio(stats["aioacm"][step], stats["sync"][step])
            lines.append(f"- {step}: aioacm/sync wall time {fmt_ratio(r)}")
        lines.append("")
    return lines


def section_import(results: dict[str, Any]) -> list[str]:
    lines = [f"## {TITLES['import']}", ""]
    lines.append(
        "`python -X importtime -c 'import M'`: the cumulative time of M; and the wall time of "
        "`python -c 'import M'` less that of `python -c pass`, both over repeated interpreter "
        "starts."
    )
    lines.append("")
    rows = []
    for module, r in results.items():
        extra = [w - b for w, b in zip(r["wall_ms"], r["bare_ms"], strict=False)]
        rows.append([f"`{module}`", fmt(spread(r["importtime_ms"]), 1), fmt(spread(extra), 1)])
    lines += table(["module", "-X importtime ms", "added wall ms"], rows)
    return lines


def section_meta(meta: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    load = " / ".join(f"{x:.2f}" for x in meta["load_before"])
    after = meta.get("load_after")
    lines = [
        "## Machine",
        "",
        f"- {meta['date']}: `{meta['command'].strip()}` ({meta.get('duration_s', 0) / 60:.1f} min)",
        f"- {meta['platform']}; {meta['cpu']}; {meta['memory_gb']} GB;"
        f" scratch folders on {meta['scratch_fs']}",
        f"- Python {meta['python']}; {versions}",
        "- CPUs: "
        + (
            f"server pinned to {meta['pins']['server']}, every client process to"
            f" {meta['pins']['clients']}"
            if meta.get("pins")
            else "not pinned"
        ),
        f"- load average (1/5/15 min) before: {load}"
        + (f"; after: {' / '.join(f'{x:.2f}' for x in after)}" if after else ""),
        "- figures: median (min–max) over the repeats: "
        f"{meta['settings']['repeats']} for gets and the CLI, "
        f"{meta['settings']['watch_repeats']} for watching",
        "",
    ]
    return lines


def section_goals(results: dict[str, Any]) -> list[str]:
    """The issue's goals against this run's medians."""
    rows = []

    def row(goal: str, value: str, met: bool | None) -> None:
        rows.append([goal, value, "–" if met is None else "met" if met else "**not met**"])

    if "get" in results:
        stats = get_stats(results["get"])
        for level in ("64", "256"):
            a, f = stats.get("aioacm", {}).get(level), stats.get("floor", {}).get(level)
            if not a or not f:
                continue
            r = ratio(a["rps"], f["rps"])
            row(f"req/s ≥ 0.85× the floor at {level}", fmt_ratio(r), r is not None and r >= 0.85)
            r = ratio(a["cpu_per_get_us"], f["cpu_per_get_us"])
            row(
                f"CPU per get ≤ 1.5× the floor at {level}", fmt_ratio(r), r is not None and r <= 1.5
            )
    if "watch" in results:
        largest = max(results["watch"], key=int)
        finished, _ = watch_figures(results["watch"][largest].get("aioacm", []))
        if finished:
            keys = int(largest)
            rss = spread(r["scale"]["rss_added_mb"] for r in finished)
            pollers = spread(r["scale"].get("pollers") for r in finished)
            limit = math.ceil(keys / 3000)
            row(f"{keys:,} keys in ≤ 25 MB added", f"{fmt(rss, 1)} MB", rss and rss["max"] <= 25)
            row(
                f"≤ {limit} poll connections for {keys:,} keys",
                fmt(pollers, 0),
                pollers and pollers["max"] <= limit,
            )
            change = spread(r["change"]["p99_ms"] for r in finished if "change" in r)
            if change:
                row("change p99 < 50 ms (at rest)", f"{fmt(change, 1)} ms", change["median"] < 50)
            idle = [r["idle"] for r in finished if "idle" in r]
            if idle:
                cpu = spread(i["cpu_s"] for i in idle)
                seconds = idle[0]["seconds"]
                row(
                    f"idle CPU near zero ({seconds:g} s)",
                    f"{fmt(cpu, 3)} s ({cpu['median'] / seconds * 100:.2f}% of a core)"
                    if cpu
                    else "–",
                    None,
                )
    if not rows:
        return []
    lines = ["## Goals (issue 6), from this run's medians", ""]
    return lines + table(["goal", "measured", ""], rows)


def render(results: dict[str, Any]) -> str:
    lines = [BEGIN, ""]
    lines += section_meta(results["meta"])
    lines += section_goals(results)
    renderers: list[tuple[str, Callable[[Any], list[str]]]] = [
        ("get", section_get),
        ("watch", section_watch),
        ("watch", section_change),
        ("watch", section_idle),
        ("cli", section_cli),
        ("import", section_import),
    ]
    for key, render_section in renderers:
        if key in results:
            lines += render_section(results[key])
    lines.append(END)
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], path: Path) -> None:
    """Write the generated part of ``path``, keeping whatever surrounds it."""
    generated = render(results)
    before, after = "# aioacm benchmark results\n\n", ""
    if path.exists():
        text = path.read_text(encoding="utf-8")
        if BEGIN in text and END in text:
            before = text[: text.index(BEGIN)]
            after = text[text.index(END) + len(END) :].lstrip("\n")
            after = "\n" + after if after else ""
    path.write_text(before + generated + after, encoding="utf-8")
