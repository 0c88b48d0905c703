"""Sample letters for tests, examples and benchmarks: real PDFs built from raw
bytes (A4 portrait, Helvetica, the recipient's address in the DIN 5008
Anschriftzone of form A or B), with a correct cross-reference table."""

from __future__ import annotations

import io
import zlib
from collections.abc import Mapping, Sequence

__all__ = ["A4_H", "A4_W", "address_lines", "build", "letter", "stream", "text_ops"]

A4_W, A4_H = 595.276, 841.89


def _esc(text: str) -> bytes:
    raw = text.encode("cp1252")
    return raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def build(objects: Mapping[int, bytes], *, root: int = 1, extra_trailer: bytes = b"") -> bytes:
    """A PDF of ``objects`` (number -> body between ``obj`` and ``endobj``) with a
    correct cross-reference table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for num in sorted(objects):
        offsets[num] = out.tell()
        out.write(b"%d 0 obj\n" % num + objects[num] + b"\nendobj\n")
    size = max(objects) + 1
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % size)
    for num in range(1, size):
        if num in offsets:
            out.write(b"%010d 00000 n \n" % offsets[num])
        else:
            out.write(b"0000000000 65535 f \n")
    out.write(b"trailer\n<< /Size %d /Root %d 0 R %s>>\n" % (size, root, extra_trailer))
    out.write(b"startxref\n%d\n%%%%EOF\n" % xref)
    return out.getvalue()


def stream(data: bytes, dictionary: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n" % (len(data), dictionary) + data + b"\nendstream"


def text_ops(lines: Sequence[tuple[float, float, str]], size: float = 10) -> bytes:
    ops = [b"BT /F1 %g Tf" % size]
    for x, y, text in lines:
        ops.append(b"1 0 0 1 %.2f %.2f Tm (%s) Tj" % (x, y, _esc(text)))
    ops.append(b"ET")
    return b"\n".join(ops)


MM = 72 / 25.4


def address_lines(address: Sequence[str], *, form: str = "B") -> list[tuple[float, float, str]]:
    """Address lines placed in the DIN 5008 address zone of form A or B."""
    top_mm = (27 if form == "A" else 45) + 17.7 + 4  # inside the Anschriftzone
    return [(25 * MM, A4_H - (top_mm + 4.2 * i) * MM, line) for i, line in enumerate(address)]


def letter(
    address: Sequence[str] = ("Erika Mustermann", "Hauptstr. 1", "10115 Berlin"),
    *,
    pages: int = 1,
    size: tuple[float, float] = (A4_W, A4_H),
    form: str = "B",
    body: str = "Sehr geehrte Damen und Herren, anbei Ihre Abrechnung.",
    compress: bool = True,
    title: str = "Brief",
) -> bytes:
    """A letter of ``pages`` pages; page 1 carries ``address`` in the window."""
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    kids = []
    for p in range(pages):
        lines = [
            (25 * MM, size[1] - 120 * MM - 14 * i, f"{body} ({title} {p + 1}/{i})")
            for i in range(12)
        ]
        if p == 0:
            lines = address_lines(address, form=form) + lines
        content = text_ops(lines)
        if compress:
            content_obj = stream(zlib.compress(content), b"/Filter /FlateDecode ")
        else:
            content_obj = stream(content)
        page_num, content_num = 10 + 2 * p, 11 + 2 * p
        objects[page_num] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.3f %.3f] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
            % (size[0], size[1], content_num)
        )
        objects[content_num] = content_obj
        kids.append(b"%d 0 R" % page_num)
    objects[2] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(kids), pages)
    return build(objects)
