"""The report's sections on watching: scale, change latency and idle cost."""

from __future__ import annotations

from typing import Any

from _common import spread
from _format import TITLES, errors, fmt, ok_runs, table


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
