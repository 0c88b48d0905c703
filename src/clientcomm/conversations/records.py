"""Record kinds of conversations (seed 002).

* ``conversation``: one per conversation; its subject is sealed for the client
  (once, with its creation time and author); every value that changes and
  decides who is notified or what is shown (status, assignee, flags, whose
  turn, counts) is covered by a MAC under the firm's notice key, renewed on
  every change and checked on every read.
* ``conversation.comment``: one per comment, its text sealed for the client
  with its author, time, number and attachments' descriptors.
* ``conversation.inbox`` / ``conversation.feed``: the list index. One entry of
  each per conversation, deleted and inserted again on every comment, so that
  the store's ``seq`` order is "newest activity first"; their ``ref`` and
  ``status`` columns hold the list filters (assignee, state and whose turn).
  They are query helpers only: every listed conversation is checked against
  its own authenticated values.
* ``conversation.read``: how many of the other side's comments one reader has
  seen (unread counts cost one read per listed conversation).
* ``conversation.escalation``: when a conversation waiting on the firm is to
  be re-notified next (claimed by the ``conversations.escalate`` step).
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs

from clientcomm.attachments.models import StoredAttachment
from clientcomm.conversations.models import ConversationStatus, Turn
from clientcomm.records import REGISTRY, Kind, Meta, SealedField, meta_field, unbound
from clientcomm.rules.readstate import Author
from clientcomm.storage.base import EPOCH

__all__ = [
    "COMMENT_KIND",
    "CONVERSATION_KIND",
    "ESCALATION_KIND",
    "FEED_KIND",
    "INBOX_KIND",
    "READ_KIND",
    "UNASSIGNED",
    "CommentRecord",
    "ConversationRecord",
    "EscalationRecord",
    "EscalationState",
    "FeedEntry",
    "InboxEntry",
    "ReadMark",
]

CONVERSATION_KIND = "conversation"
COMMENT_KIND = "conversation.comment"
INBOX_KIND = "conversation.inbox"
FEED_KIND = "conversation.feed"
READ_KIND = "conversation.read"
ESCALATION_KIND = "conversation.escalation"

UNASSIGNED = "-"
"""The inbox ``ref`` of a conversation without assignee (no staff id is ``-``)."""


@attrs.frozen
class ConversationRecord:
    """One stored conversation (see module docs). ``sealed_subject`` holds the
    subject with its creation time and author; ``mac`` covers every value that
    changes (:func:`clientcomm.conversations.rules.conversation_mac`)."""

    id: str
    client_id: str
    status: ConversationStatus
    assignee_id: str | None
    sealed_subject: bytes = attrs.field(repr=False)
    created_at: datetime
    created_by: str
    notify_admins: bool
    turn: Turn
    turn_since: datetime
    last_activity_at: datetime
    status_changed_at: datetime
    status_changed_by: str
    comments: int = 0
    client_comments: int = 0
    staff_comments: int = 0
    mac: bytes = attrs.field(default=b"", repr=False)
    meta: Meta = meta_field()


@attrs.frozen
class CommentRecord:
    """One stored comment; ``number`` counts from 1 within its conversation,
    ``side_number`` within its author's side (the client's comments, the
    firm's), so a reader's read mark is exact for any page read."""

    id: str
    conversation_id: str
    client_id: str
    author: Author
    author_id: str
    sealed_text: bytes = attrs.field(repr=False)
    created_at: datetime
    number: int
    side_number: int
    attachments: tuple[StoredAttachment, ...] = ()
    meta: Meta = meta_field()


@attrs.frozen
class InboxEntry:
    """The staff list index by assignee: ``ref`` the assignee (or ``-``),
    ``status`` ``"<state>.<turn>"``."""

    id: str
    client_id: str
    ref: str
    status: str
    meta: Meta = meta_field()


@attrs.frozen
class FeedEntry:
    """The list index over all of a firm's conversations (``ref`` ``*``) and
    a client's own (``parent``): ``status`` ``"<state>.<turn>"``."""

    id: str
    client_id: str
    ref: str
    status: str
    meta: Meta = meta_field()


@attrs.frozen
class ReadMark:
    """How many of the other side's comments a reader (``staff:<id>`` or
    ``client``) has seen in one conversation."""

    id: str
    conversation_id: str
    client_id: str
    seen: int = 0
    at: datetime = EPOCH
    meta: Meta = meta_field()

    @staticmethod
    def id_for(conversation_id: str, reader: str) -> str:
        return f"{conversation_id}|{reader}"


class EscalationState(enum.StrEnum):
    DUE = "due"


@attrs.frozen
class EscalationRecord:
    """The next re-notification of a conversation waiting on the firm:
    ``level`` 0 (the assignee next) or 1 (every administrator next)."""

    id: str
    client_id: str
    due_at: datetime
    level: int = 0
    status: EscalationState = EscalationState.DUE
    meta: Meta = meta_field()


