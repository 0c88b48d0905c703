"""The BlobStore port: opaque (already sealed) bytes of attachments and documents.

Blobs are written as a stream and read as a stream, so memory stays bounded for
any size. A blob becomes visible only once completely written (``put`` returns);
a crash mid-write leaves no partial blob behind. Blob ids are chosen by the
caller and are unique per firm; writing an existing id is a ConflictError (blobs
are immutable).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Protocol, runtime_checkable

from clientcomm.errors import InvalidInputError

__all__ = ["BlobStore", "ByteChunks", "validate_blob_id"]

ByteChunks = AsyncIterable[bytes] | Iterable[bytes]
"""What ``put`` accepts: bytes chunks, sync or async."""

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def validate_blob_id(field: str, value: str) -> str:
    """Refuse ids that could escape a directory or are not portable.

    Raises:
        InvalidInputError: ``value`` is not ``[A-Za-z0-9][A-Za-z0-9._-]*`` (<= 200).
    """
    if not isinstance(value, str) or not _ID_RE.match(value) or ".." in value:
        raise InvalidInputError(field, "must match [A-Za-z0-9][A-Za-z0-9._-]{0,199}", value=value)
    return value


@runtime_checkable
class BlobStore(Protocol):
    async def put(self, firm_id: str, blob_id: str, chunks: ByteChunks) -> int:
        """Store the chunks as one blob; returns its size in bytes.

        Raises:
            InvalidInputError: bad firm or blob id, a chunk that is not bytes.
            ConflictError: the blob already exists.
            StorageError: the backend failed (nothing is left behind).
        """
        ...

    def open(self, firm_id: str, blob_id: str, *, chunk_size: int = 65536) -> AsyncIterator[bytes]:
        """Stream the blob in chunks of at most ``chunk_size`` bytes.

        Raises (on first iteration):
            NotFoundError: no such blob.
        """
        ...

    async def size(self, firm_id: str, blob_id: str) -> int:
        """Raises NotFoundError if absent."""
        ...

    async def exists(self, firm_id: str, blob_id: str) -> bool: ...

    async def delete(self, firm_id: str, blob_id: str) -> bool:
        """Delete the blob; returns False if it did not exist."""
        ...

    async def aclose(self) -> None: ...
