"""``aioacm copy`` and the library seams under it (``get_item``, ``publish_raw``): items copied
exactly as stored (content, config type, ciphertext and encrypted data key) between ACM and
Nacos namespaces of the bundled server, which speaks both on one port over one store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import cli

from aioacm import (
    ACMClient,
    ConfigClient,
    ConfigItem,
    InvalidOptionError,
    InvalidParameterError,
    NacosClient,
)
from aioacm.cli.exits import FAILURE, OK, SETTINGS, UNAVAILABLE, USAGE
from aioacm.dialects.acm import content_md5 as acm_md5
from aioacm.dialects.nacos import content_md5 as utf8_md5
from aioacm.server import LocalACMServer

ENVELOPE = "cipher-kms-aes-128-db.properties"
DATA_KEY = "ZW5jcnlwdGVkIGRhdGEga2V5"
CIPHERTEXT = "U2FsdGVkX1+dGhpcyBpcyBjaXBoZXJ0ZXh0"


def stored(server: LocalACMServer, tenant: str) -> dict[str, tuple[str, str | None]]:
    """``{"GROUP/DATA_ID": (content, encrypted data key)}`` of one namespace."""
    return {
        f"{i.group}/{i.data_id}": (i.content, i.encrypted_data_key)
        for i in server.items()
        if i.tenant == tenant
    }


def seed(server: LocalACMServer) -> None:
    """ns-1 (source): 2 new items, an envelope-encrypted one, a KMS-encrypted one, one changed
    and one the same as in ns-2; ns-2 (target) also has one item ns-1 lacks."""
    for tenant in ("ns-1", "ns-2"):
        server.set_config("same.yaml", "APP", "a: 1\n", tenant=tenant)
    server.set_config("app.properties", None, "timeout=3\nname=中文", tenant="ns-1")
    server.set_config("db.yaml", "APP", "url: x\n", tenant="ns-1")
    server.set_config(ENVELOPE, None, CIPHERTEXT, tenant="ns-1", encrypted_data_key=DATA_KEY)
    server.set_config("cipher-token", None, "a21zLWNpcGhlcnRleHQ=", tenant="ns-1")
    server.set_config("changed.json", "APP", '{"v": 2}', tenant="ns-1")
    server.set_config("changed.json", "APP", '{"v": 1}', tenant="ns-2", config_type="json")
    server.set_config("old.txt", "APP", "stale", tenant="ns-2")


def nacos(server: LocalACMServer, namespace: str) -> str:
    return f"nacos://127.0.0.1:{server.port}/{namespace}"


@pytest.fixture
async def aliases(server: LocalACMServer, cli_home: Path) -> LocalACMServer:
    """ACM namespaces "src" (ns-1, in use) and "dst" (ns-2) of the server."""
    for alias, ns in (("src", "ns-1"), ("dst", "ns-2")):
        result = await cli("add", f"{server.endpoint}:{ns}", "-n", alias)
        assert result.code == 0, result
    server.clear_requests()
    return server


@pytest.fixture
async def clients(tmp_path: Path) -> AsyncIterator[Callable[..., ConfigClient]]:
    made: list[ConfigClient] = []

    def make(server: LocalACMServer, kind: str, **kwargs: Any) -> ConfigClient:
        kwargs.setdefault("snapshot_base", str(tmp_path / "snapshot"))
        kwargs.setdefault("failover_base", str(tmp_path / "data"))
        client: ConfigClient
        if kind == "acm":
            client = ACMClient(server.endpoint, **kwargs)
        else:
            client = NacosClient(f"127.0.0.1:{server.port}", protocol=kind, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


# -- the library seams ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["acm", "http", "grpc"])
async def test_publish_raw_and_get_item_keep_ciphertext_data_key_and_type(
    server: LocalACMServer, clients: Callable[..., ConfigClient], kind: str
) -> None:
    client = clients(server, kind, namespace="ns-1")
    md5 = acm_md5 if kind == "acm" else utf8_md5
    kept_type = None if kind == "acm" else "yaml"  # ACM keeps no config type
    await client.publish_raw(
        ENVELOPE, None, CIPHERTEXT, encrypted_data_key=DATA_KEY, config_type="yaml"
    )
    await client.publish_raw("app.yaml", "G", "a: 中文\n", config_type="yaml")
    stored_item = server.get_item(ENVELOPE, None, "ns-1")
    assert stored_item is not None
    assert (stored_item.content, stored_item.encrypted_data_key) == (CIPHERTEXT, DATA_KEY)
    assert stored_item.config_type == kept_type
    assert await client.get_item(ENVELOPE, None) == ConfigItem(
        ENVELOPE, "DEFAULT_GROUP", "ns-1", CIPHERTEXT, md5(CIPHERTEXT), kept_type, DATA_KEY
    )
    assert await client.get_item("app.yaml", "G") == ConfigItem(
        "app.yaml", "G", "ns-1", "a: 中文\n", md5("a: 中文\n"), kept_type, None
    )
    assert await client.get_item("missing", "G") is None


async def test_get_item_skips_failover_and_snapshot_and_publish_raw_never_encrypts(
    server: LocalACMServer, clients: Callable[..., ConfigClient], tmp_path: Path
) -> None:
    client = clients(server, "acm", kms_enabled=True)  # KMS on, but not configured
    assert isinstance(client, ACMClient)
    with pytest.raises(InvalidOptionError):  # publish would encrypt: it needs a key id
        await client.publish(ENVELOPE, None, "password=x")
    await client.publish_raw(ENVELOPE, None, CIPHERTEXT, encrypted_data_key=DATA_KEY)
    assert server.get_config(ENVELOPE) == CIPHERTEXT
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / f"{ENVELOPE}+DEFAULT_GROUP+").write_text("pinned", encoding="utf-8")
    assert await client.get_raw(ENVELOPE, None) == "pinned"  # the failover file wins for get
    item = await client.get_item(ENVELOPE, None)
    assert item is not None
    assert (item.content, item.encrypted_data_key) == (CIPHERTEXT, DATA_KEY)
    assert not (tmp_path / "snapshot").exists()  # get_item writes no snapshot
    assert CIPHERTEXT not in repr(item)
    assert DATA_KEY not in repr(item)


async def test_publish_raw_checks_its_arguments_before_any_request(
    server: LocalACMServer, clients: Callable[..., ConfigClient]
) -> None:
    acm, nacos_client = clients(server, "acm"), clients(server, "http")
    for bad in ({"config_type": ""}, {"encrypted_data_key": 3}, {"timeout": -1}):
        with pytest.raises(InvalidParameterError):
            await acm.publish_raw("d", None, "x", **bad)
    with pytest.raises(InvalidParameterError, match="blank"):
        await nacos_client.publish_raw("d", None, "  ")
    with pytest.raises(InvalidParameterError):
        await acm.publish_raw("d", None, "emoji 🙂")  # not GBK
    assert server.request_count("publish") == 0


# -- ACM to ACM ----------------------------------------------------------------------------------


async def test_dry_run_lists_the_plan_and_changes_nothing(aliases: LocalACMServer) -> None:
    server = aliases
    seed(server)
    before = stored(server, "ns-2")
    result = await cli("copy", "src", "dst", "--dry-run", "--delete")
    assert result.code == OK, result
    assert result.out == (
        "changed         APP/changed.json (content)\n"
        "new             APP/db.yaml\n"
        "only-in-target  APP/old.txt\n"
        "same            APP/same.yaml\n"
        "new             DEFAULT_GROUP/app.properties\n"
        "new             DEFAULT_GROUP/cipher-kms-aes-128-db.properties\n"
        "new             DEFAULT_GROUP/cipher-token\n"
        "new                   4\n"
        "changed               1\n"
        "same                  1\n"
        "only-in-target        1\n"
    )
    assert result.err == "dry run: nothing was changed; --delete would delete 1 item\n"
    assert stored(server, "ns-2") == before
    assert server.request_count("publish") == server.request_count("remove") == 0
    as_json = json.loads((await cli("copy", "src", "dst", "--dry-run", "--json")).out)
    assert as_json["changed"] == {"APP/changed.json": ["content"]}
    assert as_json["only_in_target"] == ["APP/old.txt"]


async def test_copy_with_delete_mirrors_the_namespace_and_verifies(
    aliases: LocalACMServer,
) -> None:
    server = aliases
    seed(server)
    result = await cli("copy", "src", "dst", "--delete", "--force")
    assert result.code == OK, result
    assert result.out == (
        "new                   4\n"
        "changed               1\n"
        "same                  1\n"
        "only-in-target        1\n"
        "deleted               1\n"
        "verified              5\n"
        "failed                0\n"
    )
    assert f"Copying 5 items from {server.endpoint}:ns-1 (src) to" in result.err
    assert stored(server, "ns-2") == stored(server, "ns-1")
    assert stored(server, "ns-2")[f"DEFAULT_GROUP/{ENVELOPE}"] == (CIPHERTEXT, DATA_KEY)
    again = json.loads((await cli("copy", "src", "dst", "--dry-run", "--json")).out)
    assert (again["new"], again["changed"], again["only_in_target"]) == ([], {}, [])
    assert len(again["same"]) == 6


async def test_a_failed_item_is_listed_and_nothing_is_deleted(aliases: LocalACMServer) -> None:
    server = aliases
    seed(server)
    server.add_fault("publish", status=400, times=1, body="refused")
    result = await cli("copy", "src", "dst", "--delete", "--force")
    assert result.code == FAILURE, result
    assert "failed                1\n" in result.out
    assert "deleted               0\n" in result.out
    assert result.err.endswith(
        "aioacm: error: 1 of 6 items failed; the others were copied; nothing was deleted\n"
    )
    assert "APP/old.txt" in stored(server, "ns-2")
    rerun = await cli("copy", "src", "dst", "--delete", "--force")  # the retry completes it
    assert rerun.code == OK, rerun
    assert stored(server, "ns-2") == stored(server, "ns-1")


async def test_an_item_that_cannot_be_read_is_neither_copied_nor_deleted(
    aliases: LocalACMServer,
) -> None:
    server = aliases
    server.set_config("cipher-token", None, "c2VjcmV0", tenant="ns-1")  # fetched with a get
    server.set_config("cipher-token", None, "b2xk", tenant="ns-2")
    server.set_config("plain", None, "x", tenant="ns-1")
    server.add_fault("get", status=400, times=1, body="no")  # the source's one get
    result = await cli("copy", "src", "dst", "--delete", "--force")
    assert result.code == FAILURE, result
    assert "only-in-target        0\n" in result.out
    assert "failed                1\n" in result.out
    assert "aioacm: error: DEFAULT_GROUP/cipher-token: " in result.err
    assert stored(server, "ns-2") == {
        "DEFAULT_GROUP/cipher-token": ("b2xk", None),
        "DEFAULT_GROUP/plain": ("x", None),
    }


async def test_delete_asks_first_and_changes_nothing_without_a_yes(
    aliases: LocalACMServer,
) -> None:
    server = aliases
    seed(server)
    before = stored(server, "ns-2")
    result = await cli("copy", "src", "dst", "--delete", stdin="y\n")  # stdin: no terminal
    assert result.code == USAGE, result
    assert "nothing was copied or deleted" in result.err
    assert "  - APP/old.txt" in result.err
    assert stored(server, "ns-2") == before
    declined = await cli("copy", "src", "dst", "--delete", stdin="n\n", terminal=True)
    assert declined.code == FAILURE, declined
    assert "Delete them after the copy? (y/n)" in declined.err
    assert "nothing was copied or deleted" in declined.err
    assert stored(server, "ns-2") == before
    agreed = await cli("copy", "src", "dst", "--delete", stdin="y\n", terminal=True)
    assert agreed.code == OK, agreed
    assert stored(server, "ns-2") == stored(server, "ns-1")


async def test_filters_bad_targets_and_unreachable_servers(aliases: LocalACMServer) -> None:
    server = aliases
    seed(server)
    only = await cli("copy", "src", "dst", "-g", "APP", "-p", "d", "--dry-run")
    assert only.out.splitlines()[0] == "new             APP/db.yaml"
    assert "new                   1" in only.out
    same = await cli("copy", "src", f"{server.endpoint}:ns-1")
    assert (same.code, same.out) == (USAGE, "")
    assert "SOURCE and TARGET are the same namespace" in same.err
    assert (await cli("copy", "nope", "dst")).code == SETTINGS
    assert (await cli("copy", "src")).code == USAGE
    server.add_fault("list", status=503)
    down = await cli("copy", "src", "dst")
    assert down.code == UNAVAILABLE, down
    assert f"cannot reach {server.endpoint}:ns-1 (src)" in down.err


# -- ACM to Nacos, Nacos to Nacos and to ACM ---------------------------------------------------


async def test_acm_to_nacos_carries_ciphertext_data_key_and_types(
    aliases: LocalACMServer, clients: Callable[..., ConfigClient]
) -> None:
    server = aliases
    seed(server)
    server.set_config("blank.txt", None, "", tenant="ns-1")  # Nacos refuses blank content
    target = nacos(server, "ns-2")
    dry = await cli("copy", "src", target, "--dry-run")
    assert "new             DEFAULT_GROUP/blank.txt" in dry.out
    assert "changed         APP/changed.json (content)" in dry.out

    failed = await cli("copy", "src", target, "--delete", "--force")
    assert failed.code == FAILURE, failed
    assert (
        "aioacm: error: DEFAULT_GROUP/blank.txt: the target refuses it: Nacos refuses blank"
        in failed.err
    )
    assert "nothing was deleted" in failed.err
    assert "APP/old.txt" in stored(server, "ns-2")

    server.delete_config("blank.txt", None, "ns-1")
    done = await cli("copy", "src", target, "--delete", "--force")
    assert done.code == OK, done
    assert "verified              0\n" in done.out  # everything was copied the first time
    assert "deleted               1\n" in done.out
    assert stored(server, "ns-2") == stored(server, "ns-1")

    client = clients(server, "grpc", namespace="ns-2")
    item = await client.get_item(ENVELOPE, None)
    assert item is not None
    assert (item.content, item.encrypted_data_key) == (CIPHERTEXT, DATA_KEY)
    changed = await client.get_item("changed.json", "APP")
    assert changed is not None
    assert (changed.content, changed.config_type) == ('{"v": 2}', "json")  # type left as was


async def test_nacos_to_nacos_keeps_types_and_acm_targets_warn(aliases: LocalACMServer) -> None:
    server = aliases
    server.set_config("app.yaml", "G", "a: 1\n", tenant="ns-1", config_type="yaml")
    server.set_config("app.json", "G", "{}", tenant="ns-1", config_type="json")
    server.set_config("app.json", "G", "{}", tenant="ns-3", config_type="text")
    to_nacos = await cli("copy", nacos(server, "ns-1"), nacos(server, "ns-3"))
    assert to_nacos.code == OK, to_nacos
    assert "new                   1\nchanged               1\n" in to_nacos.out
    for data_id, kind in (("app.yaml", "yaml"), ("app.json", "json")):
        item = server.get_item(data_id, "G", "ns-3")
        assert item is not None
        assert item.config_type == kind

    to_acm = await cli("copy", nacos(server, "ns-1"), "dst")
    assert to_acm.code == OK, to_acm
    assert "keeps no config type: the types of 2 items were not copied" in to_acm.err


async def test_a_nacos_server_that_will_not_list(aliases: LocalACMServer) -> None:
    server = aliases
    seed(server)
    server.add_fault("list", status=410)  # as a Nacos 3.x answers its v1 list by default
    source = await cli("copy", nacos(server, "ns-1"), "dst")
    assert source.code == FAILURE, source
    assert f"cannot list {nacos(server, 'ns-1')}" in source.err
    assert "does not serve the v1 list API" in source.err

    server.clear_faults()
    target = nacos(server, "ns-2")
    for delete in (True, False):  # the source's one list page passes; the target's is refused
        server.add_fault("list", delay=0.001, times=1)
        server.add_fault("list", status=410)
        result = await cli("copy", "src", target, *(["--delete", "--force"] if delete else []))
        server.clear_faults()
        if delete:  # what is only in the target cannot be known
            assert result.code == FAILURE, result
            assert f"cannot list {target}, so --delete cannot know what to delete" in result.err
            assert "APP/db.yaml" not in stored(server, "ns-2")
    assert result.code == OK, result
    assert f"warning: cannot list {target}: " in result.err
    assert "reading the source's 6 items from it one by one instead" in result.err
    assert result.out.startswith("new                   4\nchanged               1\n")
    copied = stored(server, "ns-2")
    del copied["APP/old.txt"]
    assert copied == stored(server, "ns-1")
