"""Public values of a serial-letter run (seed 003): what the host shows.

A run belongs to a firm and a **property** (Liegenschaft): the host maps it to
a :class:`~clientcomm.directory.models.ClientGroup`, whose clients are the
run's **units** (each with its own portal); the unit's contacts (owners,
tenants) are its :class:`~clientcomm.directory.models.Contact` entries. A
person who is a contact of several units is the *same contact id* in each
(the Directory's contacts are per client; the host gives them the same id, as
merge groups letters by contact id).
"""

from __future__ import annotations

from datetime import datetime

import attrs

from clientcomm.directory.models import ContactPreference
from clientcomm.letters.run_records import DocRole, DownloadStatus, RunState
from clientcomm.letters.selection import Selection

__all__ = [
    "DocumentInfo",
    "DownloadView",
    "LetterState",
    "OrderView",
    "OverviewLine",
    "PageRange",
    "RunView",
]


@attrs.frozen
class PageRange:
    """Pages ``first`` .. ``last`` (1-based, inclusive) of an upload are the
    document of ``unit_id`` (of type ``doc_type``, e.g. "Abrechnung")."""

    unit_id: str
    first: int
    last: int
    doc_type: str = "document"


@attrs.frozen
class DocumentInfo:
    """One document of a unit, or a general attachment (``unit_id`` None)."""

    id: str
    unit_id: str | None
    role: DocRole
    doc_type: str
    filename: str
    pages: int
    sha256: str


@attrs.frozen
class OverviewLine:
    """One letter of the overview: a unit's document(s) for one of its contacts,
    with the contact's portal registration and preference, and whether the
    run's current selection sends it by post."""

    unit_id: str
    unit_name: str
    contact_id: str
    contact_name: str
    registered: bool
    preference: ContactPreference
    documents: tuple[DocumentInfo, ...]
    by_post: bool


@attrs.frozen
class LetterState:
    """One ordered letter as the provider last reported it."""

    letter_id: str
    contact_id: str
    state: str
    tracking_id: str | None = None
    detail: str = ""


@attrs.frozen
class OrderView:
    """The run's postal order (batch) and its letters."""

    batch_id: str
    provider_ref: str
    state: str  # "ordered" / "cancelled"
    letters: tuple[LetterState, ...]
    ordered_at: datetime | None = None


@attrs.frozen
class RunView:
    """A run as the host shows it."""

    id: str
    firm_id: str
    property_id: str
    title: str
    state: RunState
    unit_ids: tuple[str, ...]
    selection: Selection
    colour: bool
    duplex: bool
    duplex_optimised: bool
    registered: bool
    released_units: tuple[str, ...]
    order: OrderView | None
    created_by: str
    created_at: datetime


@attrs.frozen
class DownloadView:
    """A requested PDF/A download."""

    id: str
    run_id: str
    status: DownloadStatus
    filter_digest: str
    letters: int
    recipients: tuple[str, ...]
    error: str | None = None
