"""The BlobStore seam: opaque (already sealed) document bytes, streamed in and out.

Backends: :class:`MemoryBlobStore` (tests, demos) and :class:`FileBlobStore`
(atomic, durable writes in a local directory). Integrators add their own (S3,
...) and check them with :class:`clientcomm.testing.blobs.BlobStoreConformance`.
"""

from clientcomm.blobs.base import BlobStore, ByteChunks, validate_blob_id
from clientcomm.blobs.filesystem import FileBlobStore
from clientcomm.blobs.memory import MemoryBlobStore

__all__ = ["BlobStore", "ByteChunks", "FileBlobStore", "MemoryBlobStore", "validate_blob_id"]
