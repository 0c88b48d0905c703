"""Record kinds of notifications: outbox jobs and in-app notifications.

Neither kind holds content (no message or comment text, no attachments), so
neither has sealed fields: a job names its recipient, the firm, the event and
the link, an in-app notification the event and the client.

What decides who is notified and what the notice says is covered by a MAC
under the firm's notice key (``mac``, see :mod:`clientcomm.notifications.keys`):
:func:`job_mac` and :func:`inapp_mac` compute it when a record is written and
the readers check it before sending or listing; a record whose fields were
edited in the database fails alone (reason ``integrity``).

The layouts are those 0.1 wrote (``data`` then also carried ``"v": 1`` and, for
jobs, the ``event_id`` beside the ``parent`` column; both are ignored when read),
so existing rows decode unchanged; records written before 0.2 carry no ``mac``
(see :class:`~clientcomm.notifications.rules.NoticeKey`).
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from clientcomm.notifications.models import NotificationKind, RecipientRole
from clientcomm.notifications.rules import notice_mac
from clientcomm.records import REGISTRY, Kind, Meta, bound, meta_field, unbound

__all__ = [
    "INAPP",
    "INAPP_KIND",
    "JOB_KIND",
    "NOTIFY_JOB",
    "InAppRecord",
    "InAppStatus",
    "JobError",
    "JobRecipient",
    "JobStatus",
    "NotifyJob",
    "inapp_mac",
    "job_mac",
]

JOB_KIND = "notify.job"
INAPP_KIND = "notify.inapp"


class JobStatus(enum.StrEnum):
    """States of a notification job."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class InAppStatus(enum.StrEnum):
    """States of an in-app notification."""

    UNREAD = "unread"
    READ = "read"


@attrs.frozen
class JobRecipient:
    """Whom a job notifies. A recipient skipped for lack of a usable address
    (a ``failed`` job from the start) has only ``ref`` and ``role``."""

    ref: str
    role: RecipientRole
    name: str | None = attrs.field(default=None, repr=False)
    email: str | None = attrs.field(default=None, repr=False)
    language: str | None = None


@attrs.frozen
class JobError:
    """Why a job failed or will be retried.

    ``reason`` is e.g. ``no_address``, ``recipient_refused``, ``temporary``,
    ``max_attempts``, ``malformed``; ``code`` the SMTP reply code, if any;
    ``detail`` a short explanation (at most 300 characters).
    """

    reason: str
    code: int | None = None
    detail: str = ""


@attrs.frozen
class NotifyJob:
    """One e-mail notice in the outbox (or a recipient reported as skipped).

    Attributes:
        id: derived from (kind, event, cause, recipient): building twice gives
            the same id.
        event_id: the event the notice belongs to (a mailing, a conversation).
        kind: what happened.
        firm_name: the firm the notice comes from.
        to: the recipient.
        status: pending, sent or failed.
        created_at: when it was enqueued (the mail's ``Date``).
        due_at: when the next attempt is due (``None`` once sent or failed).
        cause_id, client_id, client_name, count, expires_at: the rest of the event.
        link: where the recipient looks (``None`` for skipped recipients).
        attempts: delivery attempts so far.
        error: why it failed (failed jobs); ``last_error``: the last temporary
            failure; ``previous_error``: the error before a manual retry.
        message_id: the ``Message-ID`` it was (last) sent with.
        sent_at, response: when it was sent (the delivery round's time) and
            the server's reply to the message data (code and text).
        failed_at: when it failed for good.
        mac: :func:`job_mac` under the firm's notice key (empty: written
            before 0.2).
        accepted_at: when the transport returned the server's acceptance
            (``None`` for jobs sent before it was recorded, or by a caller of
            :func:`~clientcomm.notifications.outbox.deliver_due` without a clock).
    """

    id: str
    event_id: str
    kind: NotificationKind
    firm_name: str
    to: JobRecipient
    created_at: datetime
    status: JobStatus = JobStatus.PENDING
    due_at: datetime | None = None
    cause_id: str | None = None
    client_id: str | None = None
    client_name: str | None = None
    count: int | None = None
    link: str | None = attrs.field(default=None, repr=False)
    attempts: int = 0
    error: JobError | None = None
    last_error: JobError | None = None
    previous_error: JobError | None = None
    message_id: str | None = None
    sent_at: datetime | None = None
    response: str | None = None
    failed_at: datetime | None = None
    mac: bytes = attrs.field(default=b"", repr=False)
    accepted_at: datetime | None = None
    expires_at: datetime | None = None
    meta: Meta = meta_field()


