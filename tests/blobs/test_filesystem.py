"""FileBlobStore specifics: layout, crash safety, durability, bounded memory, batching."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import signal
import stat
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import clientcomm.blobs.filesystem as fsmod
from clientcomm.blobs import FileBlobStore
from clientcomm.blobs.filesystem import PARTIAL_PREFIX
from clientcomm.errors import (
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    StorageError,
)
from clientcomm.testing.blobs import read_blob

FIRM = "firm-1"
MIB = 1024 * 1024
SRC = Path(fsmod.__file__).resolve().parents[2]


def fan(blob_id: str) -> str:
    return hashlib.sha256(blob_id.encode()).hexdigest()[:2]


def partials(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(f"{PARTIAL_PREFIX}*") if p.is_file())


def open_files_ending(suffix: str) -> list[str]:
    """Paths of this process's open files ending in ``suffix`` (Linux; else [])."""
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        return []
    found = []
    for entry in fd_dir.iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(entry)
            if target.endswith(suffix):
                found.append(target)
    return found


def age(path: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FileBlobStore]:
    async with FileBlobStore(tmp_path / "blobs") as s:
        yield s


async def repeat(chunk: bytes, times: int) -> AsyncIterator[bytes]:
    for _ in range(times):
        yield chunk


# -- layout and construction --------------------------------------------------


async def test_layout_and_permissions(store: FileBlobStore) -> None:
    await store.put(FIRM, "doc-1", [b"sealed bytes"])
    path = store.root / FIRM / fan("doc-1") / "doc-1"
    assert path.read_bytes() == b"sealed bytes"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.stat().st_nlink == 1  # the temporary link is gone
    assert partials(store.root) == []


def test_root_is_created_and_must_be_a_directory(tmp_path: Path) -> None:
    nested = tmp_path / "a" / "b" / "c"
    FileBlobStore(nested)
    assert nested.is_dir()
    assert partials(nested) == []  # the case probe cleans up after itself
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(ConfigurationError):
        FileBlobStore(tmp_path / "file")
    with pytest.raises(ConfigurationError):
        FileBlobStore(tmp_path / "file" / "below")


def test_case_insensitive_filesystem_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os.path, "lexists", lambda path: True)
    with pytest.raises(ConfigurationError, match="case-insensitive"):
        FileBlobStore(tmp_path)
    monkeypatch.undo()
    assert partials(tmp_path) == []
    assert repr(FileBlobStore(tmp_path)) == f"FileBlobStore({str(tmp_path)!r})"


async def test_full_chunks_except_the_last(store: FileBlobStore) -> None:
    data = os.urandom(10_001)
    await store.put(FIRM, "c", [data])
    sizes = [len(c) async for c in store.open(FIRM, "c", chunk_size=1000)]
    assert sizes == [1000] * 10 + [1]
    big = [len(c) async for c in store.open(FIRM, "c", chunk_size=MIB * 4)]
    assert big == [10_001]


# -- crash safety ---------------------------------------------------------------


async def test_leftover_partial_file_is_invisible_and_swept(store: FileBlobStore) -> None:
    # what a writer that crashed before publishing leaves behind
    directory = store.root / FIRM / fan("crashed")
    directory.mkdir(parents=True)
    leftover = directory / f"{PARTIAL_PREFIX}0123456789abcdef-crashed"
    leftover.write_bytes(b"half a blo")
    assert await store.exists(FIRM, "crashed") is False
    with pytest.raises(NotFoundError):
        await read_blob(store, FIRM, "crashed")

    assert await store.put(FIRM, "crashed", [b"the whole blob"]) == 14
    assert await store.sweep_partial() == 0  # too young: could be a put in progress
    assert leftover.exists()
    age(leftover, 7200)
    assert await store.sweep_partial(older_than=timedelta(hours=1)) == 1
    assert not leftover.exists()
    assert await read_blob(store, FIRM, "crashed") == b"the whole blob"


async def test_crash_between_link_and_unlink_keeps_the_blob(store: FileBlobStore) -> None:
    await store.put(FIRM, "linked", [b"complete"])
    final = store.root / FIRM / fan("linked") / "linked"
    second_name = final.with_name(f"{PARTIAL_PREFIX}feedfacefeedface-linked")
    os.link(final, second_name)
    age(second_name, 7200)
    assert await store.sweep_partial(timedelta(seconds=60)) == 1
    assert await read_blob(store, FIRM, "linked") == b"complete"


