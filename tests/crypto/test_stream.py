"""Chunked streams: round trips at every size and split, frame tampering,
shared ciphertext, and bounded memory."""

from __future__ import annotations

import itertools
import os
import tracemalloc
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clientcomm.crypto import (
    MemoryKeyProvider,
    SealContext,
    Sealer,
    StreamKey,
    StreamOpener,
    StreamSealer,
    stream_frame_size,
)
from clientcomm.crypto.envelope import ByteSource
from clientcomm.crypto.stream import (
    DEFAULT_CHUNK_SIZE,
    STREAM_HEADER_SIZE,
    open_buffer,
    seal_buffer,
)
from clientcomm.errors import IntegrityError, InvalidInputError, KeyDestroyedError

F, A, B = "firm-1", "client-a", "client-b"
CTX = SealContext(F, A, "attachment", "blob-1", "content")
SHARED = SealContext(F, None, "attachment", "blob-1", "content")
CHUNK = 256
MB = 1024 * 1024


def pieces(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


def seal_sync(key: StreamKey, data_pieces: Iterable[bytes], ctx: SealContext = CTX) -> list[bytes]:
    core = StreamSealer(key, ctx)
    frames: list[bytes] = []
    for piece in data_pieces:
        frames += core.update(piece)
    return frames + core.finalize()


def open_sync(key: StreamKey, frame_pieces: Iterable[bytes], ctx: SealContext = CTX) -> bytes:
    core = StreamOpener(key, ctx)
    out: list[bytes] = []
    for piece in frame_pieces:
        out += core.update(piece)
    return b"".join(out + core.finalize())


def reopen(key: StreamKey) -> StreamKey:
    """A fresh (unused) StreamKey object for the same key, as after unwrapping."""
    return StreamKey(key.data_key, key.header)


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([c async for c in chunks])


# -- round trips ----------------------------------------------------------------------------
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.one_of(
        st.integers(0, 4 * CHUNK),
        st.sampled_from([CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK - 1, 3 * CHUNK + 1]),
    ),
    write_cuts=st.lists(st.integers(0, 4 * CHUNK), max_size=8),
    read_cuts=st.lists(st.integers(0, 5 * CHUNK), max_size=8),
)
def test_round_trip_any_size_and_split(
    size: int, write_cuts: list[int], read_cuts: list[int]
) -> None:
    data = os.urandom(size)
    key = StreamKey.generate(CHUNK)
    frames = seal_sync(key, pieces(data, write_cuts))
    frame = CHUNK + 16
    assert len(frames) == max(1, -(-size // CHUNK))
    assert all(len(f) == frame for f in frames[:-1])
    assert 16 <= len(frames[-1]) <= frame
    blob = b"".join(frames)
    assert len(blob) == size + 16 * len(frames)
    assert open_sync(reopen(key), pieces(blob, read_cuts)) == data
    assert open_sync(reopen(key), frames) == data  # frame-aligned fast path


def as_kind(data: bytes, kind: str) -> bytes | bytearray | memoryview:
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(bytearray(data))
    return data


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.one_of(
        st.integers(0, 4 * CHUNK),
        st.sampled_from([CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK - 1, 3 * CHUNK + 1]),
    ),
    write_cuts=st.lists(st.integers(0, 4 * CHUNK), max_size=4),
    before=st.integers(0, 5 * CHUNK),
    kind=st.sampled_from(["bytes", "bytearray", "memoryview"]),
)
def test_whole_buffer_paths_match_the_incremental_core(
    size: int, write_cuts: list[int], before: int, kind: str
) -> None:
    """seal_all / seal_buffer / open_all / open_buffer (one frame per step, or the
    one-frame shortcut) make exactly the frames and plaintext of update/finalize."""
    data = os.urandom(size)
    key = StreamKey.generate(CHUNK)
    frames = seal_sync(reopen(key), pieces(data, write_cuts))
    assert list(StreamSealer(reopen(key), CTX).seal_all(as_kind(data, kind))) == frames
    assert list(seal_buffer(reopen(key), CTX, as_kind(data, kind))) == frames
    # after pieces were fed incrementally, seal_all finishes the same stream
    core = StreamSealer(reopen(key), CTX)
    cut = min(before, size)
    assert core.update(data[:cut]) + list(core.seal_all(data[cut:])) == frames
    with pytest.raises(InvalidInputError):
        core.seal_all(b"more")

    blob = b"".join(frames)
    assert b"".join(StreamOpener(reopen(key), CTX).open_all(as_kind(blob, kind))) == data
    assert b"".join(open_buffer(reopen(key), CTX, as_kind(blob, kind))) == data
    opener = StreamOpener(reopen(key), CTX)
    cut = min(before, len(blob))
    assert b"".join(opener.update(blob[:cut]) + list(opener.open_all(blob[cut:]))) == data
    with pytest.raises(IntegrityError):
        opener.open_all(b"")


def test_whole_buffer_paths_refuse_bad_input() -> None:
    key = StreamKey.generate(CHUNK)
    with pytest.raises(InvalidInputError):
        list(seal_buffer(reopen(key), CTX, "text"))
    for data in (b"x", b"x" * (3 * CHUNK)):  # a key seals one stream, shortcut or not
        used = reopen(key)
        list(seal_buffer(used, CTX, data))
        for again in (b"x", b"x" * (3 * CHUNK), bytearray(b"x")):
            with pytest.raises(InvalidInputError):
                list(seal_buffer(used, CTX, again))
        with pytest.raises(InvalidInputError):
            StreamSealer(used, CTX)
    with pytest.raises(InvalidInputError):
        list(open_buffer(reopen(key), CTX, "text"))
    for short in (b"", b"x" * 15, b"x" * (CHUNK + 16) + b"x" * 15):
        with pytest.raises(IntegrityError):
            list(open_buffer(reopen(key), CTX, short))


def _consume_traced(pieces: Iterable[bytes]) -> tuple[int, int]:
    """Bytes yielded by ``pieces`` and the peak of memory traced meanwhile."""
    tracemalloc.start()
    try:
        total = sum(len(piece) for piece in pieces)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return total, peak


def test_whole_buffer_paths_hold_one_frame_at_a_time() -> None:
    total = 24 * 1024 * 1024
    chunk = 256 * 1024
    data = os.urandom(total)
    key = StreamKey.generate(chunk)
    sealed, seal_peak = _consume_traced(seal_buffer(reopen(key), CTX, data))
    assert sealed == total + 16 * (total // chunk)
    assert seal_peak < 4 * chunk, seal_peak
    blob = b"".join(seal_buffer(reopen(key), CTX, data))
    del data
    opened, open_peak = _consume_traced(open_buffer(reopen(key), CTX, blob))
    assert opened == total
    assert open_peak < 4 * chunk, open_peak


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.one_of(
        st.integers(0, 6 * MB),
        st.sampled_from([2 * MB - 1, 3 * MB, 4 * MB + 17, 6 * MB]),
        st.integers(1, 24).map(lambda k: k * 256 * 1024 + 1),
    ),
    chunk=st.sampled_from([4096, 65536, 256 * 1024, DEFAULT_CHUNK_SIZE]),
    piece=st.sampled_from([1000, 65536, 100_000, 1 << 20]),
)
def test_round_trip_up_to_several_megabytes(size: int, chunk: int, piece: int) -> None:
    data = os.urandom(size)
    key = StreamKey.generate(chunk)
    frames = seal_sync(key, pieces(data, range(piece, size, piece)))
    assert open_sync(reopen(key), frames) == data
    blob = b"".join(frames)
    assert open_sync(reopen(key), pieces(blob, range(piece, len(blob), piece))) == data
    assert list(seal_buffer(reopen(key), CTX, data)) == frames
    assert b"".join(open_buffer(reopen(key), CTX, blob)) == data


async def test_async_api_with_sync_async_and_bytes_sources() -> None:
    sealer = Sealer(MemoryKeyProvider(), chunk_size=1024)
    data = os.urandom(10_000)

    async def agen() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 777):
            yield data[i : i + 777]

    def sgen() -> Iterator[bytes]:
        yield from pieces(data, range(333, len(data), 333))

    sources: list[ByteSource] = [data, agen(), sgen(), [memoryview(data)], [bytearray(data)]]
    for source in sources:
        sealed = await sealer.seal_stream(CTX, source)
        frames = [f async for f in sealed.chunks]
        assert stream_frame_size(sealed.key) == 1024 + 16

        async def blob_reader(frames: list[bytes] = frames) -> AsyncIterator[bytes]:
            for f in frames:
                yield f

        assert await collect(sealer.open_stream(CTX, sealed.key, blob_reader())) == data
        assert await collect(sealer.open_stream(CTX, sealed.key, b"".join(frames))) == data


