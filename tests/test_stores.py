"""The async snapshot / failover stores: layout, atomic writes, degraded folders."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from aioacm.stores import (
    SYNCFS_MIN_FILES,
    SYNCFS_PAUSE,
    SYNCFS_SLOW_PER_FILE,
    TMP_MARK,
    WRITTEN_RECHECK,
    FileStore,
    StoreIO,
    is_temporary,
)

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


async def test_recheck_store_concurrent_readers_share_one_listing(tmp_path: Path) -> None:
    io = RecordingIO()
    (tmp_path / "k+g+").write_text("v", encoding="utf-8")
    store = FileStore(str(tmp_path), name="failover", recheck=60, io=io)
    results = await asyncio.gather(*(store.read("k+g+") for _ in range(20)))
    assert results == ["v"] * 20
    assert io.listed == [str(tmp_path)]


async def test_recheck_store_that_cannot_list_reads_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "scandir", _raise_permission_error)
    assert StoreIO().list_names(str(tmp_path)) is None
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


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingIO(StoreIO):
    """The real file-system calls, recording what a store asks of them (by file name).

    Made with ``hold=True``, its first ``stage`` sets ``started`` and waits for ``release``
    before it records or writes anything: the store's first thread job is then under way and
    stuck there until the test lets it go."""

    def __init__(self, *, hold: bool = False) -> None:
        self.hold = hold
        self.started, self.release = threading.Event(), threading.Event()
        self.listed: list[str] = []  # the folders listed
        self.staged: list[tuple[str, str, bool]] = []  # (file, content, fsync) per stage
        self.removed: list[str] = []  # the files removed (or asked to be)
        self.looked_up: list[str] = []  # the files asked whether they exist

    def list_names(self, base: str) -> set[str] | None:
        self.listed.append(base)
        return super().list_names(base)

    def exists(self, path: str) -> bool:
        self.looked_up.append(os.path.basename(path))
        return super().exists(path)

    def stage(self, path: str, content: str, *, fsync: bool) -> str | None:
        if self.hold and not self.started.is_set():
            self.started.set()
            self.release.wait(10)
        self.staged.append((os.path.basename(path), content, fsync))
        return super().stage(path, content, fsync=fsync)

    def remove(self, path: str) -> None:
        self.removed.append(os.path.basename(path))
        super().remove(path)


async def test_concurrent_writes_of_one_content_share_one_job(tmp_path: Path) -> None:
    io = RecordingIO(hold=True)
    store = FileStore(str(tmp_path), name="snapshot", io=io)
    first = asyncio.ensure_future(store.write("k+g+", "v"))
    assert await asyncio.to_thread(io.started.wait, 10)  # its job has started, and waits
    # 49 more concurrent first reads of the key bring the same content: they wait for that
    # write instead of making one of their own, and are all told True
    others = [asyncio.ensure_future(store.write("k+g+", "v")) for _ in range(49)]
    await asyncio.sleep(0.01)
    io.release.set()
    assert await first
    assert await asyncio.gather(*others) == [True] * 49
    assert io.staged == [("k+g+", "v", True)]
    assert (tmp_path / "k+g+").read_text() == "v"
    # a different content is a write of its own, and the newest one wins (the older one of
    # the same batch is not even staged: it would be outranked)
    assert await asyncio.gather(store.write("k+g+", "a"), store.write("k+g+", "b")) == [True] * 2
    assert io.staged == [("k+g+", "v", True), ("k+g+", "b", True)]
    assert (tmp_path / "k+g+").read_text() == "b"
    assert store.holds("k+g+", "b")


async def test_a_shared_write_survives_a_cancelled_caller(tmp_path: Path) -> None:
    io = RecordingIO()
    store = FileStore(str(tmp_path), name="snapshot", io=io)
    first = asyncio.ensure_future(store.write("k+g+", "v"))
    second = asyncio.ensure_future(store.write("k+g+", "v"))
    await asyncio.sleep(0)
    first.cancel()
    assert await second is True
    with pytest.raises(asyncio.CancelledError):
        await first
    assert io.staged == [("k+g+", "v", True)]
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


async def test_a_failed_stage_fails_the_write_and_leaves_the_old_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    class ReadOnlyIO(StoreIO):
        def stage(self, path: str, content: str, *, fsync: bool) -> str | None:
            raise PermissionError(errno.EACCES, "Permission denied", path)

    (tmp_path / "k+g+").write_text("old", encoding="utf-8")
    store = FileStore(str(tmp_path), name="snapshot", io=ReadOnlyIO())
    with caplog.at_level(logging.WARNING, logger="aioacm"):
        assert not await store.write("k+g+", "new")
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "Permission denied" in caplog.records[0].getMessage()
    assert os.listdir(tmp_path) == ["k+g+"]
    assert await store.read("k+g+") == "old"
    assert not store.holds("k+g+", "new")


async def test_rechecks_of_written_files_share_one_listing(tmp_path: Path) -> None:
    clock, io = FakeClock(), RecordingIO()
    store = FileStore(str(tmp_path), name="snapshot", clock=clock, io=io)
    keys = [f"k{i}+g+" for i in range(10)]
    for key in keys:
        await store.write(key, "v")
    inodes = {key: os.stat(tmp_path / key).st_ino for key in keys}
    assert io.listed == []  # a first write lists nothing
    clock.advance(WRITTEN_RECHECK / 2)
    assert all(store.holds(key, "v") for key in keys)  # trusted for WRITTEN_RECHECK seconds
    clock.advance(WRITTEN_RECHECK / 2)
    for key in keys:  # all due for a recheck
        assert not store.holds(key, "v")
    results = await asyncio.gather(*(store.write(keys[i % 10], "v") for i in range(30)))
    assert results == [True] * 30
    assert io.listed == [str(tmp_path)]  # one listing for every key and caller
    assert all(store.holds(key, "v") for key in keys)
    assert {key: os.stat(tmp_path / key).st_ino for key in keys} == inodes  # nothing rewritten
    assert len(io.staged) == 10
    # a file gone behind the store's back: the next due recheck finds out and rewrites it
    (tmp_path / keys[0]).unlink()
    clock.advance(WRITTEN_RECHECK)
    assert await store.write(keys[0], "v")
    assert (tmp_path / keys[0]).read_text() == "v"
    assert len(io.listed) == 2
    assert io.staged[10:] == [(keys[0], "v", True)]


async def test_a_store_that_cannot_list_rechecks_the_file(tmp_path: Path) -> None:
    class UnlistableIO(RecordingIO):
        def list_names(self, base: str) -> set[str] | None:
            self.listed.append(base)
            return None

    clock, io = FakeClock(), UnlistableIO()
    store = FileStore(str(tmp_path), name="snapshot", clock=clock, io=io)
    await store.write("k+g+", "v")
    (tmp_path / "k+g+").unlink()
    clock.advance(WRITTEN_RECHECK)
    assert await store.write("k+g+", "v")
    assert io.listed == [str(tmp_path)]
    assert io.looked_up == ["k+g+"]  # the folder cannot be listed: the file is looked up
    assert (tmp_path / "k+g+").read_text() == "v"


async def test_deletes_of_absent_keys_share_one_listing(tmp_path: Path) -> None:
    clock, io = FakeClock(), RecordingIO()
    store = FileStore(str(tmp_path), name="snapshot", clock=clock, io=io)
    (tmp_path / "hand+g+").write_text("by hand", encoding="utf-8")
    # a key read again and again while it does not exist deletes its snapshot every time
    await asyncio.gather(*(store.delete(f"a{i % 5}+g+") for i in range(40)))
    assert io.listed == [str(tmp_path)]
    assert io.removed == []
    await store.delete("hand+g+")  # a listed file is deleted
    assert not (tmp_path / "hand+g+").exists()
    await store.delete("hand+g+")  # and known gone since
    assert io.removed == ["hand+g+"]
    # a file this store wrote is deleted even when the listing (taken before) lacks it
    await store.write("mine+g+", "v")
    await store.delete("mine+g+")
    assert not (tmp_path / "mine+g+").exists()
    # a file put there by someone else after the listing is deleted once the listing is old
    (tmp_path / "late+g+").write_text("late", encoding="utf-8")
    await store.delete("late+g+")
    assert (tmp_path / "late+g+").exists()
    clock.advance(WRITTEN_RECHECK)
    await store.delete("late+g+")
    assert not (tmp_path / "late+g+").exists()
    assert len(io.listed) == 2
    assert io.removed == ["hand+g+", "mine+g+", "late+g+"]


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


async def test_known_absent_lasts_as_long_as_the_listing(tmp_path: Path) -> None:
    clock, io = FakeClock(), RecordingIO()
    store = FileStore(str(tmp_path), name="failover", recheck=10, io=io, clock=clock)
    assert await store.read("k+g+") is None
    clock.advance(9.5)
    assert store.known_absent("k+g+")
    clock.advance(0.5)
    assert not store.known_absent("k+g+")  # the listing is ``recheck`` seconds old
    (tmp_path / "k+g+").write_text("pinned", encoding="utf-8")
    assert await store.read("k+g+") == "pinned"
    assert io.listed == [str(tmp_path)] * 2


# -- group commit: one thread job, and one syncfs, for a burst of writes -----------------------


class SyncingIO(RecordingIO):
    """A ``RecordingIO`` whose ``syncfs`` records the names in ``folder`` at each flush, lets
    ``took`` seconds of ``clock`` pass, then fails (with ``fail``) or flushes for real where
    the platform can."""

    def __init__(
        self,
        folder: Path,
        *,
        fail: OSError | None = None,
        clock: FakeClock | None = None,
        hold: bool = False,
    ) -> None:
        super().__init__(hold=hold)
        self.folder, self.fail, self.clock = folder, fail, clock
        self.took = 0.0
        self.real = StoreIO().syncfs()
        self.seen: list[list[str]] = []

    def syncfs(self) -> Callable[[int], None] | None:
        return self.flush

    def flush(self, fd: int) -> None:
        self.seen.append(sorted(os.listdir(self.folder)))
        if self.clock is not None:
            self.clock.advance(self.took)
        if self.fail is not None:
            raise self.fail
        if self.real is not None:
            self.real(fd)


class NoSyncfsIO(RecordingIO):
    """A ``RecordingIO`` on a platform without ``syncfs``."""

    def syncfs(self) -> Callable[[int], None] | None:
        return None


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


async def test_a_burst_of_writes_is_one_job_flushed_by_one_syncfs(
    tmp_path: Path, fsyncs: list[int]
) -> None:
    io = SyncingIO(tmp_path)
    store = FileStore(str(tmp_path), name="snapshot", io=io)
    keys = [f"k{i:02d}+g+" for i in range(50)]
    # all 50 are queued in the same turn of the loop, before the job starts: one job
    assert await asyncio.gather(*(store.write(key, f"v-{key}") for key in keys)) == [True] * 50
    assert io.staged == [(key, f"v-{key}", False) for key in keys]  # none fsynced on its own
    assert fsyncs == []
    [seen] = io.seen  # one flush, before any file was renamed into place
    assert len(seen) == 50
    assert all(is_temporary(name) for name in seen)
    assert sorted(os.listdir(tmp_path)) == keys  # and no temporary file left
    assert all((tmp_path / key).read_text(encoding="utf-8") == f"v-{key}" for key in keys)
    assert all(store.holds(key, f"v-{key}") for key in keys)


async def test_fewer_writes_than_the_syncfs_minimum_fsync_each_file(
    tmp_path: Path, fsyncs: list[int]
) -> None:
    io = SyncingIO(tmp_path)
    store = FileStore(str(tmp_path), name="snapshot", io=io)
    small = SYNCFS_MIN_FILES - 1
    results = await asyncio.gather(*(store.write(f"k{i}+g+", "v") for i in range(small)))
    assert results == [True] * small
    assert io.seen == []
    assert len(fsyncs) == small
    assert await store.write("one+g+", "v")
    assert io.seen == []
    assert len(fsyncs) == small + 1
    assert all(fsync for _name, _content, fsync in io.staged)


async def test_without_syncfs_a_burst_fsyncs_each_file(tmp_path: Path, fsyncs: list[int]) -> None:
    io = NoSyncfsIO()
    store = FileStore(str(tmp_path), name="snapshot", io=io)
    assert await asyncio.gather(*(store.write(f"k{i}+g+", "v") for i in range(10))) == [True] * 10
    assert len(fsyncs) == 10
    assert io.staged == [(f"k{i}+g+", "v", True) for i in range(10)]
    assert len(os.listdir(tmp_path)) == 10


async def test_writes_that_come_during_a_job_go_together_in_the_next(tmp_path: Path) -> None:
    io = SyncingIO(tmp_path, hold=True)
    store = FileStore(str(tmp_path), name="snapshot", io=io)
    first = asyncio.ensure_future(store.write("first+g+", "v"))
    assert await asyncio.to_thread(io.started.wait, 10)  # the first job has started, and waits
    later = [asyncio.ensure_future(store.write(f"k{i}+g+", "v")) for i in range(20)]
    await asyncio.sleep(0.01)
    staged_meanwhile = list(io.staged)
    io.release.set()
    assert staged_meanwhile == []  # one job at a time per store: no other has started
    assert await first
    assert await asyncio.gather(*later) == [True] * 20
    # the first job alone (one file: fsynced), then the 20 others in one job, one syncfs
    assert io.staged == [("first+g+", "v", True)] + [(f"k{i}+g+", "v", False) for i in range(20)]
    [seen] = io.seen
    assert len([name for name in seen if is_temporary(name)]) == 20


async def test_a_failed_syncfs_fails_its_batch_and_leaves_the_old_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileStore(
        str(tmp_path), name="snapshot", io=SyncingIO(tmp_path, fail=OSError(errno.EIO, "I/O"))
    )
    assert await store.write("k0+g+", "old")  # one file: fsynced, no syncfs
    with caplog.at_level(logging.DEBUG, logger="aioacm"):
        results = await asyncio.gather(*(store.write(f"k{i}+g+", "new") for i in range(8)))
    assert results == [False] * 8
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 1
    assert os.listdir(tmp_path) == ["k0+g+"]  # no temporary file, no new file
    assert (tmp_path / "k0+g+").read_text(encoding="utf-8") == "old"
    assert not store.holds("k1+g+", "new")


async def test_a_slow_syncfs_makes_the_store_fsync_each_file_for_a_while(
    tmp_path: Path, fsyncs: list[int]
) -> None:
    clock = FakeClock()
    io = SyncingIO(tmp_path / "a", clock=clock)
    store = FileStore(str(tmp_path / "a"), name="snapshot", clock=clock, io=io)

    async def write_all(content: str) -> tuple[int, int]:
        await asyncio.gather(*(store.write(f"k{i}+g+", content) for i in range(8)))
        assert {(tmp_path / "a" / f"k{i}+g+").read_text() for i in range(8)} == {content}
        return len(io.seen), len(fsyncs)

    io.took = 0.9 * SYNCFS_SLOW_PER_FILE * 8  # fast enough for 8 files
    assert await write_all("u") == (1, 0)
    io.took = 1.1 * SYNCFS_SLOW_PER_FILE * 8  # too slow
    assert await write_all("v") == (2, 0)
    assert await write_all("w") == (2, 8)  # paused: an fsync per file
    clock.advance(SYNCFS_PAUSE - 0.5)
    assert await write_all("x") == (2, 16)  # still paused
    clock.advance(1.0)
    assert await write_all("y") == (3, 16)  # the pause is over


async def test_a_write_outranked_while_queued_leaves_no_temporary_file(tmp_path: Path) -> None:
    io = RecordingIO(hold=True)
    store = FileStore(str(tmp_path), name="snapshot", io=io)
    writing = asyncio.ensure_future(store.write("k+g+", "v"))
    assert await asyncio.to_thread(io.started.wait, 10)  # the job holds the write, not staged
    await store.delete("k+g+")  # a newer change: it lands first
    io.release.set()
    assert await writing  # outranked, not failed
    assert os.listdir(tmp_path) == []
    assert not store.holds("k+g+", "v")
    # it was staged all the same, and its temporary file removed instead of renamed into place
    assert io.staged == [("k+g+", "v", True)]
    [tmp] = io.removed[1:]
    assert io.removed[0] == "k+g+"
    assert is_temporary(tmp)


def test_syncfs_flushes_a_folder_and_reports_errors(tmp_path: Path) -> None:
    syncfs = StoreIO().syncfs()
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


def test_temporary_files_are_told_from_keys(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    tmp = StoreIO().stage(store.path("k+g+"), "v", fsync=False)
    assert tmp is not None
    name = os.path.basename(tmp)
    assert TMP_MARK in name
    assert is_temporary(name)
    assert not is_temporary("k+g+")
    with pytest.raises(ValueError, match="not a store key"):
        store.path(name)
