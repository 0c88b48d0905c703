"""The notification outbox over MemoryStore/SQLiteStore and MemoryTransport."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from clientcomm.clock import ManualClock
from clientcomm.directory.models import Contact, Firm, Role, Staff
from clientcomm.errors import InvalidInputError, NotFoundError
from clientcomm.mail.memory import MemoryTransport
from clientcomm.notifications.inapp import list_inapp, mark_all_read, mark_read, unread_count
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.models import NotificationEvent, NotificationKind
from clientcomm.notifications.outbox import (
    JOB_KIND,
    DeliveryReport,
    MailSettings,
    NotificationComposer,
    RetryPolicy,
    deliver_due,
    delivery_status,
    enqueue,
    notification_jobs,
    prepare,
    retry_failed,
    run_worker,
)
from clientcomm.notifications.rules import client_contact_recipients, comment_recipients
from clientcomm.storage.base import Store
from clientcomm.storage.memory import MemoryStore
from clientcomm.storage.sqlite import SQLiteStore

FIRM = Firm(id="f1", name="Kanzlei Müller & Partner", office_email="buero@kanzlei.example")
LINKS = LinkTemplates(
    {"new_comment": "https://office.example/{firm_id}/conversations/{event_id}"},
    default="https://portal.example/{firm_id}/clients/{client_id}/messages",
)
COMPOSER = NotificationComposer(
    MailSettings(sender="portal@kanzlei.example", message_id_domain="notify.kanzlei.example")
)
FAST = RetryPolicy(max_attempts=3, initial_delay=10, factor=2, max_delay=60, jitter=0.5)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        async with MemoryStore() as s:
            yield s
    else:
        async with SQLiteStore(tmp_path / "s.db") as sq:
            await sq.migrate()
            yield sq


def mailing_batch(n: int = 3, *, event_id: str = "mailing-1", extra: list[Contact] | None = None):  # type: ignore[no-untyped-def]
    contacts = [
        Contact(
            id=f"k{i}",
            firm_id="f1",
            client_id="c1",
            name=f"Kontakt {i}",
            email=f"k{i}@example.com",
            registered=True,
            language="en" if i == 1 else "de",
        )
        for i in range(n)
    ] + (extra or [])
    event = NotificationEvent(
        kind=NotificationKind.NEW_MESSAGE,
        firm_id="f1",
        firm_name=FIRM.name,
        event_id=event_id,
        client_id="c1",
    )
    return prepare(event, client_contact_recipients(contacts), LINKS)


async def test_enqueue_in_callers_transaction_and_deliver(store: Store) -> None:
    clock = ManualClock()
    transport = MemoryTransport()
    batch = mailing_batch(
        3, extra=[Contact(id="kx", firm_id="f1", client_id="c1", name="Ohne", registered=True)]
    )
    async with store.transaction("f1") as tx:
        inserted = await enqueue(tx, batch, now=clock.now())
        assert len(inserted) == 4  # 3 jobs + 1 reported skip
    async with store.transaction("f1") as tx:
        assert await tx.count_by_status(JOB_KIND, parent="mailing-1") == {"pending": 3, "failed": 1}

    report = await deliver_due(store, transport, COMPOSER, now=clock.now(), owner="w1")
    assert report == DeliveryReport(claimed=3, sent=3)
    assert len(transport.sent) == 3
    messages = {m["To"].addresses[0].addr_spec: m for m in transport.messages()}
    de = messages["k0@example.com"]
    assert de["Subject"] == "Neue Nachricht von Kanzlei Müller & Partner"
    assert de["From"].addresses[0].display_name == "Kanzlei Müller & Partner"
    assert messages["k1@example.com"]["Subject"] == "New message from Kanzlei Müller & Partner"
    body = de.get_body(("plain",))
    assert body is not None
    assert "https://portal.example/f1/clients/c1/messages" in body.get_content()

    async with store.transaction("f1") as tx:
        status = await delivery_status(tx, "mailing-1")
    assert (status.pending, status.sent, status.failed) == (0, 3, 1)
    assert status.reasons() == {"no_address": 1}
    assert status.failures[0].recipient_ref == "contact:kx"
    # nothing more to do
    assert await deliver_due(store, transport, COMPOSER, now=clock.now()) == DeliveryReport()


async def test_enqueue_is_idempotent_and_rolls_back_with_the_event(store: Store) -> None:
    clock = ManualClock()
    batch = mailing_batch(2)
    async with store.transaction("f1") as tx:
        await enqueue(tx, batch, now=clock.now())
    async with store.transaction("f1") as tx:
        assert await enqueue(tx, batch, now=clock.now()) == []
        assert await tx.count(JOB_KIND, parent="mailing-1") == 2
    other = mailing_batch(2, event_id="mailing-2")
    with pytest.raises(RuntimeError):
        async with store.transaction("f1") as tx:
            await enqueue(tx, other, now=clock.now())
            raise RuntimeError("the event's own write failed")
    async with store.transaction("f1") as tx:
        assert await tx.count(JOB_KIND, parent="mailing-2") == 0
    with pytest.raises(InvalidInputError):
        async with store.transaction("f2") as tx:
            await enqueue(tx, other, now=clock.now())


async def test_temporary_failures_back_off_then_succeed(store: Store) -> None:
    clock = ManualClock()
    transport = MemoryTransport()
    transport.fail_next(2, kind="temporary", code=451)
    async with store.transaction("f1") as tx:
        await enqueue(tx, mailing_batch(1), now=clock.now())
    rng = random.Random(1)
    r1 = await deliver_due(store, transport, COMPOSER, now=clock.now(), retry=FAST, rng=rng)
    assert r1 == DeliveryReport(claimed=1, retried=1)
    async with store.transaction("f1") as tx:
        (job,) = await tx.list(JOB_KIND, parent="mailing-1")
    assert job.status == "pending" and job.lease_owner is None
    assert job.data["last_error"]["code"] == 451
    delay = (job.due_at - clock.now()).total_seconds()  # type: ignore[operator]
    assert 5 <= delay <= 10  # equal jitter around 10 s
    # not due yet
    assert await deliver_due(store, transport, COMPOSER, now=clock.now(), retry=FAST) == (
        DeliveryReport()
    )
    clock.advance(delay)
    r2 = await deliver_due(store, transport, COMPOSER, now=clock.now(), retry=FAST, rng=rng)
    assert r2.retried == 1
    async with store.transaction("f1") as tx:
        (job2,) = await tx.list(JOB_KIND, parent="mailing-1")
    delay2 = (job2.due_at - clock.now()).total_seconds()  # type: ignore[operator]
    assert 10 <= delay2 <= 20  # doubled
    clock.advance(delay2)
    r3 = await deliver_due(store, transport, COMPOSER, now=clock.now(), retry=FAST)
    assert r3.sent == 1
    async with store.transaction("f1") as tx:
        (done,) = await tx.list(JOB_KIND, parent="mailing-1")
    assert done.status == "sent" and done.data["attempts"] == 3
    assert len(transport.sent) == 1


async def test_attempts_are_bounded(store: Store) -> None:
    clock = ManualClock()
    transport = MemoryTransport()
    transport.fail_next(10, kind="temporary")
    async with store.transaction("f1") as tx:
        await enqueue(tx, mailing_batch(1), now=clock.now())
    total = await run_worker(
        store, transport, COMPOSER, clock=clock, retry=FAST, stop_when_idle=True
    )
    assert total == DeliveryReport(claimed=1, retried=1)  # the retry is not due yet
    for _ in range(5):
        clock.advance(120)
        total = total + await run_worker(
            store, transport, COMPOSER, clock=clock, retry=FAST, stop_when_idle=True
        )
    assert total == DeliveryReport(claimed=3, retried=2, failed=1)
    assert transport.attempts == 3
    async with store.transaction("f1") as tx:
        status = await delivery_status(tx, "mailing-1")
    (failure,) = status.failures
    assert failure.reason == "max_attempts" and failure.attempts == 3
    assert "gave up after 3 attempts" in failure.detail


async def test_permanent_failure_is_recorded_and_can_be_requeued(store: Store) -> None:
    clock = ManualClock()
    transport = MemoryTransport()
    transport.refuse("k1@example.com")
    async with store.transaction("f1") as tx:
        await enqueue(tx, mailing_batch(3), now=clock.now())
    report = await deliver_due(store, transport, COMPOSER, now=clock.now())
    assert (report.sent, report.failed) == (2, 1)
    async with store.transaction("f1") as tx:
        status = await delivery_status(tx, "mailing-1")
        assert status.reasons() == {"recipient_refused": 1}
        (failure,) = status.failures
        assert failure.code == 550 and failure.recipient_email == "k1@example.com"
        assert "k1@" not in repr(failure)
        assert await retry_failed(tx, [failure.job_id], now=clock.now()) == 1
    transport = MemoryTransport()  # the mailbox exists now
    assert (await deliver_due(store, transport, COMPOSER, now=clock.now())).sent == 1
    async with store.transaction("f1") as tx:
        assert (await delivery_status(tx, "mailing-1")).sent == 3


async def test_crash_after_send_resends_with_same_message_id(store: Store) -> None:
    """A worker that sent but died before recording: the lease expires and the
    next worker sends again, recognisably the same message."""
    clock = ManualClock()
    transport = MemoryTransport()
    async with store.transaction("f1") as tx:
        await enqueue(tx, mailing_batch(1), now=clock.now())
    (job,) = await store.claim(
        JOB_KIND,
        status="pending",
        owner="crashed",
        now=clock.now(),
        lease=timedelta(minutes=5),
        limit=10,
    )
    await transport.send(COMPOSER.compose(job))  # ... and the process dies here
    assert await deliver_due(store, transport, COMPOSER, now=clock.now()) == DeliveryReport()
    clock.advance(timedelta(minutes=5, seconds=1))
    assert (await deliver_due(store, transport, COMPOSER, now=clock.now())).sent == 1
    first, second = transport.messages()
    assert first["Message-ID"] == second["Message-ID"] == COMPOSER.message_id(job)
    assert transport.sent[0].message == transport.sent[1].message  # byte-identical resend


async def test_lost_reply_after_accept_is_retried_as_duplicate(store: Store) -> None:
    clock = ManualClock()
    transport = MemoryTransport()
    transport.fail_next(1, after_accept=True)
    async with store.transaction("f1") as tx:
        await enqueue(tx, mailing_batch(1), now=clock.now())
    await run_worker(store, transport, COMPOSER, clock=clock, retry=FAST, stop_when_idle=True)
    clock.advance(60)
    await run_worker(store, transport, COMPOSER, clock=clock, retry=FAST, stop_when_idle=True)
    ids = [m["Message-ID"] for m in transport.messages()]
    assert len(ids) == 2 and ids[0] == ids[1]


async def test_lost_lease_is_reported_not_recorded(store: Store) -> None:
    clock = ManualClock()

    class SlowTransport(MemoryTransport):
        async def send(self, mail):  # type: ignore[no-untyped-def]
            # another worker steals the lease while we are sending
            clock.advance(timedelta(minutes=10))
            await store.claim(
                JOB_KIND,
                status="pending",
                owner="thief",
                now=clock.now(),
                lease=timedelta(minutes=5),
                limit=10,
            )
            return await super().send(mail)

    async with store.transaction("f1") as tx:
        await enqueue(tx, mailing_batch(1), now=clock.now())
    report = await deliver_due(store, SlowTransport(), COMPOSER, now=clock.now())
    assert report == DeliveryReport(claimed=1, lost=1)
    async with store.transaction("f1") as tx:
        (job,) = await tx.list(JOB_KIND, parent="mailing-1")
    assert job.status == "pending" and job.lease_owner == "thief"


async def test_malformed_or_unsafe_job_fails_permanently(store: Store) -> None:
    clock = ManualClock()
    (job,) = notification_jobs(mailing_batch(1), now=clock.now())
    bad = job.evolve(
        data={**job.data, "to": {**job.data["to"], "name": "x\r\nBcc: e@evil.example"}}
    )
    broken = job.evolve(id="nj-broken", data={"kind": "new_message"})
    async with store.transaction("f1") as tx:
        await tx.insert([bad, broken])
    transport = MemoryTransport()
    report = await deliver_due(store, transport, COMPOSER, now=clock.now())
    assert report.failed == 2 and transport.sent == ()
    async with store.transaction("f1") as tx:
        status = await delivery_status(tx, "mailing-1")
    assert status.reasons() == {"invalid": 2}


async def test_comment_notifies_office_assignee_and_writes_inapp(store: Store) -> None:
    clock = ManualClock()
    team = [
        Staff(
            id="adm", firm_id="f1", name="Anna Admin", role=Role.ADMIN, email="anna@kanzlei.example"
        ),
        Staff(id="bob", firm_id="f1", name="Bob", role=Role.CLERK, email=None),
    ]
    for cause in ("comment-1", "comment-2"):
        event = NotificationEvent(
            kind="new_comment",
            firm_id="f1",
            firm_name=FIRM.name,
            event_id="conv-7",
            cause_id=cause,
            client_id="c1",
            client_name="Mandant GmbH",
        )
        plan = comment_recipients(
            FIRM, team, client_id="c1", assignee_id="bob", notify_admins=cause == "comment-2"
        )
        async with store.transaction("f1") as tx:
            await enqueue(tx, prepare(event, plan, LINKS), now=clock.now())
        clock.advance(1)
    transport = MemoryTransport()
    report = await deliver_due(store, transport, COMPOSER, now=clock.now())
    assert report.sent == 3  # office twice, the admin once; bob has no address
    tos = sorted(m["To"].addresses[0].addr_spec for m in transport.messages())
    assert tos == ["anna@kanzlei.example", "buero@kanzlei.example", "buero@kanzlei.example"]
    for m in transport.messages():
        assert m["Subject"] == "Neuer Kommentar von Mandant GmbH im Mandantenportal"
        body = m.get_body(("plain",))
        assert body is not None and "https://office.example/f1/conversations/conv-7" in (
            body.get_content()
        )

    async with store.transaction("f1") as tx:
        assert await unread_count(tx, "bob") == 2
        items = await list_inapp(tx, "bob")
        assert [i.cause_id for i in items] == ["comment-2", "comment-1"]  # newest first
        assert items[0].client_name == "Mandant GmbH" and items[0].unread
        assert await mark_read(tx, "bob", [items[1].id], now=clock.now()) == 1
        assert await mark_read(tx, "bob", [items[1].id], now=clock.now()) == 0
        assert await unread_count(tx, "bob") == 1
        assert len(await list_inapp(tx, "bob", unread_only=True)) == 1
    async with store.transaction("f1") as tx:
        with pytest.raises(NotFoundError):
            await mark_read(tx, "adm", [items[0].id], now=clock.now())  # not Anna's
    async with store.transaction("f1") as tx:
        assert await mark_all_read(tx, "bob", now=clock.now()) == 1
        assert await unread_count(tx, "bob") == 0
        assert (await list_inapp(tx, "bob"))[0].read_at == clock.now()
        with pytest.raises(InvalidInputError):
            await list_inapp(tx, "bob", limit=0)


async def test_worker_runs_until_cancelled() -> None:
    import asyncio

    clock = ManualClock()
    transport = MemoryTransport()
    async with MemoryStore() as store:
        task = asyncio.create_task(
            run_worker(store, transport, COMPOSER, clock=clock, idle_interval=0.01)
        )
        for _ in range(3):
            await asyncio.sleep(0)
        async with store.transaction("f1") as tx:
            await enqueue(tx, mailing_batch(2), now=clock.now())
        for _ in range(50):
            await asyncio.sleep(0)
            if len(transport.sent) == 2:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert len(transport.sent) == 2


def test_retry_policy() -> None:
    policy = RetryPolicy(initial_delay=30, factor=2, max_delay=300, jitter=0)
    assert [policy.delay(n).total_seconds() for n in (1, 2, 3, 4, 5, 6)] == [
        30,
        60,
        120,
        240,
        300,
        300,
    ]
    jittered = RetryPolicy(initial_delay=100, jitter=0.5)
    rng = random.Random(7)
    delays = [jittered.delay(1, rng).total_seconds() for _ in range(200)]
    assert all(50 <= d <= 100 for d in delays) and len(set(delays)) > 100
    for bad in (
        {"max_attempts": 0},
        {"jitter": 1.5},
        {"initial_delay": 10, "max_delay": 5},
        {"factor": 0.5},
    ):
        with pytest.raises(InvalidInputError):
            RetryPolicy(**bad)


def test_mail_settings_validation() -> None:
    with pytest.raises(InvalidInputError):
        MailSettings(sender="portal@@x.example", message_id_domain="x.example")
    with pytest.raises(InvalidInputError):
        MailSettings(sender="portal@x.example", message_id_domain="localhost")
    with pytest.raises(InvalidInputError):
        MailSettings(
            sender="portal@x.example",
            message_id_domain="x.example",
            sender_name="A\r\nBcc: b@evil.example",
        )
    settings = MailSettings(
        sender="portal@x.example",
        message_id_domain="x.example",
        sender_name="Portal",
        reply_to="office@x.example",
    )
    job = notification_jobs(mailing_batch(1), now=ManualClock().now())[0]
    mail = NotificationComposer(settings).compose(job)
    assert b"Reply-To: <office@x.example>" in mail.message
    assert b"From: Portal <portal@x.example>" in mail.message
