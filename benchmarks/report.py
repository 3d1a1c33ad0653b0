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
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from _common import spread
from _format import TITLES, errors, fmt, fmt_ratio, ok_runs, ratio, table
from report_watch import section_change, section_idle, section_watch, watch_figures

BEGIN = "<!-- GENERATED: benchmarks/run.py rewrites everything from here -->"
END = "<!-- GENERATED: end -->"
PACKAGES = ("aioacm", "aiohttp", "aiofiles", "acm-sdk-python", "psutil", "yarl", "multidict")


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
    runs = [(f"c={c}", r) for c, r in result["levels"].items()]
    runs += [("first", r) for r in result.get("first", [])]
    return ", ".join(
        f"{name} {r['rps']:.0f}/s p99 {r['p99_ms']:.1f} ms {r['cpu_per_get_us']:.0f} us/get"
        + (f" ({r['errors']} errors)" if r["errors"] else "")
        for name, r in runs
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
        return str(result["skipped"])
    if "error" in result:
        return f"FAILED {result['error']}"
    return f"export {result['export']['wall_s']:.2f} s, import {result['import']['wall_s']:.2f} s"


def brief_copy(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return str(result["skipped"])
    if "error" in result:
        return f"FAILED {result['error']}"
    return f"copy {result['copy']['wall_s']:.2f} s, again {result['again']['wall_s']:.2f} s"


# -- sections ---------------------------------------------------------------------------------


def figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """figure -> spread over the rows (one per timed run of gets), and their errors summed."""
    out: dict[str, Any] = {
        name: spread(row[name] for row in rows)
        for name in ("rps", "p50_ms", "p99_ms", "cpu_per_get_us")
    }
    out["errors"] = sum(row["errors"] for row in rows)
    return out


def get_stats(results: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """client -> level -> figure -> spread."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for client, runs in results["runs"].items():
        good = ok_runs(runs)
        out[client] = {
            str(level): figures([r["levels"][str(level)] for r in good])
            for level, _gets in results["levels"]
        }
    return out


def pair_ratios(results: dict[str, Any], level: str, figure: str) -> dict[str, float] | None:
    """aioacm/floor of ``figure`` at ``level``, per pair of runs made side by side in one
    process (the same repeat): median, min, max. A slow patch of the machine or of the
    process weighs on both sides of a pair, so this is steadier than a ratio of medians."""
    runs = results["runs"]
    values = []
    for ours, floor in zip(runs.get("aioacm", []), runs.get("floor", []), strict=False):
        if "error" in ours or "error" in floor:
            continue
        a, f = ours["levels"].get(level), floor["levels"].get(level)
        if a and f and f[figure]:
            values.append(a[figure] / f[figure])
    return spread(values)


def fmt_pair(value: dict[str, float] | None) -> str:
    if value is None:
        return "–"
    if value["n"] == 1:
        return fmt_ratio(value["median"])
    return f"{fmt_ratio(value['median'])} ({value['min']:.2f}–{value['max']:.2f})"


def first_stats(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """client -> figure -> spread, over every first-read run of every worker run."""
    out: dict[str, dict[str, Any]] = {}
    for client, runs in results["runs"].items():
        rows = [row for r in ok_runs(runs) for row in r.get("first", [])]
        if rows:
            out[client] = figures(rows)
    return out


NAMES = {"floor": "floor (bare aiohttp)", "sync": "sync SDK, 32 threads"}


def section_first(results: dict[str, Any]) -> list[str]:
    """Each key's first read, apart from the steady state."""
    stats = first_stats(results)
    spec = results.get("first")
    if not stats or not spec:
        return []
    lines = [
        f"First reads: a fresh client with an empty snapshot folder opens its connections, then "
        f"reads each of {spec['keys']:,} keys once, {spec['concurrency']} at a time "
        f"({spec['repeats']} {'run' if spec['repeats'] == 1 else 'runs'} of it in each get "
        "run). aioacm writes a snapshot for each (temporary file, flushed to disk, renamed "
        "into place) before the get returns; the sync SDK writes one on every get; the floor "
        "writes nothing.",
        "",
    ]
    rows = []
    for client in ("aioacm", "floor", "sync"):
        s = stats.get(client)
        if not s:
            continue
        err = f" ({s['errors']} errors)" if s["errors"] else ""
        rows.append(
            [
                NAMES.get(client, client) + err,
                fmt(s["rps"], 0),
                fmt(s["p50_ms"], 2),
                fmt(s["p99_ms"], 2),
                fmt(s["cpu_per_get_us"], 0),
            ]
        )
    lines += table(["client", "first reads/s", "p50 ms", "p99 ms", "CPU µs/read"], rows)
    a, f, s = (stats.get(c, {}) for c in ("aioacm", "floor", "sync"))
    lines.append(
        f"aioacm/floor: {fmt_ratio(ratio(a.get('rps'), f.get('rps')))} the reads/s, "
        f"{fmt_ratio(ratio(a.get('cpu_per_get_us'), f.get('cpu_per_get_us')))} the CPU per "
        f"read; aioacm/sync: {fmt_ratio(ratio(a.get('rps'), s.get('rps')))} the reads/s."
    )
    lines.append("")
    return lines


def section_get(results: dict[str, Any]) -> list[str]:
    stats = get_stats(results)
    lines = [f"## {TITLES['get']}", ""]
    lines.append(
        f"{results['keys']} distinct keys read round-robin. Each level has a fresh client and an "
        "empty snapshot folder; before the level is timed, the client opens its connections "
        "and reads every key once (so the level measures reads in the steady state; first "
        "reads are measured on their own below). Gets per level: "
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
            name = NAMES.get(client, client)
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
                fmt_pair(pair_ratios(results, str(level), "rps")),
                fmt_pair(pair_ratios(results, str(level), "cpu_per_get_us")),
                fmt_ratio(ratio(a.get("rps"), s.get("rps"))),
                fmt_ratio(ratio(a.get("p99_ms"), f.get("p99_ms"))),
            ]
        )
    lines.append(
        "Ratios (goals: req/s ≥ 0.85× the floor at 64 and 256; CPU ≤ 1.5×). aioacm/floor: the "
        "median (min–max) of the ratios of each pair of levels run side by side in one "
        "process; aioacm/sync and p99: ratios of the medians above."
    )
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
    lines += section_first(results)
    for client, runs in results["runs"].items():
        for error in errors(runs):
            lines += [f"- {client} run failed: {error}", ""]
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
    return lines + copy_lines(results.get("copy"))


def copy_lines(results: dict[str, Any] | None) -> list[str]:
    """``aioacm copy`` (no sync counterpart): ACM to a fresh Nacos namespace, then again."""
    if results is None:
        return []
    runs = results["runs"]
    good = ok_runs(runs)
    lines = [
        f"`aioacm copy ENDPOINT:copy-src nacos://ENDPOINT/NEW_NAMESPACE` of"
        f" {results['items']:,} items (one in {results['cipher_every']}"
        " `cipher-kms-aes-128-` with an encrypted data key), ACM to Nacos on the same server,"
        " read back and verified; then the same command again, when every item is the same"
        " (both sides read and compared, nothing written).",
        "",
    ]
    if not good:
        return [*lines, f"- copy: {(errors(runs) or ['not run'])[0]}", ""]

    def s(step: str, what: str) -> dict[str, float] | None:
        return spread(r[step][what] for r in good)

    rows = [
        [step, fmt(s(key, "wall_s"), 2), fmt(s(key, "cpu_s"), 2)]
        for step, key in (("copy", "copy"), ("again (all same)", "again"))
    ]
    return lines + table(["aioacm copy", "wall s", "CPU s"], rows)


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
        for level in ("64", "256"):
            r = pair_ratios(results["get"], level, "rps")
            if r is None:
                continue
            row(f"req/s ≥ 0.85× the floor at {level}", fmt_pair(r), r["median"] >= 0.85)
            r = pair_ratios(results["get"], level, "cpu_per_get_us")
            if r is not None:
                row(f"CPU per get ≤ 1.5× the floor at {level}", fmt_pair(r), r["median"] <= 1.5)
    if "watch" in results:
        largest = max(results["watch"], key=int)
        finished, _ = watch_figures(results["watch"][largest].get("aioacm", []))
        if finished:
            keys = int(largest)
            rss = spread(r["scale"]["rss_added_mb"] for r in finished)
            pollers = spread(r["scale"].get("pollers") for r in finished)
            limit = math.ceil(keys / 3000)
            row(
                f"{keys:,} keys in ≤ 25 MB added",
                f"{fmt(rss, 1)} MB",
                rss is not None and rss["max"] <= 25,
            )
            row(
                f"≤ {limit} poll connections for {keys:,} keys",
                fmt(pollers, 0),
                pollers is not None and pollers["max"] <= limit,
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
    lines = ["## Goals (issue 6), from this run's medians (gets: of the side-by-side pairs)", ""]
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
