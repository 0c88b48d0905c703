"""The KeyProvider conformance suite over every bundled provider: the memory
provider, and the local provider on every Store backend (memory, SQLite, and
PostgreSQL when available). The local provider's ``twin`` is a second provider
instance over the same store, with its own key cache, as another process would
be."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from clientcomm.crypto import KEY_RECORD_KIND, LocalKeyProvider, MasterKey, MemoryKeyProvider
from clientcomm.crypto.keys import KeyProvider
from clientcomm.storage.base import Store
from clientcomm.testing.keys import Damage, KeyProviderConformance

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

    @pytest.fixture
    async def mismatched(self, any_store: Store) -> AsyncIterator[KeyProvider]:
        p = LocalKeyProvider(any_store, MasterKey.generate())
        yield p
        await p.aclose()

    @pytest.fixture(params=["wrapped-key", "master-key-id", "junk"])
    def damage(self, any_store: Store, request: pytest.FixtureRequest) -> Damage:
        async def damage(firm_id: str, client_id: str) -> None:
            async with any_store.transaction(firm_id) as tx:
                rec = await tx.get(KEY_RECORD_KIND, client_id)
                data = dict(rec.data)
                if request.param == "wrapped-key":
                    wrapped = bytearray(base64.b64decode(data["keys"]["1"]))
                    wrapped[20] ^= 0x01
                    data["keys"] = {"1": base64.b64encode(bytes(wrapped)).decode()}
                elif request.param == "master-key-id":
                    data["master_key_id"] = "mk-0000000000000000"
                else:
                    data = {"junk": True}
                await tx.update([rec.evolve(data=data)])

        return damage
