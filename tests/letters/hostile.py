"""Generators of PDFs for the letter tests: good letters (with a DIN 5008 address
block, A4 portrait) and a corpus of hostile files, one per case of intake
(issue 15, item 1). Everything is built from raw bytes here; nothing is read
from disk.
"""

from __future__ import annotations

import functools
import io
import zlib
from collections.abc import Callable, Mapping

from pypdf import PdfReader, PdfWriter
from pypdf._codecs._codecs import LzwCodec

from clientcomm.testing.letters import A4_H, A4_W, address_lines, build, letter, stream, text_ops

__all__ = ["A4_H", "A4_W", "HOSTILE", "address_lines", "build", "letter", "stream", "text_ops"]


# -- hostile cases -----------------------------------------------------------------------
def not_pdf() -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"\x00" * 200


def empty() -> bytes:
    return b""


def truncated() -> bytes:
    good = letter(pages=2)
    return good[: len(good) // 2]


def broken_xref() -> bytes:
    good = letter(pages=1)
    start = good.rindex(b"startxref")
    body, _ = good[:start], good[start:]
    # the table points into nowhere and startxref past the end
    xref = body.rindex(b"xref\n")
    body = body[:xref] + b"xref\n0 3\nGARBAGEGARBAGE\n" + b"trailer\n<< /Size 3 >>\n"
    return body + b"startxref\n999999\n%%EOF\n"


def encrypted(user_password: str = "", algorithm: str = "AES-256") -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(letter())))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def page_tree_cycle() -> bytes:
    return build(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R >>",
            2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>",
        }
    )


def self_referencing_length() -> bytes:
    content = text_ops([(72, 700, "hello")])
    return build(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R >>",
            2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595.276 841.89] /Contents 4 0 R >>",
            4: b"<< /Length 4 0 R >>\nstream\n" + content + b"\nendstream",
        }
    )


def _page_with_stream(stream_obj: bytes, extra: Mapping[int, bytes] | None = None) -> bytes:
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595.276 841.89] /Contents 4 0 R >>",
        4: stream_obj,
    }
    objects.update(extra or {})
    return build(objects)


@functools.cache
def _zeros_deflated(size: int) -> bytes:
    comp = zlib.compressobj(9)
    chunk = b"\x00" * (16 << 20)
    parts = [comp.compress(chunk) for _ in range(size // len(chunk))]
    parts.append(comp.flush())
    return b"".join(parts)


def flate_bomb(size: int = 1 << 30) -> bytes:
    """About 1 MB holding ``size`` (1 GiB) of zeros in one content stream."""
    return _page_with_stream(stream(_zeros_deflated(size), b"/Filter /FlateDecode "))


def many_stream_bomb(streams: int = 40, each: int = 48 << 20) -> bytes:
    """Many streams each under the per-stream limit, together far over the total."""
    data = _zeros_deflated(each)
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595.276 841.89] /Contents [%s] >>"
        % b" ".join(b"%d 0 R" % (10 + i) for i in range(streams)),
    }
    for i in range(streams):
        objects[10 + i] = stream(data, b"/Filter /FlateDecode ")
    return build(objects)


def lzw_encode(data: bytes) -> bytes:
    """PDF LZWDecode, pypdf's own encoder (byte by byte: small inputs only)."""
    return LzwCodec().encode(data)


@functools.cache
def lzw_zeros(size: int) -> bytes:
    """What :func:`lzw_encode` makes of ``size`` zero bytes, computed per code:
    on a uniform run the encoder always emits the longest string in its table."""
    codes = [256]
    next_code, longest, current, remaining = 258, 1, 0, size
    while remaining:
        take = min(longest - current, remaining)
        current += take
        remaining -= take
        if not remaining:
            break
        codes.append(0 if current == 1 else 256 + current)  # code of the zero run
        if next_code <= 4095:
            next_code += 1
            longest = current + 1
        else:
            codes.append(256)
            next_code, longest = 258, 1
        current = 1
        remaining -= 1
    if current:
        codes.append(0 if current == 1 else 256 + current)
    codes.append(257)
    return LzwCodec()._pack_codes_into_bytes(codes)


def lzw_bomb(size: int = 256 << 20) -> bytes:
    return _page_with_stream(stream(lzw_zeros(size), b"/Filter /LZWDecode "))


def runlength_bomb(size: int = 256 << 20) -> bytes:
    """RunLength data (2 bytes -> 128) Flate-compressed: the Flate output is small
    enough to pass, the RunLength output is not."""
    runs = b"\x81\x00" * (size // 128) + b"\x80"
    data = zlib.compress(runs, 9)
    return _page_with_stream(stream(data, b"/Filter [/FlateDecode /RunLengthDecode] "))


def huge_array(items: int = 2_000_000) -> bytes:
    arr = b"[" + b"0 " * items + b"]"
    return build(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R /Junk 5 0 R >>",
            2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595.276 841.89] >>",
            5: arr,
        }
    )


def javascript() -> bytes:
    return build(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R >>",
            2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595.276 841.89] >>",
            5: b"<< /Type /Action /S /JavaScript /JS (app.alert\\(1\\)) >>",
        }
    )


def launch_action() -> bytes:
    return build(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R >>",
            2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595.276 841.89] "
            b"/AA << /O << /S /Launch /F (cmd.exe) >> >> >>",
        }
    )


def no_pages() -> bytes:
    return build(
        {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [] /Count 0 >>"}
    )


HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "not_pdf": (not_pdf, "not_pdf"),
    "empty": (empty, "empty"),
    "truncated": (truncated, "truncated"),
    "broken_xref": (broken_xref, "broken_xref"),
    "encrypted_empty_user_password": (encrypted, "encrypted"),
    "encrypted_rc4_password": (lambda: encrypted("pw", "RC4-128"), "encrypted"),
    "page_tree_cycle": (page_tree_cycle, "page_tree"),
    "no_pages": (no_pages, "page_tree"),
    "self_referencing_length": (self_referencing_length, "bad_length"),
    "flate_bomb_1gib": (flate_bomb, "decompression_bomb"),
    "flate_many_streams": (many_stream_bomb, "decompression_bomb"),
    "lzw_bomb": (lzw_bomb, "decompression_bomb"),
    "runlength_bomb": (runlength_bomb, "decompression_bomb"),
    "huge_array": (huge_array, "huge_object"),
    "javascript_open_action": (javascript, "active_content"),
    "launch_action": (launch_action, "active_content"),
}
"""name -> (generator, expected reason code)."""
