"""The audit operations of conversations (listed in ``docs/compliance.md``)."""

from __future__ import annotations

from clientcomm.audit.operations import declare

__all__ = ["OPERATION_NAMES"]

OPERATION_NAMES = (
    "conversation.created",
    "conversation.commented",
    "conversation.status_changed",
    "conversation.assigned",
    "conversation.admins_notified",
    "conversation.escalated",
)

declare(
    "conversation.created",
    "conversation",
    "a conversation was started by staff or by the client (its first comment included)",
    "`ConversationService.create`, `ConversationService.start`",
    ("by", "assignee", "notify_admins", "attachment_count", "notified"),
)
declare(
    "conversation.commented",
    "conversation",
    "a comment was added (`objects`: the comment; the state before and after)",
    "`ConversationService.comment`",
    ("author", "number", "attachment_count", "from_state", "to_state", "notified"),
)
declare(
    "conversation.status_changed",
    "conversation",
    "staff changed the state (`from_state`, `to_state`)",
    "`ConversationService.set_status`",
    ("from_state", "to_state"),
)
declare(
    "conversation.assigned",
    "conversation",
    "the assigned administrator changed (`from_assignee`, `to_assignee`)",
    "`ConversationService.assign`",
    ("from_assignee", "to_assignee"),
)
declare(
    "conversation.admins_notified",
    "conversation",
    "every administrator was re-notified about chosen conversations (bulk action;"
    " `clients`: their clients, `objects`: the conversations)",
    "`ConversationService.notify_admins`",
    ("request", "conversations", "notified"),
    batch=True,
)
declare(
    "conversation.escalated",
    "conversation",
    "a conversation waiting on the firm too long was re-notified (`level`: `assignee`"
    " or `admins`, `waiting_since`)",
    "`conversations.escalate` step",
    ("level", "waiting_since", "notified"),
)
