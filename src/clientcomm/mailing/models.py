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
    "RecipientState",
]


class MailingState(enum.StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class RecipientState(enum.StrEnum):
    QUEUED = "queued"
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    FAILED = "failed"


@attrs.frozen
class MailingPreview:
    """Who would receive: ``count`` and the clients, before sending."""

    count: int
    clients: tuple[Client, ...]
    skipped: tuple[tuple[str, str], ...]  # (client id, reason)


@attrs.frozen
class MailingReceipt:
    id: str
    total: int
    scheduled_at: datetime | None
    skipped: tuple[tuple[str, str], ...]


@attrs.frozen
class MailingProgress:
    """Progress of a mailing at one moment."""

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

    @property
    def done(self) -> bool:
        return self.state in (MailingState.COMPLETED, MailingState.CANCELLED) and not self.pending

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
