"""Pure rules for attachments: what a file name and a media type must look like,
and whether the content is what its declared media type says.

No I/O here: the service streams the bytes through a :class:`ContentCheck`
(or calls :func:`check_content` on bytes it holds).

The content rule (by magic numbers, the first bytes of the file):

* a **verified** type (:data:`SIGNATURES` and :data:`TEXT_TYPES`) must match
  its content: ``application/pdf`` starts with ``%PDF-``, ``image/png`` with
  the PNG signature, ``image/jpeg`` with ``FF D8 FF``, ``image/gif`` with
  ``GIF87a``/``GIF89a``; the ZIP-based Office formats (``.docx``, ``.xlsx``,
  ``.pptx``, OpenDocument) and ``application/zip`` with a ZIP local header
  (``PK\\x03\\x04``); the legacy Office formats (``.doc``, ``.xls``, ``.ppt``)
  with the OLE2 signature; ``text/plain`` and ``text/csv`` are UTF-8 (a BOM is
  allowed) without NUL bytes, the whole file. So an executable (``MZ``) or an
  HTML page labelled ``application/pdf`` is refused;
* ``application/octet-stream`` (the default: "some bytes") claims nothing and
  is accepted as it is: it is never sniff-mismatched (readers get a download);
* any other well-formed type (``image/tiff``, ``message/rfc822``, ...) is
  accepted as declared, **unverified**: nothing about its content is known
  here. A host that wants to restrict types or content (executables, active
  content) does so in its scanning hook (``AttachmentStore(scanner=...)``).

Media types are compared case-insensitively.
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Mapping

import attrs

from clientcomm.errors import InvalidInputError

__all__ = [
    "GENERIC_TYPE",
    "HEAD_SIZE",
    "MAX_FILENAME",
    "SIGNATURES",
    "TEXT_TYPES",
    "ContentCheck",
    "check_content",
    "check_content_type",
    "check_filename",
    "sniff",
]

MAX_FILENAME = 255
_PATH = re.compile(r"[/\\]")
_MIME = re.compile(r"[\w.+-]+/[\w.+-]+")

# Characters that make a name look like something it is not: bidi embeddings,
# overrides and isolates ("Rechnung\u202efdp.exe" shows as "Rechnungexe.pdf"),
# the implicit direction marks, line/paragraph separators.
_DECEPTIVE = frozenset(
    "\u200e\u200f\u061c\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029"
)

GENERIC_TYPE = "application/octet-stream"
"""The type that claims nothing; never checked against the content."""

HEAD_SIZE = 512
"""How many leading bytes the magic-number rule looks at."""

_ZIP = (b"PK\x03\x04",)
_OLE2 = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",)

SIGNATURES: Mapping[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "application/zip": _ZIP,
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": _ZIP,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": _ZIP,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": _ZIP,
    "application/vnd.oasis.opendocument.text": _ZIP,
    "application/vnd.oasis.opendocument.spreadsheet": _ZIP,
    "application/vnd.oasis.opendocument.presentation": _ZIP,
    "application/msword": _OLE2,
    "application/vnd.ms-excel": _OLE2,
    "application/vnd.ms-powerpoint": _OLE2,
}
"""Verified binary types and the prefixes their content must start with."""

TEXT_TYPES = frozenset({"text/plain", "text/csv"})
"""Verified text types: UTF-8 (optionally with a BOM), no NUL byte."""

# Only to name what a refused file looks like (the error message).
_LOOKS_LIKE: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"PK\x03\x04", "a ZIP archive"),
    (_OLE2[0], "an OLE2 (legacy Office) file"),
    (b"MZ", "a Windows executable"),
    (b"\x7fELF", "an ELF executable"),
    (b"#!", "a script"),
)
_HTML = re.compile(
    rb"\s*<(!doctype\s+html|html|head|body|script|iframe|svg|!--|\?xml|meta|a\s|div|p\W)",
    re.IGNORECASE,
)
_BOM = b"\xef\xbb\xbf"


def check_filename(name: object, field: str = "filename") -> str:
    """A plain file name: non-blank, at most 255 characters, not ``.`` or ``..``,
    no path separators (``/``, ``\\``), no control characters (C0, DEL, C1),
    no bidi overrides, embeddings, isolates or direction marks (U+202A-U+202E,
    U+2066-U+2069, U+200E, U+200F, U+061C), no line or paragraph separators and
    no lone surrogates.

    Raises:
        InvalidInputError: otherwise (``field`` names it).
    """
    if not isinstance(name, str):
        raise InvalidInputError(field, "must be a plain file name", value=repr(name)[:100])
    shown = _loggable(name)
    if not name.strip() or len(name) > MAX_FILENAME:
        raise InvalidInputError(field, "must be a plain file name", value=shown)
    if name.strip() in (".", "..") or _PATH.search(name):
        raise InvalidInputError(field, "must be a plain file name, without path parts", value=shown)
    for ch in name:
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in _DECEPTIVE:
            raise InvalidInputError(
                field, f"must be a plain file name (U+{ord(ch):04X} is not allowed)", value=shown
            )
    return name


def _loggable(name: str) -> str:
    """``name`` with every non-printable or deceptive character escaped (and
    cut to 300 characters), safe to log and to encode."""
    out: list[str] = []
    for ch in name[:300]:
        if ch.isprintable() and ch not in _DECEPTIVE:
            out.append(ch)
        else:  # controls, separators, bidi marks, lone surrogates (never printable)
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return "".join(out)


def check_content_type(content_type: object, field: str = "content_type") -> str:
    """A MIME type such as ``application/pdf``.

    Raises:
        InvalidInputError: otherwise.
    """
    if not isinstance(content_type, str) or not _MIME.fullmatch(content_type):
        raise InvalidInputError(field, "must be a MIME type", value=content_type)
    return content_type


def sniff(head: bytes) -> str | None:
    """What ``head`` (a file's first bytes) looks like, for messages: a media
    type or a description, ``None`` if it is none of the known kinds."""
    for prefix, what in _LOOKS_LIKE:
        if head.startswith(prefix):
            return what
    body = head[len(_BOM) :] if head.startswith(_BOM) else head
    if _HTML.match(body):
        return "HTML"
    return None


def _mismatch(content_type: str, head: bytes) -> str:
    seen = sniff(head)
    return f"content is not {content_type}" + (f" (it looks like {seen})" if seen else "")


@attrs.define
class ContentCheck:
    """The content rule for one file, fed chunk by chunk (pure, no I/O).

    :meth:`feed` and :meth:`finish` return ``None`` while the content may still
    be ``content_type``, else why not (then stop reading: the answer is final).
    ``content_type`` must already be well-formed (:func:`check_content_type`).
    """

    content_type: str
    _kind: str = attrs.field(init=False)
    _head: bytearray = attrs.field(init=False, factory=bytearray)
    _decided: bool = attrs.field(init=False, default=False)
    _decoder: codecs.IncrementalDecoder | None = attrs.field(init=False, default=None)
    _failed: str | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        declared = self.content_type.lower()
        self.content_type = declared
        if declared in TEXT_TYPES:
            self._kind = "text"
            self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        elif declared in SIGNATURES:
            self._kind = "magic"
        else:
            self._kind = "unverified"
            self._decided = True

    @property
    def verified(self) -> bool:
        """Whether the declared type is one whose content is checked."""
        return self._kind != "unverified"

    def _decide(self) -> str | None:
        self._decided = True
        head = bytes(self._head)
        if not head.startswith(SIGNATURES[self.content_type]):
            self._failed = _mismatch(self.content_type, head)
        return self._failed

    def feed(self, chunk: bytes) -> str | None:
        """The next piece of the content."""
        if self._failed is not None:
            return self._failed
        if not self._decided and len(self._head) < HEAD_SIZE:
            self._head += chunk[: HEAD_SIZE - len(self._head)]
            if self._kind == "magic" and len(self._head) >= HEAD_SIZE:
                return self._decide()
        if self._decoder is not None:
            if b"\x00" in chunk:
                self._failed = f"content is not {self.content_type} (it contains NUL bytes)"
                return self._failed
            try:
                self._decoder.decode(chunk)
            except UnicodeDecodeError:
                self._failed = _mismatch(self.content_type, bytes(self._head)) + (
                    "" if sniff(bytes(self._head)) else " (it is not UTF-8 text)"
                )
                return self._failed
        return None

    def finish(self) -> str | None:
        """The content has ended."""
        if self._failed is not None:
            return self._failed
        if self._kind == "magic" and not self._decided:
            return self._decide()
        if self._decoder is not None:
            try:
                self._decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                self._failed = f"content is not {self.content_type} (it is not UTF-8 text)"
        return self._failed


def check_content(content_type: str, data: bytes) -> str | None:
    """Whether ``data`` can be ``content_type`` (see module docs): ``None`` if so,
    else why not. ``content_type`` must already be well-formed
    (:func:`check_content_type`)."""
    check = ContentCheck(content_type)
    return check.feed(data) or check.finish()
