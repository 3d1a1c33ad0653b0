"""The sync SDK (acm-sdk-python 0.4.11), unchanged, against the bundled server.

The SDK blocks and forks pollers, so it runs in a subprocess (cwd = tmp_path, where its
``acm-data`` folders land) while the server runs in the test's event loop. The scripts print
one JSON object per line; the tests assert on those lines and on the server's request log.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from aioacm.server import LocalACMServer

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="the sync SDK forks pollers")

GBK_TEXT = "k=v\n中文"

PREAMBLE = """\
import json
import multiprocessing
import queue
import sys

# The SDK's pollers are processes running bound methods of a client that holds locks:
# they only work when forked.
multiprocessing.set_start_method("fork")

import acm

cfg = json.loads(sys.argv[1])
client = acm.ACMClient(cfg["endpoint"], cfg["namespace"], cfg["ak"], cfg["sk"])
client.set_options(cai_enabled=cfg["cai"], pulling_timeout=1)


def out(**fields):
    print(json.dumps(fields), flush=True)


"""


async def run_sdk(
    tmp_path: Path,
    body: str,
    server: LocalACMServer,
    *,
    cai: bool = True,
    namespace: str = "",
    ak: str | None = None,
    sk: str | None = None,
    on_line: Callable[[dict[str, Any]], None] | None = None,
    timeout: float = 30.0,
) -> list[dict[str, Any]]:
    """Run ``body`` after PREAMBLE in a subprocess; return the JSON lines it printed."""
    script = tmp_path / "sdk_script.py"
    script.write_text(PREAMBLE + textwrap.dedent(body), encoding="utf-8")
    config = {"endpoint": server.endpoint, "cai": cai, "namespace": namespace, "ak": ak, "sk": sk}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        json.dumps(config),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr
    lines: list[dict[str, Any]] = []

    async def read_stdout() -> None:
        while line := await stdout.readline():
            message = json.loads(line)
            lines.append(message)
            if on_line is not None:
                on_line(message)

    try:
        _, err, _ = await asyncio.wait_for(
            asyncio.gather(read_stdout(), stderr.read(), proc.wait()), timeout
        )
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")
    return lines


@pytest.fixture
async def server() -> AsyncIterator[LocalACMServer]:
    async with LocalACMServer() as srv:
        yield srv


CRUD_SCRIPT = """\
out(get=client.get("pre", "G"))
out(missing=client.get("nope", "G"))
out(published=client.publish("pub", "G", cfg["content"]))
out(after_publish=client.get("pub", "G"))
out(listed=client.list_all())
out(removed=client.remove("pub", "G"))
out(after_remove=client.get("pub", "G"))
out(listed=client.list_all())
"""


@pytest.mark.parametrize("cai", [True, False])
@pytest.mark.parametrize("namespace", ["", "ns1"])
async def test_get_publish_remove_list(
    server: LocalACMServer, tmp_path: Path, cai: bool, namespace: str
) -> None:
    server.set_config("pre", "G", GBK_TEXT, tenant=namespace)
    server.set_config("elsewhere", "G", "x", tenant="other-ns")
    script = CRUD_SCRIPT.replace('cfg["content"]', repr(GBK_TEXT))
    lines = await run_sdk(tmp_path, script, server, cai=cai, namespace=namespace)

    assert lines == [
        {"get": GBK_TEXT},
        {"missing": None},
        {"published": True},
        {"after_publish": GBK_TEXT},
        {
            "listed": [
                {"dataId": "pre", "group": "G"},
                {"dataId": "pub", "group": "G"},
            ]
        },
        {"removed": True},
        {"after_remove": None},
        {"listed": [{"dataId": "pre", "group": "G"}]},
    ]
    assert (server.request_count("address") > 0) is cai
    [published] = server.requests_for("publish")
    # GBK bytes, percent-encoded, as PROTOCOL.md says the SDK sends them.
    assert b"content=k%3Dv%0A%D6%D0%CE%C4" in published.body
    assert published.form().get("tenant") == (namespace or None)
    assert server.get_config("pub", "G", namespace) is None
    assert {r.status for r in server.requests} <= {200, 404}
    # The SDK kept a snapshot of what it read, under the test's folder.
    assert (tmp_path / "acm-data" / "snapshot" / f"pre+G+{namespace}").read_text(
        encoding="utf-8"
    ) == GBK_TEXT


WATCH_SCRIPT = """\
events = queue.Queue()
client.add_watcher("w", "G", events.put)
for step in range(3):
    event = events.get(timeout=15)
    out(step=step, content=event["content"], namespace=event["namespace"])
