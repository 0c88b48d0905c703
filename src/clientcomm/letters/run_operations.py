"""The audit operations of serial-letter runs (seed 003), and the page split.

Every state change of a run appends one of these in the transaction of the
change (``docs/compliance.md`` lists them).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import pypdf

from clientcomm.audit.operations import declare
from clientcomm.errors import InvalidInputError
from clientcomm.letters.run_models import PageRange

__all__ = ["split_pages"]

declare(
    "letters.run_created",
    "letters.run",
    "a serial-letter run was created for a property and its units",
    "`LetterRuns.create`",
    ("property", "units"),
)
declare(
    "letters.documents_added",
    "letters.run",
    "documents (split by page ranges) or general attachments were added to a run",
    "`LetterRuns.upload`, `LetterRuns.add_attachment`",
    ("documents", "role", "pages"),
    batch=True,
)
declare(
    "letters.document_removed",
    "letters.run",
    "a document or attachment was removed from a run before release",
    "`LetterRuns.remove_document`",
    ("document", "role"),
)
declare(
    "letters.document_reassigned",
    "letters.run",
    "a document was assigned to another unit before release",
    "`LetterRuns.reassign`",
    ("document", "from_unit", "to_unit"),
    batch=True,
)
declare(
    "letters.selection_set",
    "letters.run",
    "the postal selection (filter, manual choices, merge) or print options were set",
    "`LetterRuns.set_selection`, `LetterRuns.set_options`",
    ("send_to", "included", "excluded", "merge", "colour", "duplex", "optimised", "registered"),
)
declare(
    "letters.released",
    "letters.run",
    "a run's documents were released into its units' portals (`clients`: the units)",
    "`LetterRuns.release`",
    ("units", "documents", "notify"),
    batch=True,
)
declare(
    "letters.unit_removed",
    "letters.run",
    "a unit's released documents were removed from its portal",
    "`LetterRuns.remove_unit`",
    ("unit",),
)
declare(
    "letters.deleted",
    "letters.run",
    "a serial letter was deleted (its released documents removed from every unit)",
    "`LetterRuns.delete`",
    ("units", "documents"),
    batch=True,
)
declare(
    "letters.ordered",
    "letters.run",
    "the run's postal dispatch was ordered from the provider",
    "`LetterRuns.order`",
    ("batch", "provider", "letters", "registered"),
)
declare(
    "letters.cancelled",
    "letters.run",
    "the run's postal dispatch was cancelled at the provider",
    "`LetterRuns.cancel`",
    ("batch", "letters"),
)
declare(
    "letters.status_updated",
    "letters.run",
    "the provider's letter states and tracking ids were taken into the run",
    "`LetterRuns.refresh`",
    ("batch", "states"),
)
declare(
    "letters.download_requested",
    "letters.run",
    "a PDF/A download of the run for the current filter was requested",
    "`LetterRuns.request_download`",
    ("download", "filter", "letters", "approval", "recipients"),
)
declare(
    "letters.download_ready",
    "letters.run",
    "the PDF/A download was produced, checked and stored; its link was e-mailed",
    "`letters.pdfa` step",
    ("download", "pages", "recipients"),
)
declare(
    "letters.download_failed",
    "letters.run",
    "the PDF/A download could not be produced",
    "`letters.pdfa` step",
    ("download", "reason"),
)
declare(
    "letters.download_opened",
    "letters.run",
    "a staff member opened a PDF/A download through its link",
    "`LetterRuns.open_download`",
    ("download",),
)


def split_pages(pdf: bytes, ranges: Sequence[PageRange]) -> list[bytes]:
    """One PDF per range of ``pdf``'s pages (1-based, inclusive), in order.

    Raises:
        InvalidInputError: no ranges, a range outside the document or
            backwards, or overlapping ranges (``field="ranges"``); a file
            pypdf cannot read (``field="pdf"``).
    """
    if not ranges:
        raise InvalidInputError("ranges", "at least one page range is needed")
    try:
        reader = pypdf.PdfReader(io.BytesIO(pdf))
        count = len(reader.pages)
    except Exception:
        raise InvalidInputError("pdf", "not a readable PDF") from None
    taken: set[int] = set()
    for r in ranges:
        if not (isinstance(r.first, int) and isinstance(r.last, int)):
            raise InvalidInputError("ranges", "page numbers must be integers")
        if not 1 <= r.first <= r.last <= count:
            raise InvalidInputError(
                "ranges", f"pages {r.first}-{r.last} are outside 1-{count}", value=r.unit_id
            )
        pages = set(range(r.first, r.last + 1))
        if pages & taken:
            raise InvalidInputError("ranges", "page ranges overlap", value=r.unit_id)
        taken |= pages
    out: list[bytes] = []
    for r in ranges:
        writer = pypdf.PdfWriter()
        for n in range(r.first - 1, r.last):
            writer.add_page(reader.pages[n])
        buf = io.BytesIO()
        writer.write(buf)
        out.append(buf.getvalue())
    return out
