"""The print file (issue 15, item 4): all letters in one PDF for a print shop.

Each letter's pages follow its :class:`~clientcomm.letters.models.LetterPlan`
(the contact's documents, the general attachments, the padding blanks from
:func:`clientcomm.letters.padding.page_plan`). A general attachment's page
content is **stored once** however many letters carry it: each attachment page
becomes one Form XObject (its content stream and resources, written once), and
every letter's copy of that page is a small page dictionary whose ``/Contents``
and ``/Resources`` are the *same* two indirect objects, shared by all letters
(``q /CCatt Do Q``). Annotations and links of attachment pages are not carried
(a print file is printed). A blank page has the size of the page before it.

:func:`build_print_file` takes validated documents only
(:class:`~clientcomm.letters.models.ValidatedPdf`, from
:class:`~clientcomm.letters.intake.PdfIntake`): it parses them in this process.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence

import attrs
from pypdf import PageObject, PdfReader, PdfWriter
from pypdf.generic import (
    ArrayObject,
    DecodedStreamObject,
    DictionaryObject,
    FloatObject,
    IndirectObject,
    NameObject,
    NumberObject,
    PdfObject,
    StreamObject,
)

from clientcomm.errors import InvalidDocumentError, InvalidInputError
from clientcomm.letters.models import (
    LetterPlan,
    LetterRange,
    PartKind,
    PrintFile,
    PrintOptions,
    ValidatedPdf,
)
from clientcomm.letters.padding import Blank, SourcePage, page_plan

__all__ = ["build_print_file", "write_compact"]

_XOBJECT_NAME = "/CCatt"


@attrs.frozen
class _SharedPage:
    contents: IndirectObject
    resources: IndirectObject
    mediabox: tuple[float, float, float, float]
    rotate: int


class _Builder:
    def __init__(self) -> None:
        self.writer = PdfWriter()
        self._readers: dict[str, PdfReader] = {}
        self._shared: dict[str, list[_SharedPage]] = {}

    def reader(self, pdf: ValidatedPdf) -> PdfReader:
        reader = self._readers.get(pdf.sha256)
        if reader is None:
            try:
                reader = PdfReader(io.BytesIO(pdf.data), strict=True)
            except Exception as exc:  # validated input: only a corrupted value gets here
                raise InvalidDocumentError(pdf.filename, "malformed", type(exc).__name__) from exc
            if len(reader.pages) != pdf.page_count:
                raise InvalidInputError("documents", f"{pdf.filename!r} changed after intake")
            self._readers[pdf.sha256] = reader
        return reader

    def shared(self, pdf: ValidatedPdf) -> list[_SharedPage]:
        """The attachment's pages as shared objects, made on first use."""
        pages = self._shared.get(pdf.sha256)
        if pages is not None:
            return pages
        pages = []
        add = self.writer._add_object
        for page in self.reader(pdf).pages:
            box = page.mediabox
            bbox = (float(box.left), float(box.bottom), float(box.right), float(box.top))
            content = page.get_contents()
            form = DecodedStreamObject()
            form.set_data(content.get_data() if content is not None else b"")
            form_dict: dict[str, PdfObject] = {
                "/Type": NameObject("/XObject"),
                "/Subtype": NameObject("/Form"),
                "/BBox": ArrayObject(FloatObject(v) for v in bbox),
            }
            resources = page.get("/Resources")
            if resources is not None:
                form_dict["/Resources"] = resources.get_object().clone(self.writer)
            encoded = form.flate_encode()
            encoded.update({NameObject(k): v for k, v in form_dict.items()})
            form_ref = add(encoded)
            stub = DecodedStreamObject()
            stub.set_data(f"q {_XOBJECT_NAME} Do Q".encode())
            stub_res = DictionaryObject(
                {NameObject("/XObject"): DictionaryObject({NameObject(_XOBJECT_NAME): form_ref})}
            )
            rotate = int(page.get("/Rotate", 0) or 0)
            pages.append(_SharedPage(add(stub), add(stub_res), bbox, rotate))
        self._shared[pdf.sha256] = pages
        return pages

    def _append(self, entries: dict[str, PdfObject]) -> None:
        """Append a page made here (a blank, an attachment stub) to the flat page
        tree directly: pypdf's ``add_page`` would clone it first."""
        writer = self.writer
        node = writer._pages.get_object()
        assert isinstance(node, DictionaryObject)
        page = PageObject(writer)
        page.update({NameObject(k): v for k, v in entries.items()})
        page[NameObject("/Type")] = NameObject("/Page")
        page[NameObject("/Parent")] = writer._pages
        ref = writer._add_object(page)
        kids = node["/Kids"]
        assert isinstance(kids, ArrayObject)
        kids.append(ref)
        node[NameObject("/Count")] = NumberObject(len(kids))
        assert writer.flattened_pages is not None
        writer.flattened_pages.append(page)

    def add_blank(self, width: float, height: float) -> None:
        self._append({"/MediaBox": ArrayObject(FloatObject(v) for v in (0, 0, width, height))})

    def add_shared(self, shared: _SharedPage) -> None:
        entries: dict[str, PdfObject] = {
            "/MediaBox": ArrayObject(FloatObject(v) for v in shared.mediabox),
            "/Contents": shared.contents,
            "/Resources": shared.resources,
        }
        if shared.rotate:
            entries["/Rotate"] = NumberObject(shared.rotate)
        self._append(entries)


