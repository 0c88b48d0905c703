"""Pure rules of conversations (seed 002): the state machine, whose turn it
is, what the list filters match, when a waiting conversation escalates, and
which of a conversation's and a comment's values their sealed values
authenticate. No I/O.

The state machine (``docs/conversations.md`` shows it as a table):

=================  ======================  ==================================
from               event                   to
=================  ======================  ==================================
open               staff: needs_attention  needs_attention
open               staff: answered         answered
needs_attention    staff: open             open
needs_attention    staff: answered         answered
answered           staff: open (reopen)    open
open               client comment          open
needs_attention    client comment          open (the client replied)
answered           client comment          open if reopening is on, else answered
any                staff comment           unchanged
=================  ======================  ==================================

Every other staff change (to the same state, or answered -> needs_attention:
reopen first) is refused with :class:`IllegalTransitionError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs

from clientcomm.conversations.models import ConversationStatus, EscalationPolicy, Turn
from clientcomm.conversations.records import (
    COMMENT_KIND,
    CONVERSATION_KIND,
    CommentRecord,
    ConversationRecord,
)
from clientcomm.crypto.context import SealContext
from clientcomm.directory.models import Contact, Firm, Staff
from clientcomm.errors import ConflictError, IntegrityError
from clientcomm.notifications.models import NotificationKind, RecipientPlan
from clientcomm.notifications.rules import (
    NoticeKey,
    admin_recipients,
    client_contact_recipients,
    comment_recipients,
    notice_mac,
    staff_recipient,
)
from clientcomm.records import bound
from clientcomm.rules.access import reaches
from clientcomm.rules.readstate import Author

__all__ = [
    "STAFF_TRANSITIONS",
    "IllegalTransitionError",
    "after_comment",
    "authenticated_comment",
    "authenticated_conversation",
    "check_conversation",
    "comment_context",
    "comment_plaintext",
    "comment_plan",
    "conversation_mac",
    "conversation_plaintext",
    "escalation_due",
    "escalation_plan",
    "index_status",
    "index_statuses",
    "next_escalation",
    "staff_transition",
    "subject_context",
    "turn_after",
    "waiting_on_firm",
    "with_mac",
]

S = ConversationStatus

STAFF_TRANSITIONS: Mapping[ConversationStatus, frozenset[ConversationStatus]] = {
    S.OPEN: frozenset({S.NEEDS_ATTENTION, S.ANSWERED}),
    S.NEEDS_ATTENTION: frozenset({S.OPEN, S.ANSWERED}),
    S.ANSWERED: frozenset({S.OPEN}),
}
"""The states staff may set from each state (everything else is refused)."""


class IllegalTransitionError(ConflictError):
    """A status change the state machine refuses; names both states
    (``context``: ``from_state``, ``to_state``, ``conversation_id``)."""

    def __init__(
        self, from_state: ConversationStatus, to_state: object, conversation_id: str = ""
    ) -> None:
        to_text = to_state.value if isinstance(to_state, ConversationStatus) else str(to_state)
        super().__init__(
            f"conversation {conversation_id!r}: cannot change from {from_state.value} to {to_text}",
            from_state=from_state.value,
            to_state=to_text,
            conversation_id=conversation_id,
        )
        self.from_state = from_state.value
        self.to_state = to_text


def staff_transition(
    current: ConversationStatus, wanted: ConversationStatus, *, conversation_id: str = ""
) -> ConversationStatus:
    """The state after staff set ``wanted`` on a conversation in ``current``.

    Raises:
        IllegalTransitionError: the table does not allow it.
    """
    if wanted not in STAFF_TRANSITIONS[current]:
        raise IllegalTransitionError(current, wanted, conversation_id)
    return wanted


def after_comment(
    current: ConversationStatus, author: Author, *, reopen_on_client_comment: bool
) -> ConversationStatus:
    """The state after a comment: a client comment makes a conversation that
    needed the client's reply open again, and reopens an answered one when
    reopening is on; a staff comment changes nothing."""
    if author is Author.STAFF:
        return current
    if current is S.ANSWERED:
        return S.OPEN if reopen_on_client_comment else S.ANSWERED
    return S.OPEN


def turn_after(author: Author) -> Turn:
    """Whose turn it is after ``author`` wrote: the other side's."""
    return Turn.FIRM if author is Author.CLIENT else Turn.CLIENT


def index_status(status: ConversationStatus, turn: Turn) -> str:
    """The list index's ``status`` column: ``"<state>.<turn>"``."""
    return f"{status.value}.{turn.value}"


