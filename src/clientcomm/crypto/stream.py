"""Chunked sealing of large values (attachments, documents) with bounded memory.

A stream is sealed under one fresh data key, in chunks of ``chunk_size``
plaintext bytes (default 1 MiB). Each chunk becomes one *frame* of
``chunk_size + 16`` bytes (the last frame may be shorter): AES-256-GCM
ciphertext and tag, with the nonce

    7-byte random prefix | u32 chunk index | u8 final flag (1 on the last chunk)

and the same associated data for every chunk (stream parameters + context).
This is the STREAM construction (Hoang, Reyhanitabar, Rogaway, Vizár 2015):
a chunk opened at another position, a stream cut at a frame boundary (the
last frame left was not sealed as final), frames dropped, duplicated,
reordered, appended or spliced in from another stream all fail to
authenticate.

The frames alone are the blob; the stream's parameters and wrapped data key
live in a small *stream key* (see :mod:`clientcomm.crypto.envelope`) stored
with the object that references the blob, so the key can be re-wrapped or
wrapped for several clients without rewriting the blob, and blob frames stay
aligned at ``chunk_size + 16`` for zero-copy reading.

:class:`StreamSealer` and :class:`StreamOpener` are the synchronous cores;
:class:`~clientcomm.crypto.envelope.Sealer` wraps them in async generators.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clientcomm.crypto.context import (
    COMMIT_LABEL,
    COMMITMENT_SIZE,
    FORMAT_VERSION,
    TAG_SIZE,
    TYPE_STREAM_KEY,
    U32,
    SealContext,
)
from clientcomm.crypto.keys import DATA_KEY_SIZE
from clientcomm.errors import IntegrityError, InvalidInputError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MIN_CHUNK_SIZE",
    "STREAM_HEADER_SIZE",
    "StreamKey",
    "StreamOpener",
    "StreamSealer",
    "checked_key_parts",
    "new_key_parts",
    "open_buffer",
    "seal_buffer",
]

DEFAULT_CHUNK_SIZE = 1024 * 1024
MIN_CHUNK_SIZE = 64
MAX_CHUNK_SIZE = 16 * 1024 * 1024
PREFIX_SIZE = 7
STREAM_HEADER_SIZE = 2 + 4 + COMMITMENT_SIZE + PREFIX_SIZE
"""Bytes of stream parameters at the start of a stream key (and of the AAD)."""

_MAX_CHUNKS = 2**32
_NONCE_TAIL = struct.Struct(">IB")
_ONLY_FRAME = _NONCE_TAIL.pack(0, 1)  # nonce tail of chunk 0 when it is the final one
_FRAME_FAILED = (
    "stream frame failed authentication (tampered, truncated, reordered or another object's)"
)
_STREAM_HEAD = bytes((FORMAT_VERSION, TYPE_STREAM_KEY))
_sha256 = hashlib.sha256
_urandom = os.urandom
_compare = hmac.compare_digest


def _bytes_view(data: object) -> memoryview:
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidInputError("chunk", "stream chunks must be bytes-like") from None
    if view.itemsize != 1 or view.ndim != 1:
        view = view.cast("B")
    return view


def new_key_parts(chunk_size: int) -> tuple[bytes, bytes, AESGCM]:
    """A fresh data key, the stream header for it (format, type, chunk size,
    key commitment, random nonce prefix) and its cipher. ``chunk_size`` must
    already be valid."""
    rnd = _urandom(DATA_KEY_SIZE + PREFIX_SIZE)  # one getrandom call
    data_key = rnd[:DATA_KEY_SIZE]
    header = (
        _STREAM_HEAD
        + U32.pack(chunk_size)
        + _sha256(COMMIT_LABEL + data_key).digest()
        + rnd[DATA_KEY_SIZE:]
    )
    return data_key, header, AESGCM(data_key)


def checked_key_parts(data_key: bytes, header: bytes) -> tuple[bytes, bytes, AESGCM]:
    """Check an unwrapped data key against a stream header (format, chunk
    size range, key commitment); returns them as bytes with the key's cipher.

    Raises:
        InvalidInputError: the data key is not 32 bytes.
        IntegrityError: malformed header, or the key fails the commitment.
    """
    if type(data_key) is not bytes:
        data_key = bytes(data_key)
    if type(header) is not bytes:
        header = bytes(header)
    if len(data_key) != DATA_KEY_SIZE:
        raise InvalidInputError("data_key", "must be 32 bytes")
    if len(header) != STREAM_HEADER_SIZE or header[:2] != _STREAM_HEAD:
        raise IntegrityError("malformed stream header")
    if not MIN_CHUNK_SIZE <= U32.unpack_from(header, 2)[0] <= MAX_CHUNK_SIZE:
        raise IntegrityError("stream chunk size out of range")
    if not _compare(_sha256(COMMIT_LABEL + data_key).digest(), header[6 : 6 + COMMITMENT_SIZE]):
        raise IntegrityError("data key does not match the stream's key commitment")
    return data_key, header, AESGCM(data_key)


def _seal_only_frame(cipher: AESGCM, header: bytes, context: SealContext, data: Any) -> bytes:
    """The frame of a stream that is a single chunk (chunk 0, final): the
    same bytes :class:`StreamSealer` makes for it. ``data`` must fit one chunk,
    and the caller guarantees the key seals nothing else (its nonce is fixed)."""
    return cipher.encrypt(
        header[STREAM_HEADER_SIZE - PREFIX_SIZE :] + _ONLY_FRAME, data, header + context.encode()
    )


async def _sealed_only_frame(
    cipher: AESGCM, header: bytes, context: SealContext, data: Any
) -> AsyncIterator[bytes]:
    # _seal_only_frame as an async iterator that seals when first asked (same
    # guarantee needed: a fresh key that seals nothing else)
    yield _seal_only_frame(cipher, header, context, data)


def _open_only_frame(cipher: AESGCM, header: bytes, context: SealContext, frame: Any) -> bytes:
    """Open the frame of a single-chunk stream (see :func:`_seal_only_frame`).

    Raises:
        IntegrityError: the frame fails authentication (including a frame that
            was not sealed as the only one).
    """
    try:
        return cipher.decrypt(
            header[STREAM_HEADER_SIZE - PREFIX_SIZE :] + _ONLY_FRAME,
            frame,
            header + context.encode(),
        )
    except InvalidTag:
        raise IntegrityError(_FRAME_FAILED, frame=0) from None


class StreamKey:
    """The fresh data key and parameters of ONE stream.

    Create with :meth:`generate` (or :meth:`clientcomm.crypto.Sealer.new_stream_key`).
    A key seals exactly one stream (its nonces are derived from chunk indexes);
    using it for a second stream raises :class:`~clientcomm.errors.InvalidInputError`.
    ``repr`` never shows the key.
    """

    __slots__ = ("_cipher", "_data_key", "_header", "_used", "chunk_size")

    chunk_size: int
    """Plaintext bytes per chunk."""

    def __init__(self, data_key: bytes, header: bytes) -> None:
        self._data_key, self._header, self._cipher = checked_key_parts(data_key, header)
        self._used = False
        self.chunk_size = U32.unpack_from(self._header, 2)[0]

    @classmethod
    def generate(cls, chunk_size: int = DEFAULT_CHUNK_SIZE) -> StreamKey:
        """A fresh random data key and nonce prefix.

        Raises:
            InvalidInputError: ``chunk_size`` outside 64 B .. 16 MiB.
        """
        if not isinstance(chunk_size, int) or not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise InvalidInputError(
                "chunk_size", f"must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}"
            )
        return cls._from_parts(*new_key_parts(chunk_size))

    @classmethod
    def _from_parts(cls, data_key: bytes, header: bytes, cipher: AESGCM) -> StreamKey:
        """An unused key from :func:`new_key_parts` (internal: no checks)."""
        self = object.__new__(cls)
        self._cipher = cipher
        self._data_key = data_key
        self._header = header
        self._used = False
        self.chunk_size = U32.unpack_from(header, 2)[0]
        return self

    def __repr__(self) -> str:
        return f"StreamKey(chunk_size={self.chunk_size})"

    @property
    def header(self) -> bytes:
        """The stream parameters (format, type, chunk size, commitment, nonce
        prefix); public, and bound into every chunk's associated data."""
        return self._header

    @property
    def frame_size(self) -> int:
        """Bytes of one full frame in the sealed blob (``chunk_size + 16``)."""
        return self.chunk_size + TAG_SIZE

    @property
    def data_key(self) -> bytes:
        """The raw data key, for wrapping by a KeyProvider. Handle with care."""
        return self._data_key


