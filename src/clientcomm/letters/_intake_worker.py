"""The child-process side of PDF intake: one long-lived worker process checks one
document after another, under an address-space limit set at start.

The parent (:class:`clientcomm.letters.intake.PdfIntake`) sends
``(data, first_page_text)`` and receives ``("ok", page_sizes, fragments)`` or
``("err", reason, detail)``. A hang is stopped by the parent (kill and replace);
a crash ends the process and the parent replaces it.

:func:`inspect` is also importable for a direct in-process check (tests), but
production use goes through the pool.
"""

from __future__ import annotations

import io
import os
import resource
import time
from multiprocessing.connection import Connection
from typing import Any

import attrs

__all__ = ["Limits", "inspect", "precheck", "serve"]

_IMAGE_CODECS = frozenset({"/DCTDecode", "/JPXDecode", "/JBIG2Decode", "/CCITTFaxDecode"})
# Refused, not stripped (see docs/letters.md): keys and action types that run code,
# open files or send data when the document is opened or a page shown.
_ACTIVE_KEYS = frozenset({"/JS", "/JavaScript", "/AA", "/EmbeddedFiles", "/XFA", "/RichMedia"})
_ACTIVE_ACTIONS = frozenset(
    {"/JavaScript", "/Launch", "/ImportData", "/SubmitForm", "/GoToE", "/GoToR", "/Rendition"}
)


@attrs.frozen
class Limits:
    """What one document may cost (see :class:`clientcomm.letters.intake.IntakeLimits`)."""

    max_file_bytes: int
    max_pages: int
    max_objects: int
    max_stream_bytes: int
    max_decoded_bytes: int
    max_array_items: int
    memory_bytes: int


