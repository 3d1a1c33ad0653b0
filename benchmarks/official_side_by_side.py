"""aioacm's NacosClient (gRPC) against the official async Nacos client, same server, same work.

    python benchmarks/official_side_by_side.py             # the bundled server, full sizes
    python benchmarks/official_side_by_side.py --quick     # every step at a tiny size (< 60 s)
    AIOACM_NACOS_PASSWORD=... python benchmarks/official_side_by_side.py \\
        --server 127.0.0.1:8848 --username nacos --restart-cmd "docker restart nacos"

The clients: aioacm's ``NacosClient(protocol="grpc")`` (``side_worker_aioacm.py``, this
interpreter) and the official ``nacos-sdk-python`` 3.x ``NacosConfigService``
(``side_worker_official.py``, run by ``tests/.peers/nacos3/bin/python``, which never imports
aioacm; create it with ``python3 -m venv tests/.peers/nacos3 && tests/.peers/nacos3/bin/python
-m pip install -r tests/peers/nacos3-requirements.txt``). Each runs in a worker process of its
own, driven by the same code (``_side.py``) through JSON lines. By default the bundled server
(``python -m aioacm.server``, HTTP and Nacos gRPC at port + 1000) runs in a process of its own,
pinned to the first CPU, the workers to the others; ``--server HOST:PORT`` uses a running Nacos
instead (nothing here starts, builds or fetches Nacos). This process publishes every value over
the server's Nacos HTTP API (``/nacos/v1/cs/configs``), so both clients read what a third party
wrote.

1. **Gets**: a fresh worker per client and repeat reads ``--get-keys`` keys of ``--size``
   characters round-robin, at concurrency 1, 64 and 256 (that many asyncio tasks, each taking
   the next get): every key once, ``--warmup`` gets, then ``--gets`` timed ones. Gets a second,
   latency p50/p99, and the worker's CPU time (every thread) per get. Repeats alternate which
   client goes first.
2. **Watch**: a worker per client watches ``--watch-keys`` keys of its own (one
   callback/listener, ``async def``, added key after key) until it holds every key's value:
   aioacm's first callbacks; the official client's listener, added to an empty cache, is called
   with the value when its listen round finds the key changed (see side_worker_official.py;
   ``--official-watch get-listen``: ``get_config`` then ``add_listener`` instead). Its
   RSS (read by this process with psutil) is taken before and after, each time after a
   ``gc.collect()`` and 2 s without work. Then ``--rate`` changes a second for ``--seconds`` go to
   its keys (a random order, no key twice before every key had one); each value carries its
   publish time, so the worker's callback gives the publish-to-callback latency; then the
   seconds until the worker is quiet again (under 5% of a core over a second). aioacm's worker
   goes first and stays (idle, watching) while the official one runs.
3. **Idle**: both workers watching, nothing changing, ``--idle-seconds``: the CPU of each.
4. **Restart**: ``--rate`` changes a second to each client's keys for ``--restart-seconds``,
   both clients watching; ``--restarts`` times, evenly spread, the server goes down and comes
   back ``--down`` seconds later on the same ports with every item as it was (this process
   pauses publishing, kills the server (SIGKILL; ``--restart-signal term`` for SIGTERM), writes
   the data file of what it published and starts it with ``--data``). With ``--server``,
   ``--restart-cmd`` runs instead (publishing goes on; the server counts as back at the first
   read it answers). Per client: changes lost and doubled, and per restart the changes
   delivered after it and the time from the server answering again to the first of them.
   SIGKILL by default because it is what both a crash and Nacos's own shutdown do to the gRPC
   streams (Nacos's shutdown hook calls gRPC's ``shutdownNow()``: every stream fails), while
   the bundled server's SIGTERM ends them cleanly, and the official client does not notice a
   cleanly ended stream: its health checks pass (it counts the new server's "connection
   unregistered", a 3xx, as healthy) and it delivers no change until a request of its own
   fails (its full listen every 5 minutes sends one). Once restarted with ``--data`` the
   bundled server rewrites its whole data file after every change (in a thread), which costs it
   CPU for the rest of that stream.

A change is *lost* when it was never delivered, no later change of the same key was (a client
reads a changed key's newest value, so a value replaced before it was fetched is *superseded*),
and the server still holds it or a later value at the end (else the *server* lost it: a
crashed real server may), *doubled* when delivered more than once. Writes ``--json`` and prints
the tables; exits 1 when a step failed, a change was lost or doubled, or (not with ``--quick``)
a goal of the issue was missed: aioacm's gets a second at least 1.5 times the official
client's at each concurrency, no more RSS added by watching, a lower change p99.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import itertools
import json
import math
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import psutil
from _side import body, percentile, stamp, streamed
from procs import HERE, PINS, Server, log, pinned, plan_pins
from report_official import CLIENTS, num, report

ROOT = HERE.parent
OFFICIAL_PYTHON = ROOT / "tests" / ".peers" / "nacos3" / "bin" / "python"
PASSWORD_ENV = "AIOACM_NACOS_PASSWORD"
GRPC_OFFSET = 1000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="every step at a tiny size (under a minute)")
    add("--server", metavar="HOST:PORT", help="a running Nacos (its HTTP port) instead")
    add("--username", help=f"log in as this user (the password in ${PASSWORD_ENV})")
    add("--namespace", default="", help="namespace id (default: the public one)")
    add("--group", default="DEFAULT_GROUP")
    add("--gets", type=int, help="timed gets per level (5000)")
    add("--get-keys", type=int, default=50, help="keys read round-robin (50)")
    add("--size", type=int, default=200, help="characters per value (200)")
    add("--levels", type=int, nargs="+", default=[1, 64, 256], help="concurrency (1 64 256)")
    add("--warmup", type=int, help="untimed gets per level before the timed ones (500)")
    add("--repeats", type=int, help="get runs per client, each in a fresh worker (3)")
    add("--watch-keys", type=int, help="keys each client watches (10000)")
    add("--watch-timeout", type=float, default=600.0, help="bound on holding every value (600)")
    add("--rate", type=float, default=20.0, help="changes a second (20)")
    add("--seconds", type=float, help="seconds of the steady stream, per client (30)")
    add("--idle-seconds", type=float, help="idle period measured (30)")
    add("--restart-seconds", type=float, help="seconds of the restart stream; 0: none (45)")
    add("--restarts", type=int, help="restarts, evenly spread over that stream (3)")
    add("--down", type=float, default=1.0, help="seconds the bundled server stays down (1)")
    add(
        "--restart-signal",
        choices=("kill", "term"),
        default="kill",
        help="how the bundled server goes down: SIGKILL (kill; default) or SIGTERM (term)",
    )
    add("--restart-cmd", help="with --server: a shell command that restarts it")
    add("--settle", type=float, help="seconds to wait for changes still due after a stream (60)")
    add(
        "--sections",
        nargs="+",
        choices=("gets", "watch"),
        default=["gets", "watch"],
        help="gets; watch (with the streams, idle and restarts) (both)",
    )
    add("--clients", nargs="+", choices=CLIENTS, default=list(CLIENTS), help="who runs (both)")
    add(
        "--official-python",
        type=Path,
        default=OFFICIAL_PYTHON,
        help="the official client's interpreter (tests/.peers/nacos3/bin/python)",
    )
    add(
        "--aioacm-protocol",
        choices=("grpc", "http"),
        default="grpc",
        help="the protocol aioacm's NacosClient speaks (grpc)",
    )
    add(
        "--official-log-level",
        default="ERROR",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="the official client's log level (ERROR: its least logging)",
    )
    add(
        "--official-watch",
        choices=("listen", "get-listen"),
        default="listen",
        help="how the official client watches a key: add_listener alone (its listener gets "
        "the first value), or get_config then add_listener (listen)",
    )
    add("--keep-keys", action="store_true", help="with --server: do not delete the keys")
    add("--json", type=Path, help="write every result here")
    add("--no-pin", dest="pin", action="store_false", help="do not pin processes to CPUs")
    add("--seed", type=int, default=0, help="seed of the change order (0)")
    args = parser.parse_args(argv)
    full = {
        "gets": 5000,
        "warmup": 500,
        "repeats": 3,
        "watch_keys": 10000,
        "seconds": 30.0,
        "idle_seconds": 30.0,
        "restart_seconds": 45.0,
        "restarts": 3,
        "settle": 60.0,
        "quiet": 2.0,
    }
    quick = {
        "gets": 300,
        "warmup": 50,
        "repeats": 1,
        "watch_keys": 200,
        "seconds": 3.0,
        "idle_seconds": 1.0,
        "restart_seconds": 5.0,
        "restarts": 1,
        "settle": 15.0,
        "quiet": 0.5,
    }
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    if args.restart_cmd and not args.server:
        parser.error("--restart-cmd goes with --server (the bundled server is restarted here)")
    return args


# -- the server's Nacos HTTP API --------------------------------------------------------------


class Publisher:
    """Publishes, removes and reads over the Nacos HTTP API (v1), logged in if asked; keeps the
    newest value it published of every key."""

    def __init__(self, address: str, namespace: str, group: str, username: str | None) -> None:
        self.base = f"http://{address}/nacos/v1"
        self.namespace, self.group = namespace, group
        self.username = username
        self.password = os.environ.get(PASSWORD_ENV, "") if username else None
        self.token: str | None = None
        self.token_at = 0.0
        self.latest: dict[str, str] = {}
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Publisher:
        timeout = aiohttp.ClientTimeout(total=5)
        connector = aiohttp.TCPConnector(limit=64)
        self.session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def _params(self, key: str) -> dict[str, str]:
        params = {"dataId": key, "group": self.group}
        if self.namespace:
            params["tenant"] = self.namespace
        if self.username:
            if self.token is None or time.monotonic() - self.token_at > 600:
                await self._login()
            assert self.token is not None
            params["accessToken"] = self.token
        return params

    async def _login(self) -> None:
        assert self.session is not None
        form = {"username": self.username or "", "password": self.password or ""}
        async with self.session.post(f"{self.base}/auth/login", data=form) as resp:
            if resp.status != 200:
                raise RuntimeError(f"login as {self.username!r} failed: HTTP {resp.status}")
            self.token = (await resp.json(content_type=None))["accessToken"]
            self.token_at = time.monotonic()

    async def publish(self, key: str, content: str) -> bool:
        assert self.session is not None
        form = {**await self._params(key), "content": content}
        async with self.session.post(f"{self.base}/cs/configs", data=form) as resp:
            ok = resp.status == 200 and (await resp.text()).strip() == "true"
        if ok:
            self.latest[key] = content
        return ok

    async def remove(self, key: str) -> bool:
        assert self.session is not None
        async with self.session.delete(
            f"{self.base}/cs/configs", params=await self._params(key)
        ) as resp:
            return resp.status == 200

    async def read(self, key: str) -> str | None:
        """The server's value of ``key`` (None: it has none)."""
        assert self.session is not None
        params = await self._params(key)
        async with self.session.get(f"{self.base}/cs/configs", params=params) as resp:
            if resp.status == 404:
                return None
            resp.raise_for_status()
            return await resp.text()

    async def answers(self, key: str) -> bool:
        """Whether the server answers a read of ``key`` (it is up)."""
        assert self.session is not None
        try:
            params = await self._params(key)
            async with self.session.get(f"{self.base}/cs/configs", params=params) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError):
            self.token = None
            return False

    async def each(self, call: Callable[[str], Awaitable[bool]], keys: list[str]) -> int:
        """``call`` every key, 32 at a time; how many failed."""
        gate = asyncio.Semaphore(32)

        async def one(key: str) -> bool:
            async with gate:
                for _ in range(3):
                    with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                        if await call(key):
                            return True
                return False

        return sum(1 for ok in await asyncio.gather(*(one(k) for k in keys)) if not ok)

    def data_file(self, path: Path) -> None:
        """The bundled server's data file (``--data``) holding every value published."""
        tenant = "" if self.namespace in ("", "public") else self.namespace
        items = [
            {"tenant": tenant, "group": self.group, "dataId": key, "content": content}
            for key, content in self.latest.items()
        ]
        path.write_text(json.dumps({"version": 1, "items": items}), encoding="utf-8")


