"""Drive the official async Nacos client (PyPI ``nacos-sdk-python`` 3.x, module ``v2.nacos``)
against a server and print ONE JSON line: a test oracle and a benchmark peer for aioacm.

It does not import aioacm, and it cannot run in aioacm's venv (that one holds the legacy
``nacos-sdk-python`` 2.x, the same distribution name). Install it apart, once::

    python3 -m venv tests/.peers/nacos3
    tests/.peers/nacos3/bin/python -m pip install -r tests/peers/nacos3-requirements.txt

then run it with that interpreter::

    tests/.peers/nacos3/bin/python tests/peers/official_nacos3.py 127.0.0.1:8848
    NACOS_PASSWORD=... tests/.peers/nacos3/bin/python tests/peers/official_nacos3.py \\
        127.0.0.1:8848 --username nacos --namespace dev

The address is the HTTP one (``host:port``): the client logs in over HTTP there and speaks
gRPC on port + 1000. The password is read from the environment variable that
``--password-env`` names (``NACOS_PASSWORD`` by default), never from the command line, and is
never printed. The client's cache and log folders go to a temporary folder (``--work-dir`` to
keep them), never to ``~/nacos`` or ``~/logs/nacos``, its defaults.

The default run publishes an item, reads it back, adds a listener, publishes two changes (the
first may reach the listener through the batch listen's md5 check, the second can only come
from a server push) and waits for each, removes the item and reads it again (the official
client answers ``""`` for a missing item), then shuts the client down. ``--bench N`` instead
times publish, get, listen and remove over N keys. Exit status: 0 when every check passed, 1
otherwise (the JSON line says which check or step failed), 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

CLIENT_DIST = "nacos-sdk-python"
HOME_DEFAULTS = (Path.home() / "nacos", Path.home() / "logs" / "nacos")
FIRST = "中文 ✓ first"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server", help="host:port of the server's HTTP API (gRPC is port + 1000)")
    parser.add_argument("--username", help="log in as this user (auth on)")
    parser.add_argument(
        "--password-env",
        default="NACOS_PASSWORD",
        metavar="VAR",
        help="the environment variable holding the password (default: %(default)s)",
    )
    parser.add_argument("--namespace", default="", help="namespace id (default: the default one)")
    parser.add_argument("--group", default="DEFAULT_GROUP")
    parser.add_argument(
        "--data-id", help="the key to use (default: a fresh official-nacos3-<random>)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=20.0,
        help="seconds to wait for each read-back, change or shutdown (default: %(default)s)",
    )
    parser.add_argument(
        "--work-dir", help="keep the client's cache and logs here (default: a temporary folder)"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="the client's own log level (default: %(default)s)",
    )
    parser.add_argument("--bench", type=int, metavar="N", help="time the calls over N keys")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="calls in flight at once in --bench (default: %(default)s)",
    )
    return parser.parse_args(argv)


class StepError(Exception):
    """A step that failed or a check that did not hold."""


class Scrubber:
    """Keeps secrets out of the free text the script prints (errors, the client's log): the
    password (the client logs its login URL, which carries it, at DEBUG) and tokens (it logs
    its access token at INFO)."""

    def __init__(self, password: str | None) -> None:
        self.password = password

    def __call__(self, text: str) -> str:
        text = re.sub(r"(?i)(password\W{1,4})[^&'\"\s,}]+", r"\1***", text)
        text = re.sub(r"(?i)(accessToken\W{1,4})[\w.-]+", r"\1***", text)
        text = re.sub(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", "***", text)
        return text.replace(self.password, "***") if self.password else text


class Run:
    """One run: the client, the folder it writes to, and what it saw."""

    def __init__(self, args: argparse.Namespace, password: str | None, work_dir: Path) -> None:
        self.args = args
        self.password = password
        self.work_dir = work_dir
        self.scrub = Scrubber(password)
        self.out: dict[str, Any] = {"timings": {}}
        self.step = "start"
        self.service: Any = None

    def describe(self, exc: Exception) -> str:
        if not isinstance(exc, StepError):
            print(self.scrub(traceback.format_exc()), file=sys.stderr)
        return f"{type(exc).__name__} in step {self.step!r}: {exc}"

    async def timed(self, name: str, call: Awaitable[Any]) -> Any:
        self.step = name
        start = time.perf_counter()
        result = await call
        self.out["timings"][name] = round(time.perf_counter() - start, 4)
        return result

    def client_config(self) -> Any:
        from v2.nacos import ClientConfigBuilder

        builder = (
            ClientConfigBuilder()
            .server_address(self.args.server)
            .namespace_id(self.args.namespace)
            .cache_dir(str(self.work_dir / "cache"))
            .log_dir(str(self.work_dir / "logs"))
            .log_level(getattr(logging, self.args.log_level))
        )
        if self.args.username:
            builder.username(self.args.username).password(self.password)
        return builder.build()

    async def connect(self) -> Any:
        from v2.nacos import NacosConfigService

        self.service = await self.timed(
            "connect", NacosConfigService.create_config_service(self.client_config())
        )
        # create_config_service returns even when it could not connect (it goes on trying in
        # the background): ask, so that a dead port fails here with a clear message
        if not await self.service.server_health():
            host, _, port = self.args.server.rpartition(":")
            raise StepError(
                f"could not open the gRPC connection to {host}:{int(port) + 1000} "
                f"(the HTTP port {port} + 1000); see the client log"
            )
        return self.service

    async def get_until(self, param: Any, expected: str) -> tuple[str, int]:
        """Read until the answer is ``expected`` (a real server's read-after-write can lag)
        or the timeout passes; return the last answer and how many reads it took."""
        deadline = time.monotonic() + self.args.timeout
        attempts = 0
        while True:
            attempts += 1
            value = await self.service.get_config(param.model_copy())
            if value == expected or time.monotonic() > deadline:
                return value, attempts
            await asyncio.sleep(0.05)

    async def shutdown(self) -> None:
        if self.service is None:
            return
        service, self.service = self.service, None
        self.step = "shutdown"
        start = time.perf_counter()
        try:
            await asyncio.wait_for(service.shutdown(), self.args.timeout)
        except asyncio.TimeoutError:
            raise StepError(f"shutdown() took longer than {self.args.timeout}s") from None
        finally:
            self.out["timings"]["shutdown"] = round(time.perf_counter() - start, 4)
        # What the client leaves running after shutdown() (fire-and-forget tasks): report,
        # then cancel, so that the loop closes cleanly.
        current = asyncio.current_task()
        left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        self.out["tasks_left_after_shutdown"] = sorted(task_name(t) for t in left)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)


def task_name(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", repr(coro))


class Listener:
    """The callback the official client calls (``async (tenant, group, data_id, content)``),
    and a way to wait for a given content."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.start = time.perf_counter()

    async def __call__(self, tenant: str, group: str, data_id: str, content: str) -> None:
        self.seen.append(
            {
                "tenant": tenant,
                "group": group,
                "data_id": data_id,
                "content": content,
                "at": round(time.perf_counter() - self.start, 4),
            }
        )
        self.arrived.set()

    async def wait_for(self, content: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not any(s["content"] == content for s in self.seen):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.arrived.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)
        return True


async def correctness(run: Run) -> None:
    from v2.nacos import ConfigParam

    args, out = run.args, run.out
    data_id = args.data_id or f"official-nacos3-{uuid.uuid4().hex[:12]}"
    key = {"data_id": data_id, "group": args.group}
    out.update(namespace=args.namespace, group=args.group, data_id=data_id)
    first = f"{FIRST} {uuid.uuid4().hex[:6]}"
    service = await run.connect()

    out["initial"] = await run.timed("get_missing", service.get_config(ConfigParam(**key)))
    out["publish"] = await run.timed(
        "publish",
        service.publish_config(ConfigParam(**key, content=first, type="json")),
    )
    run.step = "read_back"
    start = time.perf_counter()
    out["read_back"], out["read_back_attempts"] = await run.get_until(ConfigParam(**key), first)
    out["timings"]["read_back"] = round(time.perf_counter() - start, 4)

    listener = Listener()
    await run.timed("add_listener", service.add_listener(data_id, args.group, listener))
    # The listen itself goes out on the client's next listen round (up to 5 s later): the first
    # change is caught by that round's md5 check if it comes first, by a push otherwise.
    for name, content in (("change1", "second"), ("change2", "third")):
        change = ConfigParam(**key, content=content)
        await run.timed(f"publish_{name}", service.publish_config(change))
        run.step = f"listen_{name}"
        start = time.perf_counter()
        arrived = await listener.wait_for(content, args.timeout)
        out["timings"][name] = round(time.perf_counter() - start, 4)
        if not arrived:
            out["seen"] = listener.seen
            raise StepError(f"the listener did not receive {content!r} within {args.timeout}s")
    out["seen"] = listener.seen
    await run.timed("remove_listener", service.remove_listener(data_id, args.group, listener))

    out["remove"] = await run.timed("remove", service.remove_config(ConfigParam(**key)))
    run.step = "gone"
    start = time.perf_counter()
    out["gone"], out["gone_attempts"] = await run.get_until(ConfigParam(**key), "")
    out["timings"]["gone"] = round(time.perf_counter() - start, 4)

    out["checks"] = {
        "initial_missing": out["initial"] == "",
        "publish": out["publish"] is True,
        "read_back": out["read_back"] == first,
        "listener_got_changes": [s["content"] for s in listener.seen] == ["second", "third"],
        "listener_key": all(
            (s["data_id"], s["group"], s["tenant"]) == (data_id, args.group, args.namespace)
            for s in listener.seen
        ),
        "remove": out["remove"] is True,
        "gone": out["gone"] == "",
    }


async def bench(run: Run) -> None:
    """publish, get, listen (one change per key) and remove over N keys, C at a time."""
    from v2.nacos import ConfigParam

    args, out = run.args, run.out
    n, prefix = args.bench, f"official-nacos3-bench-{uuid.uuid4().hex[:8]}-"
    keys = [f"{prefix}{i}" for i in range(n)]
    gate = asyncio.Semaphore(args.concurrency)
    out.update(bench=n, concurrency=args.concurrency, namespace=args.namespace, group=args.group)
    service = await run.connect()

    async def each(call: Callable[[str], Awaitable[Any]]) -> list[Any]:
        async def one(data_id: str) -> Any:
            async with gate:
                return await call(data_id)

        return await asyncio.gather(*(one(k) for k in keys))

    def param(data_id: str, content: str = "") -> Any:
        return ConfigParam(data_id=data_id, group=args.group, content=content)

    published = await run.timed("publish", each(lambda k: service.publish_config(param(k, k))))
    got = await run.timed("get", each(lambda k: service.get_config(param(k))))
    # a real server's read-after-write can lag: read the stale ones again until they agree
    stale = [k for k, value in zip(keys, got, strict=True) if value != k]
    out["get_stale"] = len(stale)
    for k in stale:
        got[keys.index(k)] = (await run.get_until(param(k), k))[0]
    listener = Listener()
    await run.timed("add_listener", each(lambda k: service.add_listener(k, args.group, listener)))
    await run.timed("publish_changes", each(lambda k: service.publish_config(param(k, k + "!"))))
    run.step = "changes"
    start = time.perf_counter()
    deadline = time.monotonic() + args.timeout + n / 100
    while len({s["data_id"] for s in listener.seen}) < n and time.monotonic() < deadline:
        listener.arrived.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(listener.arrived.wait(), 0.5)
    out["timings"]["changes"] = round(time.perf_counter() - start, 4)
    removed = await run.timed("remove", each(lambda k: service.remove_config(param(k))))
    changed = {s["data_id"] for s in listener.seen if s["content"] == s["data_id"] + "!"}
    out["per_second"] = {
        name: round(n / out["timings"][name], 1)
        for name in ("publish", "get", "publish_changes", "remove")
        if out["timings"][name] > 0
    }
    out["checks"] = {
        "publish": all(r is True for r in published),
        "get": got == keys,
        "changes": len(changed) == n,
        "remove": all(r is True for r in removed),
    }


async def main_async(run: Run) -> list[str]:
    """Run, then shut the client down whatever happened; return the errors."""
    errors = []
    try:
        await (bench(run) if run.args.bench else correctness(run))
    except Exception as exc:
        errors.append(run.describe(exc))
    try:
        await run.shutdown()
    except Exception as exc:
        errors.append(run.describe(exc))
    return errors


def close_client_logs(work_dir: Path) -> None:
    """The client adds a file handler to the logger of each module it starts (and never
    removes it): close those that write into the work folder."""
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if not isinstance(logger, logging.Logger):
            continue
        for handler in list(logger.handlers):
            filename = getattr(handler, "baseFilename", "")
            if filename and Path(filename).is_relative_to(work_dir):
                logger.removeHandler(handler)
                handler.close()


def log_tail(work_dir: Path, lines: int = 40) -> str:
    tails = []
    for path in sorted((work_dir / "logs").glob("*.log")):
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        tails.append(f"--- {path.name} (last {len(text)} lines)\n" + "\n".join(text))
    return "\n".join(tails)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        version = importlib.metadata.version(CLIENT_DIST)
    except importlib.metadata.PackageNotFoundError:
        version = "none"
    if not version.startswith("3."):
        print(
            f"this Python ({sys.executable}) has {CLIENT_DIST} {version}, not 3.x: "
            "run this script with tests/.peers/nacos3/bin/python",
            file=sys.stderr,
        )
        return 2
    password = os.environ.get(args.password_env) if args.username else None
    if args.username and not password:
        print(f"--username needs the password in ${args.password_env}", file=sys.stderr)
        return 2
    host, _, port = args.server.rpartition(":")
    if not host or not port.isdigit():
        print(f"the server must be host:port, not {args.server!r}", file=sys.stderr)
        return 2

    keep = args.work_dir is not None
    work_dir = Path(args.work_dir or tempfile.mkdtemp(prefix="official-nacos3-")).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    home_before = {str(p) for p in HOME_DEFAULTS if p.exists()}
    run = Run(args, password, work_dir)
    run.out.update(client=f"{CLIENT_DIST} {version}")
    run.out.update(server=args.server, auth=bool(args.username))
    start = time.perf_counter()
    errors = asyncio.run(main_async(run))
    run.out["timings"]["total"] = round(time.perf_counter() - start, 4)

    close_client_logs(work_dir)
    files = sorted(str(p.relative_to(work_dir)) for p in work_dir.rglob("*") if p.is_file())
    if len(files) > 10:
        files = [*files[:10], f"... ({len(files)} in all)"]
    run.out["files_written"] = files
    run.out["home_dirs_created"] = sorted(
        str(p) for p in HOME_DEFAULTS if p.exists() and str(p) not in home_before
    )
    failed = [name for name, ok in run.out.get("checks", {}).items() if not ok]
    if failed and not errors:
        errors.append("checks failed: " + ", ".join(failed))
    error = "; ".join(errors) if errors else None
    run.out["ok"] = error is None
    if error is not None:
        run.out["error"] = run.scrub(error)
        print(run.scrub(log_tail(work_dir)), file=sys.stderr)
        print(run.out["error"], file=sys.stderr)
    if keep:
        run.out["work_dir"] = str(work_dir)
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    # what the line holds is the script's own fields and what the server answered: no secret
    print(json.dumps(run.out, ensure_ascii=False, sort_keys=True), flush=True)
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main())
