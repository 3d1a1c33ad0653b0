"""Crash safety of the snapshot files: writers killed with SIGKILL at random moments, and
writers racing on one key, never leave a torn file. What is on disk under a key's name is
always one whole value some writer wrote; temporary files may remain after a kill, but never
under a key's name, and the store never reads them."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import textwrap
from pathlib import Path

import aioacm.stores
from aioacm.stores import TMP_MARK, FileStore, is_temporary

KEY = "big.value+DEFAULT_GROUP+ns"
SIZE = 256 * 1024

# A writer process: loads the store's modules without the package's __init__ (no aiohttp
# import: it starts in a blink), then writes ever new values of one key through
# FileStore.write, as fast as it can, forever.
# Value n is "<tag><n>:" followed by SIZE copies of one letter that depends on n: a torn or
# mixed file cannot pass check_whole() below.
WRITER = textwrap.dedent(
    """
    import asyncio, sys, types
    package = types.ModuleType("aioacm")  # the package, its __init__ not run
    package.__path__ = [sys.argv[1]]
    sys.modules["aioacm"] = package
    from aioacm.stores import FileStore
    base, key, tag, size = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])

    async def main():
        store = FileStore(base, name="snapshot")
        n = 0
        while True:
            letter = "abcdefghijklmnopqrstuvwxyz"[n % 26]
            assert await store.write(key, f"{tag}{n}:" + letter * size)
            if n == 0:
                print("wrote", flush=True)
            n += 1

    asyncio.run(main())
    """
)


def check_whole(content: str | None, tags: str) -> None:
    assert content is not None
    head, sep, body = content.partition(":")
    assert sep, content[:40]
    assert head[0] in tags, head
    n = int(head[1:])
    assert body == "abcdefghijklmnopqrstuvwxyz"[n % 26] * SIZE, f"torn value {head}"


async def start_writer(base: Path, tag: str) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WRITER,
        os.path.dirname(aioacm.stores.__file__),
        str(base),
        KEY,
        tag,
        str(SIZE),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"wrote\n"
    return proc


async def kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL  # it was still writing: a real interruption


def leftovers(base: Path) -> list[str]:
    return [name for name in os.listdir(base) if name != KEY]


async def test_a_write_killed_at_any_moment_leaves_the_old_or_the_new_file(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    folders = [tmp_path / f"w{i}" for i in range(4)]
    for _ in range(6):  # 24 kills, four at a time
        procs = await asyncio.gather(*(start_writer(f, "ABCD"[i]) for i, f in enumerate(folders)))
        await asyncio.sleep(rng.uniform(0.0, 0.15))
        for proc in procs:
            await asyncio.sleep(rng.uniform(0.0, 0.02))
            await kill(proc)
        for i, folder in enumerate(folders):
            check_whole((folder / KEY).read_text(encoding="utf-8"), "ABCD"[i])
            # leftovers are temporary files only, which can never be taken for a key
            for name in leftovers(folder):
                assert is_temporary(name), name
    store = FileStore(str(folders[0]), name="snapshot")
    check_whole(await store.read(KEY), "A")


async def test_two_writers_on_one_key_end_with_one_whole_value(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path), name="snapshot")
    writers = await asyncio.gather(start_writer(tmp_path, "A"), start_writer(tmp_path, "B"))
    seen: set[str] = set()
    try:
        # read while both write: every read is one whole value of one of them
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 1.0
        while loop.time() < deadline:
            content = await store.read(KEY)
            check_whole(content, "AB")
            assert content is not None
            seen.add(content[0])
    finally:
        for proc in writers:
            await kill(proc)
    check_whole(await store.read(KEY), "AB")
    assert seen == {"A", "B"}  # they did race on the same file
    for name in leftovers(tmp_path):
        assert is_temporary(name), name


async def test_temporary_files_are_never_read_as_a_key(tmp_path: Path) -> None:
    tmp_name = f"{KEY}{TMP_MARK}123.abcd.tmp"
    (tmp_path / tmp_name).write_text("half a val", encoding="utf-8")
    store = FileStore(str(tmp_path), name="snapshot")
    assert await store.read(KEY) is None
    assert await store.write(KEY, "whole")
    assert await store.read(KEY) == "whole"
