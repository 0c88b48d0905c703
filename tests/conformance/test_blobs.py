"""The BlobStore conformance suite over every bundled backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clientcomm.blobs import BlobStore, FileBlobStore, MemoryBlobStore
from clientcomm.errors import InvalidInputError, StorageError
from clientcomm.testing.blobs import BlobStoreConformance


class TestMemoryBlobStore(BlobStoreConformance):
    @pytest.fixture
    async def blob_store(self) -> AsyncIterator[BlobStore]:
        async with MemoryBlobStore() as store:
            yield store


class TestFileBlobStore(BlobStoreConformance):
    @pytest.fixture
    async def blob_store(self, tmp_path: Path) -> AsyncIterator[BlobStore]:
        async with FileBlobStore(tmp_path / "blobs") as store:
            yield store

    @pytest.fixture
    async def blob_store_peer(
        self, blob_store: BlobStore, tmp_path: Path
    ) -> AsyncIterator[BlobStore]:
        # a second, independent handle on the same directory, as another process has
        async with FileBlobStore(tmp_path / "blobs") as store:
            yield store


# -- MemoryBlobStore's test helpers ----------------------------------------------


async def test_memory_store_can_be_told_to_fail() -> None:
    store = MemoryBlobStore()
    store.fail_next_put()
    store.fail_next_put(RuntimeError("second"))
    with pytest.raises(StorageError):
        await store.put("f", "a", [b"x"])
    with pytest.raises(RuntimeError, match="second"):
        await store.put("f", "a", [b"x"])
    assert await store.exists("f", "a") is False
    assert await store.put("f", "a", [b"x"]) == 1
    assert await store.put("f", "b", [b"yy"]) == 2
    await store.put("g", "c", [b""])
    assert store.blob_ids("f") == ["a", "b"]
    assert store.blob_ids("nobody") == []
    assert repr(store) == "MemoryBlobStore(blobs=3)"
    with pytest.raises(InvalidInputError):
        store.blob_ids("../f")
