"""The KeyProvider conformance suite over every bundled provider: the memory
provider, and the local provider on every Store backend (memory, SQLite, and
PostgreSQL when available). The local provider's ``twin`` is a second provider
instance over the same store, with its own key cache, as another process would
be."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from clientcomm.crypto import LocalKeyProvider, MasterKey, MemoryKeyProvider
from clientcomm.crypto.keys import KeyProvider
from clientcomm.storage.base import Store
from clientcomm.testing.keys import KeyProviderConformance

MASTER = MasterKey.generate()


class TestMemoryKeyProvider(KeyProviderConformance):
    @pytest.fixture
    async def provider(self) -> AsyncIterator[KeyProvider]:
        p = MemoryKeyProvider()
        yield p
        await p.aclose()


class TestLocalKeyProvider(KeyProviderConformance):
    @pytest.fixture
    async def provider(self, any_store: Store) -> AsyncIterator[KeyProvider]:
        p = LocalKeyProvider(any_store, MASTER)
        yield p
        await p.aclose()

    @pytest.fixture
    async def twin(self, any_store: Store) -> AsyncIterator[KeyProvider]:
        p = LocalKeyProvider(any_store, MASTER)
        yield p
        await p.aclose()
