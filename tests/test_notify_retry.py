"""Retrying failed notifications against the Directory as it is now (every Store):
a recipient skipped for lack of an address is mailed once it has one; one that
still has none, or lost its portal access, stays failed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clientcomm import Contact, Firm, InvalidInputError, Role, Staff, WritableDirectory
from clientcomm.actors import StaffActor
from clientcomm.app import ClientComm
from clientcomm.mail.memory import MemoryTransport
from clientcomm.notifications.models import NotificationEvent, NotificationKind
from clientcomm.notifications.outbox import delivery_status, enqueue, prepare, retry_failed
from clientcomm.notifications.records import JobError, JobStatus, NotifyJob
from clientcomm.notifications.rules import office_recipient, staff_recipient
from clientcomm.records import Records
from clientcomm.rules.audience import Audience
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import LINKS, make_app

ADMIN = StaffActor("f1", "admin")


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path) as application:
            yield application


def directory(app: ClientComm) -> WritableDirectory:
    assert isinstance(app.directory, WritableDirectory)
    return app.directory


def sent_to(app: ClientComm) -> list[str]:
    assert isinstance(app.transport, MemoryTransport)
    return sorted(str(m["To"]) for m in app.transport.messages())


async def jobs(app: ClientComm, firm_id: str, event_id: str) -> dict[str, NotifyJob]:
    """The event's jobs by recipient ref."""
    async with Records(app.store).transaction(firm_id) as tx:
        return {j.to.ref: j for j in await tx.list(NotifyJob, parent=event_id)}


async def mailing(app: ClientComm, *clients: str) -> str:
    receipt = await app.mailings.submit(ADMIN, Audience.clients(*clients), "Neue Unterlagen")
    await app.drain()
    return receipt.id


async def test_a_contact_without_an_address_is_mailed_once_it_has_one(app: ClientComm) -> None:
    mailing_id = await mailing(app, "c1", "c2")  # k2 (of c2) is registered, without e-mail
    assert sent_to(app) == ["Anna Alt <anna@example.com>"]
    skipped = (await jobs(app, "f1", mailing_id))["contact:k2"]
    assert skipped.status is JobStatus.FAILED and skipped.error is not None
    assert skipped.error.reason == "no_address" and skipped.link is None

    # still no address: it stays failed, untouched
    assert await app.retry_notifications("f1", [skipped.id]) == 0
    assert (await jobs(app, "f1", mailing_id))["contact:k2"] == skipped

    await directory(app).put_contact(
        Contact("k2", "f1", "c2", "Bernd Bau", email="bernd@example.com", registered=True)
    )
    assert await app.retry_notifications("f1", [skipped.id]) == 1
    requeued = (await jobs(app, "f1", mailing_id))["contact:k2"]
    assert requeued.status is JobStatus.PENDING and requeued.to.email == "bernd@example.com"
    assert requeued.to.name == "Bernd Bau" and requeued.previous_error == skipped.error
    assert requeued.link == "https://portal.example/f1/clients/c2/messages"
    await app.drain()
    assert sent_to(app) == ["Anna Alt <anna@example.com>", "Bernd Bau <bernd@example.com>"]
    delivered = (await jobs(app, "f1", mailing_id))["contact:k2"]
    assert delivered.status is JobStatus.SENT and delivered.id == skipped.id
    progress = await app.mailings.status(ADMIN, mailing_id)
    assert (progress.notifications_sent, progress.notifications_failed) == (2, 0)
    assert await app.retry_notifications("f1", [skipped.id]) == 0  # sent: nothing to retry


async def test_a_refused_address_is_replaced_by_the_fixed_one(app: ClientComm) -> None:
    assert isinstance(app.transport, MemoryTransport)
    app.transport.refuse("anna@example.com")
    mailing_id = await mailing(app, "c1")
    failed = (await jobs(app, "f1", mailing_id))["contact:k1"]
    assert failed.error is not None and failed.error.reason == "recipient_refused"
    await directory(app).put_contact(
        Contact("k1", "f1", "c1", "Anna Alt", email="anna.alt@example.com", registered=True)
    )
    assert await app.retry_notifications("f1", [failed.id]) == 1
    await app.drain()
    assert sent_to(app) == ["Anna Alt <anna.alt@example.com>"]


