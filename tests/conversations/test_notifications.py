"""Who is notified about what, exactly once (seed 002), over every Store
backend: the office address, the assignee (e-mail and in-app), every
administrator, the bulk re-notification and the escalation on a manual clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from clientcomm import ConversationSettings, EscalationPolicy, NotFoundError
from clientcomm.app import ClientComm
from clientcomm.errors import ConfigurationError
from clientcomm.notifications import JobStatus
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.conversations.support import (
    ADMIN,
    ANNA,
    BOSS,
    CLERK,
    OFFICE,
    RITA,
    clock_of,
    conversation_app,
    inapp,
    jobs,
    sent_to,
)

ADMINS = ["ada@mueller.example", "berta@mueller.example", "lia@mueller.example"]
"""Every active administrator of f1 (``gone`` is inactive)."""

ESCALATE = ConversationSettings(
    escalation=EscalationPolicy(assignee_after=timedelta(hours=4), admins_after=timedelta(hours=24))
)


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with conversation_app(store, tmp_path, conversations=ESCALATE) as application:
            yield application


async def test_a_client_comment_notifies_office_and_assignee_once(app: ClientComm) -> None:
    cid = await app.conversations.create(ADMIN, "c1", "Belege", "Bitte", assignee_id="boss")
    # the staff message went to the client's registered contact only
    assert await sent_to(app) == [("new_message", "anna@example.com")]
    comment = await app.conversations.comment(ANNA, cid, "Anbei")
    assert await sent_to(app, cause_id=comment) == [
        ("new_comment", "berta@mueller.example"),
        ("new_comment", OFFICE),
    ]
    [note] = await inapp(app)
    assert (note.staff_id, note.event_id, note.cause_id, note.kind.value) == (
        "boss",
        cid,
        comment,
        "new_comment",
    )
    second = await app.conversations.comment(ANNA, cid, "Noch etwas")
    assert len(await sent_to(app, cause_id=second)) == 2
    assert len(await inapp(app)) == 2
    assert len(await jobs(app)) == 5  # 1 + 2 + 2: nothing doubled


async def test_notify_admins_flag_reaches_every_admin_once(app: ClientComm) -> None:
    cid = await app.conversations.create(
        CLERK, "c1", "Belege", "Bitte", assignee_id="admin", notify_admins=True
    )
    assert await sent_to(app, kind="admin_alert") == [("admin_alert", a) for a in ADMINS]
    comment = await app.conversations.comment(ANNA, cid, "Anbei")
    # the assignee is an administrator too: one mail to ada, one to each other admin
    assert await sent_to(app, cause_id=comment) == sorted(
        [("new_comment", a) for a in ADMINS] + [("new_comment", OFFICE)]
    )
    assert [(n.staff_id, n.cause_id) for n in await inapp(app)] == [("admin", comment)]


async def test_client_started_conversation_notifies_the_office_only(app: ClientComm) -> None:
    cid = await app.conversations.start(ANNA, "Frage", "Wann?")
    assert await sent_to(app, event_id=cid) == [("new_comment", OFFICE)]
    assert await inapp(app) == []
    await app.conversations.comment(CLERK, cid, "Morgen")  # staff reply: the client hears
    assert await sent_to(app, event_id=cid, kind="new_message") == [
        ("new_message", "anna@example.com")
    ]


async def test_a_firm_without_office_address_reports_the_skip(app: ClientComm) -> None:
    from clientcomm import Firm

    await app.directory.put_firm(Firm("f1", "Kanzlei Müller"))  # type: ignore[attr-defined]
    cid = await app.conversations.start(ANNA, "Frage", "Wann?")
    [job] = [j for j in await jobs(app) if j.event_id == cid]
    assert job.status is JobStatus.FAILED and job.error is not None
    assert job.error.reason == "no_address"


async def test_bulk_notify_admins_once_per_conversation_and_admin(app: ClientComm) -> None:
    a = await app.conversations.create(ADMIN, "c1", "A", "a")
    b = await app.conversations.create(ADMIN, "c2", "B", "b")
    before = len(await jobs(app))
    queued = await app.conversations.notify_admins(BOSS, [a, b, a], request_id="r1")
    assert queued == 2 * len(ADMINS)
    alerts = [j for j in await jobs(app) if j.kind.value == "admin_alert"]
    assert sorted((j.event_id, j.to.email) for j in alerts) == sorted(
        (c, m) for c in (a, b) for m in ADMINS
    )
    # the same request again sends nothing; a new one re-notifies
    assert await app.conversations.notify_admins(BOSS, [a, b], request_id="r1") == 0
    assert await app.conversations.notify_admins(BOSS, [a]) == len(ADMINS)
    assert len(await jobs(app)) == before + 3 * len(ADMINS)
    await app.audit.chain("f1")
    page = await app.audit.query("f1", operation="conversation.admins_notified")
    assert [(e.details["conversations"], e.details["notified"]) for e in page.entries] == [
        (2, 2 * len(ADMINS)),
        (2, 0),
        (1, len(ADMINS)),
    ]


async def test_bulk_refuses_an_unreachable_id_before_writing(app: ClientComm) -> None:
    a = await app.conversations.create(ADMIN, "c1", "A", "a")
    c3 = await app.conversations.create(ADMIN, "c3", "C", "c")
    before = len(await jobs(app))
    for ids in ([a, c3], [a, "missing"]):
        with pytest.raises(NotFoundError) as info:
            await app.conversations.notify_admins(RITA, ids)
        assert info.value.context["id"] == ids[1]
    assert len(await jobs(app)) == before


async def test_inapp_notifications_listed_and_marked_read(app: ClientComm) -> None:
    cid = await app.conversations.create(ADMIN, "c1", "A", "a", assignee_id="boss")
    for text in ("eins", "zwei", "drei"):
        await app.conversations.comment(ANNA, cid, text)
    listed = await app.conversations.notifications(BOSS)
    assert len(listed) == 3 and all(n.unread for n in listed)
    assert await app.conversations.notifications(ADMIN) == []
    assert await app.conversations.mark_notifications_read(BOSS, [listed[0].id]) == 1
    assert len(await app.conversations.notifications(BOSS, unread_only=True)) == 2
    with pytest.raises(NotFoundError):  # another staff member's
        await app.conversations.mark_notifications_read(ADMIN, [listed[1].id])
    assert await app.conversations.mark_all_notifications_read(BOSS) == 2
    assert await app.conversations.notifications(BOSS, unread_only=True) == []


# -- escalation ---------------------------------------------------------------------------
async def test_escalation_renotifies_assignee_then_admins_once_each(app: ClientComm) -> None:
    clock = clock_of(app)
    cid = await app.conversations.create(ADMIN, "c1", "A", "a", assignee_id="boss")
    await app.conversations.comment(ANNA, cid, "Hilfe")  # waits on the firm from now
    base = len(await jobs(app))
    clock.advance(timedelta(hours=3, minutes=59))
    await app.drain()
    assert len(await jobs(app)) == base  # not yet
    clock.advance(timedelta(minutes=1))
    await app.drain()
    assert await sent_to(app, kind="conversation_waiting") == [
        ("conversation_waiting", "berta@mueller.example")
    ]
    assert [n.kind.value for n in await inapp(app)].count("conversation_waiting") == 1
    clock.advance(timedelta(hours=19))
    await app.drain()
    assert len(await sent_to(app, kind="conversation_waiting")) == 1
    clock.advance(timedelta(hours=1))  # 24 hours waiting
    await app.drain()
    waiting = await sent_to(app, kind="conversation_waiting")
    assert waiting == sorted(
        [("conversation_waiting", "berta@mueller.example")]
        + [("conversation_waiting", a) for a in ADMINS]
    )
    clock.advance(timedelta(days=10))
    await app.drain()
    assert await sent_to(app, kind="conversation_waiting") == waiting  # once each
    await app.audit.chain("f1")
    page = await app.audit.query("f1", operation="conversation.escalated")
    assert [e.details["level"] for e in page.entries] == ["assignee", "admins"]


async def test_a_reply_of_the_firm_stops_the_escalation(app: ClientComm) -> None:
    clock = clock_of(app)
    cid = await app.conversations.start(ANNA, "Frage", "Wann?")
    clock.advance(timedelta(hours=2))
    await app.conversations.comment(CLERK, cid, "Wir prüfen das")
    clock.advance(timedelta(days=3))
    await app.drain()
    assert await sent_to(app, kind="conversation_waiting") == []
    # waiting again: counted from the new client comment
    await app.conversations.comment(ANNA, cid, "Und?")
    clock.advance(timedelta(hours=23))
    await app.drain()
    assert await sent_to(app, kind="conversation_waiting") == []  # no assignee: admins at 24h
    clock.advance(timedelta(hours=1))
    await app.drain()
    assert await sent_to(app, kind="conversation_waiting") == [
        ("conversation_waiting", a) for a in ADMINS
    ]


async def test_answering_stops_the_escalation(app: ClientComm) -> None:
    clock = clock_of(app)
    cid = await app.conversations.start(ANNA, "Frage", "Wann?")
    await app.conversations.assign(ADMIN, cid, "boss")
    await app.conversations.set_status(ADMIN, cid, "answered")  # type: ignore[arg-type]
    clock.advance(timedelta(days=3))
    await app.drain()
    assert await sent_to(app, kind="conversation_waiting") == []


async def test_a_late_worker_sends_both_levels_once(app: ClientComm) -> None:
    clock = clock_of(app)
    cid = await app.conversations.create(ADMIN, "c1", "A", "a", assignee_id="boss")
    await app.conversations.comment(ANNA, cid, "Hilfe")
    clock.advance(timedelta(days=2))  # the worker was down past both levels
    await app.run_step("conversations.escalate")
    await app.run_step("conversations.escalate")
    assert len(await sent_to(app, kind="conversation_waiting")) == 1 + len(ADMINS)


def test_escalation_policy_is_checked() -> None:
    with pytest.raises(ConfigurationError):
        EscalationPolicy(assignee_after=timedelta(hours=4), admins_after=timedelta(hours=4))
    with pytest.raises(ConfigurationError):
        EscalationPolicy(assignee_after=timedelta(0), admins_after=timedelta(hours=4))
