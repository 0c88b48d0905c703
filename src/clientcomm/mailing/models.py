"""Public values of mass mailing: states, receipts, progress, ledger rows, events."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import attrs

from clientcomm.directory.models import Client

__all__ = [
    "DeliveryEvent",
    "DeliveryHook",
    "LedgerEntry",
    "MailingPreview",
    "MailingProgress",
    "MailingReceipt",
    "MailingState",
    "PreviewCopy",
    "RecipientState",
]


class MailingState(enum.StrEnum):
    """State of a mailing. ``FAILED``: its staged content could not be opened
    (damaged); the recipients not reached by then failed with the mailing's
    :attr:`~MailingProgress.failure` reason, and the staged content is kept."""

    SCHEDULED = "scheduled"
    SENDING = "sending"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"


class RecipientState(enum.StrEnum):
    QUEUED = "queued"
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    FAILED = "failed"


_FINAL = (MailingState.COMPLETED, MailingState.CANCELLED, MailingState.FAILED)


@attrs.frozen
class PreviewCopy:
    """The copy one client would get: subject and text rendered for it."""

    client_id: str
    subject: str | None = attrs.field(repr=False)
    text: str = attrs.field(repr=False)


@attrs.frozen
class MailingPreview:
    """Who would receive: ``count`` and the clients, before sending; with a
    text, ``copy`` is the copy one of them would get."""

    count: int
    clients: tuple[Client, ...]
    skipped: tuple[tuple[str, str], ...]  # (client id, reason)
    copy: PreviewCopy | None = None


@attrs.frozen
class MailingReceipt:
    id: str
    total: int
    scheduled_at: datetime | None
    skipped: tuple[tuple[str, str], ...]


@attrs.frozen
class MailingProgress:
    """Progress of a mailing at one moment: the copies and, separately, the
    clients' e-mail notices.

    ``notifications_pending`` counts the notices not yet sent or failed: outbox
    jobs still pending (also those waiting for a retry) plus the clients of
    fan-out batches not yet expanded into jobs; ``notification_batches_pending``
    counts those batches. :attr:`done` is about the copies only,
    :attr:`notifications_done` about the notices only, :attr:`all_done` both.
    ``failure`` is the reason of a :attr:`MailingState.FAILED` mailing (e.g.
    ``"staged_text_damaged"``), else None.
    """

    mailing_id: str
    state: MailingState
    total: int
    delivered: int
    pending: int
    failed: int
    cancelled: int
    skipped: int
    notifications_sent: int = 0
    notifications_pending: int = 0
    notifications_failed: int = 0
    notification_batches_pending: int = 0
    failure: str | None = None

    @property
    def done(self) -> bool:
        """Every recipient reached, failed or cancelled: the mailing is
        completed, cancelled or failed and no copy is pending. E-mail notices
        may still be pending."""
        return self.state in _FINAL and not self.pending

    @property
    def notifications_done(self) -> bool:
        """No e-mail notice is pending now: none waits in the outbox (sent or
        failed) and no fan-out batch waits to be expanded. While copies are
        still pending (not :attr:`done`), more notices may follow."""
        return not self.notifications_pending and not self.notification_batches_pending

    @property
    def all_done(self) -> bool:
        """:attr:`done` and :attr:`notifications_done`: nothing of the mailing is
        left to do."""
        return self.done and self.notifications_done

    @property
    def fraction(self) -> float:
        return 1.0 if not self.total else (self.total - self.pending) / self.total


@attrs.frozen
class DeliveryEvent:
    """Published to hooks after a recipient's copy is committed (or skipped)."""

    firm_id: str
    mailing_id: str
    client_id: str
    state: RecipientState
    message_id: str | None
    at: datetime


@attrs.frozen
class LedgerEntry:
    """One row of the per-recipient delivery ledger."""

    mailing_id: str
    client_id: str
    state: str
    message_id: str | None
    delivered_at: str | None
    reason: str | None
    notifications_sent: int
    notifications_failed: int
    notifications_pending: int
    notification_errors: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["notification_errors"] = list(self.notification_errors)
        return d


DeliveryHook = Callable[[DeliveryEvent], Awaitable[None] | None]