# -- worker processes -------------------------------------------------------------------------


def open_log(path: Path) -> IO[str]:
    return open(path, "w")


class WorkerError(Exception):
    pass


class Worker:
    """One client's worker process, and the changes its callbacks saw (``seq`` -> times)."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, cwd: Path) -> None:
        self.name, self.proc, self.cwd = name, proc, cwd
        self.ps = psutil.Process(proc.pid)
        self.arrivals: dict[int, list[float]] = {}
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.get_running_loop().create_task(self._read())
        self.closed: dict[str, Any] | None = None

    @classmethod
    async def start(cls, name: str, args: argparse.Namespace, cfg: dict[str, Any]) -> Worker:
        python = str(args.official_python) if name == "official" else sys.executable
        cwd = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=args.workdir))
        cfg = {**cfg, "workdir": str(cwd)}
        if name == "official":
            cfg.update(log_level=args.official_log_level, watch_mode=args.official_watch)
        with open_log(cwd / "stderr.log") as stderr:
            proc = await asyncio.create_subprocess_exec(
                python,
                str(HERE / f"side_worker_{name}.py"),
                json.dumps(cfg),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=cwd,
                preexec_fn=pinned("clients"),
                limit=2**24,
            )
        worker = cls(name, proc, cwd)
        opened = await worker.reply(120)
        if opened.get("type") != "open" or "error" in opened:
            await worker.quit(10)
            raise WorkerError(f"{name} worker did not open: {opened.get('error', opened)}")
        return worker

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if msg.get("type") == "change":
                self.arrivals.setdefault(msg["seq"], []).append(msg["t"])
            else:
                self.replies.put_nowait(msg)
        self.replies.put_nowait({"type": "eof"})

    async def reply(self, timeout: float) -> dict[str, Any]:
        try:
            return await asyncio.wait_for(self.replies.get(), timeout)
        except asyncio.TimeoutError:
            return {"type": "error", "error": f"no answer in {timeout:.0f} s"}

    async def call(self, within: float = 600.0, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        await self.proc.stdin.drain()
        msg = await self.reply(within)
        if msg.get("type") in ("error", "eof"):
            raise WorkerError(f"{self.name} worker, {cmd['cmd']}: {msg.get('error', msg)}")
        return msg

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20

    def cpu_s(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def connections(self, ports: tuple[int, ...]) -> int:
        return sum(
            1
            for c in self.ps.net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.raddr and c.raddr.port in ports
        )

    def stderr_tail(self, lines: int = 5) -> str:
        try:
            text = (self.cwd / "stderr.log").read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    async def quit(self, timeout: float = 60.0) -> dict[str, Any]:
        """Ask the worker to close its client and end; how long closing took, what the client
        left running, and whether the process had to be killed."""
        if self.closed is not None:
            return self.closed
        result: dict[str, Any] = {}
        assert self.proc.stdin is not None
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.proc.stdin.write(b'{"cmd": "quit"}\n')
            await self.proc.stdin.drain()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = await self.reply(max(0.1, deadline - time.monotonic()))
            if msg.get("type") in ("closed", "eof"):
                if msg["type"] == "closed":
                    result = {k: v for k, v in msg.items() if k != "type"}
                break
        try:
            result["exit"] = await asyncio.wait_for(
                self.proc.wait(), max(1.0, deadline - time.monotonic())
            )
        except asyncio.TimeoutError:
            self.proc.kill()
            result["exit"] = await self.proc.wait()
            result["killed"] = f"did not exit within {timeout:.0f} s of quit"
        if result["exit"] != 0:
            result["stderr"] = self.stderr_tail()
        await self.reader
        self.closed = result
        return result


# -- streams of changes -----------------------------------------------------------------------


@dataclass
class Change:
    seq: int
    client: str
    key: str
    published: float = 0.0  # time.monotonic() just before the publish request
    ok: bool | None = None


@dataclass
class Window:
    """One stream of changes, and what happened around it."""

    changes: list[Change] = field(default_factory=list)
    inflight: set[asyncio.Task[None]] = field(default_factory=set)
    paused: bool = False
    skipped: int = 0
    start: float = 0.0
    end: float = 0.0
    outages: list[tuple[float, float]] = field(default_factory=list)  # (down, back again)
    events: list[dict[str, Any]] = field(default_factory=list)
    held: dict[str, int | None] = field(default_factory=dict)  # key -> the server's seq
    cpu: dict[str, float] = field(default_factory=dict)
    server_cpu: float | None = None
    server_load: float | None = None  # after the last restart, its CPU / wall time


def shuffled_cycle(keys: list[str], rng: random.Random) -> Iterator[str]:
    """The keys in a random order, again and again: no key twice before every key had one."""
    while True:
        order = list(keys)
        rng.shuffle(order)
        yield from order


class Bench:
    def __init__(
        self, args: argparse.Namespace, publisher: Publisher, server: Server | None
    ) -> None:
        self.args = args
        self.publisher = publisher
        self.server = server
        self.address = args.server or (server.endpoint if server else "")
        port = int(self.address.rpartition(":")[2])
        self.ports = (port, port + GRPC_OFFSET)
        self.run_id = uuid.uuid4().hex[:8]
        self.clients = tuple(name for name in CLIENTS if name in args.clients)
        self.get_keys = [f"side-{self.run_id}-get-{i:03d}" for i in range(args.get_keys)]
        self.watch_keys = {
            name: [f"side-{self.run_id}-{name}-{i:05d}" for i in range(args.watch_keys)]
            for name in self.clients
        }
        rng = random.Random(args.seed)
        self.cursors = {name: shuffled_cycle(keys, rng) for name, keys in self.watch_keys.items()}
        self.seqs = itertools.count()
        self.exiting: list[asyncio.Task[None]] = []
        self.cfg = {
            "server": self.address,
            "namespace": args.namespace,
            "group": args.group,
            "username": args.username,
            "warm_key": self.get_keys[0],
            "protocol": args.aioacm_protocol,
        }

    def server_cpu(self) -> float | None:
        if self.server is None:
            return None
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(self.server.proc.pid).cpu_times()
            return float(times.user + times.system)
        return None

    # -- 1. gets ----------------------------------------------------------------------------

    async def gets(self) -> dict[str, list[dict[str, Any]]]:
        args = self.args
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in self.clients}
        timeout = 120 + args.gets / 50
        for repeat in range(args.repeats):
            for name in self.clients if repeat % 2 == 0 else self.clients[::-1]:
                run: dict[str, Any] = {"levels": {}}
                try:
                    worker = await Worker.start(name, args, self.cfg)
                except WorkerError as exc:
                    runs[name].append({"error": str(exc)})
                    log(str(exc))
                    continue
                finally:
                    await self.previous_exited()
                try:
                    for level in args.levels:
                        cmd = {"keys": self.get_keys, "size": args.size, "gets": args.gets}
                        cmd.update(concurrency=level, warmup=args.warmup)
                        result = await worker.call(timeout, cmd="gets", **cmd)
                        run["levels"][str(level)] = result
                        log(
                            f"gets, run {repeat + 1}, {name} at {level}: "
                            f"{result['gets_per_s']:,.0f}/s, {result['cpu_per_get_us']:.0f} µs "
                            f"CPU/get, p99 {result['p99_ms']:.2f} ms"
                            + (f", {result['errors']} errors" if result["errors"] else "")
                        )
                except WorkerError as exc:
                    run["error"] = f"{exc} ({worker.stderr_tail()})"
                    log(run["error"])
                runs[name].append(run)
                self.let_exit(worker, run)
        return runs

    def let_exit(self, worker: Worker, into: dict[str, Any]) -> None:
        """Quit ``worker`` in the background (its client's close is timed, not waited for):
        the next worker starts meanwhile, and measures only once it has exited."""

        async def quit() -> None:
            into["close"] = await worker.quit()

        self.exiting.append(asyncio.get_running_loop().create_task(quit()))

    async def previous_exited(self) -> None:
        exiting, self.exiting = self.exiting, []
        await asyncio.gather(*exiting)

    # -- 2-4. watch, stream, idle, restart ------------------------------------------------------

    async def publish_change(self, window: Window, change: Change) -> None:
        change.published = time.monotonic()
        content = streamed(change.seq, change.published, self.args.size)
        try:
            change.ok = await self.publisher.publish(change.key, content)
        except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError):
            change.ok = False

    async def stream(
        self,
        workers: dict[str, Worker],
        seconds: float,
        restart: Callable[[Window], Coroutine[Any, Any, None]] | None = None,
    ) -> Window:
        """``--rate`` changes a second to each worker's keys for ``seconds``; then wait until
        each was delivered (or ``--settle`` passed), and 1 s more for doubles."""
        args = self.args
        window = Window()
        count = max(1, round(args.rate * seconds))
        cpu0 = {name: w.cpu_s() for name, w in workers.items()}
        server0 = self.server_cpu()
        restarting: asyncio.Task[None] | None = None
        # the restarts, evenly spread over the stream (seconds into it)
        due_restarts = [seconds * (k + 1) / (args.restarts + 1) for k in range(args.restarts)]
        window.start = time.monotonic()
        for i in range(count):
            due = window.start + i / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if (
                restart is not None
                and due_restarts
                and i / args.rate >= due_restarts[0]
                and (restarting is None or restarting.done())
            ):
                due_restarts.pop(0)
                restarting = asyncio.get_running_loop().create_task(restart(window))
                await asyncio.sleep(0)  # let it pause publishing first
            if window.paused:
                window.skipped += 1  # a tick: one change per client not published
                continue
            for name in workers:
                change = Change(next(self.seqs), name, next(self.cursors[name]))
                window.changes.append(change)
                task = asyncio.get_running_loop().create_task(self.publish_change(window, change))
                window.inflight.add(task)
                task.add_done_callback(window.inflight.discard)
        if restarting is not None:
            await restarting
        await asyncio.gather(*list(window.inflight))
        window.end = time.monotonic()
        deadline = window.end + args.settle
        while time.monotonic() < deadline and any(  # noqa: ASYNC110 (two workers' tables)
            c.ok and c.seq not in workers[c.client].arrivals for c in window.changes
        ):
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # a change delivered twice shows up now
        window.cpu = {name: w.cpu_s() - cpu0[name] for name, w in workers.items()}
        # what the server holds of each key a change never reached: a client lost the change
        # only if the server still has it (a crashed server may not)
        missing = {
            c.key for c in window.changes if c.ok and c.seq not in workers[c.client].arrivals
        }
        for key in missing:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                window.held[key] = stamp(await self.publisher.read(key))
        server1 = self.server_cpu()
        if server0 is not None and server1 is not None and not window.outages:
            window.server_cpu = server1 - server0
        elif window.outages and server1 is not None:  # the last server process: a core's share
            window.server_load = server1 / (time.monotonic() - window.outages[-1][1])
        return window

    async def restart_bundled(self, window: Window) -> None:
        """Pause publishing, stop the server, write what it held, start it on the same ports."""
        assert self.server is not None
        window.paused = True
        await asyncio.gather(*list(window.inflight))
        down = time.monotonic()
        await asyncio.to_thread(self.server.stop, self.args.restart_signal == "kill")
        data = self.args.workdir / "server-data.json"
        self.publisher.data_file(data)
        await asyncio.sleep(self.args.down)
        await asyncio.to_thread(self.server.start, ["--data", str(data)])
        back = time.monotonic()
        window.paused = False
        window.outages.append((down, back))
        window.events.append(
            {
                "event": f"restarted the bundled server (SIG{self.args.restart_signal.upper()})",
                "at_s": down - window.start,
                "down_s": back - down,
                "items": len(self.publisher.latest),
            }
        )
        log(f"server restarted on {self.server.endpoint} (down {back - down:.2f} s)")

    async def restart_command(self, window: Window) -> None:
        """Run ``--restart-cmd``; the server is back at the first read it answers."""
        down = time.monotonic()
        proc = await asyncio.create_subprocess_shell(self.args.restart_cmd)
        rc = await proc.wait()
        done = time.monotonic()
        while time.monotonic() - down < 600:
            if await self.publisher.answers(self.get_keys[0]):
                break
            await asyncio.sleep(0.1)
        back = time.monotonic()
        window.outages.append((down, back))
        window.events.append(
            {
                "event": "ran --restart-cmd",
                "rc": rc,
                "at_s": down - window.start,
                "command_s": done - down,
                "down_s": back - down,
            }
        )
        log(f"--restart-cmd exited {rc}; server answering after {back - down:.2f} s")

    def analyse(self, window: Window, worker: Worker) -> dict[str, Any]:
        mine = [c for c in window.changes if c.client == worker.name]
        ok = [c for c in mine if c.ok]
        arrivals = worker.arrivals
        delivered = [c for c in ok if c.seq in arrivals]
        latencies = [arrivals[c.seq][0] - c.published for c in delivered]
        by_key: dict[str, list[Change]] = {}
        for c in ok:
            by_key.setdefault(c.key, []).append(c)
        undelivered = [c for c in ok if c.seq not in arrivals]
        superseded = sum(
            1
            for c in undelivered
            if any(d.seq > c.seq and d.seq in arrivals for d in by_key[c.key])
        )
        # neither delivered nor replaced by a delivered change, and the server has no trace
        server_lost = sum(
            1
            for c in undelivered
            if not any(d.seq > c.seq and d.seq in arrivals for d in by_key[c.key])
            and c.key in window.held
            and (window.held[c.key] or -1) < c.seq
        )
        out: dict[str, Any] = {
            "published": len(ok),
            "publish_failed": len(mine) - len(ok),
            "delivered": len(delivered),
            "lost": len(undelivered) - superseded - server_lost,
            "superseded": superseded,
            "server_lost": server_lost,
            "doubled": sum(len(arrivals[c.seq]) - 1 for c in mine if c.seq in arrivals),
            "failed_publish_delivered": sum(1 for c in mine if not c.ok and c.seq in arrivals),
            "p50_ms": ms(percentile(latencies, 0.5)),
            "p99_ms": ms(percentile(latencies, 0.99)),
            "max_ms": ms(max(latencies, default=None)),
            "publish_s": window.end - window.start,
            "client_cpu_s": window.cpu.get(worker.name),
            "client_cpu_per_change_ms": (
                window.cpu[worker.name] / len(delivered) * 1000 if delivered else None
            ),
            # every change: [published (s into the stream), latency ms or None, deliveries]
            "changes": [
                [
                    round(c.published - window.start, 4),
                    round((arrivals[c.seq][0] - c.published) * 1000, 2)
                    if c.seq in arrivals
                    else None,
                    len(arrivals.get(c.seq, ())),
                ]
                for c in ok
            ],
        }
        if window.outages:
            first_down, first_back = window.outages[0]
            before = [
                lat for c, lat in zip(delivered, latencies, strict=True) if c.published < first_down
            ]
            after = [
                lat
                for c, lat in zip(delivered, latencies, strict=True)
                if c.published >= first_back
            ]
            out["before_restart_p50_ms"] = ms(percentile(before, 0.5))
            out["before_restart_p99_ms"] = ms(percentile(before, 0.99))
            out["after_restart_p50_ms"] = ms(percentile(after, 0.5))
            out["after_restart_p99_ms"] = ms(percentile(after, 0.99))
            out["restart_mode"] = "cmd" if self.args.server else self.args.restart_signal
            out["restarts"] = restarts = []
            ends = [down for down, _ in window.outages[1:]] + [math.inf]
            begins = [window.start] + [back for _, back in window.outages[:-1]]
            for (down, back), until, since in zip(window.outages, ends, begins, strict=True):
                first = [c for c in delivered if back < arrivals[c.seq][0] < until]
                new = [c for c in first if c.published >= back]
                restarts.append(
                    {
                        "down_s": back - down,
                        "delivered_after": len(first),
                        "caught_up": sum(1 for c in first if since <= c.published < down),
                        "first_s": min(arrivals[c.seq][0] for c in first) - back if first else None,
                        "first_new_s": min(arrivals[c.seq][0] for c in new) - back if new else None,
                    }
                )
            out["skipped_while_down"] = window.skipped
            out["server_load_after_last_restart"] = window.server_load
            out["events"] = window.events
        else:
            out["server_cpu_s"] = window.server_cpu
        return out

    async def watch(self) -> dict[str, Any]:
        args = self.args
        out: dict[str, Any] = {name: {} for name in self.clients}
        workers: dict[str, Worker] = {}
        try:
            for name in self.clients:
                try:
                    worker = await Worker.start(name, args, self.cfg)
                except WorkerError as exc:
                    out[name]["error"] = str(exc)
                    log(str(exc))
                    continue
                workers[name] = worker
                await self.previous_exited()
                try:
                    out[name]["watch"] = await self.watch_one(worker)
                except WorkerError as exc:
                    out[name]["error"] = f"{exc} ({worker.stderr_tail()})"
                    log(out[name]["error"])
                    continue
                if out[name]["watch"]["ready_s"] is None:
                    continue
                log(f"{name}: steady stream, {args.rate:g}/s for {args.seconds:g} s")
                window = await self.stream({name: worker}, args.seconds)
                steady = out[name]["steady"] = self.analyse(window, worker)
                steady["busy_after_s"] = await self.until_quiet(worker, 10 if args.quick else 120)
                log(f"{name}: {describe(steady)}; busy {steady['busy_after_s']:.1f} s after")
            ready = {n: w for n, w in workers.items() if out[n].get("watch", {}).get("ready_s")}
            if args.idle_seconds and ready:
                cpu0 = {n: w.cpu_s() for n, w in ready.items()}
                await asyncio.sleep(args.idle_seconds)
                for n, w in ready.items():
                    out[n]["idle"] = {"seconds": args.idle_seconds, "cpu_s": w.cpu_s() - cpu0[n]}
                    log(f"{n}: idle CPU {out[n]['idle']['cpu_s']:.3f} s in {args.idle_seconds:g} s")
            restart = self.restart_command if args.server else self.restart_bundled
            if args.server and not args.restart_cmd:
                log("no --restart-cmd: the restart step is skipped")
            elif args.restart_seconds and ready:
                log(
                    f"restart stream: {args.rate:g}/s to each client for {args.restart_seconds:g}"
                    f" s, {args.restarts} restart(s)"
                )
                window = await self.stream(ready, args.restart_seconds, restart)
                for n, w in ready.items():
                    out[n]["restart"] = self.analyse(window, w)
                    out[n]["restart"]["stats"] = await w.call(30, cmd="stats")
                    log(f"{n} across the restart: {describe(out[n]['restart'])}")
        finally:
            for n, w in workers.items():
                self.let_exit(w, out[n])
            await self.previous_exited()
            for n in workers:
                log(f"{n}: closed: {out[n]['close']}")
        return out

    async def until_quiet(self, worker: Worker, limit: float = 120.0) -> float:
        """Seconds until ``worker`` uses under 5% of a core over a second (from now)."""
        started = time.monotonic()
        cpu = worker.cpu_s()
        while time.monotonic() - started < limit:
            await asyncio.sleep(1.0)
            used = worker.cpu_s() - cpu
            cpu += used
            if used < 0.05:
                return time.monotonic() - started - 1.0
        return limit

    async def watch_one(self, worker: Worker) -> dict[str, Any]:
        args, name = self.args, worker.name
        await worker.call(cmd="settle", seconds=args.quiet)
        rss0 = worker.rss_mb()
        log(f"{name}: watching {args.watch_keys:,} keys")
        keys = self.watch_keys[name]
        result = await worker.call(
            args.watch_timeout + 60, cmd="watch", keys=keys, timeout=args.watch_timeout
        )
        result.pop("type")
        if result["ready_s"] is None:
            log(f"{name}: {result['arrived']:,} of {len(keys):,} values in {args.watch_timeout} s")
            return result
        await worker.call(cmd="settle", seconds=args.quiet)
        rss1 = worker.rss_mb()
        stats = await worker.call(cmd="stats")
        stats.pop("type")
        result.update(
            rss_before_mb=rss0,
            rss_after_mb=rss1,
            rss_added_mb=rss1 - rss0,
            connections=worker.connections(self.ports),
            stats=stats,
        )
        log(
            f"{name}: every value after {result['ready_s']:.2f} s (last add "
            f"{result['added_s']:.2f} s), RSS +{rss1 - rss0:.1f} MB, "
            f"{result['connections']} connections"
        )
        return result

    async def populate(self) -> None:
        items = {key: body(key, self.args.size) for key in self.get_keys}
        for keys in self.watch_keys.values():
            items.update((key, body(key, self.args.size)) for key in keys)
        started = time.monotonic()
        failed = await self.publisher.each(
            lambda k: self.publisher.publish(k, items[k]), list(items)
        )
        if failed:
            raise RuntimeError(f"{failed} of {len(items)} items could not be published")
        log(f"published {len(items):,} items in {time.monotonic() - started:.1f} s")

    async def cleanup(self) -> None:
        keys = list(self.publisher.latest)
        failed = await self.publisher.each(self.publisher.remove, keys)
        log(f"removed {len(keys) - failed:,} of {len(keys):,} keys")


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def describe(r: dict[str, Any]) -> str:
    text = (
        f"{r['delivered']}/{r['published']} delivered, lost {r['lost']}, doubled {r['doubled']},"
        f" superseded {r['superseded']}, lost by the server {r['server_lost']},"
        f" p50 {num(r['p50_ms'])} ms, p99 {num(r['p99_ms'])} ms"
    )
    for k, restart in enumerate(r.get("restarts", ())):
        text += (
            f"; restart {k + 1}: {restart['delivered_after']} delivered after it, the first "
            f"{num(restart['first_s'], 2)} s after it"
        )
    return text


def machine(args: argparse.Namespace, pins: dict[str, list[int]] | None) -> dict[str, Any]:
    official = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        official = subprocess.run(
            [
                str(args.official_python),
                "-c",
                "import importlib.metadata as m;print(m.version('nacos-sdk-python'))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.strip()
    return {
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "script": "benchmarks/official_side_by_side.py",
        "argv": sys.argv[1:],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "aioacm": importlib.metadata.version("aioacm"),
        "nacos_sdk_python": official,
        "server": args.server or "bundled (python -m aioacm.server)",
        "pins": pins,
        "load_before": os.getloadavg(),
    }


# -- main -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, server: Server | None) -> dict[str, Any]:
    address = args.server or (server.endpoint if server else "")
    results: dict[str, Any] = {}
    async with Publisher(address, args.namespace, args.group, args.username) as publisher:
        bench = Bench(args, publisher, server)
        await bench.populate()
        if PINS["server"] is not None and server is not None:
            os.sched_setaffinity(0, PINS["server"])  # the publisher shares the server's CPU
        try:
            if "gets" in args.sections:
                results["gets"] = await bench.gets()
            if "watch" in args.sections:
                results["watch"] = await bench.watch()
        finally:
            await bench.previous_exited()
            if args.server and not args.keep_keys:
                await bench.cleanup()
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.official_python.exists():
        print(
            f"{args.official_python} is missing: python3 -m venv tests/.peers/nacos3 && "
            "tests/.peers/nacos3/bin/python -m pip install -r tests/peers/nacos3-requirements.txt",
            file=sys.stderr,
        )
        return 2
    if args.username and not os.environ.get(PASSWORD_ENV):
        print(f"--username needs the password in ${PASSWORD_ENV}", file=sys.stderr)
        return 2
    if args.server and not re.fullmatch(r"[\w.\-\[\]:]+:\d+", args.server):
        print(f"--server must be HOST:PORT, not {args.server!r}", file=sys.stderr)
        return 2
    pins = plan_pins(args.pin)
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine(args, pins)}
    args.workdir = Path(tempfile.mkdtemp(prefix="aioacm-official-side-"))
    server = None
    try:
        if not args.server:
            server = Server(args.workdir)
            log(f"bundled server on {server.endpoint} (gRPC on {server.port + GRPC_OFFSET})")
        results.update(asyncio.run(run(args, server)))
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(args.workdir, ignore_errors=True)
    results["minutes"] = (time.monotonic() - started) / 60
    results["machine"]["load_after"] = os.getloadavg()
    results["args"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    lines, goals = report(results)
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    # --quick sizes say nothing of speed or memory: there only changes lost or doubled count
    missed = [g for g in goals if g[2] == "missed" and (not args.quick or "lost" in g[0])]
    return 1 if missed or failed(results) else 0


def failed(results: dict[str, Any]) -> bool:
    """Whether a worker failed (a step that could not be measured)."""
    runs = [run for runs in results.get("gets", {}).values() for run in runs]
    watch = results.get("watch", {}).values()
    return any("error" in r for r in [*runs, *watch]) or any(
        not (w.get("watch") or {}).get("ready_s") for w in watch
    )


if __name__ == "__main__":
    sys.exit(main())
