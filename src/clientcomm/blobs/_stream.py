"""Shared chunk handling for the BlobStore backends (private).

Both backends accept the same input and refuse the same input, so the rules live
here once: ``put`` takes a sync or async iterable of bytes-like chunks; a bare
``bytes``/``str`` or a non-iterable is refused, as is any chunk that is not
``bytes``, ``bytearray`` or ``memoryview``. Mutable chunks are copied, so a caller
that reuses its buffer after yielding it cannot change what is stored.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Iterable

from clientcomm.blobs.base import ByteChunks
from clientcomm.errors import InvalidInputError

__all__ = ["as_bytes", "iter_chunks", "validate_chunk_size"]


def as_bytes(index: int, chunk: object) -> bytes:
    """Return ``chunk`` as immutable bytes (copying mutable buffers).

    Raises:
        InvalidInputError: ``chunk`` is not bytes, bytearray or memoryview.
    """
    if type(chunk) is bytes:
        return chunk
    if isinstance(chunk, bytes):  # a subclass: normalise
        return bytes(chunk)
    if isinstance(chunk, bytearray | memoryview):
        return bytes(chunk)
    raise InvalidInputError(
        "chunks",
        f"chunk {index} is {type(chunk).__name__}, not bytes",
        value=type(chunk).__name__,
    )


async def iter_chunks(chunks: ByteChunks) -> AsyncGenerator[bytes, None]:
    """Yield the chunks of ``chunks`` as bytes, sync or async source alike.

    Exceptions raised by the source propagate unchanged.

    Raises:
        InvalidInputError: ``chunks`` is not an iterable of chunks, or a chunk is
            not bytes-like.
    """
    if isinstance(chunks, bytes | bytearray | memoryview | str):
        raise InvalidInputError(
            "chunks",
            "must be an iterable of bytes chunks (wrap a single value in a list)",
            value=type(chunks).__name__,
        )
    index = 0
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield as_bytes(index, chunk)
            index += 1
    elif isinstance(chunks, Iterable):
        for chunk in chunks:
            yield as_bytes(index, chunk)
            index += 1
    else:
        raise InvalidInputError(
            "chunks",
            "must be an iterable of bytes chunks",
            value=type(chunks).__name__,
        )


def validate_chunk_size(chunk_size: object) -> int:
    """Raises InvalidInputError unless ``chunk_size`` is a positive int."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise InvalidInputError("chunk_size", "must be a positive integer", value=chunk_size)
    return chunk_size
