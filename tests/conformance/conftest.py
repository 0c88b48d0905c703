"""Backends the conformance suites run over."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clientcomm.directory.base import WritableDirectory
from clientcomm.directory.memory import MemoryDirectory
from clientcomm.directory.sql import SqlDirectory
from clientcomm.storage.base import Store
from clientcomm.storage.memory import MemoryStore
from clientcomm.storage.sqlite import SQLiteStore
from tests.conftest import pg_admin_url

STORE_BACKENDS = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


async def open_backend(name: str, tmp_path: Path) -> AsyncIterator[Store]:
    if name == "memory":
        async with MemoryStore() as store:
            yield store
    elif name == "sqlite":
        async with SQLiteStore(tmp_path / "store.db") as sqlite_store:
            yield sqlite_store
    else:
        from clientcomm.testing.postgres import isolated_store

        async with isolated_store(pg_admin_url()) as pg_store:
            yield pg_store


@pytest.fixture(params=STORE_BACKENDS)
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async for store in open_backend(request.param, tmp_path):
        yield store


@pytest.fixture(params=STORE_BACKENDS)
async def any_directory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[WritableDirectory]:
    if request.param == "memory":
        yield MemoryDirectory()
        return
    async for store in open_backend(request.param, tmp_path):
        assert isinstance(store, SQLiteStore) or hasattr(store, "sql_read")
        yield SqlDirectory(store)  # type: ignore[arg-type]