def index_statuses(
    statuses: Iterable[ConversationStatus] | None, turn: Turn | None
) -> list[str] | None:
    """The index values a list filter matches (``None``: no filter on the
    column); one list query per value, merged by activity."""
    chosen_states = list(S) if statuses is None else list(dict.fromkeys(statuses))
    chosen_turns = list(Turn) if turn is None else [turn]
    if statuses is None and turn is None:
        return None
    return [index_status(s, t) for s in chosen_states for t in chosen_turns]


# -- escalation -----------------------------------------------------------------------


def escalation_due(
    policy: EscalationPolicy, waiting_since: datetime, level: int
) -> datetime | None:
    """When escalation ``level`` (0: the assignee, 1: every administrator) of a
    conversation waiting on the firm since ``waiting_since`` is due; ``None``
    after the last."""
    if level == 0:
        return waiting_since + policy.assignee_after
    if level == 1:
        return waiting_since + policy.admins_after
    return None


def waiting_on_firm(c: ConversationRecord) -> bool:
    """Whether ``c`` waits on the firm (the client wrote last; not answered)."""
    return c.turn is Turn.FIRM and c.status is not S.ANSWERED


def next_escalation(
    c: ConversationRecord, policy: EscalationPolicy, level: int, now: datetime
) -> tuple[str | None, int, datetime | None]:
    """What the escalation step does for ``c`` at ``now`` at ``level``:
    ``(who, next_level, next_due)``; ``who`` is ``"assignee"``, ``"admins"``
    or ``None`` (nothing due: no longer waiting, or not yet due). A
    conversation without assignee goes straight to the administrators at
    their time."""
    if not waiting_on_firm(c):
        return None, level, None
    due = escalation_due(policy, c.turn_since, level)
    if due is None:
        return None, level, None
    if now < due:
        return None, level, due
    if level == 0 and c.assignee_id is None:
        return next_escalation(c, policy, 1, now)
    who = "assignee" if level == 0 else "admins"
    return who, level + 1, escalation_due(policy, c.turn_since, level + 1)


# -- sealing ----------------------------------------------------------------------------


def subject_context(firm_id: str, client_id: str, conversation_id: str) -> SealContext:
    """Where a conversation's subject is sealed."""
    return SealContext(firm_id, client_id, CONVERSATION_KIND, conversation_id, "subject")


def comment_context(firm_id: str, client_id: str, comment_id: str) -> SealContext:
    """Where a comment's text is sealed."""
    return SealContext(firm_id, client_id, COMMENT_KIND, comment_id, "text")


_MACED_CONVERSATION = (
    "status",
    "assignee_id",
    "notify_admins",
    "turn",
    "turn_since",
    "last_activity_at",
    "status_changed_at",
    "status_changed_by",
    "comments",
    "client_comments",
    "staff_comments",
)
"""The values that change over a conversation's life: covered by its MAC under
the firm's notice key (checked on every read, without opening anything)."""