class StreamSealer:
    """Seals one stream chunk by chunk (synchronous core).

    Feed plaintext of any piece size to :meth:`update`; it returns the frames
    that are complete. :meth:`finalize` returns the last frame. Memory held:
    at most one chunk. Input pieces that are exact multiples of the chunk size
    are encrypted without copying.

    Raises:
        InvalidInputError: the key was already used, or a piece is not bytes-like.
    """

    __slots__ = ("_aad", "_buf", "_chunk", "_done", "_encrypt", "_held", "_index", "_prefix")

    def __init__(self, key: StreamKey, context: SealContext) -> None:
        if key._used:
            raise InvalidInputError("key", "a stream key seals exactly one stream")
        key._used = True
        header = key._header
        self._encrypt = key._cipher.encrypt
        self._aad = header + context.encode()
        self._prefix = header[STREAM_HEADER_SIZE - PREFIX_SIZE :]
        self._chunk = key.chunk_size
        self._index = 0
        self._held: Any = None  # one full chunk waiting to learn whether it is the last
        self._buf = bytearray()  # a partial chunk
        self._done = False

    def _seal(self, chunk: Any, final: bool) -> bytes:
        index = self._index
        if index >= _MAX_CHUNKS:
            raise InvalidInputError("chunks", "a stream holds at most 2**32 chunks")
        self._index = index + 1
        return self._encrypt(self._prefix + _NONCE_TAIL.pack(index, final), chunk, self._aad)

    def update(self, data: Any) -> list[bytes]:
        """Add plaintext; returns the frames completed by it (maybe none)."""
        if self._done:
            raise InvalidInputError("stream", "already finalized")
        view = _bytes_view(data)
        n = len(view)
        if n == 0:
            return []
        out: list[bytes] = []
        size = self._chunk
        if self._held is not None:  # more data follows: the held chunk is not the last
            out.append(self._seal(self._held, False))
            self._held = None
        off = 0
        buf = self._buf
        if buf:
            off = min(size - len(buf), n)
            buf += view[:off]
            if len(buf) < size:
                return out
            if off < n:
                out.append(self._seal(buf, False))
            else:
                self._held = buf
            self._buf = bytearray()
            if off == n:
                return out
        immutable = isinstance(data, bytes)
        if n - off > size:
            index = self._index
            if index + (n - off) // size >= _MAX_CHUNKS:
                raise InvalidInputError("chunks", "a stream holds at most 2**32 chunks")
            encrypt = self._encrypt
            aad = self._aad
            prefix = self._prefix
            pack = _NONCE_TAIL.pack
            append = out.append
            while n - off > size:
                append(encrypt(prefix + pack(index, 0), view[off : off + size], aad))
                index += 1
                off += size
            self._index = index
        rest = view[off:]
        if len(rest) == size:
            self._held = rest if immutable else bytes(rest)
        else:
            self._buf = bytearray(rest)
        return out

    def seal_all(self, data: Any) -> Iterable[bytes]:
        """Seal ``data`` as the rest of the stream and finalize; returns the
        frames :meth:`update` and :meth:`finalize` would return. Plaintext
        longer than one chunk is read through a view (never copied) and each
        frame is encrypted when it is requested (memory: one frame), so do
        not change a mutable ``data`` while iterating.

        Raises:
            InvalidInputError: already finalized, or ``data`` is not bytes-like.
        """
        if self._done:
            raise InvalidInputError("stream", "already finalized")
        if self._index or self._held is not None or self._buf:
            return self.update(data) + self.finalize()  # earlier pieces are buffered
        if type(data) is not bytes:
            data = _bytes_view(data)
        n = len(data)
        if n <= self._chunk:  # one frame: the common case for small files
            self._done = True
            self._index = 1
            return [self._encrypt(self._prefix + _ONLY_FRAME, data, self._aad)]
        last = (n - 1) // self._chunk  # index of the final chunk
        if last >= _MAX_CHUNKS:
            raise InvalidInputError("chunks", "a stream holds at most 2**32 chunks")
        self._done = True
        self._index = last + 1
        return self._frames(memoryview(data), last)

    def _frames(self, view: memoryview, last: int) -> Iterator[bytes]:
        encrypt = self._encrypt
        aad = self._aad
        prefix = self._prefix
        pack = _NONCE_TAIL.pack
        size = self._chunk
        off = 0
        for index in range(last):
            yield encrypt(prefix + pack(index, 0), view[off : off + size], aad)
            off += size
        yield encrypt(prefix + pack(last, 1), view[off:], aad)

    def finalize(self) -> list[bytes]:
        """Seal the last chunk (an empty stream yields one empty final frame)."""
        if self._done:
            raise InvalidInputError("stream", "already finalized")
        self._done = True
        last: Any = self._held if self._held is not None else self._buf
        self._held = None
        self._buf = bytearray()
        return [self._seal(last, True)]


