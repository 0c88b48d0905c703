"""Poison tests (hardening items 3 and 9): one bad value fails alone.

Each bad value is placed where it could really sit: in an integrator's
Directory (which clientcomm cannot make validate its data: here a
MemoryDirectory written around its checks), or in the store (the memory store
keeps any ``str``, an integrator's store may too; SQLite and PostgreSQL refuse
some values at write). A second, good firm submits a mailing beside the
poisoned one; over six lease cycles its mailing and every notice complete, the
poisoned firm's bad item is failed visibly, and no recipient of either firm is
sent a notice twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import attrs
import pytest

from clientcomm import Client, Contact, Firm, ManualClock, Role, Staff
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.crypto import LocalKeyProvider, MasterKey
from clientcomm.directory.memory import MemoryDirectory
from clientcomm.mail.memory import MemoryTransport
from clientcomm.mailing import MailingState
from clientcomm.messages import MESSAGE_KIND
from clientcomm.notifications.models import NotificationEvent, NotificationKind
from clientcomm.notifications.outbox import (
    NotificationComposer,
    deliver_due,
    delivery_status,
    notification_jobs,
    prepare,
)
from clientcomm.notifications.records import JobStatus, NotifyJob
from clientcomm.notifications.rules import client_contact_recipients
from clientcomm.records import Records
from clientcomm.rules.audience import Audience
from clientcomm.storage.base import Store
from clientcomm.storage.memory import MemoryStore
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import LINKS, MAIL, T0

GOOD, BAD = "good", "bad"
CLIENTS = 5
LEASE = timedelta(seconds=60)


class RawDirectory(MemoryDirectory):
    """An integrator's Directory: holds whatever it is given (no checks)."""

    def raw_firm(self, firm: Firm) -> None:
        self._firms[firm.id] = firm
        for table in (self._groups, self._clients, self._contacts, self._staff, self._cases):
            table.setdefault(firm.id, {})

    def raw_client(self, client: Client) -> None:
        self._clients[client.firm_id][client.id] = client

    def raw_contact(self, contact: Contact) -> None:
        self._contacts[contact.firm_id][contact.id] = contact

    def raw_staff(self, staff: Staff) -> None:
        self._staff[staff.firm_id][staff.id] = staff


def populate(directory: RawDirectory, firm_id: str, name: str) -> None:
    directory.raw_firm(Firm(firm_id, name))
    directory.raw_staff(Staff("admin", firm_id, "Ada Admin", Role.ADMIN))
    for i in range(CLIENTS):
        cid = f"c{i}"
        directory.raw_client(Client(cid, firm_id, f"Client {i}"))
        directory.raw_contact(
            Contact(
                f"k{i}",
                firm_id,
                cid,
                f"Kontakt {i}",
                email=f"{firm_id}{i}@example.com",
                registered=True,
            )
        )


@attrs.frozen
class Poison:
    """A bad value, how it is placed in the bad firm's Directory, and how the
    bad firm's mailing shows it: ``"skipped"`` (a recipient left out at
    submit, reason ``invalid_id``), ``"notice"`` (one notice failed),
    ``"notices"`` (every notice of the firm failed: its name cannot be a
    sender's name) or ``"harmless"`` (the value is never stored or rendered)."""

    name: str
    place: Callable[[RawDirectory], None]
    shows: str
    reason: str = ""


def _firm_name(value: str) -> Poison:
    def place(d: RawDirectory) -> None:
        d.raw_firm(Firm(BAD, value))

    return Poison(f"firm name {value[:12]!r}", place, "notices")


def _client_id(value: str) -> Poison:
    def place(d: RawDirectory) -> None:
        d.raw_client(Client(value, BAD, "Poisoned Id"))
        d.raw_contact(
            Contact("kp", BAD, value, "Kontakt P", email="badp@example.com", registered=True)
        )

    return Poison(f"client id {value!r}", place, "skipped")


def _client_name(value: str) -> Poison:
    def place(d: RawDirectory) -> None:
        d.raw_client(Client("c0", BAD, value))

    return Poison(f"client name {value!r}", place, "harmless")


