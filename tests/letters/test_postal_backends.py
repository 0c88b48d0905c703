"""File drop: the manifest opened beside its PDF, the crash test (a killed writer
leaves no partial batch); memory provider: failure injection."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pypdf import PdfReader

from clientcomm.errors import PermanentDeliveryError, TemporaryDeliveryError
from clientcomm.letters import PrintOptions, Sides
from clientcomm.postal import FileDropProvider, MemoryPostalProvider
from clientcomm.postal.base import LetterState, PostalCapabilities
from clientcomm.testing.postal import sample_batch

ROOT = Path(__file__).resolve().parents[2]


async def test_manifest_names_recipients_addresses_ranges_and_options(tmp_path: Path) -> None:
    provider = FileDropProvider(tmp_path)
    opts = PrintOptions(sides=Sides.DUPLEX, duplex_optimised=True)
    batch = sample_batch("b1", pages=3, options=opts)
    await provider.order(batch)
    folder = tmp_path / "outbox" / "f1" / "b1"
    assert sorted(p.name for p in folder.iterdir()) == ["letters.pdf", "manifest.json"]
    m = json.loads((folder / "manifest.json").read_text())
    reader = PdfReader(io.BytesIO((folder / "letters.pdf").read_bytes()))
    assert m["page_count"] == len(reader.pages) == 8
    assert m["options"] == {
        "colour": "bw",
        "sides": "duplex",
        "duplex_optimised": True,
        "registered": False,
    }
    assert [
        (e["contact_name"], e["first_page"], e["last_page"], e["sheets"]) for e in m["letters"]
    ] == [
        ("Kontakt 0", 1, 4, 2),
        ("Kontakt 1", 5, 8, 2),
    ]
    assert m["letters"][0]["address"] == {
        "name": "Kontakt 0",
        "extra": None,
        "street": "Hauptstr. 1",
        "postal_code": "10115",
        "city": "Berlin",
        "country": "DE",
    }
    assert list((tmp_path / ".partial").iterdir()) == []
    provider.take("f1", "b1")
    provider.report("f1", "b1", {"b1-1": {"state": "posted"}})
    states = [s.state for s in (await provider.status("f1", "b1")).letters]
    assert states == [LetterState.POSTED, LetterState.IN_PRODUCTION]


async def test_unsafe_ids_are_refused(tmp_path: Path) -> None:
    from clientcomm.errors import InvalidInputError

    provider = FileDropProvider(tmp_path)
    with pytest.raises(InvalidInputError):
        await provider.order(sample_batch("../escape"))
    assert list((tmp_path / "outbox").iterdir()) == []


def test_a_killed_writer_leaves_no_partial_batch(tmp_path: Path) -> None:
    root = tmp_path / "drop"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT)]))
    kills = 0
    for delay in (0.05, 0.13, 0.21, 0.34, 0.55):
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests/letters/filedrop_writer_proc.py"), str(root)],
            env=env,
            stdout=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    batches = list((root / "outbox" / "f1").iterdir()) if (root / "outbox" / "f1").exists() else []
    for folder in batches:  # every visible batch is complete
        m = json.loads((folder / "manifest.json").read_text())
        assert (
            len(PdfReader(io.BytesIO((folder / "letters.pdf").read_bytes())).pages)
            == m["page_count"]
        )
    assert not [p for p in (root / "outbox" / "f1").glob(".*")] if batches else True
    provider = FileDropProvider(root)
    leftovers = list((root / ".partial").iterdir())
    assert provider.sweep(older_than=0) == len(leftovers)
    assert list((root / ".partial").iterdir()) == []
    assert kills == 5


async def test_memory_failure_injection() -> None:
    provider = MemoryPostalProvider(PostalCapabilities())
    provider.fail_next("order", TemporaryDeliveryError("provider down"))
    batch = sample_batch("b1")
    with pytest.raises(TemporaryDeliveryError):
        await provider.order(batch)
    assert provider.orders == []
    order = await provider.order(batch)  # the retry goes through
    assert order.cancellable and provider.orders == [batch]
    provider.fail_next("cancel", PermanentDeliveryError("refused"))
    with pytest.raises(PermanentDeliveryError):
        await provider.cancel("f1", "b1")
    assert (await provider.status("f1", "b1")).cancellable
