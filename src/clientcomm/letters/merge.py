"""One letter per contact (seed 003, step 7 "Füge Briefe zusammen"), pure.

Order, stable and documented:

1. letters follow the order in which their contact's **first** document appears
   in the input;
2. inside a letter, the contact's own documents come first, in input order;
3. then every general attachment **once**, in the order given;
4. each part is followed by its duplex padding blanks
   (:func:`clientcomm.letters.padding.blanks_after`).

With ``merge=False`` every document is a letter of its own (each with the
general attachments), in input order: what a contact with several units gets
without the merge option.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from clientcomm.directory.models import Contact
from clientcomm.errors import InvalidInputError
from clientcomm.letters.models import (
    LetterDocument,
    LetterPart,
    LetterPlan,
    PartKind,
    PrintOptions,
    ValidatedPdf,
)
from clientcomm.letters.padding import blanks_after

__all__ = ["plan_letters"]


def plan_letters(
    documents: Sequence[LetterDocument],
    attachments: Sequence[ValidatedPdf],
    contacts: Mapping[str, Contact] | Sequence[Contact],
    options: PrintOptions,
    *,
    merge: bool = True,
) -> tuple[LetterPlan, ...]:
    """The letters for ``documents`` plus the general ``attachments``.

    Raises:
        InvalidInputError: a document names a contact not in ``contacts``
            (``field="documents"``).
    """
    by_id = dict(contacts) if isinstance(contacts, Mapping) else {c.id: c for c in contacts}
    groups: dict[str, list[LetterDocument]] = {}
    singles: list[list[LetterDocument]] = []
    for doc in documents:
        if doc.contact_id not in by_id:
            raise InvalidInputError("documents", f"unknown contact {doc.contact_id!r}")
        if merge:
            groups.setdefault(doc.contact_id, []).append(doc)
        else:
            singles.append([doc])
    letters = list(groups.values()) if merge else singles
    return tuple(_letter(by_id[docs[0].contact_id], docs, attachments, options) for docs in letters)


def _letter(
    contact: Contact,
    docs: Sequence[LetterDocument],
    attachments: Sequence[ValidatedPdf],
    options: PrintOptions,
) -> LetterPlan:
    sources: list[tuple[PartKind, ValidatedPdf, str]] = [
        (PartKind.DOCUMENT, d.pdf, d.label or d.pdf.filename) for d in docs
    ]
    sources += [(PartKind.ATTACHMENT, a, a.filename) for a in attachments]
    blanks = blanks_after([pdf.page_sizes for _, pdf, _ in sources], options)
    parts = tuple(
        LetterPart(kind, pdf, label, n)
        for (kind, pdf, label), n in zip(sources, blanks, strict=True)
    )
    return LetterPlan(contact, parts)