async def test_seal_stream_frames_are_the_cores_frames_for_every_source_shape() -> None:
    sealer = Sealer(MemoryKeyProvider(), chunk_size=1024)
    for size in (0, 1, 1023, 1024, 1025, 2048, 5000):
        data = os.urandom(size)
        for source in (data, [data], (data,), bytearray(data), [data[:7], data[7:]]):
            sealed = await sealer.seal_stream(CTX, source)
            frames = [f async for f in sealed.chunks]
            # the same stream sealed by the synchronous core under the same key
            key = await sealer.open_stream_key(CTX, sealed.key)
            assert frames == seal_sync(key, [data])
            blob = b"".join(frames)
            for blob_source in (blob, [blob], frames, memoryview(blob), bytearray(blob)):
                got = await collect(sealer.open_stream(CTX, sealed.key, blob_source))
                assert got == data


async def test_default_chunk_size_is_one_mebibyte() -> None:
    sealer = Sealer(MemoryKeyProvider())
    assert sealer.chunk_size == DEFAULT_CHUNK_SIZE == MB
    for size, n_frames in ((MB, 1), (MB + 1, 2), (3 * MB, 3)):
        data = os.urandom(size)
        sealed = await sealer.seal_stream(CTX, data)
        assert stream_frame_size(sealed.key) == MB + 16
        frames = [f async for f in sealed.chunks]
        assert [len(f) for f in frames[:-1]] == [MB + 16] * (n_frames - 1)
        assert len(frames) == n_frames
        assert await collect(sealer.open_stream(CTX, sealed.key, frames)) == data


