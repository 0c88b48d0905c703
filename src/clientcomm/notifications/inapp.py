"""In-app notifications for staff ("eine Benachrichtigung in seinem Profil", seed 002).

Each one is a :class:`~clientcomm.storage.base.Record` of kind ``notify.inapp``
with ``parent`` = the staff member's id and status ``unread``/``read``, written
in the same transaction as the event that caused it (see
:func:`clientcomm.notifications.outbox.enqueue`). Like everything else it holds no
message or comment text: only the kind, the event, the client and when.

The functions take a :class:`~clientcomm.storage.base.Transaction`; the caller
(the service layer) checks that the actor is the staff member concerned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import datetime

import attrs

from clientcomm.errors import InvalidInputError, NotFoundError
from clientcomm.notifications.models import NotificationEvent, NotificationKind
from clientcomm.storage.base import Record, Transaction

__all__ = [
    "INAPP_KIND",
    "InAppNotification",
    "inapp_records",
    "list_inapp",
    "mark_all_read",
    "mark_read",
    "unread_count",
]

INAPP_KIND = "notify.inapp"
_UNREAD = "unread"
_READ = "read"


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
    def from_record(cls, record: Record) -> InAppNotification:
        """Decode a ``notify.inapp`` record.

        Raises:
            InvalidInputError: the record is of another kind.
        """
        if record.kind != INAPP_KIND or record.parent is None:
            raise InvalidInputError("record", "not an in-app notification", value=record.id)
        data = record.data
        read_at = data.get("read_at")
        return cls(
            id=record.id,
            staff_id=record.parent,
            kind=NotificationKind(data["kind"]),
            event_id=str(data["event_id"]),
            cause_id=data.get("cause_id"),
            client_id=data.get("client_id"),
            client_name=data.get("client_name"),
            created_at=record.created_at,
            read_at=datetime.fromisoformat(read_at) if read_at else None,
            seq=record.seq,
        )


def _inapp_id(event: NotificationEvent, staff_id: str) -> str:
    raw = f"{event.kind}\x00{event.event_id}\x00{event.cause_id or ''}\x00{staff_id}"
    return "ia-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def inapp_records(
    event: NotificationEvent, staff_ids: Iterable[str], *, now: datetime
) -> list[Record]:
    """Build (not insert) one unread in-app record per staff member for ``event``.
    Ids are derived from the event and staff id, so building twice gives the same
    ids.

    Raises:
        InvalidInputError: a naive ``now`` or an empty staff id.
    """
    if now.tzinfo is None:
        raise InvalidInputError("now", "must be timezone-aware")
    out: list[Record] = []
    for staff_id in dict.fromkeys(staff_ids):
        if not isinstance(staff_id, str) or not staff_id:
            raise InvalidInputError("staff_id", "must be a non-empty string")
        out.append(
            Record(
                kind=INAPP_KIND,
                id=_inapp_id(event, staff_id),
                firm_id=event.firm_id,
                parent=staff_id,
                status=_UNREAD,
                data={
                    "v": 1,
                    "kind": event.kind.value,
                    "event_id": event.event_id,
                    "cause_id": event.cause_id,
                    "client_id": event.client_id,
                    "client_name": event.client_name,
                    "read_at": None,
                },
                created_at=now,
            )
        )
    return out


async def list_inapp(
    tx: Transaction,
    staff_id: str,
    *,
    unread_only: bool = False,
    limit: int = 50,
    before_seq: int = 0,
) -> Sequence[InAppNotification]:
    """A staff member's in-app notifications, newest first; ``before_seq`` pages
    back (0: from the newest).

    Raises:
        InvalidInputError: ``limit`` outside 1..1000.
    """
    if not 1 <= limit <= 1000:
        raise InvalidInputError("limit", "must be between 1 and 1000")
    records = await tx.list(
        INAPP_KIND,
        parent=staff_id,
        status=_UNREAD if unread_only else None,
        after_seq=before_seq,
        limit=limit,
        descending=True,
    )
    return [InAppNotification.from_record(r) for r in records]


async def unread_count(tx: Transaction, staff_id: str) -> int:
    """How many unread in-app notifications ``staff_id`` has."""
    return await tx.count(INAPP_KIND, parent=staff_id, status=_UNREAD)


async def mark_read(tx: Transaction, staff_id: str, ids: Iterable[str], *, now: datetime) -> int:
    """Mark ``ids`` read; returns how many changed (already-read ones are left alone).

    Raises:
        NotFoundError: an id does not exist or belongs to another staff member
            (nothing is changed then).
        ConflictError: a record changed concurrently.
    """
    wanted = list(dict.fromkeys(ids))
    found = await tx.get_many(INAPP_KIND, wanted)
    for id_ in wanted:
        record = found.get(id_)
        if record is None or record.parent != staff_id:
            raise NotFoundError("in-app notification", id_)
    changed = [
        record.evolve(status=_READ, data={**record.data, "read_at": now.isoformat()})
        for id_ in wanted
        if (record := found[id_]).status == _UNREAD
    ]
    if changed:
        await tx.update(changed)
    return len(changed)


async def mark_all_read(tx: Transaction, staff_id: str, *, now: datetime) -> int:
    """Mark every unread notification of ``staff_id`` read; returns how many.

    Raises:
        ConflictError: a record changed concurrently.
    """
    total = 0
    while True:
        batch = await tx.list(INAPP_KIND, parent=staff_id, status=_UNREAD, limit=500)
        if not batch:
            return total
        await tx.update(
            [r.evolve(status=_READ, data={**r.data, "read_at": now.isoformat()}) for r in batch]
        )
        total += len(batch)