async def test_sweep_leaves_blobs_and_young_partials_alone(store: FileBlobStore) -> None:
    await store.put(FIRM, "keep", [b"x"])
    await store.put("firm-2", "keep", [b"y"])
    old = store.root / FIRM / fan("keep") / "keep"
    age(old, 10**6)
    young = store.root / "firm-2" / fan("keep") / f"{PARTIAL_PREFIX}aa-keep"
    young.write_bytes(b"in progress")
    assert await store.sweep_partial(timedelta(0)) in (0, 1)  # mtime granularity
    assert old.exists()
    assert await store.sweep_partial(timedelta(days=1)) == 0
    with pytest.raises(InvalidInputError):
        await store.sweep_partial(timedelta(seconds=-1))


CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, sys
    from clientcomm.blobs import FileBlobStore

    async def source():
        for _ in range(3):
            yield os.urandom(1 << 20)
        print("written", flush=True)
        await asyncio.Event().wait()  # hang until killed
        yield b""

    asyncio.run(FileBlobStore(sys.argv[1]).put("firm-1", "victim", source()))
    """
)


async def test_killed_writer_leaves_no_blob(store: FileBlobStore) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASH_SCRIPT,
        str(store.root),
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"written"
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    left = partials(store.root)
    assert len(left) == 1 and left[0].stat().st_size == 3 * MIB
    assert await store.exists(FIRM, "victim") is False
    with pytest.raises(NotFoundError):
        await store.size(FIRM, "victim")
    age(left[0], 3600)
    assert await store.sweep_partial(timedelta(minutes=5)) == 1
    assert await store.put(FIRM, "victim", [b"retry"]) == 5


PROCESS_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from clientcomm.blobs import FileBlobStore
    from clientcomm.errors import ConflictError

    async def main():
        store = FileBlobStore(sys.argv[1])
        data = sys.argv[2].encode() * 200_000
        try:
            await store.put("firm-1", "contested", [data[i:i + 65536]
                            for i in range(0, len(data), 65536)])
        except ConflictError:
            print("conflict")
        else:
            print("won")

    asyncio.run(main())
    """
)


async def test_writers_in_separate_processes_exactly_one_wins(store: FileBlobStore) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            PROCESS_WRITER,
            str(store.root),
            letter,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        for letter in "abcd"
    ]
    outputs = [(await p.communicate())[0].decode().strip() for p in procs]
    assert sorted(outputs) == ["conflict", "conflict", "conflict", "won"]
    winner = "abcd"[outputs.index("won")]
    assert await read_blob(store, FIRM, "contested", MIB) == winner.encode() * 200_000
    assert partials(store.root) == []