async def test_who_lost_portal_access_or_is_gone_stays_failed(app: ClientComm) -> None:
    mailing_id = await mailing(app, "c2")
    skipped = (await jobs(app, "f1", mailing_id))["contact:k2"]
    await directory(app).put_contact(
        Contact("k2", "f1", "c2", "Bernd Bau", email="bernd@example.com", registered=False)
    )
    assert await app.retry_notifications("f1", [skipped.id]) == 0
    await directory(app).put_contact(  # someone else's contact now: not c2's
        Contact("k2", "f1", "c3", "Bernd Bau", email="bernd@example.com", registered=True)
    )
    assert await app.retry_notifications("f1", [skipped.id, "nj-unknown"]) == 0
    assert (await jobs(app, "f1", mailing_id))["contact:k2"] == skipped


async def test_an_address_that_has_its_own_job_gets_no_second_mail(app: ClientComm) -> None:
    await directory(app).put_contact(Contact("k4", "f1", "c1", "Ali Alt", registered=True))
    mailing_id = await mailing(app, "c1")
    skipped = (await jobs(app, "f1", mailing_id))["contact:k4"]
    await directory(app).put_contact(  # k4 now shares Anna's address, which had its mail
        Contact("k4", "f1", "c1", "Ali Alt", email="ANNA@example.com", registered=True)
    )
    assert await app.retry_notifications("f1", [skipped.id]) == 0
    await app.drain()
    assert sent_to(app) == ["Anna Alt <anna@example.com>"]


async def test_office_and_staff_recipients_are_resolved_again(app: ClientComm) -> None:
    d = directory(app)
    await d.put_staff(
        Staff("helga", "f2", "Helga Hilfe", Role.CLERK, unrestricted=True)
    )  # no e-mail
    await d.put_staff(Staff("ina", "f2", "Ina Inaktiv", Role.CLERK, unrestricted=True))
    event = NotificationEvent(
        NotificationKind.NEW_COMMENT, "f2", "Ohne Gruppen", "conv-1", client_id="x1"
    )
    plan = office_recipient(await d.get_firm("f2"))  # the firm has no office address
    for name in ("helga", "ina"):
        plan = plan + staff_recipient(await d.get_staff("f2", name))
    async with Records(app.store).transaction("f2") as tx:
        await enqueue(tx, prepare(event, plan, LINKS), now=app.clock.now())
        status = await delivery_status(tx, "conv-1")
    assert status.reasons() == {"no_address": 3}
    await d.put_firm(Firm("f2", "Ohne Gruppen", office_email="buero@f2.example"))
    await d.put_staff(
        Staff("helga", "f2", "Helga Hilfe", Role.CLERK, unrestricted=True, email="helga@f2.example")
    )
    await d.put_staff(
        Staff(
            "ina",
            "f2",
            "Ina Inaktiv",
            Role.CLERK,
            unrestricted=True,
            email="ina@f2.example",
            active=False,
        )
    )
    ids = [f.job_id for f in status.failures]
    assert await app.retry_notifications("f2", ids) == 2
    await app.drain()
    assert sent_to(app) == ["Helga Hilfe <helga@f2.example>", "Ohne Gruppen <buero@f2.example>"]
    left = await jobs(app, "f2", "conv-1")
    assert left["staff:ina"].error == JobError("no_address")


async def test_without_a_directory_a_skipped_job_is_left_alone(app: ClientComm) -> None:
    mailing_id = await mailing(app, "c2")
    skipped = (await jobs(app, "f1", mailing_id))["contact:k2"]
    await directory(app).put_contact(
        Contact("k2", "f1", "c2", "Bernd Bau", email="bernd@example.com", registered=True)
    )
    async with Records(app.store).transaction("f1") as tx:
        assert await retry_failed(tx, [skipped.id], now=app.clock.now()) == 0
        with pytest.raises(InvalidInputError):
            await retry_failed(tx, [skipped.id], now=app.clock.now(), directory=app.directory)
        assert (
            await retry_failed(
                tx, [skipped.id], now=app.clock.now(), directory=app.directory, links=LINKS
            )
            == 1
        )