@attrs.frozen
class InAppRecord:
    """The stored form of an in-app notification of one staff member (see
    :class:`~clientcomm.notifications.inapp.InAppNotification`)."""

    id: str
    staff_id: str
    kind: NotificationKind
    event_id: str
    created_at: datetime
    status: InAppStatus = InAppStatus.UNREAD
    cause_id: str | None = None
    client_id: str | None = None
    client_name: str | None = None
    read_at: datetime | None = None
    mac: bytes = attrs.field(default=b"", repr=False)
    meta: Meta = meta_field()


def job_mac(key: bytes, job: NotifyJob) -> bytes:
    """The MAC of what decides a job's notice: its id (and so its
    ``Message-ID``), event, kind, the recipient (reference, role, name,
    address, language), the firm name, cause, client, client name, count and
    link. Attempts, status and errors are not covered (they decide only
    whether the same notice goes to the same address again)."""
    to = job.to
    return notice_mac(
        key,
        "notify-job",
        (
            job.id,
            job.event_id,
            job.kind.value,
            job.firm_name,
            to.ref,
            to.role.value,
            to.name,
            to.email,
            to.language,
            job.cause_id,
            job.client_id,
            job.client_name,
            None if job.count is None else str(job.count),
            job.link,
            # since sharing: only when set, so the MACs of earlier jobs stay valid
            *(() if job.expires_at is None else (job.expires_at.isoformat(),)),
        ),
    )


def inapp_mac(key: bytes, record: InAppRecord) -> bytes:
    """The MAC of what decides an in-app notification and what it shows: its
    id, staff member, kind, event, cause, client, client name and time."""
    return notice_mac(
        key,
        "notify-inapp",
        (
            record.id,
            record.staff_id,
            record.kind.value,
            record.event_id,
            record.cause_id,
            record.client_id,
            record.client_name,
            bound.stamp(record.created_at),
        ),
    )


_JOB_MAC = "mac: covered by the job's MAC under the firm's notice key"
_INAPP_MAC = "mac: covered by the record's MAC under the firm's notice key"


NOTIFY_JOB = REGISTRY.register(
    Kind(
        JOB_KIND,
        NotifyJob,
        "one e-mail notice in the outbox (or a recipient reported as skipped)",
        columns={
            "id": "id",
            "parent": "event_id",
            "status": "status",
            "due_at": "due_at",
            "created_at": "created_at",
        },
        meanings={
            "id": "hash of (kind, event, cause, recipient)",
            "parent": "the event (mailing, conversation, letter batch)",
            "status": "pending / sent / failed",
            "due_at": "the next attempt (retry backoff)",
        },
        status=JobStatus,
        client=lambda j: j.client_id,
        integrity={
            **{
                a: f"{_JOB_MAC} ({what})"
                for a, what in {
                    "id": "its Message-ID",
                    "event_id": "the event",
                    "kind": "what the notice says",
                    "firm_name": "the sender name",
                    "to": "whom it goes to: reference, role, name, address, language",
                    "cause_id": "the cause",
                    "client_id": "the client",
                    "client_name": "shown in the notice",
                    "count": "shown in the notice",
                    "link": "where the recipient is sent",
                    "expires_at": "shown in the notice (until when the documents wait)",
                }.items()
            },
            "mac": "mac: the MAC itself (a job without one is refused once the firm has a"
            " notice key; records before 0.2 have none)",
            **unbound(
                "delivery bookkeeping: decides only whether the same notice goes to the same"
                " address again (same Message-ID) or when",
                "status",
                "due_at",
                "created_at",
                "attempts",
                "error",
                "last_error",
                "previous_error",
                "message_id",
                "sent_at",
                "response",
                "failed_at",
                "accepted_at",
            ),
        },
        capability="notifications",
    )
)

INAPP = REGISTRY.register(
    Kind(
        INAPP_KIND,
        InAppRecord,
        "one in-app notification of a staff member",
        columns={
            "id": "id",
            "parent": "staff_id",
            "status": "status",
            "created_at": "created_at",
        },
        meanings={
            "id": "hash of (kind, event, cause, staff member)",
            "parent": "the staff member",
            "status": "unread / read",
        },
        status=InAppStatus,
        client=lambda r: r.client_id,
        integrity={
            **{
                a: f"{_INAPP_MAC} ({what})"
                for a, what in {
                    "id": "the record",
                    "staff_id": "whose it is",
                    "kind": "what it says",
                    "event_id": "the event",
                    "cause_id": "the cause",
                    "client_id": "the client",
                    "client_name": "shown",
                    "created_at": "shown",
                }.items()
            },
            "mac": "mac: the MAC itself (a record without one is refused once the firm has a"
            " notice key; records before 0.2 have none)",
            **unbound("read state: decides only whether it counts as unread", "status", "read_at"),
        },
        capability="notifications",
    )
)