def seal_buffer(key: StreamKey, context: SealContext, data: Any) -> Iterable[bytes]:
    """Seal a whole plaintext held in memory as one stream under ``key``:
    the frames :class:`StreamSealer` would make (see :meth:`StreamSealer.seal_all`).

    Raises:
        InvalidInputError: the key was already used, or ``data`` is not bytes-like.
    """
    if type(data) is bytes and len(data) <= key.chunk_size:  # one frame, no sealer object
        if key._used:
            raise InvalidInputError("key", "a stream key seals exactly one stream")
        key._used = True
        return [_seal_only_frame(key._cipher, key._header, context, data)]
    return StreamSealer(key, context).seal_all(data)


def open_buffer(key: StreamKey, context: SealContext, data: Any) -> Iterable[bytes]:
    """Open a whole sealed stream held in memory: the plaintext chunks
    :class:`StreamOpener` would return (see :meth:`StreamOpener.open_all`).

    Raises:
        IntegrityError: as :meth:`StreamOpener.open_all`.
        InvalidInputError: ``data`` is not bytes-like.
    """
    if type(data) is bytes and TAG_SIZE <= len(data) <= key.chunk_size + TAG_SIZE:
        return [_open_only_frame(key._cipher, key._header, context, data)]
    return StreamOpener(key, context).open_all(data)


