"""Public values of client chats: a message as the client and as staff see it."""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

import attrs

from clientcomm.attachments.models import AttachmentInfo
from clientcomm.rules.readstate import Author

__all__ = ["ChatMessage", "ClientMessage", "MessageList"]

M = TypeVar("M")


class MessageList(list[M]):
    """One page of a chat, newest first: a plain ``list`` of messages, plus
    ``unreadable``, the ids of the page's stored messages that were left out
    because they do not open (tampered with, damaged, or sealed for a key that
    is gone). Each one is also logged (logger ``clientcomm.messages``, level
    ERROR); the others are shown as usual."""

    unreadable: tuple[str, ...]

    def __init__(self, messages: list[M] | tuple[M, ...] = (), unreadable: tuple[str, ...] = ()):
        super().__init__(messages)
        self.unreadable = unreadable


@attrs.frozen
class ClientMessage:
    """A message as the client sees it. ``subject`` is the optional subject line
    (a mailing copy's subject, rendered for this client, looks the same)."""

    id: str
    from_firm: bool
    text: str = attrs.field(repr=False)
    sent_at: datetime
    attachments: tuple[AttachmentInfo, ...]
    unread: bool
    seq: int
    subject: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class ChatMessage:
    """A message as staff see it (``mailing_id`` is staff-only information)."""

    id: str
    client_id: str
    author: Author
    author_id: str
    text: str = attrs.field(repr=False)
    sent_at: datetime
    attachments: tuple[AttachmentInfo, ...]
    unread: bool
    seq: int
    mailing_id: str | None = None
    subject: str | None = attrs.field(default=None, repr=False)