CONVERSATION = REGISTRY.register(
    Kind(
        CONVERSATION_KIND,
        ConversationRecord,
        "one conversation between the firm and a client (subject, state, assignee)",
        columns={
            "id": "id",
            "parent": "client_id",
            "ref": "assignee_id",
            "status": "status",
            "body": "sealed_subject",
            "created_at": "created_at",
        },
        meanings={
            "parent": "the client",
            "ref": "the assigned administrator (staff id), if any",
            "status": "open / needs_attention / answered",
            "body": "the subject and the bound values, sealed for the client",
        },
        status=ConversationStatus,
        sealed=(SealedField("sealed_subject"),),
        owner=lambda c: c.client_id,
        client=lambda c: c.client_id,
        client_column="parent",
        capability="conversations",
        integrity={
            "id": "aad: in the associated data of the subject (a moved subject fails to open)",
            "client_id": "aad: in the associated data of the subject, whose key is the client's",
            "sealed_subject": "sealed: the subject, after the bound values",
            "created_at": "bound: sealed with the subject and checked; also under the MAC",
            "created_by": "bound: sealed with the subject and checked; also under the MAC",
            "mac": "mac: the MAC itself (a conversation without a matching one is refused)",
            "*": "mac: covered by the conversation's MAC under the firm's notice key, checked"
            " on every read (state, assignee, flags, turn, times and counts decide who is"
            " notified and what is shown)",
        },
    )
)

COMMENT = REGISTRY.register(
    Kind(
        COMMENT_KIND,
        CommentRecord,
        "one comment of a conversation (the first message included)",
        columns={
            "id": "id",
            "parent": "conversation_id",
            "ref": "client_id",
            "body": "sealed_text",
            "created_at": "created_at",
        },
        meanings={
            "parent": "the conversation",
            "ref": "the client",
            "body": "the text, sealed for the client after the bound values",
        },
        sealed=(
            SealedField("sealed_text"),
            SealedField("attachments[].stream_key", "stream_key", blob="blob_id"),
        ),
        owner=lambda c: c.client_id,
        client=lambda c: c.client_id,
        client_column="ref",
        capability="conversations",
        integrity={
            "id": "aad: in the associated data of the text",
            "client_id": "aad: in the associated data of the text, whose key is the client's",
            "sealed_text": "sealed: the text, after the bound values",
            "conversation_id": "bound: checked (a comment moved to another conversation fails)",
            "author": "bound: checked; a staff comment cannot pass for the client's",
            "author_id": "bound: checked",
            "created_at": "bound: checked",
            "number": "bound: checked",
            "side_number": "bound: checked (unread counts follow it)",
            "attachments": "bound: descriptors are sealed; id, blob, mode and stream key stay"
            " in clear and are checked; the stream key is a wrapped key bound to its blob",
        },
    )
)

_INDEX_WHY = (
    "a list index only: every listed conversation is checked against its own"
    " authenticated values and left out when they differ"
)


def _index_kind(name: str, cls: type[Any], description: str, ref: str) -> Kind[Any]:
    """One of the two list-index kinds (the same layout; ``ref`` says what
    their ``ref`` holds)."""
    return REGISTRY.register(
        Kind(
            name,
            cls,
            description,
            columns={"id": "id", "parent": "client_id", "ref": "ref", "status": "status"},
            meanings={
                "id": "the conversation",
                "parent": "the client",
                "ref": ref,
                "status": "`<state>.<turn>`",
            },
            client=lambda e: e.client_id,
            client_column="parent",
            capability="conversations",
            integrity=unbound(_INDEX_WHY, "id", "client_id", "ref", "status"),
        )
    )


INBOX = _index_kind(
    INBOX_KIND,
    InboxEntry,
    "the staff list index of a conversation by assignee (re-inserted on activity)",
    "the assignee's staff id, or `-`",
)
FEED = _index_kind(
    FEED_KIND,
    FeedEntry,
    "the list index of a conversation over the firm and its client (re-inserted on activity)",
    "`*`",
)

READ_MARK = REGISTRY.register(
    Kind(
        READ_KIND,
        ReadMark,
        "how many of the other side's comments one reader has seen in a conversation",
        columns={"id": "id", "parent": "conversation_id", "ref": "client_id"},
        meanings={
            "id": "conversation id | reader",
            "parent": "the conversation",
            "ref": "the client",
        },
        client=lambda r: r.client_id,
        client_column="ref",
        capability="conversations",
        integrity=unbound(
            "a read mark moves unread counts only",
            "id",
            "conversation_id",
            "client_id",
            "seen",
            "at",
        ),
    )
)

ESCALATION = REGISTRY.register(
    Kind(
        ESCALATION_KIND,
        EscalationRecord,
        "when a conversation waiting on the firm is re-notified next",
        columns={
            "id": "id",
            "parent": "client_id",
            "status": "status",
            "due_at": "due_at",
        },
        meanings={"id": "the conversation", "parent": "the client", "status": "`due`"},
        status=EscalationState,
        client=lambda e: e.client_id,
        client_column="parent",
        capability="conversations",
        integrity=unbound(
            "a schedule only: the step re-reads the conversation's authenticated state and"
            " derives each notice's id from it, so an edit can neither add a recipient nor"
            " repeat a notice",
            "id",
            "client_id",
            "due_at",
            "level",
            "status",
        ),
    )
)
