"""The pure attachment rules: file names, media types and content by magic numbers."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clientcomm import InvalidInputError
from clientcomm.attachments.rules import (
    GENERIC_TYPE,
    HEAD_SIZE,
    SIGNATURES,
    ContentCheck,
    check_content,
    check_filename,
    sniff,
)

PDF = b"%PDF-1.7\n" + bytes(range(256)) * 4 + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(64)
GIF = b"GIF89a" + bytes(32)
ZIP = b"PK\x03\x04\x14\x00\x06\x00" + bytes(64)
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64)
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + bytes(200)
HTML = b"<!DOCTYPE html><html><script>alert(1)</script></html>"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("application/pdf", PDF),
        ("APPLICATION/PDF", PDF),  # media types are case-insensitive
        ("image/png", PNG),
        ("image/jpeg", JPEG),
        ("image/gif", GIF),
        ("image/gif", b"GIF87a" + bytes(8)),
        (DOCX, ZIP),
        (XLSX, ZIP),
        ("application/zip", ZIP),
        ("application/vnd.oasis.opendocument.text", ZIP),
        ("application/msword", OLE2),
        ("application/vnd.ms-excel", OLE2),
        ("text/plain", "Grüße aus der Kanzlei\n".encode()),
        ("text/plain", b"\xef\xbb\xbfmit BOM\n"),
        ("text/csv", "Name;Betrag\nMüller;12,50\n".encode()),
        ("text/plain", HTML),  # HTML is text: shown as text, it is harmless
    ],
)
def test_content_matching_its_type_is_accepted(content_type: str, data: bytes) -> None:
    assert check_content(content_type, data) is None


@pytest.mark.parametrize(
    ("content_type", "data", "looks_like"),
    [
        ("application/pdf", EXE, "Windows executable"),
        ("application/pdf", HTML, "HTML"),
        ("application/pdf", b"  \n<html><body>x</body></html>", "HTML"),
        ("application/pdf", PNG, "image/png"),
        ("application/pdf", b"%PD", None),  # too short to be a PDF
        ("image/png", JPEG, "image/jpeg"),
        ("image/jpeg", GIF, "image/gif"),
        ("image/gif", b"GIF90a" + bytes(8), None),
        (DOCX, EXE, "Windows executable"),
        (DOCX, PDF, "application/pdf"),
        ("application/msword", ZIP, "ZIP"),
        ("application/zip", b"\x7fELF\x02\x01\x01" + bytes(9), "ELF"),
        ("text/plain", b"abc\x00def", "NUL"),
        ("text/csv", "Müller;12".encode("latin-1"), "UTF-8"),
        ("text/plain", EXE, "NUL"),
        ("text/plain", "Grüße".encode()[:-4], "UTF-8"),  # cut inside a character
    ],
)
def test_content_not_matching_its_type_is_refused(
    content_type: str, data: bytes, looks_like: str | None
) -> None:
    reason = check_content(content_type, data)
    assert reason is not None and reason.startswith(f"content is not {content_type.lower()}")
    if looks_like is not None:
        assert looks_like in reason


@pytest.mark.parametrize("content_type", [GENERIC_TYPE, "image/tiff", "message/rfc822"])
@pytest.mark.parametrize("data", [EXE, HTML, PDF, b"\x00"])
def test_generic_and_unknown_types_are_never_sniff_mismatched(
    content_type: str, data: bytes
) -> None:
    assert check_content(content_type, data) is None
    assert not ContentCheck(content_type).verified


def test_every_verified_type_is_checked() -> None:
    for content_type in (*SIGNATURES, "text/plain", "text/csv"):
        assert ContentCheck(content_type).verified
        assert check_content(content_type, EXE) is not None


def test_a_mismatch_is_found_without_reading_the_whole_file() -> None:
    check = ContentCheck("application/pdf")
    assert check.feed(EXE[:100]) is None  # not decided yet: a head of 512 bytes
    reason = check.feed(EXE[100:] + bytes(HEAD_SIZE))
    assert reason is not None and "Windows executable" in reason
    assert check.feed(b"%PDF-") == reason  # final
    assert check.finish() == reason


def test_text_split_inside_a_character_is_still_text() -> None:
    data = "Grüße, Straße, Ärger".encode()
    check = ContentCheck("text/plain")
    for i in range(len(data)):
        assert check.feed(data[i : i + 1]) is None
    assert check.finish() is None


def test_sniff_names_what_a_head_looks_like() -> None:
    assert sniff(PDF) == "application/pdf"
    assert sniff(EXE) == "a Windows executable"
    assert sniff(b"\xef\xbb\xbf<html>") == "HTML"
    assert sniff(b"just text") is None


@settings(max_examples=500)
@given(
    content_type=st.sampled_from(
        [*SIGNATURES, "text/plain", "text/csv", GENERIC_TYPE, "image/tiff"]
    ),
    data=st.one_of(
        st.binary(min_size=1, max_size=2000),
        st.sampled_from([PDF, PNG, JPEG, GIF, ZIP, OLE2, EXE, HTML]),
        st.text(min_size=1).map(str.encode),
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=8),
)
def test_chunking_never_changes_the_answer(content_type: str, data: bytes, cuts: list[int]) -> None:
    whole = check_content(content_type, data)
    check = ContentCheck(content_type)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    answers = [check.feed(data[a:b]) for a, b in itertools.pairwise(bounds)]
    answers.append(check.finish())
    first = next((a for a in answers if a is not None), None)
    assert (first is None) == (whole is None)  # the reason may name another fault


# -- file names --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Rundschreiben 2026.pdf",
        "Grüße.txt",
        "a..b.pdf",  # two dots inside a name are no path part
        ".hidden",
        "Bericht (final) – März.docx",
        "👩\u200d💼.png",  # a zero-width joiner inside an emoji is fine
        "x" * 255,
    ],
)
def test_plain_file_names_are_accepted(name: str) -> None:
    assert check_filename(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "   ",
        ".",
        "..",
        "../evil.pdf",
        "a/b.pdf",
        "a\\b.pdf",
        "C:\\temp\\x.pdf",
        "a\x00.pdf",
        "a\r\nb.pdf",
        "a\x7f.pdf",
        "a\x85.pdf",  # C1 control (NEL)
        "Rechnung\u202efdp.exe",  # shows as "Rechnungexe.pdf"
        *(f"a{chr(c)}b.pdf" for c in range(0x202A, 0x202F)),
        *(f"a{chr(c)}b.pdf" for c in range(0x2066, 0x206A)),
        "a\u200eb.pdf",
        "a\u200fb.pdf",
        "a\u2028b.pdf",
        "a\ud800.pdf",  # a lone surrogate
        "x" * 256,
    ],
)
def test_deceptive_or_path_like_file_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        check_filename(name, "attachments[0].filename")
    assert info.value.field == "attachments[0].filename"
    str(info.value.value).encode("utf-8")  # the offending value is always loggable


def test_non_strings_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        check_filename(b"a.pdf")