"""


def react(server: LocalACMServer, namespace: str) -> Callable[[dict[str, Any]], None]:
    """Change the watched item after each event the script reports."""

    def on_line(message: dict[str, Any]) -> None:
        if message.get("step") == 0:
            server.set_config("w", "G", "changed 中文", tenant=namespace)
        elif message.get("step") == 1:
            server.delete_config("w", "G", tenant=namespace)

    return on_line


@pytest.mark.parametrize("cai", [True, False])
async def test_watcher_sees_the_initial_value_a_change_and_a_delete(
    server: LocalACMServer, tmp_path: Path, cai: bool
) -> None:
    server.set_config("w", "G", "initial")
    lines = await run_sdk(tmp_path, WATCH_SCRIPT, server, cai=cai, on_line=react(server, ""))
    assert lines == [
        {"step": 0, "content": "initial", "namespace": ""},
        {"step": 1, "content": "changed 中文", "namespace": ""},
        {"step": 2, "content": None, "namespace": ""},
    ]
    polls = server.requests_for("poll")
    # The first poll of a new key must not hang; the SDK marks it so.
    assert polls[0].headers["longPullingNoHangUp"] == "true"
    assert polls[0].headers["longPullingTimeout"] == "1000"
    assert polls[0].form()["Probe-Modify-Request"] == "w\x02G\x02\x02\x01"


@pytest.fixture
async def secure_server() -> AsyncIterator[LocalACMServer]:
    async with LocalACMServer(credentials={"ak1": "sk1"}) as srv:
        yield srv


@pytest.mark.parametrize("namespace", ["", "ns1"])
async def test_access_key_auth(
    secure_server: LocalACMServer, tmp_path: Path, namespace: str
) -> None:
    server = secure_server
    server.set_config("pre", "G", GBK_TEXT, tenant=namespace)
    script = CRUD_SCRIPT.replace('cfg["content"]', repr(GBK_TEXT))
    lines = await run_sdk(tmp_path, script, server, namespace=namespace, ak="ak1", sk="sk1")
    assert lines[0] == {"get": GBK_TEXT}
    assert lines[-1] == {"listed": [{"dataId": "pre", "group": "G"}]}
    assert {r.status for r in server.requests} <= {200, 404}
    # get/publish/remove are signed; so is list, when there is a namespace to sign.
    for record in server.requests:
        if record.op in ("get", "publish", "remove") or (record.op == "list" and namespace):
            assert "Spas-Signature" in record.headers, record

    server.clear_requests()
    server.set_config("w", "G", "initial", tenant=namespace)
    lines = await run_sdk(
        tmp_path,
        WATCH_SCRIPT,
        server,
        namespace=namespace,
        ak="ak1",
        sk="sk1",
        on_line=react(server, namespace),
    )
    assert lines == [
        {"step": 0, "content": "initial", "namespace": namespace},
        {"step": 1, "content": "changed 中文", "namespace": namespace},
        {"step": 2, "content": None, "namespace": namespace},
    ]
    # The SDK polls unsigned, with its access key only.
    poll = server.requests_for("poll")[0]
    assert poll.headers["Spas-AccessKey"] == "ak1"
    assert "Spas-Signature" not in poll.headers


DENIED_SCRIPT = """\
for call in (lambda: client.get("pre", "G"), lambda: client.publish("pre", "G", "x")):
    try:
        call()
        out(denied=None)
    except acm.ACMException as exc:
        out(denied=str(exc))
"""


@pytest.mark.parametrize(("ak", "sk"), [("ak1", "wrong"), ("nobody", "sk1"), (None, None)])
async def test_wrong_keys_are_refused(
    secure_server: LocalACMServer, tmp_path: Path, ak: str | None, sk: str | None
) -> None:
    secure_server.set_config("pre", "G", "v")
    lines = await run_sdk(tmp_path, DENIED_SCRIPT, secure_server, ak=ak, sk=sk)
    assert lines == [{"denied": "Insufficient privilege."}] * 2
    assert secure_server.get_config("pre", "G") == "v"
