"""Record kinds of mass mailing: the mailing, and its frozen recipient pages."""

from __future__ import annotations

import enum
import json
from datetime import datetime
from typing import Any

import attrs

from clientcomm.attachments.models import AttachmentMode, StoredAttachment
from clientcomm.mailing.models import MailingState
from clientcomm.records import REGISTRY, Kind, Meta, SealedField, meta_field, unbound

__all__ = [
    "MAILING_KIND",
    "PAGE_KIND",
    "MailingRecord",
    "PageSegment",
    "PageState",
    "RecipientPage",
    "staging_owner",
]

MAILING_KIND = "mailing"
PAGE_KIND = "mailing.page"


def staging_owner(mailing_id: str) -> str:
    """The key-provider "client" whose key seals a mailing's staged content."""
    return f"mailing:{mailing_id}"


@attrs.frozen
class MailingRecord:
    """A submitted mailing: its staged (sealed) text and attachments, the
    frozen audience and the state of the whole."""

    id: str
    status: MailingState
    sealed_text: bytes = attrs.field(repr=False)
    sender: str
    audience: dict[str, Any]
    total: int
    created_at: datetime
    mode: AttachmentMode = AttachmentMode.PER_COPY
    attachments: tuple[StoredAttachment, ...] = ()
    notify: bool = True
    scheduled_at: datetime | None = None
    skipped: tuple[tuple[str, str], ...] = ()
    completed_at: datetime | None = None
    cancelled_at: datetime | None = None
    cancelled_by: str | None = None
    failure: str | None = None
    failed_at: datetime | None = None
    copy_secret: bytes = attrs.field(default=b"", repr=False)
    meta: Meta = meta_field()


class PageState(enum.StrEnum):
    """State of a recipient page."""

    QUEUED = "queued"
    DONE = "done"
    CANCELLED = "cancelled"


@attrs.frozen
class PageSegment:
    """One delivery step of a page: recipients before ``end`` were reached at
    ``at``; ``batch`` is the notification fan-out batch naming their copies."""

    end: int
    at: datetime
    batch: str | None = None


@attrs.frozen
class RecipientPage:
    """A page of a mailing's frozen recipient list with its delivery cursor:
    recipients before ``pos`` were reached (delivered, or failed with a reason
    in ``reasons``, keyed by position)."""

    id: str
    mailing_id: str
    status: PageState
    clients: tuple[str, ...]
    created_at: datetime
    due_at: datetime | None = None
    pos: int = 0
    delivered: int = 0
    failed: int = 0
    cancelled: int = 0
    reasons: dict[str, str] = attrs.field(factory=dict)
    segments: tuple[PageSegment, ...] = ()
    mac: bytes = attrs.field(default=b"", repr=False)
    meta: Meta = meta_field()

    @property
    def remaining(self) -> int:
        return len(self.clients) - self.pos

    @staticmethod
    def id_for(mailing_id: str, index: int) -> str:
        return f"{mailing_id}:{index:06d}"


def _encode_clients(clients: tuple[str, ...]) -> bytes:
    return json.dumps(list(clients), separators=(",", ":")).encode()


def _decode_clients(body: bytes) -> tuple[str, ...]:
    clients = json.loads(body or b"[]")
    if not isinstance(clients, list) or not set(map(type, clients)) <= {str}:  # JSON: exact types
        raise ValueError("a page's body must be a list of client ids")
    return tuple(clients)


def _page_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """0.1 pages: ``n`` stored beside the client list (derivable) and segments
    as positional ``[end, at, batch]`` lists."""
    data = dict(data)
    data.pop("n", None)
    data["segments"] = [{"end": s[0], "at": s[1], "batch": s[2]} for s in data.get("segments", ())]
    return data


MAILING = REGISTRY.register(
    Kind(
        MAILING_KIND,
        MailingRecord,
        "a submitted mass mailing (staged text and attachments, frozen audience)",
        columns={"id": "id", "status": "status", "body": "sealed_text", "created_at": "created_at"},
        meanings={"body": "the text, sealed for the mailing's staging key"},
        status=MailingState,
        sealed=(
            SealedField("sealed_text"),
            SealedField("attachments[].stream_key", "stream_key", blob="blob_id"),
        ),
        owner=lambda m: staging_owner(m.id),
        capability="mailing",
        integrity={
            "id": "aad: in the associated data of the staged text",
            "sealed_text": "sealed: the text, after the bound metadata and the page key",
            "sender": "bound: checked before a copy is made (the copies' author)",
            "mode": "bound: checked",
            "attachments": "bound: descriptors sealed, clear blob, mode and id checked",
            "notify": "bound: checked (decides the e-mail notices)",
            "scheduled_at": "bound: checked (the pages' send time is MACed)",
            "copy_secret": "bound: checked (the copy ids derive from it)",
            "status": "unbound: a completed or cancelled mailing's staging key is forgotten,"
            " so no status edit revives it; pages are claimed by their MACed send time",
            **unbound(
                "a report (the MACed pages decide who receives)",
                "audience",
                "total",
                "created_at",
                "skipped",
                "completed_at",
                "cancelled_at",
                "cancelled_by",
                "failure",
                "failed_at",
            ),
        },
    )
)

PAGE = REGISTRY.register(
    Kind(
        PAGE_KIND,
        RecipientPage,
        "a page of a mailing's frozen recipients with its delivery cursor",
        columns={
            "id": "id",
            "parent": "mailing_id",
            "status": "status",
            "due_at": "due_at",
            "body": "clients",
            "created_at": "created_at",
        },
        meanings={
            "id": "mailing id : page number",
            "parent": "the mailing",
            "body": "the page's client ids (JSON)",
            "due_at": "the scheduled send time",
        },
        status=PageState,
        version=2,
        upcasters={1: _page_v1_to_v2},
        body_codec=(_encode_clients, _decode_clients),
        capability="mailing",
        integrity={
            "id": "mac: under the mailing's page key (held only in its sealed value)",
            "mailing_id": "mac: a page moved to another mailing fails its MAC",
            "clients": "mac: a client id added, removed, reordered or moved fails the page alone",
            "due_at": "mac: the send time",
            "mac": "mac: the MAC itself",
            **unbound(
                "the delivery cursor: an edit can stall, skip or misreport this page's"
                " recipients, never deliver to anyone else, nor twice (copy ids are unique)",
                "status",
                "pos",
                "delivered",
                "failed",
                "cancelled",
                "reasons",
                "segments",
                "created_at",
            ),
        },
    )
)