class _Refused(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


def precheck(data: bytes, limits: Limits) -> tuple[str, str] | None:
    """The cheap byte-level checks: empty, too large, not a PDF, truncated."""
    if not data:
        return ("empty", "no bytes")
    if len(data) > limits.max_file_bytes:
        return ("too_large", f"{len(data)} bytes, limit {limits.max_file_bytes}")
    if data.find(b"%PDF-", 0, 1024) < 0:
        return ("not_pdf", "no %PDF- header in the first 1024 bytes")
    if data.rfind(b"%%EOF", max(0, len(data) - 2048)) < 0:
        return ("truncated", "no %%EOF marker at the end")
    return None


def _classify(exc: BaseException) -> tuple[str, str]:
    from pypdf.errors import FileNotDecryptedError, LimitReachedError

    text = f"{type(exc).__name__}: {exc}"[:300]
    low = text.lower()
    if isinstance(exc, MemoryError):
        return ("memory", "memory limit reached")
    if isinstance(exc, RecursionError):
        return ("huge_object", "nesting too deep")
    if isinstance(exc, FileNotDecryptedError) or "encrypt" in low or "decrypt" in low:
        return ("encrypted", text)
    if isinstance(exc, LimitReachedError):
        if "self reference" in low:
            return ("bad_length", text)
        if any(w in low for w in ("output", "decod", "decompress", "length", "buffer")):
            return ("decompression_bomb", text)
        if "page" in low:
            return ("page_tree", text)
        return ("huge_object", text)
    if "xref" in low or "startxref" in low or "trailer" in low or "cross-reference" in low:
        return ("broken_xref", text)
    if "length" in low or "self reference" in low:
        return ("bad_length", text)
    return ("malformed", text)


def _configure(limits: Limits) -> None:
    from pypdf._configuration import CURRENT_CONFIGURATION, Configuration

    per_stream = limits.max_stream_bytes
    CURRENT_CONFIGURATION.set(
        Configuration().with_overwrites(
            maximum_declared_stream_length=min(per_stream, limits.max_file_bytes),
            array_based_stream_maximum_output_length=per_stream,
            array_maximum_element_count=limits.max_array_items,
            dictionary_maximum_element_count=limits.max_array_items,
            jbig2_maximum_output_length=per_stream,
            lzw_maximum_output_length=per_stream,
            run_length_maximum_output_length=per_stream,
            zlib_maximum_output_length=per_stream,
            brotli_maximum_output_length=per_stream,
            stream_decoding_work_maximum_length=4 * per_stream,
            page_tree_maximum_entries=limits.max_pages * 4,
            page_tree_maximum_page_entries=limits.max_pages * 64,
            jbig2dec_binary=None,
            disable_legacy_handling=True,
        )
    )


def inspect(data: bytes, limits: Limits, first_page_text: bool) -> tuple[Any, ...]:
    """Check one document; never raises (every outcome is a result tuple)."""
    pre = precheck(data, limits)
    if pre is not None:
        return ("err", *pre)
    try:
        _configure(limits)
        return _inspect(data, limits, first_page_text)
    except _Refused as refused:
        return ("err", refused.reason, refused.detail)
    except Exception as exc:  # pypdf raises many types on broken files
        return ("err", *_classify(exc))
    except (MemoryError, RecursionError) as exc:
        return ("err", *_classify(exc))


def _inspect(data: bytes, limits: Limits, first_page_text: bool) -> tuple[Any, ...]:
    from pypdf import PdfReader
    from pypdf.generic import (
        ArrayObject,
        DictionaryObject,
        IndirectObject,
        NameObject,
        StreamObject,
    )

    reader = PdfReader(io.BytesIO(data), strict=True, root_object_recovery_limit=None)
    if reader.is_encrypted:
        raise _Refused("encrypted", "the document is encrypted")
    root = reader.trailer.get("/Root")
    if root is None:
        raise _Refused("broken_xref", "no /Root in the trailer")

    # -- the page tree, with cycle detection, before pypdf flattens it
    leaves = 0
    seen_nodes: set[int] = set()
    catalog = root.get_object()
    if not isinstance(catalog, DictionaryObject):
        raise _Refused("broken_xref", "/Root is not a dictionary")
    stack: list[tuple[Any, int]] = [(catalog.get("/Pages"), 0)]
    while stack:
        ref, depth = stack.pop()
        if not isinstance(ref, IndirectObject):
            raise _Refused("page_tree", "a page tree node is not an indirect object")
        if ref.idnum in seen_nodes:
            raise _Refused("page_tree", f"page tree cycle at object {ref.idnum}")
        seen_nodes.add(ref.idnum)
        if depth > 32:
            raise _Refused("page_tree", "page tree too deep")
        node = ref.get_object()
        if not isinstance(node, DictionaryObject):
            raise _Refused("page_tree", "a page tree node is not a dictionary")
        if node.get("/Type") == "/Pages" or "/Kids" in node:
            kids = node.get("/Kids")
            if not isinstance(kids, ArrayObject):
                raise _Refused("page_tree", "/Kids is not an array")
            stack.extend((kid, depth + 1) for kid in kids)
        else:
            leaves += 1
            if leaves > limits.max_pages:
                raise _Refused("too_many_pages", f"more than {limits.max_pages} pages")
    if leaves == 0:
        raise _Refused("page_tree", "the document has no pages")

    # -- every object reachable from the trailer: sizes, active content, streams
    decoded_total = 0
    objects = 0
    seen: set[tuple[int, int]] = set()
    todo: list[Any] = [reader.trailer]
    while todo:
        obj = todo.pop()
        if isinstance(obj, IndirectObject):
            key = (obj.idnum, obj.generation)
            if key in seen:
                continue
            seen.add(key)
            objects += 1
            if objects > limits.max_objects:
                raise _Refused("huge_object", f"more than {limits.max_objects} objects")
            target = obj.get_object()
            if isinstance(target, StreamObject):
                length = target.get("/Length")
                if isinstance(length, IndirectObject) and length.idnum == obj.idnum:
                    raise _Refused("bad_length", f"object {obj.idnum} /Length refers to itself")
            todo.append(target)
            continue
        if isinstance(obj, ArrayObject):
            if len(obj) > limits.max_array_items:
                raise _Refused("huge_object", f"array of {len(obj)} items")
            todo.extend(obj)
        elif isinstance(obj, DictionaryObject):
            if len(obj) > limits.max_array_items:
                raise _Refused("huge_object", f"dictionary of {len(obj)} entries")
            for key_name in obj:
                if key_name in _ACTIVE_KEYS:
                    raise _Refused("active_content", f"{key_name} entry")
            action = obj.get("/S")
            if isinstance(action, NameObject) and action in _ACTIVE_ACTIONS:
                raise _Refused("active_content", f"{action} action")
            for key_name, value in obj.items():
                if key_name not in ("/Parent", "/P"):
                    todo.append(value)
            if isinstance(obj, StreamObject):
                decoded_total += _decode(obj, limits)
                if decoded_total > limits.max_decoded_bytes:
                    raise _Refused(
                        "decompression_bomb",
                        f"streams decode to more than {limits.max_decoded_bytes} bytes",
                    )

    # -- pages as pypdf sees them: sizes (after /Rotate) and page 1's text
    sizes: list[tuple[float, float]] = []
    for page in reader.pages:
        box = page.mediabox
        w, h = float(box.width), float(box.height)
        if int(page.get("/Rotate", 0) or 0) % 180 == 90:
            w, h = h, w
        sizes.append((w, h))
    if len(sizes) != leaves:
        raise _Refused("page_tree", "the page count does not match the page tree")
    fragments: list[tuple[float, float, str]] = []
    if first_page_text:
        from clientcomm.letters._text import positioned_text

        fragments = positioned_text(reader.pages[0])
    return ("ok", sizes, fragments)


def _decode(stream: Any, limits: Limits) -> int:
    filters = stream.get("/Filter")
    names = [str(f) for f in filters] if isinstance(filters, list) else [str(filters or "")]
    if stream.get("/Subtype") == "/Image" and any(n in _IMAGE_CODECS for n in names):
        return len(stream._data)  # an image codec pypdf does not decode: keep as is
    from pypdf.filters import decode_stream_data

    data = decode_stream_data(stream) if names != [""] else stream.get_data()
    if len(data) > limits.max_stream_bytes:
        raise _Refused("decompression_bomb", f"a stream decodes to {len(data)} bytes")
    return len(data)


def _limit_memory(memory_bytes: int) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    want = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
    resource.setrlimit(resource.RLIMIT_AS, (want, hard))


def serve(conn: Connection, limits: Limits, faults: bool) -> None:
    """The worker loop (the child's target). ``faults`` enables test-only
    documents whose first line after the header is ``%CC-FAULT hang`` or
    ``%CC-FAULT crash`` (see ``tests/letters/hostile.py``)."""
    import pypdf  # noqa: F401  (import before the limit: its import is not the document's cost)

    _limit_memory(limits.memory_bytes)
    conn.send(("ready",))
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        data, first_page_text = job
        if faults and b"%CC-FAULT " in data[:64]:
            if b"%CC-FAULT hang" in data[:64]:
                time.sleep(3600)
            os._exit(70)
        conn.send(inspect(data, limits, first_page_text))
