"""Conformance suite for BlobStore backends.

Every bundled backend (memory, filesystem) passes it, and an integrator's own
adapter (S3, a database, ...) runs the very same tests::

    # tests/test_my_blob_store.py
    import pytest
    from clientcomm.testing.blobs import BlobStoreConformance

    class TestMyBlobStore(BlobStoreConformance):
        @pytest.fixture
        async def blob_store(self):
            async with MyBlobStore(bucket=...) as store:  # empty, opened
                yield store

        # optional: a second, independent handle on the same storage (as another
        # process would have); used by the concurrent-writer tests
        @pytest.fixture
        async def blob_store_peer(self, blob_store):
            async with MyBlobStore(bucket=...) as store:
                yield store

The tests are ``async`` and need ``pytest-asyncio`` (auto mode, or mark them)
and ``hypothesis``.

What the suite holds a backend to, beyond the protocol's docstrings:

* ``put`` accepts sync and async iterables of ``bytes``, ``bytearray`` or
  ``memoryview`` chunks (mutable chunks are copied, empty chunks are fine) and
  refuses anything else, including a bare ``bytes`` object, with
  ``InvalidInputError(field="chunks")``.
* Ids are checked with :func:`clientcomm.blobs.validate_blob_id` by every method
  (``InvalidInputError`` with ``field`` ``"firm_id"`` or ``"blob_id"``), and
  ids differing only in case are different blobs.
* A ``put`` that fails (its source raises, a chunk is bad, it is cancelled)
  leaves nothing behind, re-raises the source's own exception unchanged, and the
  id can be written afterwards. A blob is invisible until ``put`` returns.
* Of several concurrent writers of one id exactly one succeeds; the others get
  ``ConflictError`` and the stored bytes are the winner's, never a mix.
* ``open`` yields non-empty chunks of at most ``chunk_size`` bytes, and raises
  ``NotFoundError`` (a ``LookupError``) on first iteration for an unknown id.
* After ``aclose()`` (which may be called twice) calls raise ``StorageError``.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clientcomm.blobs.base import BlobStore, ByteChunks
from clientcomm.errors import ConflictError, InvalidInputError, NotFoundError, StorageError

__all__ = ["BlobStoreConformance", "read_blob"]

FIRM = "firm-a"
OTHER_FIRM = "firm-b"
KIB = 1024
MIB = 1024 * 1024

BAD_IDS: list[Any] = [
    "",
    ".",
    "..",
    "../x",
    "x/../../etc",
    "a/b",
    "a\\b",
    "/abs",
    ".hidden",
    "-dash-first",
    "a..b",
    "x" * 201,
    "a\x00b",
    "a b",
    "a\nb",
    "ä",
    None,
    5,
]


def _data(size: int, seed: int = 0) -> bytes:
    return random.Random(size * 7919 + seed).randbytes(size)


def _new_id() -> str:
    return f"b-{uuid.uuid4().hex}"


async def read_blob(store: BlobStore, firm_id: str, blob_id: str, chunk_size: int = 65536) -> bytes:
    """Read a whole blob, checking every chunk is non-empty and at most ``chunk_size``."""
    parts: list[bytes] = []
    async for chunk in store.open(firm_id, blob_id, chunk_size=chunk_size):
        assert isinstance(chunk, bytes), type(chunk)
        assert 0 < len(chunk) <= chunk_size, (len(chunk), chunk_size)
        parts.append(chunk)
    return b"".join(parts)


async def _agen(parts: list[bytes], *, pause: bool = True) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
        if pause:
            await asyncio.sleep(0)


def _split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


class _SourceFailed(Exception):
    """Raised by a test source mid-stream."""


async def _assert_absent(store: BlobStore, firm_id: str, blob_id: str) -> None:
    assert await store.exists(firm_id, blob_id) is False
    with pytest.raises(NotFoundError):
        await store.size(firm_id, blob_id)
    with pytest.raises(NotFoundError):
        await read_blob(store, firm_id, blob_id)


@st.composite
def _chunked_payloads(draw: st.DrawFn) -> tuple[bytes, list[bytes], int, bool]:
    """(data, chunks that concatenate to it, a read chunk_size, use an async source)."""
    size = draw(
        st.sampled_from([0, 1, 2, 100, 4095, 4096, 65537, 300_000, MIB + 3]) | st.integers(0, 5000)
    )
    data = _data(size, draw(st.integers(0, 2**16)))
    cuts = sorted(draw(st.lists(st.integers(0, size), max_size=12)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, size], strict=True)]
    chunk_size = draw(st.integers(max(1, size // 2000), max(1, size + 10)) | st.just(65536))
    return data, chunks, chunk_size, draw(st.booleans())


class BlobStoreConformance:
    """Shared tests for a :class:`~clientcomm.blobs.BlobStore`.

    Provide a ``blob_store`` fixture yielding an opened, empty store; optionally
    override ``blob_store_peer`` to yield a second handle on the same storage.
    """

    @pytest.fixture
    async def blob_store(self) -> AsyncIterator[BlobStore]:  # pragma: no cover - overridden
        raise NotImplementedError("provide a `blob_store` fixture")
        yield

    @pytest.fixture
    async def blob_store_peer(self, blob_store: BlobStore) -> AsyncIterator[BlobStore]:
        yield blob_store

    # -- protocol ---------------------------------------------------------------

    async def test_satisfies_protocol(self, blob_store: BlobStore) -> None:
        assert isinstance(blob_store, BlobStore)

    # -- round trips ------------------------------------------------------------

    @pytest.mark.parametrize(
        "size",
        [0, 1, 65535, 65536, 65537, MIB - 1, MIB, MIB + 1, 3 * MIB + 7],
    )
    async def test_round_trip_sizes(self, blob_store: BlobStore, size: int) -> None:
        data = _data(size)
        blob_id = _new_id()
        assert await blob_store.put(FIRM, blob_id, [data]) == size
        assert await blob_store.exists(FIRM, blob_id) is True
        assert await blob_store.size(FIRM, blob_id) == size
        assert await read_blob(blob_store, FIRM, blob_id) == data

    async def test_empty_blob_yields_no_chunks(self, blob_store: BlobStore) -> None:
        assert await blob_store.put(FIRM, "empty", []) == 0
        assert [c async for c in blob_store.open(FIRM, "empty")] == []
        assert await blob_store.size(FIRM, "empty") == 0
        assert await blob_store.exists(FIRM, "empty") is True

    async def test_several_megabytes_streamed(self, blob_store: BlobStore) -> None:
        data = _data(6 * MIB + 123)
        assert await blob_store.put(FIRM, "big", _agen(_split(data, 64 * KIB))) == len(data)
        assert await read_blob(blob_store, FIRM, "big", chunk_size=MIB) == data
        assert await read_blob(blob_store, FIRM, "big", chunk_size=3 * MIB) == data

    @settings(
        max_examples=25,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.differing_executors,  # one test shared by every backend subclass
        ],
    )
    @given(case=_chunked_payloads())
    async def test_round_trip_any_chunking(
        self, blob_store: BlobStore, case: tuple[bytes, list[bytes], int, bool]
    ) -> None:
        data, chunks, chunk_size, use_async = case
        blob_id = _new_id()
        source: ByteChunks = _agen(chunks) if use_async else iter(chunks)
        assert await blob_store.put(FIRM, blob_id, source) == len(data)
        assert await blob_store.size(FIRM, blob_id) == len(data)
        assert await read_blob(blob_store, FIRM, blob_id, chunk_size) == data

    @pytest.mark.parametrize("kind", ["list", "tuple", "generator", "async generator"])
    async def test_put_accepts_sync_and_async_iterables(
        self, blob_store: BlobStore, kind: str
    ) -> None:
        parts = [b"alpha", b"", b"beta", b"gamma" * 1000]

        def gen() -> Iterator[bytes]:
            yield from parts

        sources: dict[str, ByteChunks] = {
            "list": parts,
            "tuple": tuple(parts),
            "generator": gen(),
            "async generator": _agen(parts),
        }
        source = sources[kind]
        assert await blob_store.put(FIRM, "src", source) == len(b"".join(parts))
        assert await read_blob(blob_store, FIRM, "src") == b"".join(parts)

    async def test_bytes_like_chunks_are_copied(self, blob_store: BlobStore) -> None:
        buffer = bytearray(b"first")

        async def reuse_buffer() -> AsyncIterator[Any]:
            yield buffer
            buffer[:] = b"XXXXX"  # a caller reusing its buffer after yielding it
            yield memoryview(b"second")
            buffer[:] = b"YYYYY"

        assert await blob_store.put(FIRM, "like", reuse_buffer()) == 11
        assert await read_blob(blob_store, FIRM, "like") == b"firstsecond"

    @pytest.mark.parametrize("chunk_size", [1, 3, 1000, 4096, 10_000, 10_001])
    async def test_open_respects_chunk_size(self, blob_store: BlobStore, chunk_size: int) -> None:
        data = _data(10_000)
        await blob_store.put(FIRM, "cs", _split(data, 777))
        assert await read_blob(blob_store, FIRM, "cs", chunk_size) == data

    async def test_open_can_stop_early_and_read_concurrently(self, blob_store: BlobStore) -> None:
        data = _data(3 * MIB)
        await blob_store.put(FIRM, "part", [data])
        stream = blob_store.open(FIRM, "part", chunk_size=1000)
        first = await anext(stream)
        assert first == data[:1000]
        other = await read_blob(blob_store, FIRM, "part", chunk_size=MIB)
        assert other == data
        await stream.aclose()  # type: ignore[attr-defined]
        assert await blob_store.delete(FIRM, "part") is True

    async def test_edge_ids_round_trip(self, blob_store: BlobStore) -> None:
        ids = ["x" * 200, "A.b_c-9", "0", "case", "CASE", "Case"]
        for n, blob_id in enumerate(ids):
            await blob_store.put(FIRM, blob_id, [blob_id.encode() + bytes([n])])
        for n, blob_id in enumerate(ids):
            assert await read_blob(blob_store, FIRM, blob_id) == blob_id.encode() + bytes([n])
        long_firm = "F" * 200
        await blob_store.put(long_firm, "x" * 200, [b"deep"])
        assert await read_blob(blob_store, long_firm, "x" * 200) == b"deep"

    # -- immutability -----------------------------------------------------------

    async def test_second_put_conflicts_and_keeps_original(
        self, blob_store: BlobStore, blob_store_peer: BlobStore
    ) -> None:
        await blob_store.put(FIRM, "once", [b"original"])
        with pytest.raises(ConflictError):
            await blob_store.put(FIRM, "once", [b"overwrite"])
        with pytest.raises(ConflictError):
            await blob_store_peer.put(FIRM, "once", _agen([b"over", b"write"]))
        with pytest.raises(ConflictError):
            await blob_store.put(FIRM, "once", [])
        assert await read_blob(blob_store, FIRM, "once") == b"original"
        assert await blob_store.size(FIRM, "once") == len(b"original")

    async def test_delete_then_put_again(self, blob_store: BlobStore) -> None:
        await blob_store.put(FIRM, "re", [b"one"])
        assert await blob_store.delete(FIRM, "re") is True
        await _assert_absent(blob_store, FIRM, "re")
        assert await blob_store.delete(FIRM, "re") is False
        assert await blob_store.put(FIRM, "re", [b"two!"]) == 4
        assert await read_blob(blob_store, FIRM, "re") == b"two!"

    # -- failures leave nothing behind -------------------------------------------

    @pytest.mark.parametrize("use_async", [True, False])
    async def test_source_failing_mid_stream_leaves_nothing(
        self, blob_store: BlobStore, use_async: bool
    ) -> None:
        boom = _SourceFailed("source broke")
        chunk = _data(256 * KIB)

        async def async_source() -> AsyncIterator[bytes]:
            for _ in range(9):  # more than one ~1 MiB write
                yield chunk
            raise boom

        def sync_source() -> Iterator[bytes]:
            for _ in range(9):
                yield chunk
            raise boom

        source: ByteChunks = async_source() if use_async else sync_source()
        with pytest.raises(_SourceFailed) as caught:
            await blob_store.put(FIRM, "broken", source)
        assert caught.value is boom
        await _assert_absent(blob_store, FIRM, "broken")
        assert await blob_store.delete(FIRM, "broken") is False
        assert await blob_store.put(FIRM, "broken", [b"fine"]) == 4
        assert await read_blob(blob_store, FIRM, "broken") == b"fine"

    async def test_failing_source_at_first_chunk_leaves_nothing(
        self, blob_store: BlobStore
    ) -> None:
        async def source() -> AsyncIterator[bytes]:
            raise _SourceFailed("no data")
            yield b""  # pragma: no cover

        with pytest.raises(_SourceFailed):
            await blob_store.put(FIRM, "nothing", source())
        await _assert_absent(blob_store, FIRM, "nothing")

    @pytest.mark.parametrize("bad", ["text", 5, None, [1, 2], object()])
    async def test_bad_chunk_mid_stream_leaves_nothing(
        self, blob_store: BlobStore, bad: object
    ) -> None:
        with pytest.raises(InvalidInputError) as caught:
            await blob_store.put(FIRM, "badchunk", [b"ok" * 100_000, bad])  # type: ignore[list-item]
        assert caught.value.field == "chunks"
        await _assert_absent(blob_store, FIRM, "badchunk")

    @pytest.mark.parametrize("bad", [b"bare bytes", bytearray(b"bare"), "text", None, 5])
    async def test_chunks_must_be_an_iterable_of_chunks(
        self, blob_store: BlobStore, bad: object
    ) -> None:
        with pytest.raises(InvalidInputError) as caught:
            await blob_store.put(FIRM, "notiter", bad)  # type: ignore[arg-type]
        assert caught.value.field == "chunks"
        await _assert_absent(blob_store, FIRM, "notiter")

    async def test_cancelled_put_leaves_nothing(self, blob_store: BlobStore) -> None:
        started = asyncio.Event()

        async def stalling() -> AsyncIterator[bytes]:
            for _ in range(6):
                yield _data(256 * KIB)
            started.set()
            await asyncio.Event().wait()  # never
            yield b"never"  # pragma: no cover

        task = asyncio.create_task(blob_store.put(FIRM, "cancelled", stalling()))
        await asyncio.wait_for(started.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _assert_absent(blob_store, FIRM, "cancelled")
        assert await blob_store.put(FIRM, "cancelled", [b"after"]) == 5

    async def test_blob_invisible_until_put_returns(self, blob_store: BlobStore) -> None:
        gate = asyncio.Event()
        halfway = asyncio.Event()

        async def gated() -> AsyncIterator[bytes]:
            yield _data(2 * MIB)
            halfway.set()
            await gate.wait()
            yield b"tail"

        task = asyncio.create_task(blob_store.put(FIRM, "pending", gated()))
        await asyncio.wait_for(halfway.wait(), 30)
        await _assert_absent(blob_store, FIRM, "pending")
        gate.set()
        assert await task == 2 * MIB + 4
        assert await read_blob(blob_store, FIRM, "pending", MIB) == _data(2 * MIB) + b"tail"

    # -- concurrency ------------------------------------------------------------

    async def test_concurrent_writers_of_different_ids(
        self, blob_store: BlobStore, blob_store_peer: BlobStore
    ) -> None:
        payloads = {f"c{n}": _data(50_000 + n * 20_011, n) for n in range(16)}
        stores = [blob_store, blob_store_peer]
        sizes = await asyncio.gather(
            *(
                stores[n % 2].put(FIRM, blob_id, _agen(_split(data, 8192)))
                for n, (blob_id, data) in enumerate(payloads.items())
            )
        )
        assert sizes == [len(d) for d in payloads.values()]
        for blob_id, data in payloads.items():
            assert await read_blob(blob_store_peer, FIRM, blob_id) == data

    @pytest.mark.parametrize("writers", [2, 6])
    async def test_concurrent_writers_of_one_id_exactly_one_wins(
        self, blob_store: BlobStore, blob_store_peer: BlobStore, writers: int
    ) -> None:
        # every writer is past its start (and any early existence check) before
        # any of them may finish, so the final publish itself must be race-free
        gate = asyncio.Event()
        ready = 0
        payloads = [_data(300_000 + n, n) for n in range(writers)]

        async def source(data: bytes) -> AsyncIterator[bytes]:
            nonlocal ready
            for part in _split(data[:-1], 64 * KIB):
                yield part
                await asyncio.sleep(0)
            ready += 1
            if ready == writers:
                gate.set()
            await gate.wait()
            yield data[-1:]

        stores = [blob_store, blob_store_peer]
        results = await asyncio.wait_for(
            asyncio.gather(
                *(stores[n % 2].put(FIRM, "contested", source(d)) for n, d in enumerate(payloads)),
                return_exceptions=True,
            ),
            60,
        )
        winners = [n for n, r in enumerate(results) if not isinstance(r, BaseException)]
        assert len(winners) == 1, results
        for n, result in enumerate(results):
            if n != winners[0]:
                assert isinstance(result, ConflictError), result
        winner = payloads[winners[0]]
        assert results[winners[0]] == len(winner)
        assert await read_blob(blob_store, FIRM, "contested", MIB) == winner
        assert await read_blob(blob_store_peer, FIRM, "contested", MIB) == winner

    async def test_late_writer_of_existing_id_conflicts(
        self, blob_store: BlobStore, blob_store_peer: BlobStore
    ) -> None:
        results = await asyncio.gather(
            *(
                (blob_store if n % 2 else blob_store_peer).put(FIRM, "race", [_data(1000, n)])
                for n in range(8)
            ),
            return_exceptions=True,
        )
        assert sum(not isinstance(r, BaseException) for r in results) == 1
        assert all(isinstance(r, ConflictError) for r in results if isinstance(r, BaseException))

    # -- firm isolation ---------------------------------------------------------

    async def test_firms_are_isolated(self, blob_store: BlobStore) -> None:
        await blob_store.put(FIRM, "shared-id", [b"firm a's bytes"])
        assert await blob_store.exists(OTHER_FIRM, "shared-id") is False
        await _assert_absent(blob_store, OTHER_FIRM, "shared-id")
        assert await blob_store.delete(OTHER_FIRM, "shared-id") is False
        assert await read_blob(blob_store, FIRM, "shared-id") == b"firm a's bytes"

        await blob_store.put(OTHER_FIRM, "shared-id", [b"firm b"])
        assert await read_blob(blob_store, FIRM, "shared-id") == b"firm a's bytes"
        assert await read_blob(blob_store, OTHER_FIRM, "shared-id") == b"firm b"
        assert await blob_store.size(OTHER_FIRM, "shared-id") == 6

        assert await blob_store.delete(FIRM, "shared-id") is True
        assert await blob_store.exists(FIRM, "shared-id") is False
        assert await read_blob(blob_store, OTHER_FIRM, "shared-id") == b"firm b"

    async def test_firm_ids_differing_in_case_are_different_firms(
        self, blob_store: BlobStore
    ) -> None:
        await blob_store.put("acme", "doc", [b"lower"])
        assert await blob_store.exists("ACME", "doc") is False
        await blob_store.put("ACME", "doc", [b"upper"])
        assert await read_blob(blob_store, "acme", "doc") == b"lower"
        assert await read_blob(blob_store, "ACME", "doc") == b"upper"

    # -- unknown ids ------------------------------------------------------------

    async def test_unknown_ids(self, blob_store: BlobStore) -> None:
        await _assert_absent(blob_store, FIRM, "missing")
        await _assert_absent(blob_store, "never-seen-firm", "missing")
        assert await blob_store.delete(FIRM, "missing") is False
        with pytest.raises(LookupError):  # NotFoundError is a LookupError
            await blob_store.size(FIRM, "missing")
        stream = blob_store.open(FIRM, "missing")  # raising is deferred to iteration
        with pytest.raises(NotFoundError):
            await anext(stream)

    # -- bad input --------------------------------------------------------------

    @pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
    async def test_bad_ids_are_refused_everywhere(self, blob_store: BlobStore, bad: Any) -> None:
        for field, firm_id, blob_id in (("firm_id", bad, "ok"), ("blob_id", FIRM, bad)):
            with pytest.raises(InvalidInputError) as caught:
                await blob_store.put(firm_id, blob_id, [b"x"])
            assert caught.value.field == field
            with pytest.raises(InvalidInputError) as caught:
                await read_blob(blob_store, firm_id, blob_id)
            assert caught.value.field == field
            for method in (blob_store.size, blob_store.exists, blob_store.delete):
                with pytest.raises(InvalidInputError) as caught:
                    await method(firm_id, blob_id)
                assert caught.value.field == field
        assert await blob_store.exists(FIRM, "ok") is False

    @pytest.mark.parametrize("chunk_size", [0, -1, 1.5, "64"])
    async def test_bad_chunk_size_is_refused(self, blob_store: BlobStore, chunk_size: Any) -> None:
        await blob_store.put(FIRM, "cs", [b"data"])
        with pytest.raises(InvalidInputError) as caught:
            await read_blob(blob_store, FIRM, "cs", chunk_size)
        assert caught.value.field == "chunk_size"

    # -- lifecycle --------------------------------------------------------------

    async def test_closed_store_refuses_work(self, blob_store: BlobStore) -> None:
        await blob_store.put(FIRM, "kept", [b"x"])
        await blob_store.aclose()
        await blob_store.aclose()  # idempotent
        with pytest.raises(StorageError):
            await blob_store.put(FIRM, "new", [b"x"])
        with pytest.raises(StorageError):
            await blob_store.exists(FIRM, "kept")
        with pytest.raises(StorageError):
            await read_blob(blob_store, FIRM, "kept")
