"""The async snapshot / failover stores: layout, atomic writes, degraded folders."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from aioacm.stores import FileStore

CONTENTS = ["plain", "中文=值\r\nline2\n", "", "x" * 200_000]


@pytest.mark.parametrize("content", CONTENTS)
async def test_write_then_read_is_exact_utf8(tmp_path: Path, content: str) -> None:
    store = FileStore(str(tmp_path / "snap"), name="snapshot")
    assert await store.write("d+g+ns", content)
    # the sync SDK's format: the file is the content's UTF-8 bytes, nothing else
    assert (tmp_path / "snap" / "d+g+ns").read_bytes() == content.encode("utf-8")
    assert await store.read("d+g+ns") == content


async def test_reads_a_file_written_by_hand(tmp_path: Path) -> None:
    (tmp_path / "d+DEFAULT_GROUP+").write_bytes("a=中\r\n".encode())
    store = FileStore(str(tmp_path), name="failover")
    assert await store.read("d+DEFAULT_GROUP+") == "a=中\r\n"
    assert await store.read("missing+g+") is None


async def test_overwrite_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    for i in range(5):
        await store.write("k+g+", f"v{i}")
    assert os.listdir(tmp_path) == ["k+g+"]
    assert (tmp_path / "k+g+").read_text() == "v4"


async def test_write_replaces_by_rename_not_in_place(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    await store.write("k+g+", "old")
    before = os.stat(tmp_path / "k+g+").st_ino
    with open(tmp_path / "k+g+", "rb") as reader:  # noqa: ASYNC230 (a plain reader on purpose)
        await store.write("k+g+", "new")
        # an open reader still sees the whole old file: the new one is a different inode
        assert reader.read() == b"old"
    assert os.stat(tmp_path / "k+g+").st_ino != before
    assert (tmp_path / "k+g+").read_text() == "new"


async def test_same_content_is_not_rewritten(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    await store.write("k+g+", "same")
    first = os.stat(tmp_path / "k+g+").st_ino
    await store.write("k+g+", "same")
    assert os.stat(tmp_path / "k+g+").st_ino == first
    await store.delete("k+g+")
    assert not (tmp_path / "k+g+").exists()
    await store.write("k+g+", "same")  # after a delete the file comes back
    assert (tmp_path / "k+g+").read_text() == "same"


async def test_delete_missing_is_quiet(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    with caplog.at_level(logging.DEBUG, logger="aioacm"):
        await store.delete("nope+g+")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_unwritable_base_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # a file where the folder should be: unwritable even for root
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    store = FileStore(str(blocker / "snap"), name="snapshot")
    with caplog.at_level(logging.DEBUG, logger="aioacm"):
        assert not await store.write("a+g+", "v")
        assert not await store.write("b+g+", "v")
        assert not await store.write("c+g+", "v")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "snapshot" in warnings[0].getMessage()


async def test_unreadable_file_is_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "bad+g+").write_bytes(b"\xff\xfe\xfa not utf-8")
    (tmp_path / "dir+g+").mkdir()
    store = FileStore(str(tmp_path), name="failover")
    with caplog.at_level(logging.WARNING, logger="aioacm"):
        assert await store.read("bad+g+") is None
        assert await store.read("dir+g+") is None
    assert len(caplog.records) == 2


@pytest.mark.parametrize("key", ["", ".", "..", "a/b", "../x+g+", "/etc/passwd", "k+g+~x"])
async def test_path_like_keys_are_refused(tmp_path: Path, key: str) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    with pytest.raises(ValueError, match="not a store key"):
        await store.write(key, "v")
    assert os.listdir(tmp_path) == []


# -- the failover store's folder listing ------------------------------------------------------


async def test_recheck_store_reads_listed_files_afresh(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), name="failover", recheck=60)
    (tmp_path / "k+g+").write_text("v1", encoding="utf-8")
    assert await store.read("k+g+") == "v1"
    # a listed file is read every time: edits and removals count at once
    (tmp_path / "k+g+").write_text("v2", encoding="utf-8")
    assert await store.read("k+g+") == "v2"
    (tmp_path / "k+g+").unlink()
    assert await store.read("k+g+") is None


async def test_recheck_store_sees_a_new_file_once_the_listing_is_old(tmp_path: Path) -> None:
    stale = FileStore(str(tmp_path / "data"), name="failover", recheck=60)
    fresh = FileStore(str(tmp_path / "data"), name="failover", recheck=0)
    assert await stale.read("k+g+") is None  # no folder at all
    assert await fresh.read("k+g+") is None
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "k+g+").write_text("pinned", encoding="utf-8")
    # within ``recheck`` of the last listing a new file may go unseen; after it, it is seen
    assert await stale.read("k+g+") is None
    assert await fresh.read("k+g+") == "pinned"


async def test_recheck_store_concurrent_readers_share_one_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aioacm import stores

    listings = 0
    real = stores._list_names

    def counting(base: str) -> frozenset[str] | None:
        nonlocal listings
        listings += 1
        return real(base)

    monkeypatch.setattr(stores, "_list_names", counting)
    (tmp_path / "k+g+").write_text("v", encoding="utf-8")
    store = FileStore(str(tmp_path), name="failover", recheck=60)
    results = await asyncio.gather(*(store.read("k+g+") for _ in range(20)))
    assert results == ["v"] * 20
    assert listings == 1


async def test_recheck_store_that_cannot_list_reads_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aioacm import stores

    monkeypatch.setattr(os, "scandir", _raise_permission_error)
    assert stores._list_names(str(tmp_path)) is None
    (tmp_path / "k+g+").write_text("v", encoding="utf-8")
    store = FileStore(str(tmp_path), name="failover", recheck=60)
    assert await store.read("k+g+") == "v"
    assert await store.read("other+g+") is None


def _raise_permission_error(path: str) -> None:
    raise PermissionError(13, "Permission denied", path)


async def test_same_content_already_on_disk_is_not_rewritten(tmp_path: Path) -> None:
    await FileStore(str(tmp_path), name="snapshot").write("k+g+", "same")
    first = os.stat(tmp_path / "k+g+").st_ino
    # another store (another process, a restart): no memo, but the file already holds it
    assert await FileStore(str(tmp_path), name="snapshot").write("k+g+", "same")
    assert os.stat(tmp_path / "k+g+").st_ino == first
    assert await FileStore(str(tmp_path), name="snapshot").write("k+g+", "same, longer")
    assert (tmp_path / "k+g+").read_text() == "same, longer"
    assert await FileStore(str(tmp_path), name="snapshot").write("k+g+", "same")
    assert (tmp_path / "k+g+").read_text() == "same"


async def test_read_if_listed_is_a_hint_and_read_stays_exact(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    assert await store.read_if_listed("k+g+", 60) is None  # lists the (empty) folder
    (tmp_path / "k+g+").write_text("v", encoding="utf-8")
    assert await store.read_if_listed("k+g+", 60) is None  # the listing is younger than 60 s
    assert await store.read_if_listed("k+g+", 0) == "v"
    assert await store.read("k+g+") == "v"  # a store made without recheck reads the file


# -- the hot path of every get ----------------------------------------------------------------


def _count_write_jobs(monkeypatch: pytest.MonkeyPatch, store: FileStore) -> list[str]:
    jobs: list[str] = []
    real = store._write_file

    def counting(key: str, path: str, content: str, seq: int) -> bool:
        jobs.append(content)
        return real(key, path, content, seq)

    monkeypatch.setattr(store, "_write_file", counting)
    return jobs


async def test_concurrent_writes_of_one_content_share_one_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    jobs = _count_write_jobs(monkeypatch, store)
    # 50 concurrent first reads of one key bring the same content: one write, all told True
    assert await asyncio.gather(*(store.write("k+g+", "v") for _ in range(50))) == [True] * 50
    assert jobs == ["v"]
    assert (tmp_path / "k+g+").read_text() == "v"
    # a different content is a write of its own, and the newest one wins
    await asyncio.gather(store.write("k+g+", "a"), store.write("k+g+", "b"))
    assert jobs == ["v", "a", "b"]
    assert (tmp_path / "k+g+").read_text() == "b"


async def test_a_shared_write_survives_a_cancelled_caller(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    jobs = _count_write_jobs(monkeypatch, store)
    first = asyncio.ensure_future(store.write("k+g+", "v"))
    second = asyncio.ensure_future(store.write("k+g+", "v"))
    await asyncio.sleep(0)
    first.cancel()
    assert await second is True
    with pytest.raises(asyncio.CancelledError):
        await first
    assert jobs == ["v"]
    assert (tmp_path / "k+g+").read_text() == "v"
    assert store.holds("k+g+", "v")


async def test_a_delete_is_not_undone_by_joining_an_older_write(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    writing = asyncio.ensure_future(store.write("k+g+", "v"))
    await asyncio.sleep(0)  # the write is on its way
    await store.delete("k+g+")
    # the same content again, after the delete: a new write, not the older one (which the
    # delete outranks and which may therefore never land)
    assert await store.write("k+g+", "v")
    await writing
    assert (tmp_path / "k+g+").read_text() == "v"


async def test_a_failed_shared_write_warns_once_and_reports_false(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "file").write_text("not a folder")
    store = FileStore(str(tmp_path / "file" / "snap"), name="snapshot")
    with caplog.at_level(logging.DEBUG, logger="aioacm"):
        results = await asyncio.gather(*(store.write("k+g+", "v") for _ in range(5)))
    assert results == [False] * 5
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert not store.holds("k+g+", "v")


def count_listings(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every listing the stores take of a folder."""
    from aioacm import stores

    listed: list[str] = []
    real = stores._list_names

    def counting(base: str) -> set[str] | None:
        listed.append(base)
        return real(base)

    monkeypatch.setattr(stores, "_list_names", counting)
    return listed


