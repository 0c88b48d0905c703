"""Mass mailing (seed 000): one message to many clients, each getting its own
encrypted copy in its own chat, sent in the background.

* :mod:`~clientcomm.mailing.models` - public values (states, progress, ledger rows);
* :mod:`~clientcomm.mailing.records` - record kinds (``mailing``, ``mailing.page``);
* :mod:`~clientcomm.mailing.rules` - copy ids, paging and cursor rules (pure);
* :mod:`~clientcomm.mailing.personalise` - placeholders, rendered per copy;
* :mod:`~clientcomm.mailing.service` - :class:`MailingService`, the host API;
* :mod:`~clientcomm.mailing.ledger` - the per-recipient ledger and its exports;
* :mod:`~clientcomm.mailing.steps` - the ``mailing.fanout`` background step.

Who may mail is the access policy's ``mailing.*`` actions
(:mod:`clientcomm.rules.access`); who receives is
:func:`clientcomm.rules.audience.resolve_audience`.
"""

from __future__ import annotations

from clientcomm.mailing.models import (
    DeliveryEvent,
    DeliveryHook,
    LedgerEntry,
    MailingPreview,
    MailingProgress,
    MailingReceipt,
    MailingState,
    PreviewCopy,
    RecipientState,
)
from clientcomm.mailing.personalise import (
    BUILTIN_FIELDS,
    ClientFields,
    CopyTemplate,
    StaticClientFields,
    Template,
    parse_template,
)
from clientcomm.mailing.records import (
    MAILING_KIND,
    PAGE_KIND,
    MailingRecord,
    PageSegment,
    PageState,
    RecipientPage,
    staging_owner,
)
from clientcomm.mailing.rules import copy_message_id
from clientcomm.mailing.service import MailingService

__all__ = [
    "BUILTIN_FIELDS",
    "MAILING_KIND",
    "PAGE_KIND",
    "ClientFields",
    "CopyTemplate",
    "DeliveryEvent",
    "DeliveryHook",
    "LedgerEntry",
    "MailingPreview",
    "MailingProgress",
    "MailingReceipt",
    "MailingRecord",
    "MailingService",
    "MailingState",
    "PageSegment",
    "PageState",
    "PreviewCopy",
    "RecipientPage",
    "RecipientState",
    "StaticClientFields",
    "Template",
    "copy_message_id",
    "parse_template",
    "staging_owner",
]
