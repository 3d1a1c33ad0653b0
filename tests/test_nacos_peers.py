"""Clients no one here wrote, against the bundled server's Nacos API, unchanged (get, publish,
remove, a watcher, auth): the legacy HTTP ``nacos.NacosClient`` of nacos-sdk-python 2.x, and the
npm ``nacos`` package (installed into tests/js by ``nox -s tests``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import textwrap
from pathlib import Path

from aioacm.server import LocalACMServer

JS = Path(__file__).resolve().parent / "js"

LEGACY_SCRIPT = """
import json, os, sys, threading, time
import nacos

addr, out_path = sys.argv[1], sys.argv[2]
client = nacos.NacosClient(addr, namespace="dev", username="nacos", password="pw")
client.set_options(pulling_timeout=5)
out = {}
out["get"] = client.get_config("seeded", "G")
out["missing"] = client.get_config("nothing", "G", no_snapshot=True)
out["publish"] = client.publish_config("p", "G", "中文 ✓ first", config_type="json")
out["read_back"] = client.get_config("p", "G")
seen = []
changed = threading.Event()

def on_change(args):
    seen.append(args["content"])
    if args["content"] == "second":
        changed.set()

client.add_config_watcher("p", "G", on_change)
time.sleep(0.5)
client.publish_config("p", "G", "second")
changed.wait(20)
out["seen"] = seen
out["remove"] = client.remove_config("p", "G")
out["gone"] = client.get_config("p", "G", no_snapshot=True)
with open(out_path, "w", encoding="utf-8") as f:
    json.dump(out, f, ensure_ascii=False)
os._exit(0)  # its watcher threads and manager process never end on their own
"""


async def run_peer(args: list[str], cwd: Path, timeout: float = 60) -> None:
    """Run a peer client in its own process group and kill the whole group afterwards: it
    leaves helper processes behind (a multiprocessing manager), which would hold a pipe open,
    so its output goes to a file."""
    log = cwd / "peer.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=cwd, stdout=out, stderr=out, start_new_session=True
        )
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.returncode is None:
                await proc.wait()
    assert proc.returncode == 0, log.read_text(errors="replace")[-2000:]


async def test_legacy_nacos_sdk_python_client(tmp_path: Path) -> None:
    async with LocalACMServer(users={"nacos": "pw"}) as server:
        server.set_config("seeded", "G", "from the server", tenant="dev")
        out = tmp_path / "out.json"
        script = tmp_path / "legacy.py"
        script.write_text(textwrap.dedent(LEGACY_SCRIPT), encoding="utf-8")
        await run_peer([sys.executable, str(script), server.endpoint, str(out)], tmp_path)
        result = json.loads(out.read_text(encoding="utf-8"))
        assert result["get"] == "from the server"
        assert result["missing"] is None
        assert result["publish"] is True
        assert result["read_back"] == "中文 ✓ first"
        assert result["seen"][-1] == "second"
        assert result["remove"] is True
        assert result["gone"] is None
        assert server.get_item("p", "G", tenant="dev") is None
        ops = {record.op for record in server.requests}
        assert {"login", "get", "publish", "remove", "poll"} <= ops
        assert all(record.status != 403 for record in server.requests)


async def test_npm_nacos_client(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node is not None, "the npm nacos test needs Node.js (nox -s tests installs the package)"
    assert (JS / "node_modules" / "nacos").is_dir(), "run: npm ci --prefix tests/js"
    async with LocalACMServer(users={"nacos": "pw"}) as server:
        server.set_config("seeded", "G", "from the server", tenant="dev")
        await run_peer([node, str(JS / "nacos_peer.js"), server.endpoint, "nacos", "pw"], tmp_path)
        lines = (tmp_path / "peer.log").read_text(encoding="utf-8").strip().splitlines()
        result = json.loads(lines[-1])
        assert result["get"] == "from the server"
        assert result["publish"] is True
        assert result["readBack"] == "中文 ✓ first"
        assert "second" in result["seen"]
        assert result["remove"] is True
        assert result["gone"] is None
        assert server.get_item("p", "G", tenant="dev") is None
        assert {"get", "publish", "remove", "poll"} <= {r.op for r in server.requests}
        assert all(record.status != 403 for record in server.requests)
