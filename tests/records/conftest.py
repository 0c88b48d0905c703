"""The ``store`` fixture of the record tests: every Store backend (memory,
SQLite, PostgreSQL when ``CLIENTCOMM_TEST_PG_URL`` is set)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clientcomm.storage.base import Store
from tests.conformance.conftest import STORE_BACKENDS, open_backend


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async for backend in open_backend(request.param, tmp_path):
        yield backend
