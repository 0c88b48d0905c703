"""Public values of conversations (seed 002): states, whose turn, what staff
and clients are shown, and the host's settings."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import attrs

from clientcomm.attachments.models import AttachmentInfo
from clientcomm.errors import ConfigurationError
from clientcomm.rules.readstate import Author

__all__ = [
    "ClientConversation",
    "Comment",
    "ConversationPage",
    "ConversationSettings",
    "ConversationStatus",
    "EscalationPolicy",
    "StaffConversation",
    "Turn",
]

T = TypeVar("T")


class ConversationStatus(enum.StrEnum):
    """A conversation's state (seed 002: "aufmerksam", "Beantwortet"; plus open)."""

    OPEN = "open"  # waiting for whoever's turn it is
    NEEDS_ATTENTION = "needs_attention"  # "aufmerksam": a reply of the client is required
    ANSWERED = "answered"  # "Beantwortet": the request is closed


class Turn(enum.StrEnum):
    """Whose turn it is, derived from who wrote last: the client wrote last,
    so it waits on the firm, and the other way round."""

    FIRM = "firm"
    CLIENT = "client"


@attrs.frozen
class EscalationPolicy:
    """Re-notify a conversation that waits on the firm too long: its assignee
    after ``assignee_after``, then every administrator after ``admins_after``
    (both counted from when it began to wait on the firm), each once.

    Raises:
        ConfigurationError: a delay that is not positive, or ``admins_after``
            not later than ``assignee_after``.
    """

    assignee_after: timedelta
    admins_after: timedelta

    def __attrs_post_init__(self) -> None:
        for name in ("assignee_after", "admins_after"):
            value = getattr(self, name)
            if not isinstance(value, timedelta) or value <= timedelta(0):
                raise ConfigurationError(f"escalation {name} must be a positive timedelta")
        if self.admins_after <= self.assignee_after:
            raise ConfigurationError("escalation admins_after must be later than assignee_after")


@attrs.frozen
class ConversationSettings:
    """The host's settings for conversations.

    Attributes:
        default_assignee: the staff id a conversation a client starts is
            assigned to (an active administrator who reaches the client; else
            it stays unassigned and only the office address hears of it).
        reopen_on_client_comment: a client comment on an answered
            conversation reopens it (default), or leaves it answered.
        escalation: re-notify conversations waiting on the firm (off: None).
    """

    default_assignee: str | None = None
    reopen_on_client_comment: bool = True
    escalation: EscalationPolicy | None = None


@attrs.frozen
class Comment:
    """One comment of a conversation as its reader sees it (the first message
    is the first comment)."""

    id: str
    conversation_id: str
    author: Author
    author_id: str
    text: str = attrs.field(repr=False)
    created_at: datetime
    attachments: tuple[AttachmentInfo, ...]
    number: int


@attrs.frozen
class StaffConversation:
    """A conversation as staff see it.

    ``turn`` and ``turn_since``: who is to write next and since when (a
    conversation waiting on the firm since ``turn_since``). ``unread``: the
    client's comments this staff member has not read yet.
    """

    id: str
    client_id: str
    subject: str = attrs.field(repr=False)
    status: ConversationStatus
    assignee_id: str | None
    notify_admins: bool
    turn: Turn
    turn_since: datetime
    last_activity_at: datetime
    created_at: datetime
    created_by: str
    status_changed_at: datetime
    status_changed_by: str
    comments: int
    unread: int


@attrs.frozen
class ClientConversation:
    """A conversation as its client sees it (no assignee, no staff flags)."""

    id: str
    subject: str = attrs.field(repr=False)
    status: ConversationStatus
    from_firm_last: bool
    last_activity_at: datetime
    created_at: datetime
    comments: int
    unread: int


class ConversationPage(list[T]):
    """One page of a list, newest activity first: a plain ``list``, plus
    ``next_cursor`` (pass it as ``cursor`` for the next page; ``None``: the
    last page) and ``unreadable``: the ids of conversations left out because
    they do not open (tampered with, damaged, a forgotten key), each logged."""

    next_cursor: int | None
    unreadable: tuple[str, ...]

    def __init__(
        self,
        items: Sequence[T] = (),
        next_cursor: int | None = None,
        unreadable: tuple[str, ...] = (),
    ) -> None:
        super().__init__(items)
        self.next_cursor = next_cursor
        self.unreadable = unreadable
