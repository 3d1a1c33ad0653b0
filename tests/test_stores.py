"""The async snapshot / failover stores: layout, atomic writes, degraded folders."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

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


def _count_writes(monkeypatch: pytest.MonkeyPatch, store: FileStore) -> list[str]:
    """Record the content of every write handed to the store's thread jobs, in order."""
    writes: list[str] = []
    real = store._write_batch

    def counting(batch: list[Any]) -> list[bool | Exception]:
        writes.extend(write.content for write in batch)
        return real(batch)

    monkeypatch.setattr(store, "_write_batch", counting)
    return writes


async def test_concurrent_writes_of_one_content_share_one_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    jobs = _count_writes(monkeypatch, store)
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
    jobs = _count_writes(monkeypatch, store)
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


# -- group commit: one thread job, and one syncfs, for a burst of writes -----------------------


class SyncRecorder:
    """Stands in for ``stores._syncfs()``: records the folder at each call, then flushes for real
    where the platform can (or fails, if told to)."""

    def __init__(self, folder: Path, fail: OSError | None = None) -> None:
        from aioacm import stores

        self.folder, self.fail = folder, fail
        self.real = stores._syncfs()
        self.seen: list[list[str]] = []

    def __call__(self, fd: int) -> None:
        self.seen.append(sorted(os.listdir(self.folder)))
        if self.fail is not None:
            raise self.fail
        if self.real is not None:
            self.real(fd)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the fsyncs of the whole process while the test runs."""
    calls: list[int] = []
    real = os.fsync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def use_syncfs(
    monkeypatch: pytest.MonkeyPatch, folder: Path, fail: OSError | None = None
) -> SyncRecorder:
    """Make the stores flush through a ``SyncRecorder`` of ``folder``, and return it."""
    from aioacm import stores

    recorder = SyncRecorder(folder, fail)
    monkeypatch.setattr(stores, "_syncfs", lambda: recorder)
    return recorder


async def test_a_burst_of_writes_is_one_job_flushed_by_one_syncfs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsyncs: list[int]
) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    recorder = use_syncfs(monkeypatch, tmp_path)
    batches: list[int] = []
    real = store._write_batch
    monkeypatch.setattr(
        store, "_write_batch", lambda batch: batches.append(len(batch)) or real(batch)
    )
    keys = [f"k{i:02d}+g+" for i in range(50)]
    # all 50 are queued in the same turn of the loop, before the job starts: one job
    assert await asyncio.gather(*(store.write(key, f"v-{key}") for key in keys)) == [True] * 50
    assert batches == [50]
    assert fsyncs == []
    [seen] = recorder.seen  # one flush, before any file was renamed into place
    assert len(seen) == 50
    assert all("~" in name and name.endswith(".tmp") for name in seen)
    assert sorted(os.listdir(tmp_path)) == keys  # and no temporary file left
    assert all((tmp_path / key).read_text(encoding="utf-8") == f"v-{key}" for key in keys)
    assert all(store.holds(key, f"v-{key}") for key in keys)


async def test_fewer_writes_than_the_syncfs_minimum_fsync_each_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsyncs: list[int]
) -> None:
    from aioacm import stores

    store = FileStore(str(tmp_path), name="snapshot")
    recorder = use_syncfs(monkeypatch, tmp_path)
    small = stores.SYNCFS_MIN_FILES - 1
    results = await asyncio.gather(*(store.write(f"k{i}+g+", "v") for i in range(small)))
    assert results == [True] * small
    assert recorder.seen == []
    assert len(fsyncs) == small
    assert await store.write("one+g+", "v")
    assert recorder.seen == []
    assert len(fsyncs) == small + 1


async def test_without_syncfs_a_burst_fsyncs_each_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsyncs: list[int]
) -> None:
    from aioacm import stores

    monkeypatch.setattr(stores, "_syncfs", lambda: None)  # not Linux
    store = FileStore(str(tmp_path), name="snapshot")
    assert await asyncio.gather(*(store.write(f"k{i}+g+", "v") for i in range(10))) == [True] * 10
    assert len(fsyncs) == 10
    assert len(os.listdir(tmp_path)) == 10


async def test_writes_that_come_during_a_job_go_together_in_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    started, release = threading.Event(), threading.Event()
    batches: list[list[str]] = []
    real = store._write_batch

    def held(batch: list[Any]) -> list[bool | Exception]:
        batches.append([write.key for write in batch])
        if len(batches) == 1:
            started.set()
            release.wait(10)
        return real(batch)

    monkeypatch.setattr(store, "_write_batch", held)
    first = asyncio.ensure_future(store.write("first+g+", "v"))
    assert await asyncio.to_thread(started.wait, 10)  # the first job has started, and waits
    later = [asyncio.ensure_future(store.write(f"k{i}+g+", "v")) for i in range(20)]
    await asyncio.sleep(0.01)
    assert len(batches) == 1  # one job at a time per store
    release.set()
    assert await first
    assert await asyncio.gather(*later) == [True] * 20
    assert batches == [["first+g+"], [f"k{i}+g+" for i in range(20)]]


async def test_a_failed_syncfs_fails_its_batch_and_leaves_the_old_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    assert await store.write("k0+g+", "old")
    use_syncfs(monkeypatch, tmp_path, fail=OSError(errno.EIO, "I/O error"))
    with caplog.at_level(logging.DEBUG, logger="aioacm"):
        results = await asyncio.gather(*(store.write(f"k{i}+g+", "new") for i in range(8)))
    assert results == [False] * 8
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert os.listdir(tmp_path) == ["k0+g+"]  # no temporary file, no new file
    assert (tmp_path / "k0+g+").read_text(encoding="utf-8") == "old"
    assert not store.holds("k1+g+", "new")


async def test_a_slow_syncfs_makes_the_store_fsync_each_file_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsyncs: list[int]
) -> None:
    from aioacm import stores

    monkeypatch.setattr(stores, "SYNCFS_SLOW_PER_FILE", -1.0)  # every syncfs counts as slow
    recorder = use_syncfs(monkeypatch, tmp_path / "a")
    store = FileStore(str(tmp_path / "a"), name="snapshot")
    await asyncio.gather(*(store.write(f"k{i}+g+", "v") for i in range(8)))
    assert (len(recorder.seen), len(fsyncs)) == (1, 0)
    await asyncio.gather(*(store.write(f"k{i}+g+", "w") for i in range(8)))
    assert (len(recorder.seen), len(fsyncs)) == (1, 8)  # paused: an fsync per file
    assert {(tmp_path / "a" / f"k{i}+g+").read_text() for i in range(8)} == {"w"}
    monkeypatch.setattr(store, "_syncfs_paused_until", time.monotonic() - 1)
    await asyncio.gather(*(store.write(f"k{i}+g+", "x") for i in range(8)))
    assert (len(recorder.seen), len(fsyncs)) == (2, 8)  # the pause is over


async def test_a_write_outranked_while_queued_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    release = threading.Event()
    real = store._write_batch

    def held(batch: list[Any]) -> list[bool | Exception]:
        release.wait(10)
        return real(batch)

    monkeypatch.setattr(store, "_write_batch", held)
    writing = asyncio.ensure_future(store.write("k+g+", "v"))
    await asyncio.sleep(0.01)  # the job holds the write, not yet staged
    deleting = asyncio.ensure_future(store.delete("k+g+"))  # a newer change: it lands first
    await asyncio.sleep(0.05)
    release.set()
    await deleting
    assert await writing  # outranked, not failed
    assert os.listdir(tmp_path) == []
    assert not store.holds("k+g+", "v")


def test_syncfs_flushes_a_folder_and_reports_errors(tmp_path: Path) -> None:
    from aioacm import stores

    syncfs = stores._syncfs()
    if not sys.platform.startswith("linux"):
        assert syncfs is None
        return
    assert syncfs is not None
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        syncfs(fd)
    finally:
        os.close(fd)
    with pytest.raises(OSError, match="syncfs") as raised:
        syncfs(fd)  # closed
    assert raised.value.errno == errno.EBADF


async def test_the_newest_of_two_writes_of_a_key_in_one_batch_wins(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    assert await store.write("k+g+", "old")
    # one batch: "new", then "old" again (already on disk when the batch starts)
    assert await asyncio.gather(store.write("k+g+", "new"), store.write("k+g+", "old")) == [
        True,
        True,
    ]
    assert (tmp_path / "k+g+").read_text(encoding="utf-8") == "old"
    assert store.holds("k+g+", "old")
    assert not store.holds("k+g+", "new")
    assert os.listdir(tmp_path) == ["k+g+"]
