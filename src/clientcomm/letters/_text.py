"""Positioned text of one page, fast, for the address check (runs in the intake
worker).

Pages whose fonts are all simple (Type1, TrueType, Type3 without
``/ToUnicode`` and ``/Differences``; WinAnsi, MacRoman or standard encoding),
without inline images and without form XObjects are read by a small
content-stream interpreter here (text state, ``cm``, ``q``/``Q``; one fragment
per string operator, placed at the text matrix where it starts). Anything else
goes to pypdf's own text extraction with a visitor, which is exact but about
ten times slower. One difference: pypdf turns wide ``TJ`` kerning into spaces,
this reader does not (the address check ignores spacing).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["positioned_text"]

_TOKEN = re.compile(
    rb"""
    (?P<ws>[\x00\t\n\x0c\r ]+|%[^\r\n]*)
  | (?P<str>\()
  | (?P<hex><[0-9A-Fa-f\s]*>)
  | (?P<dict><<|>>)
  | (?P<arr>[\[\]])
  | (?P<name>/[^\x00\t\n\x0c\r ()<>\[\]{}/%]*)
  | (?P<num>[+-]?(?:\d+\.?\d*|\.\d+))
  | (?P<op>[^\x00\t\n\x0c\r ()<>\[\]{}/%]+)
    """,
    re.VERBOSE,
)
_ESC = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
_SIMPLE = frozenset({"/Type1", "/TrueType", "/MMType1"})
_CODECS = {"/WinAnsiEncoding": "cp1252", "/MacRomanEncoding": "mac_roman"}


class _Fallback(Exception):
    pass


def _literal(data: bytes, pos: int) -> tuple[bytes, int]:
    out = bytearray()
    depth = 1
    n = len(data)
    while pos < n:
        c = data[pos]
        if c == 0x5C:  # backslash
            nxt = data[pos + 1 : pos + 2]
            if nxt in _ESC:
                out += _ESC[nxt]
                pos += 2
            elif nxt.isdigit():
                m = re.match(rb"[0-7]{1,3}", data[pos + 1 : pos + 4])
                assert m is not None
                out.append(int(m.group(), 8) & 0xFF)
                pos += 1 + len(m.group())
            elif nxt in (b"\r", b"\n"):
                pos += 2
            else:
                out += nxt
                pos += 2
            continue
        if c == 0x28:
            depth += 1
        elif c == 0x29:
            depth -= 1
            if depth == 0:
                return bytes(out), pos + 1
        out.append(c)
        pos += 1
    raise _Fallback("unterminated string")


def _mul(a: list[float], b: list[float]) -> list[float]:
    return [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
        a[4] * b[0] + a[5] * b[2] + b[4],
        a[4] * b[1] + a[5] * b[3] + b[5],
    ]


def _codecs(page: Any) -> dict[str, str]:
    resources = page.get("/Resources")
    resources = resources.get_object() if resources is not None else {}
    xobjects = resources.get("/XObject")
    if xobjects is not None:
        for ref in xobjects.get_object().values():
            if ref.get_object().get("/Subtype") == "/Form":
                raise _Fallback("form XObject")
    fonts = resources.get("/Font")
    out: dict[str, str] = {}
    for name, ref in fonts.get_object().items() if fonts is not None else ():
        font = ref.get_object()
        encoding = font.get("/Encoding", "/StandardEncoding")
        if font.get("/Subtype") not in _SIMPLE or "/ToUnicode" in font:
            raise _Fallback("not a simple font")
        if not isinstance(encoding, str):
            raise _Fallback("custom encoding")
        out[str(name)] = _CODECS.get(str(encoding), "latin-1")
    return out


def _fast(page: Any) -> list[tuple[float, float, str]]:
    codecs = _codecs(page)
    contents = page.get_contents()
    data = contents.get_data() if contents is not None else b""
    out: list[tuple[float, float, str]] = []
    operands: list[Any] = []
    cm = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    stack: list[list[float]] = []
    tm = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    tlm = list(tm)
    leading = 0.0
    codec = "latin-1"
    arrays: list[list[Any]] = []
    pos, n = 0, len(data)

    def show(raw: bytes) -> None:
        text = raw.decode(codec, "replace").strip()
        if text:
            x = cm[0] * tm[4] + cm[2] * tm[5] + cm[4]
            y = cm[1] * tm[4] + cm[3] * tm[5] + cm[5]
            out.append((round(x, 2), round(y, 2), text))

    def next_line(tx: float, ty: float) -> None:
        nonlocal tlm, tm
        tlm = _mul([1, 0, 0, 1, tx, ty], tlm)
        tm = list(tlm)

    while pos < n:
        m = _TOKEN.match(data, pos)
        if m is None:
            raise _Fallback("unparsable content")
        pos = m.end()
        kind = m.lastgroup
        if kind == "ws" or kind == "dict":
            continue
        value: Any
        if kind == "str":
            value, pos = _literal(data, pos)
        elif kind == "hex":
            digits = re.sub(rb"\s", b"", m.group()[1:-1])
            value = bytes.fromhex((digits + b"0" * (len(digits) % 2)).decode())
        elif kind == "num":
            value = float(m.group())
        elif kind == "name":
            value = m.group().decode("latin-1")
        elif kind == "arr":
            if m.group() == b"[":
                arrays.append([])
            elif arrays:
                done = arrays.pop()
                (arrays[-1] if arrays else operands).append(done)
            continue
        else:
            op = m.group()
            if arrays:
                raise _Fallback("operator inside an array")
            try:
                if op == b"BI":
                    raise _Fallback("inline image")
                if op == b"q":
                    stack.append(list(cm))
                elif op == b"Q" and stack:
                    cm = stack.pop()
                elif op == b"cm" and len(operands) == 6:
                    cm = _mul([float(v) for v in operands], cm)
                elif op == b"BT":
                    tm, tlm = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
                elif op == b"Tf" and len(operands) == 2:
                    if operands[0] not in codecs:
                        raise _Fallback("unknown font")
                    codec = codecs[operands[0]]
                elif op == b"TL" and operands:
                    leading = float(operands[-1])
                elif op == b"Tm" and len(operands) == 6:
                    tlm = [float(v) for v in operands]
                    tm = list(tlm)
                elif op in (b"Td", b"TD") and len(operands) == 2:
                    if op == b"TD":
                        leading = -float(operands[1])
                    next_line(float(operands[0]), float(operands[1]))
                elif op == b"T*":
                    next_line(0.0, -leading)
                elif op == b"Tj" and operands and isinstance(operands[-1], bytes):
                    show(operands[-1])
                elif op in (b"'", b'"') and operands and isinstance(operands[-1], bytes):
                    next_line(0.0, -leading)
                    show(operands[-1])
                elif op == b"TJ" and operands and isinstance(operands[-1], list):
                    show(b"".join(p for p in operands[-1] if isinstance(p, bytes)))
            finally:
                operands = []
            continue
        (arrays[-1] if arrays else operands).append(value)
    return out


def _pypdf(page: Any) -> list[tuple[float, float, str]]:
    out: list[tuple[float, float, str]] = []

    def visit(text: str, cm: list[float], tm: list[float], _font: Any, _size: Any) -> None:
        if not text.strip():
            return
        x = cm[0] * tm[4] + cm[2] * tm[5] + cm[4]
        y = cm[1] * tm[4] + cm[3] * tm[5] + cm[5]
        out.append((round(x, 2), round(y, 2), text.strip()))

    page.extract_text(visitor_text=visit)
    return out


def positioned_text(page: Any, *, fast: bool = True) -> list[tuple[float, float, str]]:
    """``(x, y, text)`` of every string shown on ``page`` (points, origin bottom left)."""
    if fast:
        try:
            return _fast(page)
        except (_Fallback, ValueError, TypeError, KeyError, AttributeError, IndexError):
            pass  # not something this reader handles exactly: let pypdf read it
    return _pypdf(page)