async def test_rechecks_of_written_files_share_one_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aioacm import stores

    monkeypatch.setattr(stores, "WRITTEN_RECHECK", 60.0)  # no listing ages during the test
    store = FileStore(str(tmp_path), name="snapshot")
    keys = [f"k{i}+g+" for i in range(10)]
    for key in keys:
        await store.write(key, "v")
    inodes = {key: os.stat(tmp_path / key).st_ino for key in keys}
    listed = count_listings(monkeypatch)
    for key in keys:  # all due for a recheck
        store._checked[key] = time.monotonic() - stores.WRITTEN_RECHECK
        assert not store.holds(key, "v")
    results = await asyncio.gather(*(store.write(keys[i % 10], "v") for i in range(30)))
    assert results == [True] * 30
    assert listed == [str(tmp_path)]  # one listing for every key and caller
    assert all(store.holds(key, "v") for key in keys)
    assert {key: os.stat(tmp_path / key).st_ino for key in keys} == inodes  # nothing rewritten
    # a file gone behind the store's back: the next due recheck finds out and rewrites it
    (tmp_path / keys[0]).unlink()
    store._checked[keys[0]] = time.monotonic() - stores.WRITTEN_RECHECK
    store._listed_at -= stores.WRITTEN_RECHECK
    assert await store.write(keys[0], "v")
    assert (tmp_path / keys[0]).read_text() == "v"
    assert len(listed) == 2


