"""Postal selection of a serial-letter run, as pure rules (seed 003, steps 5-7).

The overview of a run lists one *letter line* per unit and contact: the unit's
document for one of its contacts, with the contact's portal registration and
contact preference. Who of them receives the document by post is decided here,
in three layers, in this order:

1. the **filter** (:class:`SendTo`, "Briefversand an"):

   * ``ALL``: every contact of the overview gets a letter;
   * ``BY_PREFERENCE``: a registered contact gets a letter only with the
     preference "letter" (preference "online": no letter); an unregistered
     contact always gets one (the preference counts for registered contacts
     only);
   * ``UNREGISTERED``: only contacts not registered in the portal, whatever
     their preference;

2. the **manual choice** per contact on top ("Individuelle Empfängerauswahl"):
   an included contact gets its letters although the filter says no, an
   excluded one gets none although the filter says yes;

3. **merge** ("Füge Briefe zusammen"), by part 1's
   :func:`~clientcomm.letters.merge.plan_letters` over
   :func:`letter_documents`: off, every selected document is one letter (with
   the general attachments); on, a contact's selected documents become one
   letter with the general attachments once.

Nothing here does I/O; the service feeds it the overview and stores the result.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence

import attrs

from clientcomm.directory.models import ContactPreference
from clientcomm.errors import InvalidInputError
from clientcomm.letters.models import LetterDocument, ValidatedPdf

__all__ = [
    "LetterLine",
    "Selection",
    "SendTo",
    "filter_wants_letter",
    "letter_documents",
    "selected_lines",
    "wants_letter",
]


class SendTo(enum.StrEnum):
    """The postal filter of a run ("Briefversand an")."""

    ALL = "all"
    BY_PREFERENCE = "by_preference"
    UNREGISTERED = "unregistered"


def _ids(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset((value,))
    return frozenset(value)


def _disjoint(
    instance: Selection, attribute: attrs.Attribute[frozenset[str]], value: object
) -> None:
    both = instance.include & instance.exclude
    if both:
        raise InvalidInputError(
            "exclude",
            "a contact cannot be both included and excluded",
            value=sorted(both),
        )


@attrs.frozen
class LetterLine:
    """One line of a run's overview: the document of ``unit_id`` for one
    contact of that unit."""

    unit_id: str
    contact_id: str
    registered: bool
    preference: ContactPreference


@attrs.frozen
class Selection:
    """A run's postal selection: the filter, the manual choices, merge.

    Raises:
        InvalidInputError: a contact both in ``include`` and ``exclude``
            (``field="exclude"``).
    """

    send_to: SendTo = SendTo.BY_PREFERENCE
    include: frozenset[str] = attrs.field(default=frozenset(), converter=_ids)
    exclude: frozenset[str] = attrs.field(default=frozenset(), converter=_ids, validator=_disjoint)
    merge: bool = False

    def digest(self) -> str:
        """A stable fingerprint of the selection (binds download links to the
        filter they were made for)."""
        parts = ["v1", self.send_to.value, sorted(self.include), sorted(self.exclude), self.merge]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def filter_wants_letter(send_to: SendTo, registered: bool, preference: ContactPreference) -> bool:
    """Whether the filter alone sends a contact a letter (layer 1)."""
    if send_to is SendTo.ALL:
        return True
    if send_to is SendTo.UNREGISTERED:
        return not registered
    if not registered:
        return True
    return preference is ContactPreference.LETTER


def wants_letter(line: LetterLine, selection: Selection) -> bool:
    """Whether ``line`` is sent by post: the filter, then the manual choice."""
    if line.contact_id in selection.exclude:
        return False
    if line.contact_id in selection.include:
        return True
    return filter_wants_letter(selection.send_to, line.registered, line.preference)


def selected_lines(lines: Sequence[LetterLine], selection: Selection) -> tuple[LetterLine, ...]:
    """The overview's lines sent by post, in overview order."""
    return tuple(line for line in lines if wants_letter(line, selection))


def letter_documents(
    lines: Sequence[LetterLine],
    selection: Selection,
    documents: Mapping[str, Sequence[ValidatedPdf]],
) -> list[LetterDocument]:
    """The documents sent by post under ``selection``, one
    :class:`~clientcomm.letters.models.LetterDocument` per selected line and
    document of its unit (``documents``: unit id -> its documents), in overview
    order: the input of part 1's :func:`~clientcomm.letters.merge.plan_letters`,
    which packs them one letter per line or, with ``selection.merge``, one per
    contact with the general attachments once.

    Raises:
        InvalidInputError: the same unit and contact twice in ``lines``
            (``field="lines"``).
    """
    seen: set[tuple[str, str]] = set()
    for line in lines:
        key = (line.unit_id, line.contact_id)
        if key in seen:
            raise InvalidInputError("lines", "a unit and contact appear twice", value=key)
        seen.add(key)
    out: list[LetterDocument] = []
    for line in selected_lines(lines, selection):
        for pdf in documents.get(line.unit_id, ()):
            out.append(LetterDocument(line.contact_id, pdf, label=line.unit_id))
    return out
