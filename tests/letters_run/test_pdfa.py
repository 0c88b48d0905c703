"""PDF/A-2b with Ghostscript, checked afterwards (seed 003, step 10)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pypdf
import pytest
from pypdf.generic import ArrayObject, DictionaryObject, NameObject, StreamObject

from clientcomm.errors import ConfigurationError
from clientcomm.letters.pdfa import PdfaConverter, PdfaError, check_pdfa, find_icc_profile
from tests.letters_run.pdfs import text_pdf


async def test_convert_gives_checked_pdfa_2b_that_pypdf_opens() -> None:
    source = text_pdf("Abrechnung Einheit 1", "Seite zwei")
    out = await PdfaConverter().convert_bytes(source)
    report = check_pdfa(out)
    assert (report.part, report.conformance, report.pages) == ("2", "B", 2)
    assert report.fonts >= 1
    reader = pypdf.PdfReader(io.BytesIO(out))
    assert not reader.is_encrypted
    assert "Abrechnung Einheit 1" in reader.pages[0].extract_text()
    assert "Seite zwei" in reader.pages[1].extract_text()
    intents = reader.root_object["/OutputIntents"].get_object()
    assert isinstance(intents, ArrayObject) and len(intents) == 1
    intent = intents[0].get_object()
    assert isinstance(intent, DictionaryObject) and str(intent["/S"]) == "/GTS_PDFA1"
    profile = intent["/DestOutputProfile"].get_object()
    assert isinstance(profile, StreamObject) and len(profile.get_data()) > 1000


def test_plain_pdf_fails_every_check() -> None:
    with pytest.raises(PdfaError) as info:
        check_pdfa(text_pdf("x"))
    assert info.value.problems == ("no-xmp", "no-output-intent", "font-not-embedded:/Helvetica")


def test_not_a_pdf() -> None:
    with pytest.raises(PdfaError) as info:
        check_pdfa(b"hello")
    assert info.value.problems == ("not-pdf",)


async def test_encrypted_is_refused() -> None:
    good = await PdfaConverter().convert_bytes(text_pdf("x"))
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(good)))
    writer.encrypt("", "owner")
    buf = io.BytesIO()
    writer.write(buf)
    with pytest.raises(PdfaError) as info:
        check_pdfa(buf.getvalue())
    assert info.value.problems == ("encrypted",)


async def test_wrong_pdfa_part_and_missing_intent_are_refused() -> None:
    good = await PdfaConverter().convert_bytes(text_pdf("x"))
    part_one, n = re.subn(rb"(pdfaid:part(>|=[\"']))2", rb"\g<1>1", good)
    assert n >= 1
    with pytest.raises(PdfaError) as info:
        check_pdfa(part_one)
    assert info.value.problems == ("pdfaid-part",)

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(good)))
    del writer._root_object[NameObject("/OutputIntents")]
    buf = io.BytesIO()
    writer.write(buf)
    with pytest.raises(PdfaError) as info:
        check_pdfa(buf.getvalue())
    assert info.value.problems == ("no-output-intent",)


async def test_missing_ghostscript_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"Ghostscript .* is not installed"):
        await PdfaConverter(gs="clientcomm-no-such-gs").convert_bytes(text_pdf("x"))


async def test_missing_icc_profile_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="ICC profile"):
        await PdfaConverter(icc_profile=str(tmp_path / "none.icc")).convert_bytes(text_pdf("x"))
    assert find_icc_profile().is_file()


async def test_ghostscript_over_time_is_killed(tmp_path: Path) -> None:
    slow = tmp_path / "slow-gs"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    target = tmp_path / "out.pdf"
    source = tmp_path / "in.pdf"
    source.write_bytes(text_pdf("x"))
    with pytest.raises(PdfaError) as info:
        await PdfaConverter(gs=str(slow), timeout=0.3).convert(source, target)
    assert info.value.problems == ("timeout",)
    assert not target.exists()


async def test_ghostscript_failure_is_a_pdfa_error(tmp_path: Path) -> None:
    source = tmp_path / "in.pdf"
    source.write_bytes(b"%PDF-1.4\nthis is no pdf at all\n")
    target = tmp_path / "out.pdf"
    with pytest.raises(PdfaError) as info:
        await PdfaConverter().convert(source, target)
    assert info.value.problems in (("ghostscript",), ("not-pdf",))
    assert not target.exists()
