"""Pure rules of portal sharing (seed 001): who may share, to which client,
what a share's sealed value binds, who may end it, when it expires.

No I/O: the service reads the facts (staff, case file, contacts, records)
and asks these functions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from clientcomm.crypto.context import SealContext
from clientcomm.directory.models import CaseFile, Contact, Staff
from clientcomm.errors import ConflictError, IntegrityError, InvalidInputError
from clientcomm.records import bound
from clientcomm.rules.text import check_line
from clientcomm.sharing.models import PlaceKind, ShareOrigin
from clientcomm.sharing.records import (
    MESSAGE_KIND,
    PLACE_KIND,
    SHARE_KIND,
    PlaceRecord,
    PortalMessageRecord,
    ShareRecord,
    ShareStatus,
)

__all__ = [
    "MAX_PLACE_NAME",
    "check_expiry",
    "check_place_name",
    "choose_client",
    "end_refusal",
    "message_authenticated",
    "message_context",
    "message_meta",
    "place_authenticated",
    "place_context",
    "place_kind_name",
    "place_meta",
    "portal_clients",
    "reminder_due",
    "share_authenticated",
    "share_context",
    "share_meta",
    "sharer_refusal",
]

MAX_PLACE_NAME = 200


def sharer_refusal(staff: Staff, case_file: CaseFile) -> str | None:
    """Seed 001, "Sie sind entweder Sachbearbeiter oder Assistenz der Akte":
    why ``staff`` may not share from ``case_file`` (None: may). The portal
    permission and the access to the file's clients are the policy's actions
    (``share.create``); this is the case-file part, for every role."""
    if staff.id == case_file.handler_id or staff.id in case_file.assistant_ids:
        return None
    return (
        f"staff {staff.id!r} is neither the handler nor an assistant of case file {case_file.id!r}"
    )


def portal_clients(case_file: CaseFile, contacts: Mapping[str, Sequence[Contact]]) -> list[str]:
    """The clients of ``case_file`` with portal access: those with at least one
    registered contact (``Contact.registered``), in the file's order."""
    return [c for c in case_file.clients if any(k.registered for k in contacts.get(c, ()))]


def choose_client(case_file: CaseFile, with_access: Iterable[str], client_id: str | None) -> str:
    """Seed 001, "Wählen Sie einen Mandanten aus, sofern es mehrere Mandanten mit
    Zugriff auf das Mandanten-Portal gibt": the client a share goes to.

    Raises:
        InvalidInputError (``field="client_id"``): none named although several
            clients of the file have portal access; the named one is not a
            client of the file, or has no portal access; no client of the file
            has portal access.
    """
    access = list(with_access)
    if client_id is None:
        if len(access) == 1:
            return access[0]
        if not access:
            raise InvalidInputError(
                "client_id", "no client of the case file has portal access", value=case_file.id
            )
        raise InvalidInputError(
            "client_id",
            f"required: {len(access)} clients of the case file have portal access",
            value=case_file.id,
        )
    if not case_file.has_client(client_id):
        raise InvalidInputError("client_id", "is not a client of the case file", value=client_id)
    if client_id not in access:
        raise InvalidInputError("client_id", "has no portal access", value=client_id)
    return client_id


def check_place_name(name: object, field: str = "name") -> str:
    """A folder's or channel's name: one non-empty line of at most 200 characters."""
    return check_line(name, field, max_length=MAX_PLACE_NAME, required=True).strip()


def check_expiry(expires_at: object, now: datetime) -> datetime | None:
    """An optional expiry: timezone-aware and in the future.

    Raises:
        InvalidInputError: otherwise (``field="expires_at"``).
    """
    if expires_at is None:
        return None
    if not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
        raise InvalidInputError("expires_at", "must be a timezone-aware datetime")
    if expires_at <= now:
        raise InvalidInputError("expires_at", "must be in the future", value=expires_at.isoformat())
    return expires_at


def reminder_due(
    expires_at: datetime | None, before: timedelta | None, now: datetime
) -> datetime | None:
    """When the sharer is reminded of an expiry: ``before`` ahead of it, or
    None (no expiry, no reminder configured, or that time has passed)."""
    if expires_at is None or before is None:
        return None
    at = expires_at - before
    return at if at > now else None


