"""In-memory BlobStore: faithful to the real backends, for tests and demos."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType

from clientcomm.blobs._stream import iter_chunks, validate_chunk_size
from clientcomm.blobs.base import ByteChunks, validate_blob_id
from clientcomm.errors import ConflictError, NotFoundError, StorageError

__all__ = ["MemoryBlobStore"]


class MemoryBlobStore:
    """A BlobStore that keeps blobs in a dict.

    It follows the same rules as the filesystem backend and passes the same
    conformance suite: ids are validated the same way, blobs are immutable (a
    second ``put`` of an id is a ConflictError), a blob becomes visible only when
    ``put`` returns, and a failing or cancelled ``put`` leaves nothing behind.
    It yields to the event loop between chunks so concurrency bugs in callers
    show up in tests as they would with real I/O.

    For tests it can be told to fail: :meth:`fail_next_put` makes the next
    ``put`` consume its stream and then raise, storing nothing.
    """

    def __init__(self) -> None:
        self._blobs: dict[tuple[str, str], bytes] = {}
        self._fail_next: list[Exception] = []
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryBlobStore(blobs={len(self._blobs)})"

    async def __aenter__(self) -> MemoryBlobStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- test helpers -------------------------------------------------------

    def fail_next_put(self, error: Exception | None = None) -> None:
        """Make the next ``put`` read its whole stream, store nothing and raise.

        ``error`` defaults to a StorageError ("simulated failure"). Calls queue
        up: calling this twice makes the next two puts fail.
        """
        self._fail_next.append(error or StorageError("simulated blob store failure"))

    def blob_ids(self, firm_id: str) -> list[str]:
        """The ids of the firm's stored blobs, sorted (a test helper).

        Raises:
            InvalidInputError: bad firm id.
        """
        validate_blob_id("firm_id", firm_id)
        return sorted(b for f, b in self._blobs if f == firm_id)

    # -- BlobStore ----------------------------------------------------------

    async def put(self, firm_id: str, blob_id: str, chunks: ByteChunks) -> int:
        """Store the chunks as one blob; returns its size in bytes.

        Exceptions raised by ``chunks`` propagate unchanged; nothing is stored.

        Raises:
            InvalidInputError: bad firm or blob id, ``chunks`` not an iterable of
                bytes chunks, a chunk that is not bytes-like.
            ConflictError: the blob already exists.
            StorageError: the store is closed, or a failure set by
                :meth:`fail_next_put`.
        """
        key = self._key(firm_id, blob_id)
        if key in self._blobs:
            raise ConflictError(f"blob {blob_id!r} already exists", firm_id=firm_id, id=blob_id)
        parts: list[bytes] = []
        async with contextlib.aclosing(iter_chunks(chunks)) as stream:
            async for chunk in stream:
                parts.append(chunk)
                await asyncio.sleep(0)
        if self._fail_next:
            raise self._fail_next.pop(0)
        self._check_open()
        if key in self._blobs:  # another writer finished first
            raise ConflictError(f"blob {blob_id!r} already exists", firm_id=firm_id, id=blob_id)
        data = b"".join(parts)
        self._blobs[key] = data
        return len(data)

    async def open(
        self, firm_id: str, blob_id: str, *, chunk_size: int = 65536
    ) -> AsyncIterator[bytes]:
        """Stream the blob in chunks of at most ``chunk_size`` bytes.

        Raises (on first iteration):
            InvalidInputError: bad firm or blob id, ``chunk_size`` < 1.
            NotFoundError: no such blob.
            StorageError: the store is closed.
        """
        key = self._key(firm_id, blob_id)
        validate_chunk_size(chunk_size)
        try:
            data = self._blobs[key]
        except KeyError:
            raise NotFoundError("blob", blob_id) from None
        view = memoryview(data)
        for start in range(0, len(data), chunk_size):
            yield bytes(view[start : start + chunk_size])
            await asyncio.sleep(0)

    async def size(self, firm_id: str, blob_id: str) -> int:
        """The blob's size in bytes.

        Raises:
            InvalidInputError: bad firm or blob id.
            NotFoundError: no such blob.
            StorageError: the store is closed.
        """
        key = self._key(firm_id, blob_id)
        try:
            return len(self._blobs[key])
        except KeyError:
            raise NotFoundError("blob", blob_id) from None

    async def exists(self, firm_id: str, blob_id: str) -> bool:
        """Whether the blob exists.

        Raises:
            InvalidInputError: bad firm or blob id.
            StorageError: the store is closed.
        """
        return self._key(firm_id, blob_id) in self._blobs

    async def delete(self, firm_id: str, blob_id: str) -> bool:
        """Delete the blob; returns False if it did not exist.

        Raises:
            InvalidInputError: bad firm or blob id.
            StorageError: the store is closed.
        """
        return self._blobs.pop(self._key(firm_id, blob_id), None) is not None

    async def aclose(self) -> None:
        """Close the store; later calls raise StorageError. Idempotent."""
        self._closed = True

    # -- internals ----------------------------------------------------------

    def _key(self, firm_id: str, blob_id: str) -> tuple[str, str]:
        validate_blob_id("firm_id", firm_id)
        validate_blob_id("blob_id", blob_id)
        self._check_open()
        return (firm_id, blob_id)

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("blob store is closed")
