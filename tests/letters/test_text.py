"""The fast positioned-text reader agrees with pypdf's own extraction, and falls
back to it where it cannot be exact."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from clientcomm.letters._text import _Fallback, _fast, _pypdf, positioned_text
from clientcomm.testing.letters import build, letter, stream

FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"


def page_of(
    content: bytes, font: bytes = FONT, resources: bytes = b"/Font << /F1 3 0 R >>"
) -> object:
    data = build(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R >>",
            2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
            3: font,
            4: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            b"/Resources << %s >> /Contents 5 0 R >>" % resources,
            5: stream(content),
        }
    )
    return PdfReader(io.BytesIO(data)).pages[0]


words = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzäöüßABC 0123456789.,()\\-", min_size=1, max_size=20
)
coords = st.integers(min_value=0, max_value=800)


@st.composite
def contents(draw: st.DrawFn) -> bytes:
    ops = [b"q 1 0 0 1 %d %d cm" % (draw(coords) // 10, draw(coords) // 10), b"BT /F1 10 Tf 12 TL"]
    for _ in range(draw(st.integers(1, 8))):
        text = (
            draw(words)
            .encode("cp1252")
            .replace(b"\\", b"\\\\")
            .replace(b"(", b"\\(")
            .replace(b")", b"\\)")
        )
        how = draw(st.sampled_from(["Tm", "Td", "T*", "TJ", "'", "hex"]))
        if how == "Tm":
            ops.append(b"1 0 0 1 %d %d Tm (%s) Tj" % (draw(coords), draw(coords), text))
        elif how == "Td":
            ops.append(b"%d %d Td (%s) Tj" % (draw(coords) // 4, -draw(coords) // 4, text))
        elif how == "T*":
            ops.append(b"T* (%s) Tj" % text)
        elif how == "TJ":
            ops.append(b"0 -14 Td [(%s) -250 (x)] TJ" % text)
        elif how == "'":
            ops.append(b"(%s) '" % text)
        else:
            ops.append(b"0 -14 Td <%s> Tj" % draw(words).encode("cp1252").hex().encode())
    ops.append(b"ET Q")
    return b"\n".join(ops)


@settings(max_examples=60, deadline=None)
@given(contents())
def test_fast_reader_agrees_with_pypdf(content: bytes) -> None:
    page = page_of(content)
    ours, theirs = squeeze(_fast(page)), squeeze(_pypdf(page))
    # the same characters in the same order; pypdf joins strings shown at one
    # place into one fragment, so each of its fragments starts where one of ours does
    assert "".join(t for _, _, t in ours) == "".join(t for _, _, t in theirs)
    assert {(x, y) for x, y, _ in theirs} <= {(x, y) for x, y, _ in ours}


def squeeze(items: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Without whitespace: pypdf turns wide TJ kerning into spaces, we do not (the
    address check ignores spacing)."""
    return [(x, y, "".join(t.split())) for x, y, t in items]


def test_sample_letters_agree() -> None:
    for data in (letter(), letter(form="A", compress=False), letter(pages=3)):
        page = PdfReader(io.BytesIO(data)).pages[0]
        assert _fast(page) == _pypdf(page) != []


def test_falls_back_where_it_cannot_be_exact() -> None:
    cid = (
        b"<< /Type /Font /Subtype /Type0 /BaseFont /X /Encoding /Identity-H /DescendantFonts [] >>"
    )
    for page in (
        page_of(b"BT /F1 10 Tf 1 0 0 1 50 700 Tm (hi) Tj ET", font=cid),
        page_of(b"BI /W 1 /H 1 /BPC 8 /CS /G ID \x00 EI BT /F1 10 Tf (hi) Tj ET"),
        page_of(b"BT /F1 10 Tf (hi) Tj ET", font=FONT[:-2] + b"/ToUnicode 9 0 R >>"),
    ):
        try:
            _fast(page)
        except _Fallback:
            pass
        else:
            raise AssertionError("expected a fallback")
    page = page_of(b"BT /F1 10 Tf 1 0 0 1 50 700 Tm (hallo) Tj ET")
    assert positioned_text(page) == [(50.0, 700.0, "hallo")]