async def test_cancelled_put_removes_its_temporary_file(store: FileBlobStore) -> None:
    started = asyncio.Event()

    async def stalling() -> AsyncIterator[bytes]:
        yield os.urandom(3 * MIB)
        started.set()
        await asyncio.Event().wait()
        yield b""

    task = asyncio.create_task(store.put(FIRM, "gone", stalling()))
    await started.wait()
    assert len(partials(store.root)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert partials(store.root) == []


# -- durability -------------------------------------------------------------------


async def test_fsync_file_before_link_then_directory(
    store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    real_fsync, real_link = os.fsync, os.link

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync-file")
        real_fsync(fd)

    def link(src: Any, dst: Any, **kw: Any) -> None:
        events.append("link")
        real_link(src, dst, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "link", link)
    await store.put(FIRM, "durable", [b"x" * 10])
    # firm and fan directories are new: their parents are synced too
    assert events == ["fsync-dir", "fsync-dir", "fsync-file", "link", "fsync-dir"]
    events.clear()
    await store.put(FIRM, "durable-2", repeat(b"y" * 65536, 40))
    assert events[-3:] == ["fsync-file", "link", "fsync-dir"]
    events.clear()
    assert await store.delete(FIRM, "durable") is True
    assert events == ["fsync-dir"]


# -- OS errors ----------------------------------------------------------------------


async def test_disk_full_is_a_storage_error_and_leaves_nothing(
    store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real_write_all = fsmod._write_all

    def write_all(fd: int, data: bytes) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write_all(fd, data)

    monkeypatch.setattr(fsmod, "_write_all", write_all)
    with pytest.raises(StorageError) as caught:
        await store.put(FIRM, "full", repeat(os.urandom(MIB), 4))
    assert caught.value.context["errno"] == "ENOSPC"
    assert caught.value.context["op"] == "put"
    assert isinstance(caught.value.__cause__, OSError)
    assert partials(store.root) == []
    assert await store.exists(FIRM, "full") is False
    monkeypatch.undo()
    assert await store.put(FIRM, "full", [b"room again"]) == 10


async def test_failure_after_publishing_removes_the_blob(
    store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    linked = False
    real_link, real_fsync_dir = os.link, fsmod._fsync_dir

    def link(src: Any, dst: Any, **kw: Any) -> None:
        nonlocal linked
        real_link(src, dst, **kw)
        linked = True

    def fsync_dir(path: Path) -> None:
        if linked:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_fsync_dir(path)

    monkeypatch.setattr(os, "link", link)
    monkeypatch.setattr(fsmod, "_fsync_dir", fsync_dir)
    with pytest.raises(StorageError) as caught:
        await store.put(FIRM, "eio", [b"not durable"])
    assert caught.value.context["errno"] == "EIO"
    monkeypatch.undo()
    assert await store.exists(FIRM, "eio") is False
    assert partials(store.root) == []


async def test_conflict_leaves_no_temporary_file(store: FileBlobStore) -> None:
    await store.put(FIRM, "dup", [b"a"])
    with pytest.raises(ConflictError):
        await store.put(FIRM, "dup", [b"b"])
    assert partials(store.root) == []


async def test_read_errors_are_storage_errors(
    store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.put(FIRM, "r", [b"data"])

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "read", broken)
    with pytest.raises(StorageError) as caught:
        await read_blob(store, FIRM, "r")
    assert caught.value.context["op"] == "open"
    monkeypatch.setattr(os, "stat", broken)
    with pytest.raises(StorageError):
        await store.size(FIRM, "r")
    with pytest.raises(StorageError):
        await store.exists(FIRM, "r")


async def test_reader_of_a_deleted_blob_reads_to_the_end(store: FileBlobStore) -> None:
    data = os.urandom(3 * MIB)
    await store.put(FIRM, "del", [data])
    stream = store.open(FIRM, "del", chunk_size=MIB)
    first = await anext(stream)
    assert await store.delete(FIRM, "del") is True
    rest = [c async for c in stream]
    assert first + b"".join(rest) == data
    assert await store.put(FIRM, "del", [b"new"]) == 3


# -- bounded memory and few thread hops -----------------------------------------------


async def test_memory_stays_bounded_streaming_100_mb(store: FileBlobStore) -> None:
    chunk = os.urandom(64 * 1024)
    count = 1600  # 100 MiB
    tracemalloc.start()
    try:
        size = await store.put(FIRM, "huge", repeat(chunk, count))
        total = 0
        async for part in store.open(FIRM, "huge"):
            total += len(part)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == total == count * len(chunk)
    assert peak < 16 * MIB, peak


async def test_io_crosses_to_threads_in_few_large_calls(
    store: FileBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[str] = []
    real_run = fsmod._run
    real_read = fsmod._BlobReader.read

    async def counting_run(fn: Callable[..., Any], *args: object) -> Any:
        hops.append(getattr(fn, "__name__", "?"))
        return await real_run(fn, *args)

    def counting_read(self: Any, block: int) -> tuple[bytes, bool]:
        assert threading.current_thread() is not threading.main_thread()
        hops.append("read")
        return real_read(self, block)

    monkeypatch.setattr(fsmod, "_run", counting_run)
    monkeypatch.setattr(fsmod._BlobReader, "read", counting_read)
    await store.put(FIRM, "hops", repeat(b"z" * 4096, 2560))  # 10 MiB in 4 KiB chunks
    assert len(hops) <= 12, hops  # begin + ~10 writes + finish, not 2560
    hops.clear()
    assert sum([len(c) async for c in store.open(FIRM, "hops", chunk_size=4096)]) == 10 * MIB
    assert hops == ["read"] * 10, hops  # 1 MiB per hop, not 2560 hops
    hops.clear()
    await store.put(FIRM, "small", [b"s"])
    assert [c async for c in store.open(FIRM, "small")] == [b"s"]
    assert hops == ["begin", "finish", "read"]  # a small blob: one hop to read it all


async def test_abandoned_reader_with_read_ahead_in_flight(store: FileBlobStore) -> None:
    data = os.urandom(5 * MIB)
    await store.put(FIRM, "ahead", [data])
    for _ in range(20):
        stream = store.open(FIRM, "ahead", chunk_size=MIB)
        assert await anext(stream) == data[:MIB]  # the next block is being read now
        await stream.aclose()  # type: ignore[attr-defined]
    task = asyncio.create_task(read_blob(store, FIRM, "ahead", 4096))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await read_blob(store, FIRM, "ahead", MIB) == data
    for _ in range(500):  # in-flight reads close their file when they end
        if not open_files_ending("/ahead"):
            break
        await asyncio.sleep(0.01)
    assert open_files_ending("/ahead") == []


async def test_event_loop_stays_responsive_during_large_io(store: FileBlobStore) -> None:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await store.put(FIRM, "one-chunk", [os.urandom(64 * MIB)])  # one 64 MiB write
    stop.set()
    await tick
    assert len(gaps) >= 3  # the loop kept running while the thread wrote
