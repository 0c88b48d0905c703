"""The Store and Directory conformance suites over every bundled backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from clientcomm.directory.base import WritableDirectory
from clientcomm.storage.base import Store
from clientcomm.testing.store import DirectoryConformance, StoreConformance


class TestStore(StoreConformance):
    @pytest.fixture
    async def store(self, any_store: Store) -> AsyncIterator[Store]:
        yield any_store


class TestDirectory(DirectoryConformance):
    @pytest.fixture
    async def directory(self, any_directory: WritableDirectory) -> AsyncIterator[WritableDirectory]:
        yield any_directory
