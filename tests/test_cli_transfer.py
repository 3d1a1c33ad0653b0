"""``aioacm export`` and ``aioacm import`` against the bundled server: the sync CLI's layout,
round trips through a folder and a zip, ``--delete``/``--force``, and failures that delete
nothing."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from helpers import cli

from aioacm.cli.exits import FAILURE, OK, USAGE
from aioacm.cli.transfer import list_namespace
from aioacm.dialects.acm import content_md5
from aioacm.server import LocalACMServer

NS = "ns-1"
GROUPS = ["DEFAULT_GROUP", "APP", "DB", "cache.v2"]


def _content(i: int) -> str:
    return ["", "k=v\r\nx=中文", f"value-{i}\n", "# é ü\n" * 3][i % 4] + str(i) * (i % 2)


def seed(server: LocalACMServer, tenant: str = NS, count: int = 300) -> dict[tuple[str, str], str]:
    """``count`` items over four groups; returns ``{(group, data_id): content}``."""
    items = {}
    for i in range(count):
        group = GROUPS[i % len(GROUPS)]
        data_id = f"item-{i:03d}.{'yaml' if i % 3 else 'properties'}"
        server.set_config(data_id, group, _content(i), tenant=tenant)
        items[(group, data_id)] = _content(i)
    return items


def stored(server: LocalACMServer, tenant: str) -> dict[tuple[str, str], str]:
    return {(i.group, i.data_id): i.content for i in server.items() if i.tenant == tenant}


@pytest.fixture
async def namespaces(server: LocalACMServer, cli_home: Path) -> LocalACMServer:
    """Namespaces "src" (ns-1, in use), "dst" (ns-2) and "zip" (ns-3) of the server."""
    for alias, ns in (("src", NS), ("dst", "ns-2"), ("zip", "ns-3")):
        result = await cli("add", f"{server.endpoint}:{ns}", "-n", alias)
        assert result.code == 0, result
    server.clear_requests()
    return server


async def test_round_trip_through_a_folder_and_a_zip(
    namespaces: LocalACMServer, tmp_path: Path
) -> None:
    server = namespaces
    items = seed(server)
    folder = tmp_path / "out"
    exported = await cli("export", "-d", str(folder))
    assert exported.code == OK, exported
    assert "Exported 300 items" in exported.err
    # the sync CLI's layout: DEFAULT_GROUP at the top, other groups in folders
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["APP", "DB", "cache.v2"]
    assert (folder / "item-000.properties").read_bytes() == items[
        ("DEFAULT_GROUP", "item-000.properties")
    ].encode()
    assert (folder / "APP" / "item-001.yaml").read_bytes().decode() == "k=v\r\nx=中文1"
    assert len(list(folder.rglob("*"))) == 300 + 3
    # the listing's md5-checked content was used: no request per item
    assert server.request_count("get") == 0

    zip_path = tmp_path / "out.zip"
    assert (await cli("export", "-f", str(zip_path))).code == OK
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        assert "item-000.properties" in names
        assert "DB/item-002.yaml" in names
        assert archive.read("APP/item-001.yaml").decode() == "k=v\r\nx=中文1"

    imported = await cli("import", "-d", str(folder), "-n", "dst")
    assert imported.code == OK, imported
    assert stored(server, "ns-2") == items
    assert (await cli("import", "-f", str(zip_path), "-n", "zip")).code == OK
    assert stored(server, "ns-3") == items
    assert server.request_count("publish") == 600


async def test_default_zip_name_and_an_empty_namespace(namespaces: LocalACMServer) -> None:
    server = namespaces
    result = await cli("export", "-n", "dst")
    assert result.code == OK, result
    empty = Path(f"{server.endpoint}-ns-2.zip")
    with zipfile.ZipFile(empty) as archive:
        assert archive.namelist() == []
    server.set_config("a", None, "1", tenant=NS)
    assert (await cli("export")).code == OK
    default = Path(f"{server.endpoint}-{NS}.zip")
    assert zipfile.ZipFile(default).namelist() == ["a"]
    # import -f defaults to the *target* namespace's name, as in the sync CLI
    os.replace(default, empty)
    assert (await cli("import", "-n", "dst")).code == OK
    assert server.get_config("a", None, tenant="ns-2") == "1"
    missing = await cli("import", "-n", "zip")
    assert missing.code == USAGE
    assert "does not exist" in missing.err


async def test_export_delete_removes_only_what_the_namespace_lacks(
    namespaces: LocalACMServer, tmp_path: Path
) -> None:
    server = namespaces
    server.set_config("kept", None, "1", tenant=NS)
    server.set_config("kept", "G", "2", tenant=NS)
    folder = tmp_path / "repo"
    for path in ("stale-top", "G/stale", "OLDGROUP/x", ".git/objects/ab/cd", "G/.keep"):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text("old")
    (folder / "G" / "nested").mkdir()

    declined = await cli("export", "-d", str(folder), "--delete", stdin="maybe\nn\n", terminal=True)
    assert declined.code == FAILURE
    assert "Please answer y or n" in declined.err
    assert (folder / "stale-top").exists()
    assert not (folder / "kept").exists()  # cancelled: nothing exported either

    accepted = await cli("export", "-d", str(folder), "--delete", stdin="y\n", terminal=True)
    assert accepted.code == OK, accepted
    assert "deleted 4 paths" in accepted.err
    left = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert left == [".git/objects/ab/cd", "G/.keep", "G/kept", "kept"]
    assert not (folder / "G" / "nested").exists()

    (folder / "stale-again").write_text("x")
    forced = await cli("export", "-d", str(folder), "--delete", "--force")  # asks nothing
    assert forced.code == OK
    assert not (folder / "stale-again").exists()


async def test_import_delete_removes_items_missing_from_the_source(
    namespaces: LocalACMServer, tmp_path: Path
) -> None:
    server = namespaces
    folder = tmp_path / "src"
    (folder / "G").mkdir(parents=True)
    (folder / "a").write_text("1")
    (folder / "G" / "b").write_text("2")
    (folder / ".hidden").write_text("not imported")
    server.set_config("extra", None, "x", tenant="ns-2")
    server.set_config("extra", "G", "y", tenant="ns-2")

    declined = await cli("import", "-d", str(folder), "-n", "dst", "--delete", stdin="")
    assert declined.code == USAGE  # nobody to ask: nothing imported, nothing deleted
    assert "DEFAULT_GROUP/extra" in declined.err
    assert "G/extra" in declined.err
    assert len(stored(server, "ns-2")) == 2

    forced = await cli("import", "-d", str(folder), "-n", "dst", "--delete", "--force")
    assert forced.code == OK, forced
    assert stored(server, "ns-2") == {("DEFAULT_GROUP", "a"): "1", ("G", "b"): "2"}


async def test_a_failed_item_is_reported_and_nothing_is_deleted(
    namespaces: LocalACMServer, tmp_path: Path
) -> None:
    server = namespaces
    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(50):
        (folder / f"d{i}").write_text(str(i))
    server.set_config("stale", None, "x", tenant="ns-2")
    server.add_fault("publish", status=400, times=2)
    result = await cli("import", "-d", str(folder), "-n", "dst", "--delete", "--force")
    assert result.code == FAILURE
    assert "2 of 50 items failed" in result.err
    assert "nothing was deleted" in result.err
    assert result.err.count("400") >= 2
    assert server.get_config("stale", None, tenant="ns-2") == "x"
    assert len(stored(server, "ns-2")) == 49  # the others were imported


async def test_files_that_cannot_be_items_fail_the_import(
    namespaces: LocalACMServer, tmp_path: Path
) -> None:
    server = namespaces
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "good").write_text("1")
    (folder / "bad name").write_text("2")
    (folder / "binary").write_bytes(b"\xff\xfe")
    server.set_config("stale", None, "x", tenant="ns-2")
    result = await cli("import", "-d", str(folder), "-n", "dst", "--delete", "--force")
    assert result.code == USAGE  # every failure was bad input
    assert "DEFAULT_GROUP/bad name" in result.err
    assert "not UTF-8" in result.err
    assert server.get_config("good", None, tenant="ns-2") == "1"
    assert server.get_config("stale", None, tenant="ns-2") == "x"


async def test_a_failed_export_writes_no_zip_and_deletes_nothing(
    namespaces: LocalACMServer, tmp_path: Path
) -> None:
    server = namespaces
    server.set_config("plain", None, "1", tenant=NS)
    server.set_config("cipher-secret", None, "ciphertext", tenant=NS)
    zip_path = tmp_path / "old.zip"
    zip_path.write_bytes(b"previous export")
    server.add_fault("get", status=400)
    result = await cli("export", "-f", str(zip_path))
    assert result.code == FAILURE
    assert "DEFAULT_GROUP/cipher-secret" in result.err
    assert "was not written" in result.err
    assert zip_path.read_bytes() == b"previous export"
    assert server.request_count("get") == 1  # only the cipher- item is read one by one

    folder = tmp_path / "dir"
    folder.mkdir()
    (folder / "stale").write_text("x")
    result = await cli("export", "-d", str(folder), "--delete", "--force")
    assert result.code == FAILURE
    assert "nothing was deleted" in result.err
    assert (folder / "stale").exists()
    assert (folder / "plain").read_text() == "1"

    server.clear_faults()
    assert (await cli("export", "-f", str(zip_path))).code == OK
    assert sorted(zipfile.ZipFile(zip_path).namelist()) == ["cipher-secret", "plain"]


async def test_import_refuses_to_empty_a_namespace(
    namespaces: LocalACMServer, tmp_path: Path
) -> None:
    server = namespaces
    server.set_config("keep", None, "x", tenant="ns-2")
    (tmp_path / "empty").mkdir()
    result = await cli("import", "-d", str(tmp_path / "empty"), "-n", "dst", "--delete", "--force")
    assert result.code == FAILURE
    assert "refusing" in result.err
    assert server.get_config("keep", None, tenant="ns-2") == "x"
    missing = await cli("import", "-d", str(tmp_path / "nope"))
    assert missing.code == USAGE


async def test_zips_from_other_tools(namespaces: LocalACMServer, tmp_path: Path) -> None:
    server = namespaces
    zip_path = tmp_path / "by-hand.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("G/", "")  # folder entries, as `zip -r` writes them
        archive.writestr("G/a", "1")
        archive.writestr("top", "2")
        archive.writestr("too/deep/x", "3")
        archive.writestr("__MACOSX/.G/._a", "junk")
    result = await cli("import", "-f", str(zip_path), "-n", "dst")
    assert result.code == OK, result
    assert "skipped too/deep/x" in result.err
    assert stored(server, "ns-2") == {("G", "a"): "1", ("DEFAULT_GROUP", "top"): "2"}
    (tmp_path / "not.zip").write_text("nope")
    bad = await cli("import", "-f", str(tmp_path / "not.zip"))
    assert bad.code == USAGE
    assert "not a readable zip" in bad.err


async def test_export_refuses_keys_that_are_not_file_names(
    namespaces: LocalACMServer, tmp_path: Path
) -> None:
    server = namespaces
    server.set_config("..", "G", "escape", tenant=NS)
    server.set_config("fine", "G", "ok", tenant=NS)
    result = await cli("export", "-d", str(tmp_path / "out"))
    assert result.code == FAILURE
    assert "G/.." in result.err
    assert (tmp_path / "out" / "G" / "fine").read_text() == "ok"
    assert not (tmp_path / "G").exists()


class _Pages:
    def __init__(self, items: list[dict[str, Any]], size: int) -> None:
        self.items, self.size = items, size
        self.asked: list[int] = []

    async def list(self, page: int, size: int) -> dict[str, Any]:
        self.asked.append(page)
        start = (page - 1) * self.size
        pages = -(-len(self.items) // self.size)
        return {"pagesAvailable": pages, "pageItems": self.items[start : start + self.size]}


async def test_listing_keeps_only_content_it_can_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("aioacm.cli.transfer.PAGE_SIZE", 2)
    text = "a=中文"
    items = [
        {"dataId": "ok", "group": "G", "content": text, "md5": content_md5(text)},
        {"dataId": "no-md5", "group": "G", "content": text},
        {"dataId": "wrong-md5", "group": "G", "content": text, "md5": content_md5("other")},
        {"dataId": "cipher-x", "group": "G", "content": text, "md5": content_md5(text)},
        {"dataId": "no-group", "group": "", "content": "x", "md5": content_md5("x")},
        {"dataId": 3, "group": "G"},
    ]
    pages = _Pages(items, 2)
    found = await list_namespace(pages)  # type: ignore[arg-type]
    assert sorted(pages.asked) == [1, 2, 3]
    assert {(k.group, k.data_id): v for k, v in found.items()} == {
        ("G", "ok"): text,
        ("G", "no-md5"): None,
        ("G", "wrong-md5"): None,
        ("G", "cipher-x"): None,
        ("DEFAULT_GROUP", "no-group"): "x",
    }


async def test_an_item_found_twice_in_the_source_is_not_imported(
    namespaces: LocalACMServer, tmp_path: Path
) -> None:
    server = namespaces
    folder = tmp_path / "src"
    (folder / "DEFAULT_GROUP").mkdir(parents=True)
    (folder / "x").write_text("top")
    (folder / "DEFAULT_GROUP" / "x").write_text("in a folder")
    (folder / "y").write_text("fine")
    result = await cli("import", "-d", str(folder), "-n", "dst")
    assert result.code == USAGE
    assert "DEFAULT_GROUP/x: found twice" in result.err
    assert stored(server, "ns-2") == {("DEFAULT_GROUP", "y"): "fine"}
