"""Record kinds of notifications: outbox jobs and in-app notifications.

Neither kind holds content (no message or comment text, no attachments), so
neither has sealed fields: a job names its recipient, the firm, the event and
the link, an in-app notification the event and the client.

The layouts are those 0.1 wrote (``data`` then also carried ``"v": 1`` and, for
jobs, the ``event_id`` beside the ``parent`` column; both are ignored when read),
so existing rows decode unchanged.
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from clientcomm.notifications.models import NotificationKind, RecipientRole
from clientcomm.records import REGISTRY, Kind, Meta, meta_field

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
        cause_id, client_id, client_name, count: the rest of the event.
        link: where the recipient looks (``None`` for skipped recipients).
        attempts: delivery attempts so far.
        error: why it failed (failed jobs); ``last_error``: the last temporary
            failure; ``previous_error``: the error before a manual retry.
        message_id: the ``Message-ID`` it was (last) sent with.
        sent_at, response: when it was sent (the delivery round's time) and
            the server's reply to the message data (code and text).
        failed_at: when it failed for good.
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
    accepted_at: datetime | None = None
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
    meta: Meta = meta_field()


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
            "*": "unbound: OPEN - a content-free e-mail notice: address, names and link"
            " are not yet authenticated"
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
            "*": "unbound: OPEN - a staff member's in-app notice (client name, no content)"
            " is not yet authenticated"
        },
        capability="notifications",
    )
)