def _contact_name(value: str) -> Poison:
    def place(d: RawDirectory) -> None:
        d.raw_contact(Contact("k0", BAD, "c0", value, email=f"{BAD}0@example.com", registered=True))

    return Poison(f"contact name {value!r}", place, "notice", "invalid_name")


def _contact_email(value: str) -> Poison:
    def place(d: RawDirectory) -> None:
        d.raw_contact(Contact("k0", BAD, "c0", "Kontakt 0", email=value, registered=True))

    return Poison(f"contact email {value!r}", place, "notice", "invalid_address")


POISONS = [
    _firm_name("Kanzlei\nBcc: evil@example.com"),
    _firm_name("Kanzlei\r\nX"),
    _firm_name("K" * 301),
    _firm_name("Kanzlei \ud800"),
    _firm_name("Kanzlei \x00"),
    _client_id("c\x00x"),
    _client_id("c\ud800"),
    _client_name("Anna \ud800"),
    _client_name("Anna\x00"),
    _contact_name("Anna \ud800"),
    _contact_name("Anna\r\nBcc: evil@example.com"),
    _contact_name("Anna\x00"),
    _contact_email("anna\ud800@example.com"),
    _contact_email("anna@exa\x00mple.com"),
]


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async for s in open_backend(request.param, tmp_path):
        yield s


async def app_for(store: Store, directory: RawDirectory) -> ClientComm:
    clock = ManualClock(T0)
    return ClientComm(
        store=store,
        directory=directory,
        keys=LocalKeyProvider(store, MasterKey.generate(), clock=clock),
        blobs=MemoryBlobStore(),
        transport=MemoryTransport(),
        links=LINKS,
        mail=MAIL,
        clock=clock,
        lease=LEASE,
    )


async def cycles(app: ClientComm, n: int = 6) -> None:
    """``n`` rounds of draining, each followed by the lease running out."""
    clock = app.clock
    assert isinstance(clock, ManualClock)
    for _ in range(n):
        await app.drain(max_rounds=50)
        clock.advance(timedelta(minutes=10))  # past every lease and retry backoff
    await app.drain(max_rounds=50)


def sent_to(app: ClientComm) -> Counter[str]:
    transport = app.transport
    assert isinstance(transport, MemoryTransport)
    return Counter(r for mail in transport.sent for r in mail.recipients)


@pytest.mark.parametrize("poison", POISONS, ids=lambda p: p.name)
async def test_a_poisoned_firm_does_not_block_a_good_one(store: Store, poison: Poison) -> None:
    directory = RawDirectory()
    populate(directory, BAD, "Kanzlei Schlecht")
    populate(directory, GOOD, "Kanzlei Gut")
    poison.place(directory)
    app = await app_for(store, directory)
    # the poisoned firm first: its items are claimed in the same batches, ahead
    bad = await app.mailings.submit(StaffActor(BAD, "admin"), Audience.everyone(), "Hallo")
    good = await app.mailings.submit(StaffActor(GOOD, "admin"), Audience.everyone(), "Hallo")
    await cycles(app)  # never raises: every bad item fails alone

    progress = await app.mailings.status(StaffActor(GOOD, "admin"), good.id)
    assert progress.state is MailingState.COMPLETED
    assert (progress.delivered, progress.failed, progress.skipped) == (CLIENTS, 0, 0)
    assert (progress.notifications_sent, progress.notifications_pending) == (CLIENTS, 0)
    counts = sent_to(app)
    assert all(counts[f"{GOOD}{i}@example.com"] == 1 for i in range(CLIENTS)), counts
    assert max(counts.values()) == 1, counts  # nobody, in either firm, twice

    report = await app.mailings.status(StaffActor(BAD, "admin"), bad.id)
    assert report.state is MailingState.COMPLETED, report
    assert report.pending == report.notifications_pending == 0, report
    assert report.notification_batches_pending == 0, report
    assert report.delivered == CLIENTS and report.failed == 0, report
    bad_sent = sum(counts[f"{BAD}{i}@example.com"] for i in range(CLIENTS))
    ledger = [e async for e in app.mailings.ledger(StaffActor(BAD, "admin"), bad.id)]
    if poison.shows == "skipped":
        assert bad.skipped == ((ascii(bad_id(poison))[1:-1], "invalid_id"),)
        assert report.skipped == 1 and report.notifications_sent == CLIENTS
        assert [e.reason for e in ledger if e.state == "skipped"] == ["invalid_id"]
        assert bad_sent == CLIENTS
    elif poison.shows == "notice":
        assert (report.notifications_sent, report.notifications_failed) == (CLIENTS - 1, 1)
        assert bad_sent == CLIENTS - 1 and counts[f"{BAD}0@example.com"] == 0
        [entry] = [e for e in ledger if e.notifications_failed]
        assert entry.client_id == "c0"
        assert entry.notification_errors == (poison.reason,)
    elif poison.shows == "notices":
        assert (report.notifications_sent, report.notifications_failed) == (0, CLIENTS)
        assert bad_sent == 0
        assert all(e.notification_errors == ("invalid firm_name",) for e in ledger), ledger
    else:
        assert (report.notifications_sent, report.notifications_failed) == (CLIENTS, 0)
        assert bad_sent == CLIENTS


