"""Client chats (seeds 000/001): one chat per client, sealed messages, read state.

* :mod:`~clientcomm.messages.models` - public values (:class:`ClientMessage`,
  :class:`ChatMessage`, :class:`MessageList`);
* :mod:`~clientcomm.messages.records` - record kinds (``message``, ``chat.read``);
* :mod:`~clientcomm.messages.rules` - text rules and seal contexts (pure);
* :mod:`~clientcomm.messages.service` - :class:`MessageService`, the host API.

Chats have no background steps of their own.
"""

from __future__ import annotations

from clientcomm.messages.models import ChatMessage, ClientMessage, MessageList
from clientcomm.messages.records import MESSAGE_KIND, READ_KIND, MessageRecord, ReadCursor
from clientcomm.messages.rules import (
    MAX_SUBJECT,
    MAX_TEXT,
    decode_body,
    encode_body,
    text_context,
    text_contexts,
    validate_subject,
    validate_text,
)
from clientcomm.messages.service import MessageService

__all__ = [
    "MAX_SUBJECT",
    "MAX_TEXT",
    "MESSAGE_KIND",
    "READ_KIND",
    "ChatMessage",
    "ClientMessage",
    "MessageList",
    "MessageRecord",
    "MessageService",
    "ReadCursor",
    "decode_body",
    "encode_body",
    "text_context",
    "text_contexts",
    "validate_subject",
    "validate_text",
]