async def test_a_store_that_cannot_list_rechecks_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aioacm import stores

    store = FileStore(str(tmp_path), name="snapshot")
    await store.write("k+g+", "v")
    monkeypatch.setattr(stores, "_list_names", lambda base: None)
    (tmp_path / "k+g+").unlink()
    store._checked["k+g+"] = time.monotonic() - stores.WRITTEN_RECHECK
    assert await store.write("k+g+", "v")
    assert (tmp_path / "k+g+").read_text() == "v"


async def test_deletes_of_absent_keys_share_one_listing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aioacm import stores

    monkeypatch.setattr(stores, "WRITTEN_RECHECK", 60.0)  # no listing ages during the test
    store = FileStore(str(tmp_path), name="snapshot")
    deleted: list[str] = []
    real_delete = store._delete_file

    def counting(key: str, path: str, seq: int) -> None:
        deleted.append(key)
        real_delete(key, path, seq)

    monkeypatch.setattr(store, "_delete_file", counting)
    (tmp_path / "hand+g+").write_text("by hand", encoding="utf-8")
    listed = count_listings(monkeypatch)
    # a key read again and again while it does not exist deletes its snapshot every time
    await asyncio.gather(*(store.delete(f"a{i % 5}+g+") for i in range(40)))
    assert listed == [str(tmp_path)]
    assert deleted == []
    await store.delete("hand+g+")  # a listed file is deleted
    assert not (tmp_path / "hand+g+").exists()
    await store.delete("hand+g+")  # and known gone since
    assert deleted == ["hand+g+"]
    # a file this store wrote is deleted even when the listing (taken before) lacks it
    await store.write("mine+g+", "v")
    await store.delete("mine+g+")
    assert not (tmp_path / "mine+g+").exists()
    # a file put there by someone else after the listing is deleted once the listing is old
    (tmp_path / "late+g+").write_text("late", encoding="utf-8")
    await store.delete("late+g+")
    assert (tmp_path / "late+g+").exists()
    store._listed_at -= stores.WRITTEN_RECHECK
    await store.delete("late+g+")
    assert not (tmp_path / "late+g+").exists()
    assert len(listed) == 2


async def test_holds_and_known_absent_answer_without_io(tmp_path: Path) -> None:
    snapshots = FileStore(str(tmp_path / "snap"), name="snapshot")
    assert not snapshots.holds("k+g+", "v")
    await snapshots.write("k+g+", "v")
    assert snapshots.holds("k+g+", "v")
    assert not snapshots.holds("k+g+", "other")
    assert not snapshots.known_absent("k+g+")  # a store without recheck never claims that

    failover = FileStore(str(tmp_path / "data"), name="failover", recheck=60)
    assert not failover.known_absent("k+g+")  # never listed yet
    assert await failover.read("k+g+") is None
    assert failover.known_absent("k+g+")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "k+g+").write_text("pinned", encoding="utf-8")
    stale = FileStore(str(tmp_path / "data"), name="failover", recheck=0)
    assert await stale.read("k+g+") == "pinned"
    assert not stale.known_absent("k+g+")  # a listing older than ``recheck`` proves nothing
