"""Duplex padding (seed 003, step 9), as pure functions.

With ``duplex_optimised`` a blank page is inserted after every document with an
odd page count, so the next document never starts on the back of the previous
one's last sheet; the blank page has the size of the page before it. Without it
(simplex, or duplex not optimised) nothing is inserted. Because the last
document of a letter is padded too, an optimised duplex letter always has an
even page count: the next letter in a print file starts on a fresh sheet.

:func:`page_plan` is what the PDF layer (:mod:`clientcomm.letters.printfile`)
applies, page by page.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from clientcomm.errors import InvalidInputError
from clientcomm.letters.models import PageSize, PrintOptions

__all__ = ["Blank", "SourcePage", "blanks_after", "page_plan"]


@attrs.frozen
class SourcePage:
    """Page ``page`` (0-based) of document ``document`` (0-based)."""

    document: int
    page: int


@attrs.frozen
class Blank:
    """An inserted blank page of ``size``."""

    size: PageSize


def blanks_after(documents: Sequence[Sequence[PageSize]], options: PrintOptions) -> tuple[int, ...]:
    """How many blank pages follow each document (0 or 1).

    Raises:
        InvalidInputError: a document without pages (``field="documents"``).
    """
    for i, pages in enumerate(documents):
        if not pages:
            raise InvalidInputError("documents", f"document {i} has no pages")
    if not options.duplex_optimised:
        return tuple(0 for _ in documents)
    return tuple(len(pages) % 2 for pages in documents)


def page_plan(
    documents: Sequence[Sequence[PageSize]], options: PrintOptions
) -> tuple[SourcePage | Blank, ...]:
    """Every page of the letter in order: the documents' pages, each document
    followed by its blanks (sized like the page before them)."""
    out: list[SourcePage | Blank] = []
    for d, (pages, blanks) in enumerate(
        zip(documents, blanks_after(documents, options), strict=True)
    ):
        out.extend(SourcePage(d, p) for p in range(len(pages)))
        out.extend(Blank(pages[-1]) for _ in range(blanks))
    return tuple(out)