class _Misbehaving(MemoryKeyProvider):
    """Returns a wrong number of references/keys, or malformed references."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    async def wrap_many(self, firm_id: str, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        refs = await super().wrap_many(firm_id, items)
        if self.mode == "count":
            return refs + refs
        if self.mode == "short":
            return [b"\x00\x00\x00"] * len(refs)
        if self.mode == "long":
            return [r * 100 for r in refs]
        return refs

    async def unwrap_many(
        self, firm_id: str, items: Sequence[tuple[str, bytes]]
    ) -> list[bytes | IntegrityError]:
        keys = await super().unwrap_many(firm_id, items)
        if self.mode == "unwrap-count":
            return keys + keys
        if self.mode == "bytearray":  # a bytes-like key is still accepted
            return [bytearray(k) if isinstance(k, bytes) else k for k in keys]  # type: ignore[misc]
        return keys


async def test_a_misbehaving_provider_is_caught() -> None:
    for mode in ("count", "short", "long"):
        sealer = Sealer(_Misbehaving(mode), chunk_size=1024)
        with pytest.raises(IntegrityError):
            await sealer.seal_stream(CTX, b"data")
        with pytest.raises(IntegrityError):
            await sealer.wrap_stream_keys(F, [(A, sealer.new_stream_key())])
    sealer = Sealer(_Misbehaving("unwrap-count"), chunk_size=1024)
    sealed = await sealer.seal_stream(CTX, b"data")
    frames = [f async for f in sealed.chunks]
    with pytest.raises(IntegrityError):
        await collect(sealer.open_stream(CTX, sealed.key, frames))
    with pytest.raises(IntegrityError):
        await sealer.open_stream_key(CTX, sealed.key)
    sealer = Sealer(_Misbehaving("bytearray"), chunk_size=1024)
    sealed = await sealer.seal_stream(CTX, b"data")
    frames = [f async for f in sealed.chunks]
    assert await collect(sealer.open_stream(CTX, sealed.key, frames)) == b"data"


async def test_bad_sources_are_refused() -> None:
    sealer = Sealer(MemoryKeyProvider())
    for bad in ("text", 42, ["text"]):
        sealed = await sealer.seal_stream(CTX, bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError):
            await collect(sealed.chunks)


def test_a_stream_key_seals_one_stream_only() -> None:
    key = StreamKey.generate(CHUNK)
    seal_sync(key, [b"first"])
    with pytest.raises(InvalidInputError):
        StreamSealer(key, CTX)


def test_chunk_size_limits_and_key_repr() -> None:
    for bad in (0, 63, 16 * 1024 * 1024 + 1):
        with pytest.raises(InvalidInputError):
            StreamKey.generate(bad)
    key = StreamKey.generate(CHUNK)
    assert key.data_key.hex() not in repr(key)
    assert repr(key) == f"StreamKey(chunk_size={CHUNK})"
    with pytest.raises(InvalidInputError):
        Sealer(MemoryKeyProvider(), chunk_size=10)


def test_finalized_cores_refuse_more_input() -> None:
    key = StreamKey.generate(CHUNK)
    core = StreamSealer(key, CTX)
    frames = core.update(b"x" * 1000) + core.finalize()
    with pytest.raises(InvalidInputError):
        core.update(b"more")
    with pytest.raises(InvalidInputError):
        core.finalize()
    opener = StreamOpener(reopen(key), CTX)
    for f in frames:
        opener.update(f)
    opener.finalize()
    with pytest.raises(IntegrityError):
        opener.update(b"x")


# -- frame tampering ---------------------------------------------------------------------------
def sealed_frames(n_chunks: int = 4, tail: int = 100) -> tuple[StreamKey, bytes, list[bytes]]:
    data = os.urandom(CHUNK * (n_chunks - 1) + tail)
    key = StreamKey.generate(CHUNK)
    return key, data, seal_sync(key, [data])


def assert_fails(key: StreamKey, frames: list[bytes], ctx: SealContext = CTX) -> None:
    with pytest.raises(IntegrityError):
        open_sync(reopen(key), frames, ctx)
    with pytest.raises(IntegrityError):  # also when read in arbitrary pieces
        open_sync(reopen(key), pieces(b"".join(frames), range(100, 10 * CHUNK, 100)), ctx)
    blob = b"".join(frames)
    with pytest.raises(IntegrityError):  # and opened whole, frame by frame
        b"".join(StreamOpener(reopen(key), ctx).open_all(blob))
    with pytest.raises(IntegrityError):
        b"".join(open_buffer(reopen(key), ctx, memoryview(blob)))
    with pytest.raises(IntegrityError):  # (a bytes blob of one frame takes a shortcut)
        b"".join(open_buffer(reopen(key), ctx, blob))


def test_truncation_at_a_frame_boundary_fails() -> None:
    key, _, frames = sealed_frames()
    for n in range(len(frames)):
        assert_fails(key, frames[:n])  # includes the empty stream


def test_truncation_inside_a_frame_fails() -> None:
    key, _, frames = sealed_frames()
    blob = b"".join(frames)
    for cut in (1, 15, 16, CHUNK + 16 + 1, len(blob) - 1, len(blob) - 17):
        assert_fails(key, [blob[:cut]])


def test_dropped_reordered_duplicated_frames_fail() -> None:
    key, _, f = sealed_frames()
    assert_fails(key, [f[0], f[2], f[3]])  # dropped
    assert_fails(key, [f[1], f[0], f[2], f[3]])  # reordered
    assert_fails(key, [f[0], f[1], f[1], f[2], f[3]])  # duplicated
    assert_fails(key, [f[0], f[1], f[2], f[3], f[3]])  # final duplicated
    assert_fails(key, [*f, f[0]])  # appended after the final frame
    assert_fails(key, [f[0], f[1], f[3]])  # final moved up


def test_one_frame_streams_fail_on_any_change() -> None:
    key, data, frames = sealed_frames(n_chunks=1)
    assert len(frames) == 1
    assert b"".join(open_buffer(reopen(key), CTX, frames[0])) == data
    frame = frames[0]
    for i in (0, len(frame) // 2, len(frame) - 17, len(frame) - 16, len(frame) - 1):
        bad = bytearray(frame)
        bad[i] ^= 0x80
        assert_fails(key, [bytes(bad)])
    for cut in (0, 1, 15, 16, len(frame) - 1):
        assert_fails(key, [frame[:cut]])
    assert_fails(key, [frame + b"\x00"])
    assert_fails(key, [frame, frame])
    # the first frame of a longer stream, presented as the whole stream
    long_key, _, long_frames = sealed_frames(n_chunks=2, tail=CHUNK)
    assert len(long_frames[0]) == CHUNK + 16
    assert_fails(long_key, long_frames[:1])
    _, _, other = sealed_frames(n_chunks=1)
    assert_fails(key, other)  # another stream's only frame
    assert_fails(key, frames, SealContext(F, B, "attachment", "blob-1", "content"))


def test_frames_spliced_from_another_stream_fail() -> None:
    key1, _, f1 = sealed_frames()
    _, _, f2 = sealed_frames()
    assert_fails(key1, [f1[0], f2[1], f1[2], f1[3]])
    assert_fails(key1, f2)


@pytest.mark.parametrize("where", ["ciphertext", "tag"])
def test_bit_flip_in_any_frame_fails(where: str) -> None:
    key, _, frames = sealed_frames()
    for i, frame in enumerate(frames):
        index = 0 if where == "ciphertext" else len(frame) - 1
        bad = bytearray(frame)
        bad[index] ^= 0x01
        assert_fails(key, [*frames[:i], bytes(bad), *frames[i + 1 :]])


def test_other_context_fails() -> None:
    key, _, frames = sealed_frames()
    for ctx in (
        SealContext(F, B, "attachment", "blob-1", "content"),
        SealContext(F, A, "attachment", "blob-2", "content"),
        SealContext(F, A, "attachment", "blob-1", "preview"),
        SHARED,
    ):
        assert_fails(key, frames, ctx)


@pytest.mark.parametrize("size", [1000, 100])  # several frames, or one (the shortcut)
async def test_stream_key_tampering_fails(size: int) -> None:
    sealer = Sealer(MemoryKeyProvider(), chunk_size=CHUNK)
    data = os.urandom(size)
    sealed = await sealer.seal_stream(CTX, data)
    frames = [f async for f in sealed.chunks]
    for index in (
        0,
        1,
        2,
        5,
        6,
        37,
        38,
        44,
        STREAM_HEADER_SIZE,
        STREAM_HEADER_SIZE + 2,
        STREAM_HEADER_SIZE + 6,
        len(sealed.key) - 1,
    ):
        bad = bytearray(sealed.key)
        bad[index] ^= 0x01
        with pytest.raises(IntegrityError):
            await collect(sealer.open_stream(CTX, bytes(bad), frames))
    for bad_key in (b"", sealed.key[:-1], sealed.key + b"\x00"):
        with pytest.raises(IntegrityError):
            await collect(sealer.open_stream(CTX, bad_key, frames))
    with pytest.raises(IntegrityError):
        stream_frame_size(b"\x01\x01" + sealed.key[2:])


async def test_stream_key_of_another_client_or_stream_fails() -> None:
    sealer = Sealer(MemoryKeyProvider(), chunk_size=CHUNK)
    ctx_b = SealContext(F, B, "attachment", "blob-1", "content")
    sa = await sealer.seal_stream(CTX, b"a" * 700)
    sb = await sealer.seal_stream(ctx_b, b"b" * 700)
    fa = [f async for f in sa.chunks]
    fb = [f async for f in sb.chunks]
    with pytest.raises(IntegrityError):
        await collect(sealer.open_stream(ctx_b, sa.key, fa))
    with pytest.raises(IntegrityError):  # b's key on a's frames
        await collect(sealer.open_stream(CTX, sb.key, fa, key_owner=B))
    # a's header with b's wrapped key: the commitment does not match
    forged = sa.key[:STREAM_HEADER_SIZE] + sb.key[STREAM_HEADER_SIZE:]
    with pytest.raises(IntegrityError):
        await collect(sealer.open_stream(CTX, forged, fa, key_owner=B))
    assert await collect(sealer.open_stream(ctx_b, sb.key, fb)) == b"b" * 700


# -- shared ciphertext ------------------------------------------------------------------------
async def test_shared_stream_sealed_once_wrapped_per_client() -> None:
    sealer = Sealer(MemoryKeyProvider(), chunk_size=1024)
    data = os.urandom(5000)
    key = sealer.new_stream_key()
    frames = [f async for f in sealer.seal_chunks(SHARED, key, data)]
    clients = [f"client-{i}" for i in range(5)]
    refs = await sealer.wrap_stream_keys(F, [(c, key) for c in clients])
    assert len(set(refs)) == 5
    for c, ref in zip(clients, refs, strict=True):
        assert await collect(sealer.open_stream(SHARED, ref, frames, key_owner=c)) == data
    with pytest.raises(IntegrityError):  # client 1's reference opened with client 2's key
        await collect(sealer.open_stream(SHARED, refs[1], frames, key_owner=clients[2]))
    with pytest.raises(InvalidInputError):  # a shared context names no key owner
        await collect(sealer.open_stream(SHARED, refs[0], frames))
    with pytest.raises(InvalidInputError):
        await sealer.seal_stream(SHARED, data)
    await sealer.forget_client(F, clients[0])
    with pytest.raises(KeyDestroyedError):
        await collect(sealer.open_stream(SHARED, refs[0], frames, key_owner=clients[0]))
    for c, ref in zip(clients[1:], refs[1:], strict=True):
        assert await collect(sealer.open_stream(SHARED, ref, frames, key_owner=c)) == data


# -- bounded memory ----------------------------------------------------------------------------
async def test_memory_stays_bounded_for_a_large_stream() -> None:
    total = 48 * 1024 * 1024
    piece = os.urandom(100_000)
    sealer = Sealer(MemoryKeyProvider())
    key = sealer.new_stream_key()
    (ref,) = await sealer.wrap_stream_keys(F, [(A, key)])

    def source() -> Iterator[bytes]:
        for _ in range(total // len(piece)):
            yield piece

    tracemalloc.start()
    try:
        opened = 0
        async for plain in sealer.open_stream(CTX, ref, sealer.seal_chunks(CTX, key, source())):
            opened += len(plain)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert opened == total // len(piece) * len(piece)
    assert peak < 8 * 1024 * 1024, peak
