"""The tables of ``official_side_by_side.py`` (Markdown), from its results document."""

from __future__ import annotations

from typing import Any

from _common import spread
from _format import fmt, fmt_ratio, table

CLIENTS = ("aioacm", "official")
LABELS = {"aioacm": "aioacm NacosClient", "official": "official nacos-sdk-python"}
#: The issue's goals: aioacm's gets a second at least this many times the official client's.
GETS_RATIO_GOAL = 1.5


def num(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("met" if ok else "missed")


def level_spread(runs: list[dict[str, Any]], level: int, name: str) -> dict[str, float] | None:
    return spread(r["levels"][str(level)][name] for r in runs if str(level) in r.get("levels", {}))


def report(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The Markdown lines, and the goals as ``[goal, measured, met|missed|–]`` rows."""
    args, meta = results["args"], results["machine"]
    label = dict(LABELS)
    label["aioacm"] += f" ({args['aioacm_protocol']})"
    label["official"] += f" {meta['nacos_sdk_python']}"
    lines = [
        "# aioacm's NacosClient against the official async Nacos client",
        "",
        f"- {meta['when']}: `{' '.join(['python', meta['script'], *meta['argv']])}` "
        f"({results['minutes']:.1f} min)",
        f"- server: {meta['server']}; aioacm {meta['aioacm']}; Python {meta['python']}; "
        f"{meta['platform']}, {meta['cpus']} CPUs",
        f"- CPUs: {meta['pins'] or 'not pinned'}; load average before "
        f"{' / '.join(f'{x:.2f}' for x in meta['load_before'])}, after "
        f"{' / '.join(f'{x:.2f}' for x in meta.get('load_after', ()))}",
        f"- the official client logs at {args['official_log_level']} (its least logging)",
        "",
    ]
    goals: list[list[str]] = []
    if results.get("gets"):
        lines += gets_section(results["gets"], args, label, goals)
    if results.get("watch"):
        lines += watch_sections(results["watch"], args, label, goals)
    if goals:
        lines += ["## Goals", "", *table(["goal", "measured", ""], goals)]
    return lines, goals


def gets_section(
    gets: dict[str, list[dict[str, Any]]],
    args: dict[str, Any],
    label: dict[str, str],
    goals: list[list[str]],
) -> list[str]:
    lines = [
        "## 1. Gets",
        "",
        f"{args['gets']:,} timed gets per level, {args['get_keys']} keys of {args['size']} "
        f"characters read round-robin by as many asyncio tasks as the concurrency; before each "
        f"level every key once and {args['warmup']} untimed gets. One fresh worker process per "
        f"client and repeat ({args['repeats']}; which client goes first alternates); median "
        "(min–max). CPU: the worker's CPU time (every thread) over the level, per get. "
        "Latency: what the caller sees.",
        "",
    ]
    rows = []
    names = [name for name in CLIENTS if name in gets]
    fields = (("gets_per_s", 0), ("p50_ms", 2), ("p99_ms", 2), ("cpu_per_get_us", 0))
    for level in args["levels"]:
        for name in names:
            stats = [fmt(level_spread(gets[name], level, key), digits) for key, digits in fields]
            rows.append([str(level), label[name], *stats])
    header = ["concurrency", "client", "gets/s", "p50 ms", "p99 ms", "CPU µs/get"]
    lines += table(header, rows)
    rows = []
    for level in args["levels"] if len(names) == 2 else ():
        ratios = []
        for key in ("gets_per_s", "cpu_per_get_us"):
            ours, theirs = (level_spread(gets[n], level, key) for n in CLIENTS)
            ratios.append(ours["median"] / theirs["median"] if ours and theirs else None)
        rows.append([str(level), fmt_ratio(ratios[0]), fmt_ratio(ratios[1])])
        goals.append(
            [
                f"gets/s ≥ {GETS_RATIO_GOAL}× the official client's at concurrency {level}",
                fmt_ratio(ratios[0]),
                verdict(None if ratios[0] is None else ratios[0] >= GETS_RATIO_GOAL),
            ]
        )
    if rows:
        lines += table(["concurrency", "aioacm/official gets/s", "aioacm/official CPU/get"], rows)
    for name in names:
        for run in gets[name]:
            if "error" in run:
                lines.append(f"- {label[name]}: {run['error']}")
            levels = run.get("levels", {}).values()
            wrong = sum(v.get("errors", 0) + v.get("wrong", 0) for v in levels)
            if wrong:
                lines.append(f"- {label[name]}: {wrong} gets failed or answered a wrong value")
    return lines if lines[-1] == "" else [*lines, ""]


def watch_sections(
    watch: dict[str, dict[str, Any]],
    args: dict[str, Any],
    label: dict[str, str],
    goals: list[list[str]],
) -> list[str]:
    keys = args["watch_keys"]
    names = [name for name in CLIENTS if name in watch]
    lines = [
        f"## 2. Watching {keys:,} keys",
        "",
        "Each client watches keys of its own, adding a callback (aioacm's `add_watcher`, the "
        "official `add_listener`, both `async def`) key after key. *last add*: when the last "
        "add returned; *ready*: when every key's value had reached the callback (aioacm: its "
        "first callbacks; official: "
        + (
            "added to an empty cache, its listener is called once its listen round finds the "
            "key changed and fetches it, one key after the other"
            if args.get("official_watch", "listen") == "listen"
            else "`get_config` then `add_listener`, key after key: ready when the last add "
            "returned, the value read counting as the first"
        )
        + "). *RSS "
        "added*: the worker's RSS after minus before, each read after a `gc.collect()` and "
        "a quiet pause. *connections*: TCP connections to the server's ports.",
        "",
    ]
    rows = []
    for name in names:
        w = watch[name].get("watch")
        if not w or w.get("ready_s") is None:
            why = watch[name].get("error") or (
                f"not ready: {w['arrived']:,} of {keys:,} values" if w else "–"
            )
            rows.append([label[name], why, "", "", "", ""])
            continue
        rss = f"{w['rss_before_mb']:.1f} → {w['rss_after_mb']:.1f}"
        row = [f"{w['added_s']:.2f}", f"{w['ready_s']:.2f}", f"{w['rss_added_mb']:.1f}", rss]
        rows.append([label[name], *row, str(w["connections"])])
    header = ["client", "last add s", "ready s", "RSS added MB", "RSS MB", "connections"]
    lines += table(header, rows)

    lines += [
        "## 3. Change latency",
        "",
        f"{args['rate']:g} changes a second for {args['seconds']:g} s to the client's watched "
        "keys in a random order (no key twice), published over the server's Nacos HTTP API by "
        "the orchestrator, one client measured at a time (the other idle). Latency: from just "
        "before the publish request to the callback. *Client CPU*: the worker's CPU from the "
        "first publish until 1 s after the last change arrived, per change; *server CPU*: the "
        "server process's over the same time. *Busy after*: seconds from the end of that until the "
        "worker used under 5% of a core over a second (work it still had queued). *Idle*: CPU "
        f"in {args['idle_seconds']:g} s of both clients watching, nothing changing, after that.",
        "",
    ]
    rows = []
    for name in names:
        s = watch[name].get("steady")
        idle = watch[name].get("idle", {}).get("cpu_s")
        if not s:
            rows.append([label[name], "–", *[""] * 9])
            continue
        rows.append(
            [
                label[name],
                f"{s['delivered']:,}/{s['published']:,}",
                str(s["lost"]),
                str(s["doubled"]),
                num(s["p50_ms"]),
                num(s["p99_ms"]),
                num(s["max_ms"]),
                num(s["client_cpu_per_change_ms"], 2),
                num(s.get("server_cpu_s"), 2),
                num(s.get("busy_after_s"), 1),
                num(idle, 3),
            ]
        )
    header = ["client", "delivered", "lost", "doubled", "p50 ms", "p99 ms", "max ms"]
    header += ["client CPU ms/change", "server CPU s", "busy after s", "idle CPU s"]
    lines += table(header, rows)

    restarts = {n: watch[n]["restart"] for n in names if "restart" in watch[n]}
    if restarts:
        r0 = next(iter(restarts.values()))
        how = {
            "kill": "killed (SIGKILL)",
            "term": "stopped (SIGTERM)",
            "cmd": "restarted by --restart-cmd",
        }
        downs = ", ".join(f"{r['down_s']:.2f}" for r in r0["restarts"])
        lines += [
            "## 4. Across server restarts",
            "",
            f"{args['rate']:g} changes a second to each client's keys for "
            f"{args['restart_seconds']:g} s, both clients watching. {len(r0['restarts'])} "
            f"time(s), evenly spread, the server was {how[r0['restart_mode']]} and answered "
            f"again on the same ports, with every item as it was, after {downs} s. "
            "*delivered*, *lost*, *doubled*: over the whole stream (*superseded*: replaced by a "
            "later change of the key before the client fetched it; *server lost*: a change the "
            "server no longer held at the end). Latency of the changes published *before* the "
            "first restart and *after* it (once the server was back). Per restart: "
            "*after*: changes delivered after the server was back (until the next restart); "
            "*caught up*: of those, published before it went down; *first*: seconds from the "
            "server back to the first change delivered; *new*: to the first change published "
            "after it was back.",
            "",
        ]
        rows = []
        for name in names:
            r = restarts.get(name)
            if not r:
                rows.append([label[name], "–", *[""] * 10])
                continue
            per = r["restarts"]
            rows.append(
                [
                    label[name],
                    f"{r['delivered']:,}/{r['published']:,}",
                    str(r["lost"]),
                    str(r["doubled"]),
                    f"{r['superseded']} / {r['server_lost']}",
                    f"{num(r['before_restart_p50_ms'])} / {num(r['before_restart_p99_ms'])}",
                    f"{num(r['after_restart_p50_ms'])} / {num(r['after_restart_p99_ms'])}",
                    ", ".join(str(x["delivered_after"]) for x in per),
                    ", ".join(str(x["caught_up"]) for x in per),
                    ", ".join(num(x["first_s"], 2) for x in per),
                    ", ".join(num(x["first_new_s"], 2) for x in per),
                ]
            )
        header = ["client", "delivered", "lost", "doubled", "superseded / server lost"]
        header += ["before: p50 / p99 ms", "after: p50 / p99 ms", "after"]
        header += ["caught up", "first s", "new s"]
        lines += table(header, rows)

    rows = []
    for name in names:
        c = watch[name].get("close", {})
        left = ", ".join(c.get("tasks_left_names", [])) or str(c.get("tasks_left", "–"))
        exit_ = str(c.get("exit", "–")) + (" (killed)" if "killed" in c else "")
        rows.append([label[name], num(c.get("seconds"), 2), left, exit_])
    lines += ["## 5. Closing the watching client", ""]
    lines += table(["client", "close s", "tasks left running", "exit status"], rows)

    ours, theirs = (watch.get(n, {}).get("watch") or {} for n in CLIENTS)
    if "rss_added_mb" in ours and "rss_added_mb" in theirs:
        goals.append(
            [
                f"RSS added watching {keys:,} keys ≤ the official client's",
                f"{ours['rss_added_mb']:.1f} vs {theirs['rss_added_mb']:.1f} MB",
                verdict(ours["rss_added_mb"] <= theirs["rss_added_mb"]),
            ]
        )
    ours, theirs = (watch.get(n, {}).get("steady") or {} for n in CLIENTS)
    if ours.get("p99_ms") is not None and theirs.get("p99_ms") is not None:
        goals.append(
            [
                "change p99 lower than the official client's",
                f"{ours['p99_ms']:.1f} vs {theirs['p99_ms']:.1f} ms",
                verdict(ours["p99_ms"] < theirs["p99_ms"]),
            ]
        )
    for name in names:
        parts = [watch[name].get(w) or {} for w in ("steady", "restart")]
        bad = sum(p.get("lost", 0) + p.get("doubled", 0) for p in parts)
        goals.append([f"{label[name]}: no change lost or doubled", str(bad), verdict(bad == 0)])
    return lines
