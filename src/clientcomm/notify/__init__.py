"""E-mail notifications: who is notified, what they get, and how it is delivered.

* :mod:`~clientcomm.notify.rules` - pure "who is notified" rules.
* :mod:`~clientcomm.notify.models` - notification values (no content fields).
* :mod:`~clientcomm.notify.links` - host-supplied link templates.
* :mod:`~clientcomm.notify.templates` - German/English text+HTML templates.
* :mod:`~clientcomm.notify.compose` - fast, strict MIME construction.
* :mod:`~clientcomm.notify.outbox` - durable jobs, delivery step, worker loop.
* :mod:`~clientcomm.notify.inapp` - in-app notifications for staff.
* :mod:`~clientcomm.notify.transport` - the MailTransport port;
  :mod:`~clientcomm.notify.memory` and :mod:`~clientcomm.notify.smtp` backends.

See ``docs/notifications.md``.
"""

from __future__ import annotations

from clientcomm.notify.addresses import EmailAddress, check_header_text, validate_address
from clientcomm.notify.inapp import (
    InAppNotification,
    list_inapp,
    mark_all_read,
    mark_read,
    unread_count,
)
from clientcomm.notify.links import LinkTemplates
from clientcomm.notify.memory import MemoryTransport
from clientcomm.notify.models import (
    Notification,
    NotificationEvent,
    NotificationKind,
    Recipient,
    RecipientPlan,
    RecipientRole,
    SkippedRecipient,
    SkipReason,
)
from clientcomm.notify.outbox import (
    DeliveryFailure,
    DeliveryReport,
    DeliveryStatus,
    JobStatus,
    MailSettings,
    NotificationBatch,
    NotificationComposer,
    RetryPolicy,
    deliver_due,
    delivery_status,
    enqueue,
    notification_jobs,
    prepare,
    retry_failed,
    run_worker,
)
from clientcomm.notify.rules import (
    admin_recipients,
    client_contact_recipients,
    comment_recipients,
    letter_download_recipients,
    office_recipient,
    staff_recipient,
)
from clientcomm.notify.smtp import SMTPConfig, SMTPTransport, TLSMode
from clientcomm.notify.templates import RenderedNotification, TemplateSet
from clientcomm.notify.transport import MailTransport, OutgoingMail, SendResult

__all__ = [
    "DeliveryFailure",
    "DeliveryReport",
    "DeliveryStatus",
    "EmailAddress",
    "InAppNotification",
    "JobStatus",
    "LinkTemplates",
    "MailSettings",
    "MailTransport",
    "MemoryTransport",
    "Notification",
    "NotificationBatch",
    "NotificationComposer",
    "NotificationEvent",
    "NotificationKind",
    "OutgoingMail",
    "Recipient",
    "RecipientPlan",
    "RecipientRole",
    "RenderedNotification",
    "RetryPolicy",
    "SMTPConfig",
    "SMTPTransport",
    "SendResult",
    "SkipReason",
    "SkippedRecipient",
    "TLSMode",
    "TemplateSet",
    "admin_recipients",
    "check_header_text",
    "client_contact_recipients",
    "comment_recipients",
    "deliver_due",
    "delivery_status",
    "enqueue",
    "letter_download_recipients",
    "list_inapp",
    "mark_all_read",
    "mark_read",
    "notification_jobs",
    "office_recipient",
    "prepare",
    "retry_failed",
    "run_worker",
    "staff_recipient",
    "unread_count",
    "validate_address",
]
