"""The pure rules of conversations: the state machine (every transition,
allowed and refused), whose turn, the list filters, escalation timing,
who is notified, and the bound values of sealed records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clientcomm.conversations.models import ConversationStatus, EscalationPolicy, Turn
from clientcomm.conversations.records import CommentRecord, ConversationRecord
from clientcomm.conversations.rules import (
    STAFF_TRANSITIONS,
    IllegalTransitionError,
    after_comment,
    authenticated_comment,
    authenticated_conversation,
    check_conversation,
    comment_plaintext,
    comment_plan,
    conversation_plaintext,
    escalation_plan,
    index_status,
    index_statuses,
    next_escalation,
    staff_transition,
    turn_after,
    with_mac,
)
from clientcomm.directory.models import Contact, Firm, Role, Staff
from clientcomm.errors import ConflictError, IntegrityError
from clientcomm.notifications.models import NotificationKind
from clientcomm.notifications.rules import NoticeKey
from clientcomm.rules.readstate import Author

S = ConversationStatus
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)

TABLE = {
    (S.OPEN, S.NEEDS_ATTENTION),
    (S.OPEN, S.ANSWERED),
    (S.NEEDS_ATTENTION, S.OPEN),
    (S.NEEDS_ATTENTION, S.ANSWERED),
    (S.ANSWERED, S.OPEN),
}


@pytest.mark.parametrize("start", list(S))
@pytest.mark.parametrize("wanted", list(S))
def test_staff_transitions_follow_the_table(start: S, wanted: S) -> None:
    if (start, wanted) in TABLE:
        assert staff_transition(start, wanted) is wanted
    else:
        with pytest.raises(IllegalTransitionError) as info:
            staff_transition(start, wanted, conversation_id="k1")
        assert isinstance(info.value, ConflictError)
        assert (info.value.from_state, info.value.to_state) == (start.value, wanted.value)
        assert info.value.context["conversation_id"] == "k1"


def test_the_table_is_the_documented_one() -> None:
    assert {(a, b) for a, tos in STAFF_TRANSITIONS.items() for b in tos} == TABLE


@pytest.mark.parametrize("reopen", [True, False])
def test_comments(reopen: bool) -> None:
    for state in S:
        assert after_comment(state, Author.STAFF, reopen_on_client_comment=reopen) is state
    assert after_comment(S.OPEN, Author.CLIENT, reopen_on_client_comment=reopen) is S.OPEN
    assert (
        after_comment(S.NEEDS_ATTENTION, Author.CLIENT, reopen_on_client_comment=reopen) is S.OPEN
    )
    assert after_comment(S.ANSWERED, Author.CLIENT, reopen_on_client_comment=reopen) is (
        S.OPEN if reopen else S.ANSWERED
    )


def test_turn_goes_to_the_other_side() -> None:
    assert turn_after(Author.CLIENT) is Turn.FIRM
    assert turn_after(Author.STAFF) is Turn.CLIENT


@given(
    st.one_of(st.none(), st.sets(st.sampled_from(list(S)), min_size=1)),
    st.one_of(st.none(), st.sampled_from(list(Turn))),
    st.sampled_from(list(S)),
    st.sampled_from(list(Turn)),
)
def test_index_filters_match_exactly_the_wanted_rows(
    statuses: set[S] | None, turn: Turn | None, state: S, row_turn: Turn
) -> None:
    values = index_statuses(statuses, turn)
    wanted = (statuses is None or state in statuses) and (turn is None or row_turn is turn)
    row = index_status(state, row_turn)
    assert (values is None or row in values) is wanted
    if values is not None:
        assert len(values) == len(set(values))


def record(**kw: Any) -> ConversationRecord:
    base = ConversationRecord(
        id="k1",
        client_id="c1",
        status=S.OPEN,
        assignee_id="boss",
        sealed_subject=b"",
        created_at=T0,
        created_by="staff:admin",
        notify_admins=False,
        turn=Turn.FIRM,
        turn_since=T0,
        last_activity_at=T0,
        status_changed_at=T0,
        status_changed_by="staff:admin",
        comments=2,
        client_comments=1,
        staff_comments=1,
    )
    return attrs.evolve(base, **kw)


POLICY = EscalationPolicy(assignee_after=timedelta(hours=4), admins_after=timedelta(hours=24))


def test_escalation_levels_in_time() -> None:
    c = record()
    assert next_escalation(c, POLICY, 0, T0 + timedelta(hours=3)) == (
        None,
        0,
        T0 + timedelta(hours=4),
    )
    assert next_escalation(c, POLICY, 0, T0 + timedelta(hours=4)) == (
        "assignee",
        1,
        T0 + timedelta(hours=24),
    )
    assert next_escalation(c, POLICY, 1, T0 + timedelta(hours=5)) == (
        None,
        1,
        T0 + timedelta(hours=24),
    )
    assert next_escalation(c, POLICY, 1, T0 + timedelta(hours=24)) == ("admins", 2, None)
    assert next_escalation(c, POLICY, 2, T0 + timedelta(days=9)) == (None, 2, None)
    # no assignee: straight to the administrators, at their time
    lone = record(assignee_id=None)
    assert next_escalation(lone, POLICY, 0, T0 + timedelta(hours=5)) == (
        None,
        1,
        T0 + timedelta(hours=24),
    )
    # not waiting on the firm: nothing, ever
    for c in (record(turn=Turn.CLIENT), record(status=S.ANSWERED)):
        assert next_escalation(c, POLICY, 0, T0 + timedelta(days=9)) == (None, 0, None)


FIRM = Firm("f1", "Kanzlei", office_email="office@k.example")
STAFF = [
    Staff("boss", "f1", "Boss", Role.ADMIN, email="boss@k.example"),
    Staff("ada", "f1", "Ada", Role.ADMIN, email="ada@k.example"),
    Staff("clerk", "f1", "Cleo", Role.CLERK, unrestricted=True, email="cleo@k.example"),
    Staff("old", "f1", "Old", Role.ADMIN, email="old@k.example", active=False),
]
CONTACTS = [
    Contact("k1", "f1", "c1", "Anna", email="anna@example.com", registered=True),
    Contact("k2", "f1", "c1", "Ohne Portal", email="x@example.com", registered=False),
]


def addresses(plan: object) -> list[str]:
    return sorted(r.email for r in plan.recipients)  # type: ignore[attr-defined]


def test_who_hears_of_a_comment() -> None:
    kind, plan = comment_plan(
        Author.CLIENT,
        firm=FIRM,
        staff=STAFF,
        contacts=CONTACTS,
        client_id="c1",
        assignee_id="boss",
        notify_admins=False,
    )
    assert kind is NotificationKind.NEW_COMMENT
    assert addresses(plan) == ["boss@k.example", "office@k.example"]
    assert plan.inapp_staff_ids == ("boss",)
    _, plan = comment_plan(
        Author.CLIENT,
        firm=FIRM,
        staff=STAFF,
        contacts=CONTACTS,
        client_id="c1",
        assignee_id="boss",
        notify_admins=True,
    )
    assert addresses(plan) == ["ada@k.example", "boss@k.example", "office@k.example"]
    kind, plan = comment_plan(
        Author.STAFF,
        firm=FIRM,
        staff=STAFF,
        contacts=CONTACTS,
        client_id="c1",
        assignee_id="boss",
        notify_admins=True,
    )
    assert kind is NotificationKind.NEW_MESSAGE
    assert addresses(plan) == ["anna@example.com"]


def test_who_hears_of_an_escalation() -> None:
    plan = escalation_plan("assignee", staff=STAFF, client_id="c1", assignee_id="boss")
    assert addresses(plan) == ["boss@k.example"] and plan.inapp_staff_ids == ("boss",)
    assert (
        escalation_plan("assignee", staff=STAFF, client_id="c1", assignee_id="old").recipients == ()
    )
    plan = escalation_plan("admins", staff=STAFF, client_id="c1", assignee_id="boss")
    assert addresses(plan) == ["ada@k.example", "boss@k.example"]


def test_sealed_values_authenticate_every_bound_value() -> None:
    key = NoticeKey(b"k" * 32)
    c = with_mac(key, record())
    plain = conversation_plaintext(c, "Betreff")
    assert authenticated_conversation(c, plain) == "Betreff"
    assert check_conversation(key, c) is c
    cases: list[dict[str, Any]] = [
        {"status": S.ANSWERED},
        {"assignee_id": "ada"},
        {"notify_admins": True},
        {"turn": Turn.CLIENT},
        {"turn_since": T0 + timedelta(seconds=1)},
        {"last_activity_at": T0 + timedelta(seconds=1)},
        {"status_changed_by": "staff:ada"},
        {"comments": 3},
        {"client_comments": 0},
        {"staff_comments": 2},
        {"created_by": "client:c1"},
        {"id": "k2"},
        {"client_id": "c2"},
        {"mac": b""},
    ]
    for change in cases:
        with pytest.raises(IntegrityError):
            check_conversation(key, attrs.evolve(c, **change))
    bound_cases: list[dict[str, Any]] = [
        {"created_by": "client:c1"},
        {"created_at": T0 + timedelta(days=1)},
    ]
    for change in bound_cases:
        with pytest.raises(IntegrityError):
            authenticated_conversation(attrs.evolve(c, **change), plain)
    with pytest.raises(IntegrityError):  # another key, or none: refused
        check_conversation(NoticeKey(b"x" * 32), c)
    with pytest.raises(IntegrityError):
        check_conversation(NoticeKey(None), c)
    m = CommentRecord(
        id="m1",
        conversation_id="k1",
        client_id="c1",
        author=Author.CLIENT,
        author_id="k1",
        sealed_text=b"",
        created_at=T0,
        number=2,
        side_number=1,
    )
    plain = comment_plaintext(m, "Text")
    assert authenticated_comment(m, plain) == (m, "Text")
    comment_cases: list[dict[str, Any]] = [
        {"conversation_id": "k2"},
        {"author": Author.STAFF},
        {"number": 3},
        {"side_number": 2},
        {"created_at": T0 - timedelta(days=1)},
    ]
    for change in comment_cases:
        with pytest.raises(IntegrityError):
            authenticated_comment(attrs.evolve(m, **change), plain)
