"""The notification outbox over MemoryStore/SQLiteStore and MemoryTransport."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clientcomm.clock import ManualClock
from clientcomm.directory.models import Contact, Firm, Role, Staff
from clientcomm.errors import ConflictError, IntegrityError, InvalidInputError, NotFoundError
from clientcomm.mail.memory import MemoryTransport
from clientcomm.notifications.compose import make_message_id
from clientcomm.notifications.inapp import (
    InAppNotification,
    inapp_records,
    list_inapp,
    mark_all_read,
    mark_read,
    unread_count,
)
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.models import NotificationEvent, NotificationKind, RecipientRole
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
from clientcomm.notifications.records import (
    INAPP_KIND,
    InAppRecord,
    InAppStatus,
    JobError,
    JobRecipient,
    JobStatus,
    NotifyJob,
)
from clientcomm.notifications.rules import client_contact_recipients, comment_recipients
from clientcomm.records import REGISTRY, Meta, Records
from clientcomm.storage.base import Record, Store
from clientcomm.storage.memory import MemoryStore
from clientcomm.storage.sqlite import SQLiteStore
from clientcomm.testing.counting import CountingStore

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
    async with Records(store).transaction("f1") as tx:
        inserted = await enqueue(tx, batch, now=clock.now())
        assert len(inserted) == 4  # 3 jobs + 1 reported skip
        assert all(isinstance(j, NotifyJob) and j.meta.firm_id == "f1" for j in inserted)
        assert sorted(j.status for j in inserted) == ["failed", "pending", "pending", "pending"]
    async with Records(store).transaction("f1") as tx:
        assert await tx.count_by_status(NotifyJob, parent="mailing-1") == {
            "pending": 3,
            "failed": 1,
        }
        assert await tx.raw.count_by_status(JOB_KIND, parent="mailing-1") == {
            "pending": 3,
            "failed": 1,
        }

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

    async with Records(store).transaction("f1") as tx:
        status = await delivery_status(tx, "mailing-1")
    assert (status.pending, status.sent, status.failed) == (0, 3, 1)
    assert status.reasons() == {"no_address": 1}
    assert status.failures[0].recipient_ref == "contact:kx"
    # nothing more to do
    assert await deliver_due(store, transport, COMPOSER, now=clock.now()) == DeliveryReport()


async def test_enqueue_is_idempotent_and_rolls_back_with_the_event(store: Store) -> None:
    clock = ManualClock()
    batch = mailing_batch(2)
    async with Records(store).transaction("f1") as tx:
        await enqueue(tx, batch, now=clock.now())
    async with Records(store).transaction("f1") as tx:
        assert await enqueue(tx, batch, now=clock.now()) == []
        assert await tx.count(NotifyJob, parent="mailing-1") == 2
    other = mailing_batch(2, event_id="mailing-2")
    with pytest.raises(RuntimeError):
        async with Records(store).transaction("f1") as tx:
            await enqueue(tx, other, now=clock.now())
            raise RuntimeError("the event's own write failed")
    async with Records(store).transaction("f1") as tx:
        assert await tx.count(NotifyJob, parent="mailing-2") == 0
    with pytest.raises(InvalidInputError):
        async with Records(store).transaction("f2") as tx:
            await enqueue(tx, other, now=clock.now())


async def test_temporary_failures_back_off_then_succeed(store: Store) -> None:
    clock = ManualClock()
    transport = MemoryTransport()
    transport.fail_next(2, kind="temporary", code=451)
    async with Records(store).transaction("f1") as tx:
        await enqueue(tx, mailing_batch(1), now=clock.now())
    rng = random.Random(1)
    r1 = await deliver_due(store, transport, COMPOSER, now=clock.now(), retry=FAST, rng=rng)
    assert r1 == DeliveryReport(claimed=1, retried=1)
    async with Records(store).transaction("f1") as tx:
        (job,) = await tx.list(NotifyJob, parent="mailing-1")
    assert job.status is JobStatus.PENDING and job.meta.lease_owner is None
    assert job.last_error is not None and job.last_error.code == 451
    assert job.due_at is not None
    delay = (job.due_at - clock.now()).total_seconds()
    assert 5 <= delay <= 10  # equal jitter around 10 s
    # not due yet
    assert await deliver_due(store, transport, COMPOSER, now=clock.now(), retry=FAST) == (
        DeliveryReport()
    )
    clock.advance(delay)
    r2 = await deliver_due(store, transport, COMPOSER, now=clock.now(), retry=FAST, rng=rng)
    assert r2.retried == 1
    async with Records(store).transaction("f1") as tx:
        (job2,) = await tx.list(NotifyJob, parent="mailing-1")
    assert job2.due_at is not None
    delay2 = (job2.due_at - clock.now()).total_seconds()
    assert 10 <= delay2 <= 20  # doubled
    clock.advance(delay2)
    r3 = await deliver_due(store, transport, COMPOSER, now=clock.now(), retry=FAST)
    assert r3.sent == 1
    async with Records(store).transaction("f1") as tx:
        (done,) = await tx.list(NotifyJob, parent="mailing-1")
    assert done.status is JobStatus.SENT and done.attempts == 3
    assert done.last_error is None and done.sent_at == clock.now() and done.due_at is None
    assert done.message_id == COMPOSER.message_id(done)
    assert len(transport.sent) == 1


async def test_attempts_are_bounded(store: Store) -> None:
    clock = ManualClock()
    transport = MemoryTransport()
    transport.fail_next(10, kind="temporary")
    async with Records(store).transaction("f1") as tx:
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
    async with Records(store).transaction("f1") as tx:
        status = await delivery_status(tx, "mailing-1")
    (failure,) = status.failures
    assert failure.reason == "max_attempts" and failure.attempts == 3
    assert "gave up after 3 attempts" in failure.detail


async def test_permanent_failure_is_recorded_and_can_be_requeued(store: Store) -> None:
    clock = ManualClock()
    transport = MemoryTransport()
    transport.refuse("k1@example.com")
    async with Records(store).transaction("f1") as tx:
        await enqueue(tx, mailing_batch(3), now=clock.now())
    report = await deliver_due(store, transport, COMPOSER, now=clock.now())
    assert (report.sent, report.failed) == (2, 1)
    async with Records(store).transaction("f1") as tx:
        status = await delivery_status(tx, "mailing-1")
        assert status.reasons() == {"recipient_refused": 1}
        (failure,) = status.failures
        assert failure.code == 550 and failure.recipient_email == "k1@example.com"
        assert "k1@" not in repr(failure)
        assert await retry_failed(tx, [failure.job_id], now=clock.now()) == 1
    transport = MemoryTransport()  # the mailbox exists now
    assert (await deliver_due(store, transport, COMPOSER, now=clock.now())).sent == 1
    async with Records(store).transaction("f1") as tx:
        assert (await delivery_status(tx, "mailing-1")).sent == 3


async def test_crash_after_send_resends_with_same_message_id(store: Store) -> None:
    """A worker that sent but died before recording: the lease expires and the
    next worker sends again, recognisably the same message."""
    clock = ManualClock()
    transport = MemoryTransport()
    async with Records(store).transaction("f1") as tx:
        await enqueue(tx, mailing_batch(1), now=clock.now())
    (job,), damaged = await Records(store).claim(
        NotifyJob,
        status="pending",
        owner="crashed",
        now=clock.now(),
        lease=timedelta(minutes=5),
        limit=10,
    )
    assert damaged == [] and job.meta.firm_id == "f1" and job.meta.lease_owner == "crashed"
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
    async with Records(store).transaction("f1") as tx:
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

    async with Records(store).transaction("f1") as tx:
        await enqueue(tx, mailing_batch(1), now=clock.now())
    report = await deliver_due(store, SlowTransport(), COMPOSER, now=clock.now())
    assert report == DeliveryReport(claimed=1, lost=1)
    async with Records(store).transaction("f1") as tx:
        (job,) = await tx.list(NotifyJob, parent="mailing-1")
    assert job.status is JobStatus.PENDING and job.meta.lease_owner == "thief"


async def test_malformed_or_unsafe_job_fails_permanently(store: Store) -> None:
    clock = ManualClock()
    (job,) = notification_jobs(mailing_batch(1), now=clock.now())
    bad = attrs.evolve(job, to=attrs.evolve(job.to, name="x\r\nBcc: e@evil.example"))
    unaddressed = attrs.evolve(
        job, id="nj-unaddressed", to=JobRecipient("contact:x", RecipientRole.CONTACT)
    )
    # a stored job lacking the required fields no longer decodes: it fails alone
    broken = REGISTRY.encode(job).evolve(id="nj-broken", data={"kind": "new_message"})
    async with Records(store).transaction("f1") as tx:
        await tx.insert([bad, unaddressed])
        await tx.raw.insert([broken])
    transport = MemoryTransport()
    report = await deliver_due(store, transport, COMPOSER, now=clock.now())
    assert report.failed == 3 and transport.sent == ()
    async with Records(store).transaction("f1") as tx:
        status = await delivery_status(tx, "mailing-1")
    assert status.reasons() == {"invalid": 2, "malformed": 1}


async def test_comment_notifies_office_assignee_and_writes_inapp(store: Store) -> None:
    clock = ManualClock()
    team = [
        Staff(
            id="adm", firm_id="f1", name="Anna Admin", role=Role.ADMIN, email="anna@kanzlei.example"
        ),
        Staff(id="bob", firm_id="f1", name="Bob", role=Role.CLERK, email=None, client_ids={"c1"}),
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
        async with Records(store).transaction("f1") as tx:
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

    async with Records(store).transaction("f1") as tx:
        assert await unread_count(tx, "bob") == 2
        items = await list_inapp(tx, "bob")
        assert [i.cause_id for i in items] == ["comment-2", "comment-1"]  # newest first
        assert items[0].client_name == "Mandant GmbH" and items[0].unread
        assert await mark_read(tx, "bob", [items[1].id], now=clock.now()) == 1
        assert await mark_read(tx, "bob", [items[1].id], now=clock.now()) == 0
        assert await unread_count(tx, "bob") == 1
        assert len(await list_inapp(tx, "bob", unread_only=True)) == 1
    async with Records(store).transaction("f1") as tx:
        with pytest.raises(NotFoundError):
            await mark_read(tx, "adm", [items[0].id], now=clock.now())  # not Anna's
    async with Records(store).transaction("f1") as tx:
        assert await mark_all_read(tx, "bob", now=clock.now()) == 1
        assert await unread_count(tx, "bob") == 0
        assert (await list_inapp(tx, "bob"))[0].read_at == clock.now()
        with pytest.raises(InvalidInputError):
            await list_inapp(tx, "bob", limit=0)


async def test_a_fresh_batch_is_written_without_reads_and_a_duplicate_conflicts(
    store: Store,
) -> None:
    """``fresh`` (the cause id was made for this change): no existence reads;
    a batch that exists after all refuses the transaction instead of being
    left alone, and nothing of it lands."""
    clock = ManualClock()
    team = [Staff(id="adm", firm_id="f1", name="Anna", role=Role.ADMIN, email="a@kanzlei.example")]
    event = NotificationEvent(
        kind="new_comment",
        firm_id="f1",
        firm_name=FIRM.name,
        event_id="conv-7",
        cause_id="comment-1",
        client_id="c1",
        client_name="Mandant GmbH",
    )
    batch = prepare(event, comment_recipients(FIRM, team, client_id="c1", assignee_id="adm"), LINKS)
    counted = CountingStore(store)
    async with Records(counted).transaction("f1") as tx:
        jobs = await enqueue(tx, batch, now=clock.now(), fresh=True)
    assert len(jobs) == 2 and counted.reads() == 0  # office and the assignee, no reads
    async with Records(store).transaction("f1") as tx:
        assert await tx.count(NotifyJob, parent="conv-7") == 2
        assert await unread_count(tx, "adm") == 1
    async with Records(store).transaction("f1") as tx:
        assert await enqueue(tx, batch, now=clock.now()) == []  # not fresh: left alone
    with pytest.raises(ConflictError):
        async with Records(store).transaction("f1") as tx:
            await tx.insert([attrs.evolve(jobs[0], id="nj-other")])
            await enqueue(tx, batch, now=clock.now(), fresh=True)
    async with Records(store).transaction("f1") as tx:
        assert await tx.count(NotifyJob, parent="conv-7") == 2
        assert await unread_count(tx, "adm") == 1


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
        async with Records(store).transaction("f1") as tx:
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
    assert mail.message_id == make_message_id("f1", job.id, "x.example")  # the event's firm
    assert b"Reply-To: <office@x.example>" in mail.message
    assert b"From: Portal <portal@x.example>" in mail.message


# -- typed records: damaged rows, 0.1 rows, round trips ------------------------------


async def test_garbage_job_fails_alone(store: Store) -> None:
    """A job whose data was edited to garbage is failed on its own (reason
    ``malformed``, never sent, never claimed again); the rest of its batch is
    sent and recorded."""
    clock = ManualClock()
    transport = MemoryTransport()
    records = Records(store)
    async with records.transaction("f1") as tx:
        jobs = await enqueue(tx, mailing_batch(3), now=clock.now())
    victim = jobs[1]
    async with store.transaction("f1") as raw:
        record = await raw.get(JOB_KIND, victim.id)
        await raw.update([record.evolve(data={"v": 1, "kind": 7, "to": "nobody", "attempts": "x"})])

    report = await deliver_due(store, transport, COMPOSER, now=clock.now(), owner="w1")
    assert report == DeliveryReport(claimed=3, sent=2, failed=1)
    assert sorted(m.recipients[0] for m in transport.sent) == sorted(
        j.to.email or "" for j in jobs if j.id != victim.id
    )
    async with store.transaction("f1") as raw:
        damaged = await raw.get(JOB_KIND, victim.id)
    assert damaged.status == "failed" and damaged.due_at is None
    assert damaged.lease_owner is None and damaged.lease_until is None
    assert damaged.data["error"]["reason"] == "malformed"
    assert damaged.data["to"] == "nobody"  # what was there is kept for inspection
    async with records.transaction("f1") as tx:
        with pytest.raises(IntegrityError):
            await tx.list(NotifyJob, parent="mailing-1")
        good = await tx.list(NotifyJob, parent="mailing-1", decode_errors="skip")
        assert sorted(j.status for j in good) == ["sent", "sent"]
        status = await delivery_status(tx, "mailing-1")
        assert (status.pending, status.sent, status.failed) == (0, 2, 1)
        assert status.reasons() == {"malformed": 1}
        assert status.failures[0].job_id == victim.id and status.failures[0].attempts == 0
        assert await retry_failed(tx, [victim.id], now=clock.now()) == 0
    clock.advance(timedelta(hours=1))  # far past any lease
    assert await deliver_due(store, transport, COMPOSER, now=clock.now()) == DeliveryReport()
    assert len(transport.sent) == 2


def _v01_job_id(kind: str, event_id: str, who: str) -> str:
    import hashlib

    raw = f"{kind}\x00{event_id}\x00\x00{who}"
    return "nj-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def _v01_event(**extra: Any) -> dict[str, Any]:
    """``data`` of a notify.job exactly as 0.1 wrote it (``_event_data``)."""
    return {
        "v": 1,
        "kind": "new_message",
        "event_id": "mailing-1",
        "cause_id": None,
        "firm_name": FIRM.name,
        "client_id": "c1",
        "client_name": None,
        "count": None,
        "attempts": 0,
        **extra,
    }


def _v01_to(i: int) -> dict[str, Any]:
    return {
        "ref": f"contact:k{i}",
        "role": "contact",
        "name": f"Kontakt {i}",
        "email": f"k{i}@example.com",
        "language": "en" if i == 1 else "de",
    }


async def test_v01_rows_decode_and_are_delivered(store: Store) -> None:
    clock = ManualClock()
    now = clock.now()
    link = "https://portal.example/f1/clients/c1/messages"
    mid = make_message_id("f1", _v01_job_id("new_message", "mailing-1", "k1@example.com"), "x.ex")
    error_451 = {"reason": "temporary", "code": 451, "detail": "try later"}
    rows = {
        "fresh": ("pending", now, _v01_event(link=link, to=_v01_to(0))),
        "retried": (
            "pending",
            now,
            _v01_event(link=link, to=_v01_to(1), attempts=2, message_id=mid, last_error=error_451),
        ),
        "sent": (
            "sent",
            None,
            _v01_event(
                link=link,
                to=_v01_to(2),
                attempts=1,
                message_id=mid,
                sent_at=(now - timedelta(hours=1)).isoformat(),
                response="250 2.0.0 Ok: queued",
            ),
        ),
        "gave_up": (
            "failed",
            None,
            _v01_event(
                link=link,
                to=_v01_to(3),
                attempts=3,
                last_error=error_451,
                error={"reason": "max_attempts", "code": 451, "detail": "gave up after 3"},
                failed_at=now.isoformat(),
            ),
        ),
        "requeued": (
            "failed",
            None,
            _v01_event(
                link=link,
                to=_v01_to(4),
                previous_error=None,
                error={"reason": "recipient_refused", "code": 550, "detail": "no such user"},
            ),
        ),
        "skipped": (
            "failed",
            None,
            _v01_event(
                to={"ref": "contact:kx", "role": "contact"},
                error={"reason": "no_address", "code": None, "detail": ""},
            ),
        ),
    }
    ids = {
        name: _v01_job_id(
            "new_message",
            "mailing-1",
            "skip:contact:kx" if name == "skipped" else data["to"]["email"],
        )
        for name, (_, _, data) in rows.items()
    }
    async with store.transaction("f1") as raw:
        await raw.insert(
            [
                Record(
                    kind=JOB_KIND,
                    id=ids[name],
                    firm_id="f1",
                    parent="mailing-1",
                    status=status,
                    due_at=due,
                    data=data,
                    created_at=now,
                )
                for name, (status, due, data) in rows.items()
            ]
        )
    # the ids 0.1 derived are still the ids derived now
    fresh = {j.to.ref: j for j in notification_jobs(mailing_batch(5), now=now)}
    assert fresh["contact:k0"].id == ids["fresh"] and fresh["contact:k4"].id == ids["requeued"]

    records = Records(store)
    async with records.transaction("f1") as tx:
        jobs = await tx.get_many(NotifyJob, ids.values())
    assert len(jobs) == len(rows)
    j = jobs[ids["retried"]]
    assert (j.kind, j.event_id, j.firm_name, j.client_id, j.link) == (
        NotificationKind.NEW_MESSAGE,
        "mailing-1",
        FIRM.name,
        "c1",
        link,
    )
    assert j.to == JobRecipient(
        "contact:k1", RecipientRole.CONTACT, "Kontakt 1", "k1@example.com", "en"
    )
    assert j.attempts == 2 and j.message_id == mid
    assert j.last_error == JobError("temporary", 451, "try later")
    assert j.status is JobStatus.PENDING and j.meta.firm_id == "f1" and j.meta.seq > 0
    s = jobs[ids["sent"]]
    assert s.sent_at == now - timedelta(hours=1) and s.response == "250 2.0.0 Ok: queued"
    g = jobs[ids["gave_up"]]
    assert g.error == JobError("max_attempts", 451, "gave up after 3") and g.failed_at == now
    k = jobs[ids["skipped"]]
    assert k.to == JobRecipient("contact:kx", RecipientRole.CONTACT) and k.link is None
    assert jobs[ids["requeued"]].previous_error is None

    transport = MemoryTransport()
    report = await deliver_due(store, transport, COMPOSER, now=now, owner="w1")
    assert report == DeliveryReport(claimed=2, sent=2)
    assert {m["Message-ID"] for m in transport.messages()} == {
        make_message_id("f1", ids[n], "notify.kanzlei.example") for n in ("fresh", "retried")
    }
    async with records.transaction("f1") as tx:
        retried = await tx.get(NotifyJob, ids["retried"])
        assert retried.status is JobStatus.SENT and retried.attempts == 3
        assert retried.last_error is None and retried.sent_at == now
        status = await delivery_status(tx, "mailing-1")
        assert (status.pending, status.sent, status.failed) == (0, 3, 3)
        assert status.reasons() == {"max_attempts": 1, "recipient_refused": 1, "no_address": 1}
        by_id = {f.job_id: f for f in status.failures}
        assert by_id[ids["gave_up"]].attempts == 3 and by_id[ids["requeued"]].code == 550
        # 0.1's "skipped for lack of an address" is still left alone by a retry
        assert await retry_failed(tx, [ids["skipped"], ids["requeued"]], now=now) == 1
        requeued = await tx.get(NotifyJob, ids["requeued"])
        assert requeued.status is JobStatus.PENDING and requeued.error is None
        assert requeued.previous_error == JobError("recipient_refused", 550, "no such user")
    assert (await deliver_due(store, transport, COMPOSER, now=now)).sent == 1


async def test_v01_inapp_rows_decode(store: Store) -> None:
    clock = ManualClock()
    now = clock.now()

    def data(cause: str, read_at: str | None) -> dict[str, Any]:
        return {
            "v": 1,
            "kind": "new_comment",
            "event_id": "conv-1",
            "cause_id": cause,
            "client_id": "c1",
            "client_name": "Mandant GmbH",
            "read_at": read_at,
        }

    async with store.transaction("f1") as raw:
        await raw.insert(
            [
                Record(
                    kind=INAPP_KIND,
                    id="ia-old-1",
                    firm_id="f1",
                    parent="bob",
                    status="read",
                    data=data("cm-1", (now - timedelta(days=1)).isoformat()),
                    created_at=now - timedelta(days=2),
                ),
                Record(
                    kind=INAPP_KIND,
                    id="ia-old-2",
                    firm_id="f1",
                    parent="bob",
                    status="unread",
                    data=data("cm-2", None),
                    created_at=now - timedelta(days=1),
                ),
            ]
        )
    async with Records(store).transaction("f1") as tx:
        items = await list_inapp(tx, "bob")
        assert [i.id for i in items] == ["ia-old-2", "ia-old-1"]
        assert items[1].read_at == now - timedelta(days=1) and not items[1].unread
        assert items[0].unread and items[0].kind is NotificationKind.NEW_COMMENT
        assert items[0].client_name == "Mandant GmbH" and items[0].cause_id == "cm-2"
        assert await unread_count(tx, "bob") == 1
        assert await mark_all_read(tx, "bob", now=now) == 1
        record = await tx.get(InAppRecord, "ia-old-2")
        assert record.read_at == now and record.status is InAppStatus.READ


async def test_damaged_inapp_record_is_left_out_and_can_be_cleared(store: Store) -> None:
    clock = ManualClock()
    records = Records(store)
    events = [
        NotificationEvent(
            kind="new_comment", firm_id="f1", firm_name=FIRM.name, event_id="conv-1", cause_id=c
        )
        for c in ("cm-1", "cm-2")
    ]
    async with records.transaction("f1") as tx:
        for event in events:
            await tx.insert(inapp_records(event, ["bob"], now=clock.now()))
        first, second = await tx.list(InAppRecord, parent="bob")
    async with store.transaction("f1") as raw:
        record = await raw.get(INAPP_KIND, first.id)
        await raw.update([record.evolve(data={"kind": "no such kind"})])
    async with records.transaction("f1") as tx:
        assert [i.id for i in await list_inapp(tx, "bob")] == [second.id]
        assert await unread_count(tx, "bob") == 2
        with pytest.raises(IntegrityError):
            await mark_read(tx, "bob", [first.id], now=clock.now())
    async with records.transaction("f1") as tx:
        assert await mark_all_read(tx, "bob", now=clock.now()) == 2
        assert await unread_count(tx, "bob") == 0
        with pytest.raises(InvalidInputError):
            InAppNotification.from_record(await tx.raw.get(INAPP_KIND, first.id))
        assert InAppNotification.from_record(await tx.raw.get(INAPP_KIND, second.id)).id == (
            second.id
        )


def test_notification_kinds_are_declared() -> None:
    job_kind = REGISTRY.kind(JOB_KIND)
    inapp_kind = REGISTRY.kind(INAPP_KIND)
    assert job_kind.cls is NotifyJob and inapp_kind.cls is InAppRecord
    for kind in (job_kind, inapp_kind):
        assert kind.capability == "notifications" and kind.sealed == ()
        assert kind.meanings["parent"] and kind.meanings["status"]
    assert dict(job_kind.columns) == {
        "id": "id",
        "parent": "event_id",
        "status": "status",
        "due_at": "due_at",
        "created_at": "created_at",
    }
    assert job_kind.status is JobStatus and inapp_kind.status is InAppStatus
    (job,) = notification_jobs(mailing_batch(1), now=ManualClock().now())
    assert job_kind.client is not None and job_kind.client(job) == "c1"
    assert job.link and "k0@example.com" not in repr(job) and job.link not in repr(job)
    # new rows carry no defaults, no column values and no "v"
    data = REGISTRY.encode(job).data
    assert set(data) == {"kind", "firm_name", "client_id", "to", "link"}
    assert data["to"]["email"] == "k0@example.com" and data["kind"] == "new_message"


_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_ZONES = st.integers(-23 * 60, 23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
_WHEN = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=_ZONES
)


def _opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


_ERRORS = st.builds(JobError, _TEXT, _opt(st.integers(0, 999)), _TEXT)
_RECIPIENTS = st.builds(
    JobRecipient,
    _TEXT,
    st.sampled_from(RecipientRole),
    _opt(_TEXT),
    _opt(_TEXT),
    _opt(_TEXT),
)
_JOBS = st.builds(
    NotifyJob,
    id=_TEXT,
    event_id=_TEXT,
    kind=st.sampled_from(NotificationKind),
    firm_name=_TEXT,
    to=_RECIPIENTS,
    created_at=_WHEN,
    status=st.sampled_from(JobStatus),
    due_at=_opt(_WHEN),
    cause_id=_opt(_TEXT),
    client_id=_opt(_TEXT),
    client_name=_opt(_TEXT),
    count=_opt(st.integers(0, 10**9)),
    link=_opt(_TEXT),
    attempts=st.integers(0, 100),
    error=_opt(_ERRORS),
    last_error=_opt(_ERRORS),
    previous_error=_opt(_ERRORS),
    message_id=_opt(_TEXT),
    sent_at=_opt(_WHEN),
    response=_opt(_TEXT),
    failed_at=_opt(_WHEN),
)
_INAPP = st.builds(
    InAppRecord,
    id=_TEXT,
    staff_id=_TEXT,
    kind=st.sampled_from(NotificationKind),
    event_id=_TEXT,
    created_at=_WHEN,
    status=st.sampled_from(InAppStatus),
    cause_id=_opt(_TEXT),
    client_id=_opt(_TEXT),
    client_name=_opt(_TEXT),
    read_at=_opt(_WHEN),
)


def _stored(record: Record) -> Record:
    """``record`` as a store gives it back: ``data`` through JSON, and a seq."""
    return record.evolve(data=json.loads(json.dumps(record.data)), seq=7, version=1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_JOBS)
def test_notify_job_round_trip(job: NotifyJob) -> None:
    back = REGISTRY.decode(_stored(REGISTRY.encode(job, "f1")))
    assert isinstance(back, NotifyJob) and back == job
    assert back.meta == Meta(firm_id="f1", seq=7, version=1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_INAPP)
def test_inapp_record_round_trip(record: InAppRecord) -> None:
    back = REGISTRY.decode(_stored(REGISTRY.encode(record, "f1")))
    assert isinstance(back, InAppRecord) and back == record
    assert InAppNotification.of(back).seq == 7


async def test_jobs_round_trip_through_the_store(store: Store) -> None:
    clock = ManualClock()
    built = notification_jobs(
        mailing_batch(3, extra=[Contact(id="kx", firm_id="f1", client_id="c1", name="O")]),
        now=clock.now(),
    )
    # every optional part set, so every field goes through the store's JSON
    full = attrs.evolve(
        built[0],
        id="nj-full",
        count=4,
        cause_id="cause",
        client_name="Mandant GmbH",
        attempts=2,
        error=JobError("x", 1, "d"),
        last_error=JobError("y"),
        previous_error=JobError("z", None, "dd"),
        message_id="<m@x.example>",
        sent_at=clock.now(),
        response="250 ok",
        failed_at=clock.now(),
        due_at=clock.now() + timedelta(seconds=1),
    )
    async with Records(store).transaction("f1") as tx:
        inserted = [*built, full]
        await tx.insert(inserted)
    async with Records(store).transaction("f1") as tx:
        read = await tx.get_many(NotifyJob, [j.id for j in inserted])
    assert [read[j.id] for j in inserted] == [*built, full]