def build_print_file(letters: Sequence[LetterPlan], options: PrintOptions) -> PrintFile:
    """All ``letters`` in one PDF, with each letter's page range.

    Raises:
        InvalidInputError: no letters (``field="letters"``), or a document's
            page count differs from its validated one.
    """
    if not letters:
        raise InvalidInputError("letters", "no letters to print")
    b = _Builder()
    ranges: list[LetterRange] = []
    first = 1
    for plan in letters:
        sources = [part.pdf for part in plan.parts]
        items = page_plan([pdf.page_sizes for pdf in sources], options)
        expected = plan.page_count
        if len(items) != expected:
            raise InvalidInputError("letters", "the plan's padding does not match the options")
        for item in items:
            if isinstance(item, Blank):
                b.add_blank(item.size.width, item.size.height)
                continue
            assert isinstance(item, SourcePage)
            part = plan.parts[item.document]
            if part.kind is PartKind.ATTACHMENT:
                b.add_shared(b.shared(part.pdf)[item.page])
            else:
                b.writer.add_page(b.reader(part.pdf).pages[item.page])
        ranges.append(LetterRange(plan.contact.id, first, len(items), options.sheets(len(items))))
        first += len(items)
    out = io.BytesIO()
    write_compact(b.writer, out)
    return PrintFile(out.getvalue(), tuple(ranges), options)


_PER_OBJECT_STREAM = 500


def write_compact(writer: PdfWriter, out: io.BytesIO) -> None:
    """Write ``writer``'s document as PDF 1.7 with **object streams** and a
    cross-reference stream: every non-stream object (page dictionaries above
    all: a print file has thousands) is stored compressed, 500 to an object
    stream. pypdf writes only classic cross-reference tables; this is the same
    document, smaller (about 10 bytes per attachment stub page instead of ~150).
    """
    writer._resolve_links()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    objects = writer._objects
    entries: dict[int, tuple[int, int, int]] = {}
    next_num = len(objects) + 1
    batch: list[tuple[int, PdfObject]] = []

    def flush() -> None:
        nonlocal next_num
        if not batch:
            return
        offsets, body = [], io.BytesIO()
        for idnum, obj in batch:
            offsets.append(f"{idnum} {body.tell()}")
            obj.write_to_stream(body)
            body.write(b"\n")
        head = (" ".join(offsets) + "\n").encode()
        data = zlib.compress(head + body.getvalue(), 6)
        num, next_num = next_num, next_num + 1
        entries[num] = (1, out.tell(), 0)
        out.write(
            b"%d 0 obj\n<< /Type /ObjStm /N %d /First %d /Filter /FlateDecode /Length %d >>"
            b"\nstream\n" % (num, len(batch), len(head), len(data))
        )
        out.write(data)
        out.write(b"\nendstream\nendobj\n")
        for index, (idnum, _) in enumerate(batch):
            entries[idnum] = (2, num, index)
        batch.clear()

    for idnum, obj in enumerate(objects, start=1):
        if obj is None:
            continue
        if isinstance(obj, StreamObject):
            entries[idnum] = (1, out.tell(), 0)
            out.write(b"%d 0 obj\n" % idnum)
            obj.write_to_stream(out)
            out.write(b"\nendobj\n")
        else:
            batch.append((idnum, obj))
            if len(batch) >= _PER_OBJECT_STREAM:
                flush()
    flush()
    xref_num = next_num
    size = xref_num + 1
    entries[xref_num] = (1, out.tell(), 0)
    rows = b"".join(
        struct.pack(">BIH", *entries.get(i, (0, 0, 65535 if i == 0 else 0))) for i in range(size)
    )
    data = zlib.compress(rows, 6)
    trailer = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/XRef"),
            NameObject("/Size"): NumberObject(size),
            NameObject("/W"): ArrayObject([NumberObject(1), NumberObject(4), NumberObject(2)]),
            NameObject("/Root"): writer.root_object.indirect_reference,
            NameObject("/Filter"): NameObject("/FlateDecode"),
            NameObject("/Length"): NumberObject(len(data)),
        }
    )
    if writer._info is not None:
        trailer[NameObject("/Info")] = writer._info.indirect_reference
    if writer._ID is not None:
        trailer[NameObject("/ID")] = writer._ID
    position = entries[xref_num][1]
    out.write(b"%d 0 obj\n" % xref_num)
    trailer.write_to_stream(out)
    out.write(b"\nstream\n" + data + b"\nendstream\nendobj\n")
    out.write(b"startxref\n%d\n%%%%EOF\n" % position)
