"""Request shapes, checked with aioresponses: URLs, headers, GBK bodies, signatures."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from aioacm import (
    AccessDeniedError,
    ACMClient,
    BadRequestError,
    ServerUnavailableError,
    __version__,
)
from aioacm.auth import sign

SERVER = "http://10.0.0.1:8080"
FROZEN_MS = 1700000000000


@pytest.fixture
def frozen_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: FROZEN_MS / 1000)


def calls(m: aioresponses) -> list[tuple[str, URL, dict[str, Any]]]:
    return [(method, url, call.kwargs) for (method, url), cs in m.requests.items() for call in cs]


def client(tmp_path: Any, **kwargs: Any) -> ACMClient:
    kwargs.setdefault("cai_enabled", False)
    return ACMClient(
        kwargs.pop("endpoint", "10.0.0.1"),
        snapshot_base=str(tmp_path / "snap"),
        failover_base=str(tmp_path / "data"),
        **kwargs,
    )


@pytest.mark.usefixtures("frozen_time")
async def test_get_shape_with_namespace_and_signature(mocked: aioresponses, tmp_path: Any) -> None:
    url = f"{SERVER}/diamond-server/config.co?dataId=app.props&group=G1&tenant=ns1"
    mocked.get(url, body="中文".encode("gbk"))
    async with client(tmp_path, namespace="ns1", ak="AK", sk="secret") as c:
        assert await c.get("app.props", "G1") == "中文"
    ((method, sent_url, kwargs),) = calls(mocked)
    assert method == "GET"
    assert str(sent_url) == url
    assert kwargs["data"] is None
    assert kwargs["headers"] == {
        "Diamond-Client-AppName": "ACM-SDK-Python",
        "Client-Version": __version__,
        "exConfigInfo": "true",
        "Spas-AccessKey": "AK",
        "timeStamp": str(FROZEN_MS),
        "Spas-Signature": sign("secret", f"ns1+G1+{FROZEN_MS}"),
    }


async def test_get_without_namespace_or_auth_sends_no_tenant_or_spas(
    mocked: aioresponses, tmp_path: Any
) -> None:
    mocked.get(f"{SERVER}/diamond-server/config.co?dataId=d&group=DEFAULT_GROUP", body=b"v")
    async with client(tmp_path, app_name="my-app") as c:
        assert await c.get("d", None) == "v"
    ((_, _, kwargs),) = calls(mocked)
    assert not any(h.startswith("Spas") for h in kwargs["headers"])
    assert kwargs["headers"]["Diamond-Client-AppName"] == "my-app"


@pytest.mark.usefixtures("frozen_time")
async def test_publish_shape(mocked: aioresponses, tmp_path: Any) -> None:
    url = f"{SERVER}/diamond-server/basestone.do?method=syncUpdateAll"
    mocked.post(url, body=b"true")
    async with client(tmp_path, namespace="ns1", ak="AK", sk="secret") as c:
        assert await c.publish("d", "", "k=v\n中文") is True
    ((method, sent_url, kwargs),) = calls(mocked)
    assert (method, str(sent_url)) == ("POST", url)
    assert kwargs["data"] == b"dataId=d&group=DEFAULT_GROUP&content=k%3Dv%0A%D6%D0%CE%C4&tenant=ns1"
    assert kwargs["headers"]["Content-Type"] == "application/x-www-form-urlencoded; charset=GBK"
    assert kwargs["headers"]["Spas-Signature"] == sign("secret", f"ns1+DEFAULT_GROUP+{FROZEN_MS}")


async def test_remove_shape(mocked: aioresponses, tmp_path: Any) -> None:
    url = f"{SERVER}/diamond-server/datum.do?method=deleteAllDatums"
    mocked.post(url, body=b"true")
    async with client(tmp_path) as c:
        assert await c.remove("d", "g") is True
    ((_, _, kwargs),) = calls(mocked)
    assert kwargs["data"] == b"dataId=d&group=g"


@pytest.mark.usefixtures("frozen_time")
async def test_list_shape_signs_tenant_only(mocked: aioresponses, tmp_path: Any) -> None:
    url = (
        f"{SERVER}/diamond-server/basestone.do?pageNo=2&pageSize=50"
        "&method=getAllConfigByTenant&tenant=ns1"
    )
    page = {"totalCount": 0, "pageNumber": 2, "pagesAvailable": 0, "pageItems": []}
    mocked.get(url, payload=page)
    async with client(tmp_path, namespace="ns1", ak="AK", sk="secret") as c:
        assert await c.list(2, 50) == page
    ((_, _, kwargs),) = calls(mocked)
    assert kwargs["headers"]["Spas-Signature"] == sign("secret", f"ns1+{FROZEN_MS}")


async def test_one_session_for_every_request(mocked: aioresponses, tmp_path: Any) -> None:
    url = f"{SERVER}/diamond-server/config.co?dataId=d&group=g"
    mocked.get(url, body=b"1", repeat=True)
    async with client(tmp_path) as c:
        await c.get("d", "g")
        session = c.session
        await c.get("d", "g")
        assert c.session is session
        assert isinstance(session, aiohttp.ClientSession)
    assert session.closed


async def test_connection_error_rotates_to_next_server(
    mocked: aioresponses, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIAMOND_SERVER_IPS", "10.0.0.1,10.0.0.2:9090")
    path = "/diamond-server/config.co?dataId=d&group=g"
    mocked.get(f"http://10.0.0.1:8080{path}", exception=aiohttp.ClientConnectionError("refused"))
    mocked.get(f"http://10.0.0.2:9090{path}", exception=aiohttp.ClientConnectionError("refused"))
    async with client(tmp_path, cai_enabled=True) as c:
        with pytest.raises(ServerUnavailableError, match="2 tried") as info:
            await c.get("d", "g", no_snapshot=True)
    assert info.value.key == "d+g+"
    assert {str(url.origin()) for _, url, _ in calls(mocked)} == {
        "http://10.0.0.1:8080",
        "http://10.0.0.2:9090",
    }


@pytest.mark.parametrize(("status", "error"), [(403, AccessDeniedError), (400, BadRequestError)])
async def test_4xx_raise_at_once_without_rotation(
    mocked: aioresponses,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    error: type[Exception],
) -> None:
    monkeypatch.setenv("DIAMOND_SERVER_IPS", "10.0.0.1:8080,10.0.0.2:8080")
    path = "/diamond-server/config.co?dataId=d&group=g"
    for host in ("10.0.0.1", "10.0.0.2"):
        mocked.get(f"http://{host}:8080{path}", status=status, repeat=True)
    async with client(tmp_path) as c:
        with pytest.raises(error) as info:
            await c.get("d", "g")
    assert len(calls(mocked)) == 1
    assert info.value.status == status  # type: ignore[attr-defined]
    assert "d+g+" in str(info.value)
