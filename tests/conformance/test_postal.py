"""The PostalProvider conformance suite over both bundled backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from clientcomm.postal import FileDropProvider, MemoryPostalProvider, PostalProvider
from clientcomm.postal.base import LetterState, PostalCapabilities
from clientcomm.postal.memory import tracking_id
from clientcomm.testing.postal import PostalConformance, PostalHarness

CAPS = PostalCapabilities(max_pages_per_letter=20, max_sheets_per_letter=10)
OFF = {"f-off": PostalCapabilities(available=False)}


class TestMemoryPostalProvider(PostalConformance):
    @pytest.fixture
    def harness(self) -> PostalHarness:
        provider = MemoryPostalProvider(CAPS, per_firm=OFF)

        def advance(firm_id: str, batch_id: str, state: LetterState) -> None:
            provider.advance(firm_id, batch_id, state)

        return PostalHarness(provider, advance, max_pages=20)


class TestFileDropProvider(PostalConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> PostalHarness:
        provider = FileDropProvider(tmp_path / "drop", capabilities=CAPS, per_firm=OFF)

        async def _noop() -> None:
            return None

        def advance(firm_id: str, batch_id: str, state: LetterState) -> None:
            if state is LetterState.IN_PRODUCTION:
                provider.take(firm_id, batch_id)
                return
            import json

            manifest = json.loads(
                (tmp_path / "drop" / "taken" / firm_id / batch_id / "manifest.json").read_text()
            )
            registered = manifest["options"]["registered"]
            provider.report(
                firm_id,
                batch_id,
                {
                    e["letter_id"]: {
                        "state": state.value,
                        **(
                            {"tracking_id": tracking_id(batch_id, e["letter_id"])}
                            if registered
                            else {}
                        ),
                    }
                    for e in manifest["letters"]
                },
            )

        return PostalHarness(provider, advance, max_pages=20)


def test_backends_satisfy_the_protocol(tmp_path: Path) -> None:
    providers: list[PostalProvider] = [MemoryPostalProvider(), FileDropProvider(tmp_path)]
    assert all(isinstance(p, PostalProvider) for p in providers)