def _plain(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return bound.stamp(value)
    if isinstance(value, S | Turn | Author):
        return value.value
    return str(value)


def conversation_mac(secret: bytes, c: ConversationRecord) -> bytes:
    """The MAC of what decides a conversation's notices and what is shown of
    it besides the subject: its id, client, creation and every changing value
    (:data:`_MACED_CONVERSATION`)."""
    parts = [c.id, c.client_id, _plain(c.created_at), c.created_by]
    parts += [_plain(getattr(c, name)) for name in _MACED_CONVERSATION]
    return notice_mac(secret, "conversation", parts)


def with_mac(key: NoticeKey, c: ConversationRecord) -> ConversationRecord:
    """``c`` with its MAC under the firm's notice key.

    Raises:
        IntegrityError: the firm has no notice key (conversations are never
            written without one).
    """
    if key.secret is None:
        raise IntegrityError("no notice key for the conversation's MAC", id=c.id)
    return attrs.evolve(c, mac=conversation_mac(key.secret, c))


def check_conversation(key: NoticeKey, c: ConversationRecord) -> ConversationRecord:
    """``c`` once its MAC matches (fail closed: no key, no MAC, a mismatch).

    Raises:
        IntegrityError: a value was edited in the database, or moved from
            another conversation.
    """
    if key.secret is None or not key.ok(c.mac, conversation_mac(key.secret, c)):
        raise IntegrityError(
            f"conversation {c.id}: stored values do not match their MAC (edited?)", id=c.id
        )
    return c


def _conversation_meta(c: ConversationRecord) -> dict[str, Any]:
    return {"created_at": bound.stamp(c.created_at), "created_by": c.created_by}


def conversation_plaintext(c: ConversationRecord, subject: str) -> bytes:
    """The plaintext sealed for ``c`` (once, at creation): its creation time
    and author, then its subject."""
    return bound.pack(_conversation_meta(c), subject.encode())


def authenticated_conversation(c: ConversationRecord, plain: bytes) -> str:
    """The subject of ``c`` from its opened plaintext, once its creation time
    and author are checked against the sealed ones (check its MAC too:
    :func:`check_conversation`).

    Raises:
        IntegrityError: a stored value differs from the sealed one, or the
            plaintext does not decode.
    """
    what = f"conversation {c.id}"
    meta, content = bound.unpack(plain, what=what)
    if meta is None:
        raise IntegrityError(f"{what}: no bound values", id=c.id)
    for name, value in _conversation_meta(c).items():
        bound.check_equal(what, name, value, meta.get(name), id=c.id)
    try:
        return content.decode()
    except UnicodeDecodeError:
        raise IntegrityError(f"{what}: subject does not decode", id=c.id) from None


def _comment_meta(m: CommentRecord) -> dict[str, Any]:
    return {
        "conversation_id": m.conversation_id,
        "author": m.author.value,
        "author_id": m.author_id,
        "created_at": bound.stamp(m.created_at),
        "number": m.number,
        "side_number": m.side_number,
        "attachments": [a.bound() for a in m.attachments],
    }


def comment_plaintext(m: CommentRecord, text: str) -> bytes:
    """The plaintext sealed for comment ``m`` (attachments with their full
    descriptors): its bound values, then its text."""
    return bound.pack(_comment_meta(m), text.encode())


def authenticated_comment(m: CommentRecord, plain: bytes) -> tuple[CommentRecord, str]:
    """The comment as its sealed value says (attachments' descriptors from it)
    and its text.

    Raises:
        IntegrityError: a stored value differs from the sealed one.
    """
    what = f"comment {m.id}"
    meta, content = bound.unpack(plain, what=what)
    if meta is None:
        raise IntegrityError(f"{what}: no bound values", id=m.id)
    check = bound.check_equal
    check(what, "conversation_id", m.conversation_id, meta.get("conversation_id"), id=m.id)
    check(what, "author", m.author.value, meta.get("author"), id=m.id)
    check(what, "author_id", m.author_id, meta.get("author_id"), id=m.id)
    check(what, "created_at", bound.stamp(m.created_at), meta.get("created_at"), id=m.id)
    check(what, "number", m.number, meta.get("number"), id=m.id)
    check(what, "side_number", m.side_number, meta.get("side_number"), id=m.id)
    sealed = meta.get("attachments")
    if not isinstance(sealed, list) or len(sealed) != len(m.attachments):
        raise IntegrityError(f"{what}: attachments do not match the sealed ones", id=m.id)
    attachments = tuple(a.authenticated(b) for a, b in zip(m.attachments, sealed, strict=True))
    try:
        text = content.decode()
    except UnicodeDecodeError:
        raise IntegrityError(f"{what}: text does not decode", id=m.id) from None
    return attrs.evolve(m, attachments=attachments), text


# -- who is notified ------------------------------------------------------------------


def comment_plan(
    author: Author,
    *,
    firm: Firm,
    staff: Iterable[Staff],
    contacts: Iterable[Contact],
    client_id: str,
    assignee_id: str | None,
    notify_admins: bool,
) -> tuple[NotificationKind, RecipientPlan]:
    """Who hears of a new comment (seed 002), and as what.

    A client's comment (its first message included): the firm's office
    address, the assigned administrator by e-mail and in-app, and every
    administrator when the conversation says "notify administrators"
    (``new_comment``; an address reached twice gets one mail). A staff
    comment: the client's contacts with portal access (``new_message``).
    """
    if author is Author.CLIENT:
        return NotificationKind.NEW_COMMENT, comment_recipients(
            firm,
            staff,
            client_id=client_id,
            assignee_id=assignee_id,
            notify_admins=notify_admins,
        )
    return NotificationKind.NEW_MESSAGE, client_contact_recipients(contacts, client_id=client_id)


def escalation_plan(
    who: str, *, staff: Iterable[Staff], client_id: str, assignee_id: str | None
) -> RecipientPlan:
    """Who an escalation notifies: the assignee (e-mail and in-app; nobody if
    they left or no longer reach the client), or every active administrator."""
    staff = list(staff)
    if who == "assignee":
        assignee = next((s for s in staff if s.id == assignee_id), None)
        if assignee is None or not reaches(assignee, client_id):
            return RecipientPlan()
        return staff_recipient(assignee, inapp=True)
    return admin_recipients(staff)
