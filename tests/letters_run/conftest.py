from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clientcomm.app import ClientComm
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.letters_run.support import letters_app


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with letters_app(store, tmp_path) as app:
            yield app
