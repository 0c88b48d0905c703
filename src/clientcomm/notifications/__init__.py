"""E-mail notifications: who is notified, what they get, and how it is delivered.

* :mod:`~clientcomm.notifications.rules` - pure "who is notified" rules.
* :mod:`~clientcomm.notifications.models` - notification values (no content fields).
* :mod:`~clientcomm.notifications.links` - host-supplied link templates.
* :mod:`~clientcomm.notifications.templates` - German/English text+HTML templates.
* :mod:`~clientcomm.notifications.compose` - fast, strict MIME construction.
* :mod:`~clientcomm.notifications.outbox` - durable jobs, delivery step, worker loop.
* :mod:`~clientcomm.notifications.inapp` - in-app notifications for staff.
* :mod:`~clientcomm.notifications.fanout` - one batch per event, expanded into jobs.
* :mod:`~clientcomm.notifications.records` - record kinds (``notify.job``, ``notify.inapp``).
* :mod:`~clientcomm.notifications.keys` - the per-firm notice MAC key (``notify.key``).
* :mod:`~clientcomm.notifications.steps` - ``notifications.expand`` and ``notifications.deliver``.
The transports that carry the e-mails are the seam package :mod:`clientcomm.mail`.

See ``docs/notifications.md``.
"""

from __future__ import annotations

from clientcomm.notifications.fanout import (
    FANOUT_KIND,
    FanoutBatch,
    FanoutStatus,
    expand_due,
    fanout_batch,
)
from clientcomm.notifications.inapp import (
    InAppNotification,
    list_inapp,
    mark_all_read,
    mark_read,
    unread_count,
)
from clientcomm.notifications.keys import NOTICE_KEY_KIND, NoticeKeys
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.models import (
    Notification,
    NotificationEvent,
    NotificationKind,
    Recipient,
    RecipientPlan,
    RecipientRole,
    SkippedRecipient,
    SkipReason,
)
from clientcomm.notifications.outbox import (
    DeliveryFailure,
    DeliveryReport,
    DeliveryStatus,
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
    write_jobs,
)
from clientcomm.notifications.records import (
    INAPP_KIND,
    JOB_KIND,
    InAppRecord,
    InAppStatus,
    JobError,
    JobRecipient,
    JobStatus,
    NotifyJob,
)
from clientcomm.notifications.rules import (
    NoticeKey,
    admin_recipients,
    client_contact_recipients,
    comment_recipients,
    letter_download_recipients,
    office_recipient,
    staff_recipient,
)
from clientcomm.notifications.templates import RenderedNotification, TemplateSet

__all__ = [
    "FANOUT_KIND",
    "INAPP_KIND",
    "JOB_KIND",
    "NOTICE_KEY_KIND",
    "DeliveryFailure",
    "DeliveryReport",
    "DeliveryStatus",
    "FanoutBatch",
    "FanoutStatus",
    "InAppNotification",
    "InAppRecord",
    "InAppStatus",
    "JobError",
    "JobRecipient",
    "JobStatus",
    "LinkTemplates",
    "MailSettings",
    "NoticeKey",
    "NoticeKeys",
    "Notification",
    "NotificationBatch",
    "NotificationComposer",
    "NotificationEvent",
    "NotificationKind",
    "NotifyJob",
    "Recipient",
    "RecipientPlan",
    "RecipientRole",
    "RenderedNotification",
    "RetryPolicy",
    "SkipReason",
    "SkippedRecipient",
    "TemplateSet",
    "admin_recipients",
    "client_contact_recipients",
    "comment_recipients",
    "deliver_due",
    "delivery_status",
    "enqueue",
    "expand_due",
    "fanout_batch",
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
    "write_jobs",
]