def bad_id(poison: Poison) -> str:
    directory = RawDirectory()
    populate(directory, BAD, "x")
    before = set(directory._clients[BAD])
    poison.place(directory)
    [new] = set(directory._clients[BAD]) - before
    return new


# -- the e-mail storm: an unrenderable job in a store that keeps it ---------------------
def _jobs(firm_id: str, firm_name: str, n: int) -> list[NotifyJob]:
    jobs: list[NotifyJob] = []
    for i in range(n):
        contact = Contact(
            f"k{i}",
            firm_id,
            f"c{i}",
            f"Kontakt {i}",
            email=f"{firm_id}{i}@example.com",
            registered=True,
        )
        event = NotificationEvent(
            kind=NotificationKind.NEW_MESSAGE,
            firm_id=firm_id,
            firm_name=firm_name,
            event_id="ev",
            cause_id=f"m{i}",
            client_id=f"c{i}",
        )
        plan = client_contact_recipients([contact])
        jobs += notification_jobs(prepare(event, plan, LINKS), now=T0)
    return jobs


@pytest.mark.parametrize("bad_name", ["Kanzlei \ud800", "Kanzlei\nBcc: x", "K" * 301])
async def test_an_unrenderable_job_does_not_resend_its_batch(bad_name: str) -> None:
    """The memory store (like an integrator's) keeps a lone surrogate; the job
    that cannot be rendered fails alone and the batch's other mails are
    recorded as sent, so six lease cycles send each of them once."""
    async with MemoryStore() as store:
        good = _jobs("g", "Kanzlei Gut", 100)
        # one job whose stored firm name no mail can carry, claimed with them
        [poisoned] = _jobs("b", "Kanzlei Schlecht", 1)
        poisoned = attrs.evolve(poisoned, firm_name=bad_name)
        records = Records(store)
        async with records.transaction("b") as tx:
            await tx.insert([poisoned])
        async with records.transaction("g") as tx:
            await tx.insert(good)
        transport = MemoryTransport()
        composer = NotificationComposer(MAIL)
        now = T0
        for _ in range(6):
            await deliver_due(store, transport, composer, now=now, lease=LEASE, limit=200)
            now += timedelta(minutes=10)  # every lease runs out
        counts = Counter(r for mail in transport.sent for r in mail.recipients)
        assert len(transport.sent) == 100 and set(counts.values()) == {1}
        async with records.transaction("b") as tx:
            failed = await tx.get(NotifyJob, poisoned.id)
            status = await delivery_status(tx, "ev")
        assert failed.status is JobStatus.FAILED and failed.error is not None
        assert failed.error.reason in ("unrenderable", "invalid")
        assert status.failed == 1 and status.sent == 0
        async with records.transaction("g") as tx:
            assert (await delivery_status(tx, "ev")).sent == 100


