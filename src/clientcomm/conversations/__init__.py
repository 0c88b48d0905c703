"""Conversations between a firm and its clients (seed 002): status, comments
with files, an assigned administrator, office and administrator notifications,
the bulk re-notification, escalation. See ``docs/conversations.md``."""

from __future__ import annotations

from clientcomm.conversations import export as _export  # noqa: F401  (registers exporters)
from clientcomm.conversations import operations as _operations  # noqa: F401
from clientcomm.conversations.models import (
    ClientConversation,
    Comment,
    ConversationPage,
    ConversationSettings,
    ConversationStatus,
    EscalationPolicy,
    StaffConversation,
    Turn,
)
from clientcomm.conversations.records import (
    COMMENT_KIND,
    CONVERSATION_KIND,
    ESCALATION_KIND,
    FEED_KIND,
    INBOX_KIND,
    READ_KIND,
    CommentRecord,
    ConversationRecord,
)
from clientcomm.conversations.rules import STAFF_TRANSITIONS, IllegalTransitionError
from clientcomm.conversations.service import ConversationService

__all__ = [
    "COMMENT_KIND",
    "CONVERSATION_KIND",
    "ESCALATION_KIND",
    "FEED_KIND",
    "INBOX_KIND",
    "READ_KIND",
    "STAFF_TRANSITIONS",
    "ClientConversation",
    "Comment",
    "CommentRecord",
    "ConversationPage",
    "ConversationRecord",
    "ConversationService",
    "ConversationSettings",
    "ConversationStatus",
    "EscalationPolicy",
    "IllegalTransitionError",
    "StaffConversation",
    "Turn",
]
