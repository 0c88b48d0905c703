"""Intake of untrusted PDFs: every hostile case refused with the typed error
within 5 s under a 512 MiB limit; hangs and crashes fail alone; the pool lives on;
nothing is stored when the attachment scanner refuses."""

from __future__ import annotations

import pickle
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from clientcomm.actors import StaffActor
from clientcomm.app import ClientComm
from clientcomm.attachments import AttachmentInput
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.errors import InvalidDocumentError, InvalidInputError
from clientcomm.letters import DocumentProblem
from clientcomm.letters.intake import IntakeLimits, PdfIntake
from clientcomm.rules.audience import Audience
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.letters import hostile
from tests.mailing_support import make_app
from tests.test_attachments_intake import nothing_stored

ADMIN = StaffActor("f1", "admin")


@pytest.fixture(scope="module")
def intake() -> Iterator[PdfIntake]:
    with PdfIntake(
        IntakeLimits(memory_bytes=512 << 20, timeout=5.0), workers=2, _faults=True
    ) as pool:
        yield pool


def test_reason_codes_are_the_documented_ones() -> None:
    assert {want for _, want in hostile.HOSTILE.values()} <= {p.value for p in DocumentProblem}


@pytest.mark.parametrize("name", sorted(hostile.HOSTILE))
def test_hostile_pdf_is_refused_with_its_reason(intake: PdfIntake, name: str) -> None:
    generate, reason = hostile.HOSTILE[name]
    data = generate()
    started = time.monotonic()
    with pytest.raises(InvalidDocumentError) as err:
        intake.validate(f"{name}.pdf", data)
    assert time.monotonic() - started < 5.0
    assert err.value.reason == reason, err.value.detail
    assert err.value.filename == f"{name}.pdf"
    assert isinstance(err.value, InvalidInputError) and isinstance(err.value, ValueError)
    # the pool still works afterwards
    assert intake.validate("ok.pdf", hostile.letter()).page_count == 1


def test_the_bombs_are_small_files() -> None:
    assert len(hostile.flate_bomb()) < 1_200_000  # holds 1 GiB
    assert len(hostile.lzw_bomb()) < 300_000
    assert len(hostile.runlength_bomb()) < 100_000


def test_good_letter_reports_pages_sizes_and_positioned_text(intake: PdfIntake) -> None:
    doc = intake.validate("brief.pdf", hostile.letter(pages=3), first_page_text=True)
    assert doc.page_count == 3
    assert all(s.is_a4_portrait() for s in doc.page_sizes)
    texts = [f.text for f in doc.first_page_text]
    assert texts[:3] == ["Erika Mustermann", "Hauptstr. 1", "10115 Berlin"]
    assert intake.validate("brief.pdf", hostile.letter()).first_page_text == ()


def test_a_hang_is_stopped_and_the_worker_replaced() -> None:
    with PdfIntake(IntakeLimits(timeout=0.5), workers=1, _faults=True) as pool:
        pool.validate("warm.pdf", hostile.letter())
        before = pool.pids
        started = time.monotonic()
        with pytest.raises(InvalidDocumentError) as err:
            pool.validate("hang.pdf", b"%PDF-1.7\n%CC-FAULT hang\n%%EOF\n")
        assert err.value.reason == "timeout"
        assert time.monotonic() - started < 3
        assert pool.replaced == 1 and pool.pids != before
        assert pool.validate("after.pdf", hostile.letter()).page_count == 1


def test_a_crash_fails_alone_in_a_batch() -> None:
    with PdfIntake(workers=2, _faults=True) as pool:
        items = [(f"l{i}.pdf", hostile.letter(title=f"L{i}")) for i in range(6)]
        items.insert(3, ("crash.pdf", b"%PDF-1.7\n%CC-FAULT crash\n%%EOF\n"))
        results = pool.validate_many(items)
        assert [type(r).__name__ for r in results] == ["ValidatedPdf"] * 3 + [
            "InvalidDocumentError"
        ] + ["ValidatedPdf"] * 3
        crashed = results[3]
        assert isinstance(crashed, InvalidDocumentError) and crashed.reason == "crashed"
        assert pool.replaced == 1


def test_faults_are_off_by_default(intake: PdfIntake) -> None:
    with PdfIntake(workers=1) as pool, pytest.raises(InvalidDocumentError) as err:
        pool.validate("hang.pdf", b"%PDF-1.7\n%CC-FAULT hang\n%%EOF\n")
    assert err.value.reason in ("malformed", "broken_xref")


def test_memory_limit_is_a_typed_error() -> None:
    # a 48 MiB stream under a 64 MiB per-stream limit but a worker with too little memory
    limits = IntakeLimits(memory_bytes=160 << 20, max_stream_bytes=200 << 20, timeout=10)
    with PdfIntake(limits, workers=1) as pool:
        with pytest.raises(InvalidDocumentError) as err:
            pool.validate("big.pdf", hostile.flate_bomb(150 << 20))
        assert err.value.reason in ("memory", "crashed")
        assert pool.validate("ok.pdf", hostile.letter()).page_count == 1


def test_error_pickles() -> None:
    err = InvalidDocumentError("a.pdf", "encrypted", "x")
    back = pickle.loads(pickle.dumps(err))
    assert (back.filename, back.reason, back.detail, str(back)) == (
        "a.pdf",
        "encrypted",
        "x",
        str(err),
    )


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path) as application:
            yield application


@pytest.mark.parametrize(
    "name", ["flate_bomb_1gib", "javascript_open_action", "encrypted_empty_user_password"]
)
async def test_scanner_refuses_hostile_pdf_attachments_and_nothing_is_stored(
    app: ClientComm, intake: PdfIntake, name: str
) -> None:
    app.attachments.scanner = intake.scanner()
    bad = AttachmentInput.from_bytes(f"{name}.pdf", hostile.HOSTILE[name][0](), "application/pdf")
    with pytest.raises(InvalidInputError) as err:
        await app.mailings.submit(ADMIN, Audience.clients("c1"), "Anbei", attachments=[bad])
    assert err.value.field == "attachments[0]"
    assert isinstance(err.value.__cause__, InvalidDocumentError)
    assert err.value.__cause__.reason == hostile.HOSTILE[name][1]
    await nothing_stored(app)
    good = AttachmentInput.from_bytes("ok.pdf", hostile.letter(), "application/pdf")
    await app.mailings.submit(ADMIN, Audience.clients("c1"), "Anbei", attachments=[good])
    assert isinstance(app.blobs, MemoryBlobStore) and app.blobs.blob_ids("f1")