# -- a page that names an unusable client id ---------------------------------------------
@pytest.mark.parametrize("value", ["c\x00x", "c\ud800"])
async def test_a_bad_client_id_in_a_page_fails_alone(store: Store, value: str) -> None:
    """A page written before ids were checked at submit (or kept by an
    integrator's store) names a client id no cipher or store takes: that
    recipient fails alone, the rest of its page is delivered. (The page is
    re-MACed under the mailing's page key as its writer would have: an edited,
    un-MACed page fails as a whole, see tests/records/test_metadata_tamper.py.)"""
    from clientcomm.crypto.context import SealContext
    from clientcomm.mailing import RecipientPage
    from clientcomm.mailing.records import MAILING_KIND, MailingRecord, staging_owner
    from clientcomm.mailing.rules import authenticated_mailing, page_mac

    directory = RawDirectory()
    populate(directory, GOOD, "Kanzlei Gut")
    app = await app_for(store, directory)
    receipt = await app.mailings.submit(StaffActor(GOOD, "admin"), Audience.everyone(), "Hallo")
    records = app.mailings.records
    async with records.transaction(GOOD) as tx:
        [page] = await tx.list(RecipientPage, parent=receipt.id)
        mailing = await tx.get(MailingRecord, receipt.id)
    plain = await app.sealer.open(
        SealContext(GOOD, staging_owner(receipt.id), MAILING_KIND, receipt.id, "text"),
        mailing.sealed_text,
    )
    _, _, key = authenticated_mailing(mailing, plain)
    assert key is not None
    clients = (*page.clients[:2], value, *page.clients[2:])
    mac = page_mac(key, page.id, page.mailing_id, clients, page.due_at)
    async with records.transaction(GOOD) as tx:
        try:
            await tx.update([attrs.evolve(page, clients=clients, mac=mac)])
        except Exception:
            pytest.skip("this store refuses the value at write (it can never be in a page)")
    await cycles(app)
    progress = await app.mailings.status(StaffActor(GOOD, "admin"), receipt.id)
    assert progress.state is MailingState.COMPLETED
    assert (progress.delivered, progress.failed, progress.pending) == (CLIENTS, 1, 0)
    assert progress.notifications_sent == CLIENTS
    ledger = [e async for e in app.mailings.ledger(StaffActor(GOOD, "admin"), receipt.id)]
    assert [e.reason for e in ledger if e.state == "failed"] == ["invalid_id"]
    assert set(sent_to(app).values()) == {1}


# -- one tampered copy does not hide a chat ------------------------------------------------
@pytest.mark.parametrize("damage", ["sealed_text", "garbage"])
async def test_a_tampered_copy_fails_alone_in_the_chat(store: Store, damage: str) -> None:
    directory = RawDirectory()
    populate(directory, GOOD, "Kanzlei Gut")
    app = await app_for(store, directory)
    staff = StaffActor(GOOD, "admin")
    ids = [await app.messages.send(staff, "c1", f"Nachricht {i}") for i in range(3)]
    async with store.transaction(GOOD) as tx:
        record = await tx.get(MESSAGE_KIND, ids[1])
        other = await tx.get(MESSAGE_KIND, ids[0])
        if damage == "sealed_text":  # another message's envelope: fails to open
            damaged = record.evolve(body=other.body)
        else:  # does not decode at all
            damaged = record.evolve(data={"what": "garbage"})
        await tx.update([damaged])
    client_view = await app.messages.list_for_client(ClientActor(GOOD, "c1"))
    assert [m.id for m in client_view] == [ids[2], ids[0]]
    assert [m.text for m in client_view] == ["Nachricht 2", "Nachricht 0"]
    assert client_view.unreadable == (ids[1],)
    staff_view = await app.messages.list_for_staff(staff, "c1")
    assert [m.id for m in staff_view] == [ids[2], ids[0]]
    assert staff_view.unreadable == (ids[1],)
    assert await app.messages.unread_count(ClientActor(GOOD, "c1"), "c1") == 0
