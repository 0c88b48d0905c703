"""Public values of client chats: a message as the client and as staff see it."""

from __future__ import annotations

from datetime import datetime

import attrs

from clientcomm.attachments.models import AttachmentInfo
from clientcomm.rules.readstate import Author

__all__ = ["ChatMessage", "ClientMessage"]


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
