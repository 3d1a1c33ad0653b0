"""The official async Nacos client (PyPI ``nacos-sdk-python`` 3.x, module ``v2.nacos``, gRPC
only), unchanged, against the bundled server's gRPC API; and, with ``AIOACM_NACOS_SERVER`` set,
against a real Nacos (the ``nacos_real`` tier), so that the script itself is known to be right.

The client runs in a venv of its own, ``tests/.peers/nacos3`` (``nox -s tests`` installs it from
``tests/peers/nacos3-requirements.txt``): aioacm's venv holds the legacy 2.x of the same
distribution. What it does is ``tests/peers/official_nacos3.py``, which prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from nacos_target import REAL_PASSWORD, REAL_SERVER, REAL_USERNAME, real_only

from aioacm.server import LocalACMServer

TESTS = Path(__file__).resolve().parent
PEER_VENV = TESTS / ".peers" / "nacos3"
PEER_PYTHON = PEER_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
SCRIPT = TESTS / "peers" / "official_nacos3.py"
REQUIREMENTS = TESTS / "peers" / "nacos3-requirements.txt"
INSTALL = (
    "python3 -m venv tests/.peers/nacos3 && tests/.peers/nacos3/bin/python -m pip install "
    "-r tests/peers/nacos3-requirements.txt  (nox -s tests does this)"
)
GRPC_OPS = {
    "grpc:ConfigQueryRequest",
    "grpc:ConfigPublishRequest",
    "grpc:ConfigBatchListenRequest",
    "grpc:ConfigRemoveRequest",
}


def pinned_version() -> str:
    match = re.search(r"^nacos-sdk-python==(\S+)", REQUIREMENTS.read_text(), re.MULTILINE)
    assert match is not None, f"no nacos-sdk-python pin in {REQUIREMENTS}"
    return match.group(1)


async def run_official(
    tmp_path: Path, *args: str, password: str | None = None, timeout: float = 100
) -> dict[str, Any]:
    """Run the script with the peer venv's Python; return its JSON line."""
    if not PEER_PYTHON.exists():
        pytest.fail(f"the official Nacos client is not installed in {PEER_VENV}; run: {INSTALL}")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NACOS_PASSWORD")}
    env["HOME"] = str(tmp_path / "home")  # its defaults are ~/nacos and ~/logs/nacos
    if password is not None:
        env["NACOS_PASSWORD"] = password
    proc = await asyncio.create_subprocess_exec(
        str(PEER_PYTHON),
        str(SCRIPT),
        *args,
        "--work-dir",
        str(tmp_path / "peer"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.communicate()
        raise AssertionError(f"the official client did not finish within {timeout}s") from None
    lines = out.decode("utf-8", errors="replace").strip().splitlines()
    stderr = err.decode("utf-8", errors="replace")[-4000:]
    assert lines, f"no output (exit {proc.returncode}):\n{stderr}"
    result: dict[str, Any] = json.loads(lines[-1])
    assert result["client"] == f"nacos-sdk-python {pinned_version()}", (
        f"{PEER_VENV} holds {result['client']}; reinstall: {INSTALL}"
    )
    assert result["ok"], f"{result.get('error')}\n{stderr}"
    assert proc.returncode == 0, stderr
    return result


def check_result(result: dict[str, Any], namespace: str, group: str) -> None:
    assert result["initial"] == ""  # how this client says "missing"
    assert result["publish"] is True
    assert result["read_back"].startswith("中文 ✓ first")
    assert [s["content"] for s in result["seen"]] == ["second", "third"]
    assert {(s["tenant"], s["group"]) for s in result["seen"]} == {(namespace, group)}
    assert result["remove"] is True
    assert result["gone"] == ""
    assert result["home_dirs_created"] == []


async def _run_against_bundled(tmp_path: Path, auth: bool) -> None:
    namespace = "dev" if auth else ""
    async with LocalACMServer(users={"nacos": "pw"} if auth else None) as server:
        # where the official client looks for it: the address it is given, port + 1000
        assert server.grpc_port == server.port + 1000
        args = [server.endpoint, "--namespace", namespace, "--group", "G", "--data-id", "p"]
        if auth:
            args += ["--username", "nacos"]
        result = await run_official(tmp_path, *args, password="pw" if auth else None)
        check_result(result, namespace, "G")

        assert server.get_item("p", "G", tenant=namespace) is None
        ops = {record.op for record in server.requests}
        assert ops >= GRPC_OPS, ops
        # The second change can only have come from a push, which the client answers (with a
        # NotifySubscriberResponse, not the ConfigChangeNotifyResponse Java sends).
        assert ops & {"grpc:NotifySubscriberResponse", "grpc:ConfigChangeNotifyResponse"}, ops
        publishes = [
            json.loads(r.body) for r in server.requests if r.op == "grpc:ConfigPublishRequest"
        ]
        assert [p["content"] for p in publishes[1:]] == ["second", "third"]
        assert {p.get("tenant", "") for p in publishes} == {namespace}
        assert all(403 not in (r.status, r.error_code) for r in server.requests)
        if auth:
            assert "login" in ops
            assert all(r.headers.get("accessToken") for r in server.requests if r.op in GRPC_OPS)


@pytest.mark.timeout(150)
async def test_official_client_against_bundled_server(tmp_path: Path) -> None:
    """Auth off (public namespace) and on (namespace ``dev``), side by side: the official
    client spends most of its time waiting on its own 5 s loops, so the two runs overlap."""
    (tmp_path / "open").mkdir()
    (tmp_path / "auth").mkdir()
    await asyncio.gather(
        _run_against_bundled(tmp_path / "open", auth=False),
        _run_against_bundled(tmp_path / "auth", auth=True),
    )


@pytest.mark.nacos_real
@real_only
@pytest.mark.timeout(150)
async def test_official_client_against_real_server(tmp_path: Path) -> None:
    """The same run against a real Nacos (AIOACM_NACOS_SERVER=host:port, the HTTP port; with
    AIOACM_NACOS_USERNAME/PASSWORD when its auth is on): what the bundled server must match."""
    args = [REAL_SERVER.split(",")[0].strip(), "--group", "G"]
    if REAL_USERNAME:
        args += ["--username", REAL_USERNAME]
    result = await run_official(tmp_path, *args, password=REAL_PASSWORD)
    check_result(result, "", "G")