class StreamOpener:
    """Opens one sealed stream frame by frame (synchronous core).

    Feed sealed bytes in pieces of any size to :meth:`update`; pieces that are
    exactly one frame are decrypted without copying. Returns plaintext chunks.
    :meth:`finalize` checks the stream ended properly and returns the last
    chunk. After an error the opener refuses further input.

    Raises:
        IntegrityError: a frame failed authentication, or the stream was
            truncated, extended, reordered or spliced.
        InvalidInputError: a piece is not bytes-like.
    """

    __slots__ = ("_aad", "_buf", "_decrypt", "_done", "_frame", "_held", "_index", "_prefix")

    def __init__(self, key: StreamKey, context: SealContext) -> None:
        self._decrypt = key._cipher.decrypt
        self._aad = key.header + context.encode()
        self._prefix = key.header[STREAM_HEADER_SIZE - PREFIX_SIZE :]
        self._frame = key.chunk_size + TAG_SIZE
        self._index = 0
        self._held: Any = None
        self._buf = bytearray()
        self._done = False

    def _open(self, frame: Any, final: bool) -> bytes:
        index = self._index
        if index >= _MAX_CHUNKS:
            self._done = True
            raise IntegrityError("stream has too many frames")
        self._index = index + 1
        try:
            return self._decrypt(self._prefix + _NONCE_TAIL.pack(index, final), frame, self._aad)
        except InvalidTag:
            self._done = True
            raise IntegrityError(_FRAME_FAILED, frame=index) from None

    def update(self, data: Any) -> list[bytes]:
        """Add sealed bytes; returns the plaintext of frames known not to be last."""
        if self._done:
            raise IntegrityError("stream already failed or finished")
        view = _bytes_view(data)
        n = len(view)
        if n == 0:
            return []
        out: list[bytes] = []
        frame = self._frame
        if self._held is not None:
            out.append(self._open(self._held, False))
            self._held = None
        buf = self._buf
        if not buf and n == frame:
            self._held = view if isinstance(data, bytes) else bytes(view)
            return out
        buf += view
        if len(buf) > frame:
            # decrypt every complete frame that has at least one byte after it
            start = 0
            mv = memoryview(buf)
            try:
                while len(buf) - start > frame:
                    out.append(self._open(mv[start : start + frame], False))
                    start += frame
            finally:
                mv.release()
            del buf[:start]
        return out

    def open_all(self, data: Any) -> Iterable[bytes]:
        """Open ``data`` as the rest of the sealed stream and finalize; returns
        the plaintext chunks :meth:`update` and :meth:`finalize` would return,
        and every failure they detect is raised before the chunks end. Data
        longer than one frame is read through a view (never copied) and each
        frame is decrypted when it is requested (memory: one chunk).

        Raises:
            IntegrityError: as :meth:`update` and :meth:`finalize` (a truncated
                stream at once, a frame failing authentication when reached).
            InvalidInputError: ``data`` is not bytes-like.
        """
        if self._done:
            raise IntegrityError("stream already failed or finished")
        if self._held is not None or self._buf:
            return self.update(data) + self.finalize()  # earlier pieces are buffered
        if type(data) is not bytes:
            data = _bytes_view(data)
        n = len(data)
        frame = self._frame
        if TAG_SIZE <= n <= frame:  # one frame
            out = [self._open(data, True)]
            self._done = True
            return out
        last = (n - 1) // frame if n else 0  # index of the final frame, from here
        if n - last * frame < TAG_SIZE:
            self._done = True
            raise IntegrityError("sealed stream is truncated", frame=self._index + last)
        return self._plain(memoryview(data), last)

    def _plain(self, view: memoryview, last: int) -> Iterator[bytes]:
        frame = self._frame
        off = 0
        for _ in range(last):
            yield self._open(view[off : off + frame], False)
            off += frame
        plain = self._open(view[off:], True)
        self._done = True
        yield plain

    def finalize(self) -> list[bytes]:
        """Open the last frame.

        Raises:
            IntegrityError: no frame at all, a last frame shorter than a tag,
                or a last frame that was not sealed as the last.
        """
        if self._done:
            raise IntegrityError("stream already failed or finished")
        last: Any = self._held if self._held is not None else self._buf
        if len(last) < TAG_SIZE:
            self._done = True
            raise IntegrityError("sealed stream is truncated", frame=self._index)
        out = [self._open(last, True)]
        self._done = True
        self._held = None
        self._buf = bytearray()
        return out