def end_refusal(share: ShareRecord, staff_id: str, *, may_end_any: bool) -> None:
    """Seed 001, "Freigabe beenden": only documents shared without a message,
    only by who shared them (or staff allowed ``share.end_any``).

    Raises:
        ConflictError: shared with a message, an upload of the client, or ended already.
        PermissionDeniedError: shared by someone else.
    """
    from clientcomm.errors import PermissionDeniedError

    if share.message_id is not None:
        raise ConflictError(
            "a document shared with a message cannot be unshared: the message holds it"
            " (only documents shared without a message, from the documents tab, can be)",
            share_id=share.id,
        )
    if share.origin is not ShareOrigin.FIRM:
        raise ConflictError("a client's upload is not a share of the firm", share_id=share.id)
    if share.status is ShareStatus.ENDED:
        raise ConflictError("the share has ended already", share_id=share.id)
    if share.shared_by != staff_id and not may_end_any:
        raise PermissionDeniedError(
            "only the staff member who shared a document may end its share",
            actor=staff_id,
            action="share.end",
        )


# -- sealed values and what they bind ---------------------------------------------------
def place_context(firm_id: str, r: PlaceRecord) -> SealContext:
    return SealContext(firm_id, r.client_id, PLACE_KIND, r.id, "name")


def place_meta(r: PlaceRecord) -> dict[str, Any]:
    return {
        "case_id": r.case_id,
        "kind": r.kind.value,
        "created_at": bound.stamp(r.created_at),
        "created_by": r.created_by,
    }


def place_authenticated(r: PlaceRecord, plain: bytes) -> str:
    """The name of ``r`` from its opened value, every clear value checked.

    Raises:
        IntegrityError: edited or moved.
    """
    meta, content = bound.unpack(plain, what=f"place {r.id}")
    if meta is None:
        raise IntegrityError(f"place {r.id}: no bound metadata", id=r.id)
    for key, value in place_meta(r).items():
        bound.check_equal(f"place {r.id}", key, value, meta.get(key), id=r.id)
    try:
        return content.decode()
    except UnicodeDecodeError:
        raise IntegrityError(f"place {r.id}: name does not decode", id=r.id) from None


def share_context(firm_id: str, r: ShareRecord) -> SealContext:
    return SealContext(firm_id, r.client_id, SHARE_KIND, r.id, "descriptor")


def share_meta(r: ShareRecord) -> dict[str, Any]:
    return {
        "location_id": r.location_id,
        "status": r.status.value,
        "shared_at": bound.stamp(r.shared_at),
        "case_id": r.case_id,
        "origin": r.origin.value,
        "shared_by": r.shared_by,
        "document_id": r.document_id,
        "message_id": r.message_id,
        "expires_at": bound.stamp(r.expires_at),
        "ended_at": bound.stamp(r.ended_at),
        "ended_by": r.ended_by,
        "attachments": [a.bound() for a in r.attachments],
    }


def share_authenticated(r: ShareRecord, plain: bytes) -> ShareRecord:
    """``r`` with its attachment descriptor from the opened value, every clear
    value checked against the sealed one.

    Raises:
        IntegrityError: edited or moved.
    """
    meta, _ = bound.unpack(plain, what=f"share {r.id}")
    if meta is None:
        raise IntegrityError(f"share {r.id}: no bound metadata", id=r.id)
    what = f"share {r.id}"
    clear = share_meta(r)
    sealed_atts = meta.get("attachments")
    if (
        not isinstance(sealed_atts, list)
        or len(sealed_atts) != len(r.attachments)
        or len(r.attachments) != 1
    ):
        raise IntegrityError(f"{what}: attachment does not match the sealed one", id=r.id)
    for key, value in clear.items():
        if key != "attachments":
            bound.check_equal(what, key, value, meta.get(key), id=r.id)
    attachments = tuple(a.authenticated(b) for a, b in zip(r.attachments, sealed_atts, strict=True))
    return attrs.evolve(r, attachments=attachments)


def message_context(firm_id: str, r: PortalMessageRecord) -> SealContext:
    return SealContext(firm_id, r.client_id, MESSAGE_KIND, r.id, "text")


def message_meta(r: PortalMessageRecord) -> dict[str, Any]:
    return {
        "channel_id": r.channel_id,
        "unread_for": r.unread_for.value,
        "sent_at": bound.stamp(r.sent_at),
        "author": r.author.value,
        "author_id": r.author_id,
        "reply_to": r.reply_to,
        "share_ids": list(r.share_ids),
    }


def message_authenticated(r: PortalMessageRecord, plain: bytes) -> bytes:
    """The body of ``r`` (:func:`~clientcomm.messages.rules.encode_body`), every
    clear value checked.

    Raises:
        IntegrityError: edited or moved.
    """
    meta, content = bound.unpack(plain, what=f"portal message {r.id}")
    if meta is None:
        raise IntegrityError(f"portal message {r.id}: no bound metadata", id=r.id)
    for key, value in message_meta(r).items():
        bound.check_equal(f"portal message {r.id}", key, value, meta.get(key), id=r.id)
    return content


def place_kind_name(kind: PlaceKind) -> str:
    return "folder" if kind is PlaceKind.FOLDER else "channel"
