"""Chunked streams: round trips at every size and split, frame tampering,
shared ciphertext, and bounded memory."""

from __future__ import annotations

import itertools
import os
import tracemalloc
from collections.abc import AsyncIterator, Iterable, Iterator

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
from clientcomm.crypto.stream import STREAM_HEADER_SIZE
from clientcomm.errors import IntegrityError, InvalidInputError, KeyDestroyedError

F, A, B = "firm-1", "client-a", "client-b"
CTX = SealContext(F, A, "attachment", "blob-1", "content")
SHARED = SealContext(F, None, "attachment", "blob-1", "content")
CHUNK = 256


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


MB = 1024 * 1024


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.one_of(
        st.integers(0, 6 * MB),
        st.sampled_from([2 * MB - 1, 3 * MB, 4 * MB + 17, 6 * MB]),
        st.integers(1, 24).map(lambda k: k * 256 * 1024 + 1),
    ),
    chunk=st.sampled_from([4096, 65536, 256 * 1024]),
    piece=st.sampled_from([1000, 65536, 100_000, 1 << 20]),
)
def test_round_trip_up_to_several_megabytes(size: int, chunk: int, piece: int) -> None:
    data = os.urandom(size)
    key = StreamKey.generate(chunk)
    frames = seal_sync(key, pieces(data, range(piece, size, piece)))
    assert open_sync(reopen(key), frames) == data
    blob = b"".join(frames)
    assert open_sync(reopen(key), pieces(blob, range(piece, len(blob), piece))) == data


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


async def test_stream_key_tampering_fails() -> None:
    sealer = Sealer(MemoryKeyProvider(), chunk_size=CHUNK)
    data = os.urandom(1000)
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
