"""In-app notifications for staff ("eine Benachrichtigung in seinem Profil", seed 002).

Each one is stored as an :class:`~clientcomm.notifications.records.InAppRecord`
(record kind ``notify.inapp``) with ``parent`` = the staff member's id and status
``unread``/``read``, written in the same transaction as the event that caused it
(see :func:`clientcomm.notifications.outbox.enqueue`). Like everything else it
holds no message or comment text: only the kind, the event, the client and when.
Readers get the public value :class:`InAppNotification`.

The functions take a :class:`~clientcomm.records.RecordTx`; the caller (the
service layer) checks that the actor is the staff member concerned. A stored
record that does not decode is left out of listings (and logged), and
:func:`mark_all_read` marks it read, so it cannot keep a count up forever.

Each record carries a MAC under the firm's notice key
(:func:`~clientcomm.notifications.records.inapp_mac`, written by
:func:`~clientcomm.notifications.outbox.write_jobs`); :func:`list_inapp` with
the firm's key leaves out (and logs) a record whose staff member, event,
client or client name was edited in the database.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

import attrs

from clientcomm.errors import IntegrityError, InvalidInputError, NotFoundError
from clientcomm.notifications.models import NotificationEvent, NotificationKind
from clientcomm.notifications.records import (
    INAPP,
    INAPP_KIND,
    InAppRecord,
    InAppStatus,
    inapp_mac,
)
from clientcomm.notifications.rules import NoticeKey
from clientcomm.records import Meta, RecordTx
from clientcomm.storage.base import Record

__all__ = [
    "INAPP_KIND",
    "InAppNotification",
    "InAppRecord",
    "InAppStatus",
    "inapp_ok",
    "inapp_records",
    "list_inapp",
    "mark_all_read",
    "mark_read",
    "unread_count",
]

log = logging.getLogger("clientcomm.notifications")

_UNREAD = InAppStatus.UNREAD.value
_READ = InAppStatus.READ.value


@attrs.frozen
class InAppNotification:
    """One in-app notification of a staff member.

    Attributes:
        id: record id.
        staff_id: whose it is.
        kind: what happened.
        event_id, cause_id: the object (e.g. conversation) and the cause (comment).
        client_id, client_name: the client concerned, if any.
        created_at: when it was raised.
        read_at: when it was marked read, or ``None``.
        seq: ordering position (for paging with ``after_seq``).
    """

    id: str
    staff_id: str
    kind: NotificationKind
    event_id: str
    cause_id: str | None
    client_id: str | None
    client_name: str | None
    created_at: datetime
    read_at: datetime | None
    seq: int

    @property
    def unread(self) -> bool:
        return self.read_at is None

    @classmethod
    def of(cls, record: InAppRecord) -> InAppNotification:
        """The public value of a stored in-app record."""
        return cls(
            id=record.id,
            staff_id=record.staff_id,
            kind=record.kind,
            event_id=record.event_id,
            cause_id=record.cause_id,
            client_id=record.client_id,
            client_name=record.client_name,
            created_at=record.created_at,
            read_at=record.read_at,
            seq=record.meta.seq,
        )

    @classmethod
    def from_record(cls, record: Record | InAppRecord) -> InAppNotification:
        """Decode a ``notify.inapp`` record (a stored Record or its typed value).

        Raises:
            InvalidInputError: the record is of another kind or does not decode.
        """
        if isinstance(record, InAppRecord):
            return cls.of(record)
        if record.kind != INAPP_KIND or record.parent is None:
            raise InvalidInputError("record", "not an in-app notification", value=record.id)
        try:
            return cls.of(INAPP.decode(record))
        except IntegrityError:
            raise InvalidInputError(
                "record", "in-app notification does not decode", value=record.id
            ) from None


def _inapp_id(event: NotificationEvent, staff_id: str) -> str:
    raw = f"{event.kind}\x00{event.event_id}\x00{event.cause_id or ''}\x00{staff_id}"
    return "ia-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def inapp_ok(key: NoticeKey, record: InAppRecord) -> bool:
    """Whether ``record`` is as it was written (its MAC under ``key``)."""
    return key.ok(record.mac, inapp_mac(key.secret, record) if key.secret else None)


def inapp_records(
    event: NotificationEvent,
    staff_ids: Iterable[str],
    *,
    now: datetime,
    key: NoticeKey | None = None,
) -> list[InAppRecord]:
    """Build (not insert) one unread in-app record per staff member for ``event``.
    Ids are derived from the event and staff id, so building twice gives the same
    ids. Each record's ``meta.firm_id`` is the event's firm; with ``key`` (the
    firm's notice key) each is MACed (``write_jobs`` MACs them too).

    Raises:
        InvalidInputError: a naive ``now`` or an empty staff id.
    """
    if now.tzinfo is None:
        raise InvalidInputError("now", "must be timezone-aware")
    out: list[InAppRecord] = []
    for staff_id in dict.fromkeys(staff_ids):
        if not isinstance(staff_id, str) or not staff_id:
            raise InvalidInputError("staff_id", "must be a non-empty string")
        record = InAppRecord(
            id=_inapp_id(event, staff_id),
            staff_id=staff_id,
            kind=event.kind,
            event_id=event.event_id,
            created_at=now,
            cause_id=event.cause_id,
            client_id=event.client_id,
            client_name=event.client_name,
            meta=Meta(firm_id=event.firm_id),
        )
        if key is not None and key.secret is not None:
            record = attrs.evolve(record, mac=inapp_mac(key.secret, record))
        out.append(record)
    return out


async def list_inapp(
    tx: RecordTx,
    staff_id: str,
    *,
    unread_only: bool = False,
    limit: int = 50,
    before_seq: int = 0,
    key: NoticeKey | None = None,
) -> Sequence[InAppNotification]:
    """A staff member's in-app notifications, newest first; ``before_seq`` pages
    back (0: from the newest). Records that do not decode are left out (logged).

    With ``key`` (the firm's notice key, ``await app.notice_keys.get(firm_id,
    create=False)`` before the transaction) a record that does not match its
    MAC (edited in the database, or moved from another staff member) is left
    out too (logged); without it nothing is checked.

    Raises:
        InvalidInputError: ``limit`` outside 1..1000.
    """
    if not 1 <= limit <= 1000:
        raise InvalidInputError("limit", "must be between 1 and 1000")
    records = await tx.list(
        InAppRecord,
        parent=staff_id,
        status=_UNREAD if unread_only else None,
        after_seq=before_seq,
        limit=limit,
        descending=True,
        decode_errors="skip",
    )
    out: list[InAppNotification] = []
    for r in records:
        if key is not None and not inapp_ok(key, r):
            log.error("in-app notification %s does not match its MAC (edited?); left out", r.id)
            continue
        out.append(InAppNotification.of(r))
    return out


async def unread_count(tx: RecordTx, staff_id: str) -> int:
    """How many unread in-app notifications ``staff_id`` has."""
    return await tx.count(InAppRecord, parent=staff_id, status=_UNREAD)


def _read(record: InAppRecord, now: datetime) -> InAppRecord:
    return attrs.evolve(record, status=InAppStatus.READ, read_at=now)


async def mark_read(tx: RecordTx, staff_id: str, ids: Iterable[str], *, now: datetime) -> int:
    """Mark ``ids`` read; returns how many changed (already-read ones are left alone).

    Raises:
        NotFoundError: an id does not exist or belongs to another staff member
            (nothing is changed then).
        IntegrityError: a record does not decode.
        ConflictError: a record changed concurrently.
    """
    wanted = list(dict.fromkeys(ids))
    found = await tx.get_many(InAppRecord, wanted)
    for id_ in wanted:
        record = found.get(id_)
        if record is None or record.staff_id != staff_id:
            raise NotFoundError("in-app notification", id_)
    changed = [
        _read(record, now) for id_ in wanted if (record := found[id_]).status is InAppStatus.UNREAD
    ]
    if changed:
        await tx.update(changed)
    return len(changed)


async def mark_all_read(tx: RecordTx, staff_id: str, *, now: datetime) -> int:
    """Mark every unread notification of ``staff_id`` read; returns how many.
    A record that does not decode is marked read too (its status only).

    Raises:
        ConflictError: a record changed concurrently.
    """
    total = 0
    while True:
        batch = await tx.raw.list(INAPP_KIND, parent=staff_id, status=_UNREAD, limit=500)
        if not batch:
            return total
        good: list[InAppRecord] = []
        bad: list[Record] = []
        for record in batch:
            try:
                good.append(_read(INAPP.decode(record), now))
            except IntegrityError:
                log.error("in-app notification %s does not decode; marked read", record.id)
                bad.append(record.evolve(status=_READ))
        if good:
            await tx.update(good)
        if bad:
            await tx.raw.update(bad)
        total += len(batch)
