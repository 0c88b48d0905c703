from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from clientcomm.app import ClientComm
from clientcomm.letters.intake import PdfIntake
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.letters_run.support import letters_app


@pytest.fixture(scope="session")
def intake() -> Iterator[PdfIntake]:
    """One pool of intake processes for the whole session (spawning is slow)."""
    with PdfIntake(workers=1) as pool:
        yield pool


@pytest.fixture(params=STORE_BACKENDS)
async def app(
    request: pytest.FixtureRequest, tmp_path: Path, intake: PdfIntake
) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with letters_app(store, tmp_path) as app:
            app.letter_runs.intake = intake
            yield app
