"""Proof of delivery (issue 11, part 4): one evidence object per message sent to
a client, over memory, SQLite and PostgreSQL, and once over a real loopback
SMTP server; the ``message.read`` audit entries it reads the first opening
from; the registry later capabilities add their facts through."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from pathlib import Path

import pytest

from clientcomm import (
    Audience,
    ConfigurationError,
    IntegrityError,
    InvalidInputError,
    ManualClock,
    NotFoundError,
    PermissionDeniedError,
    directory_for,
)
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.crypto import LocalKeyProvider, MasterKey
from clientcomm.evidence import EVIDENCE_SOURCES, EvidenceContext, Fact, register_evidence_source
from clientcomm.mail.base import OutgoingMail, SendResult
from clientcomm.mail.memory import MemoryTransport
from clientcomm.mail.smtp import SMTPTransport
from clientcomm.messages.records import MESSAGE_KIND
from clientcomm.notifications.records import JOB_KIND
from clientcomm.storage.memory import MemoryStore
from clientcomm.testing.smtpd import smtp_server
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import LINKS, MAIL, T0, make_app, seed

ADMIN = StaffActor("f1", "admin")
ANNA = ClientActor("f1", "c1", "k1")  # contact k1: registered, anna@example.com
BERND = ClientActor("f1", "c2", "k2")  # contact k2: registered, no address


class SlowTransport(MemoryTransport):
    """A MemoryTransport whose server takes 7 seconds to accept (on the clock)."""

    def __init__(self, clock: ManualClock) -> None:
        super().__init__()
        self.clock = clock

    async def send(self, mail: OutgoingMail) -> SendResult:
        self.clock.advance(7)
        return await super().send(mail)


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path) as application:
            assert isinstance(application.clock, ManualClock)
            application.transport = SlowTransport(application.clock)
            yield application


def clock(app: ClientComm) -> ManualClock:
    assert isinstance(app.clock, ManualClock)
    return app.clock


async def copy_of(app: ClientComm, mailing_id: str, client_id: str) -> str:
    chat = await app.messages.list_for_staff(ADMIN, client_id, mark_read=False)
    [copy] = [m for m in chat if m.mailing_id == mailing_id]
    return copy.id


async def reads(app: ClientComm, client_id: str) -> list[tuple[str, ...]]:
    await app.audit.chain("f1")
    page = await app.audit.query("f1", client=client_id, operation="message.read")
    return [e.objects for e in page.entries]


async def rewrite(app: ClientComm, kind: str, id: str, **changes: object) -> None:
    """Edit a stored record as a database editor would."""
    async with app.store.transaction("f1") as tx:
        record = (await tx.get_many(kind, [id]))[id]
        new = record.evolve(**changes).evolve(seq=0, version=0)
        await tx.delete(kind, [id])
        await tx.insert([new])


# -- a single message --------------------------------------------------------------------
async def test_single_message_stored_then_first_opened(app: ClientComm) -> None:
    mid = await app.messages.send(ADMIN, "c1", "Ihre Unterlagen liegen bereit.")
    await app.drain()
    ev = await app.messages.evidence(ADMIN, mid)
    assert (ev.message_id, ev.client_id, ev.mailing_id) == (mid, "c1", None)
    assert [f.kind for f in ev.facts] == ["copy.stored"]
    assert ev.stored_at == T0 and ev.first_opened_at is None and ev.complete
    stored = ev.facts[0]
    [sent] = (await app.audit.query("f1", subject=f"message:{mid}")).entries
    assert stored.details["audit"] == {"id": sent.id, "position": sent.position, "hash": sent.hash}
    assert stored.source == f"message:{mid}" and stored.details["author_id"] == "admin"

    clock(app).advance(timedelta(hours=2))
    await app.messages.list_for_client(ANNA)  # opening the chat marks it read
    clock(app).advance(timedelta(hours=1))
    await app.messages.get_for_client(ANNA, mid)  # already read: nothing new
    await app.messages.list_for_client(ANNA)
    ev = await app.messages.evidence(ADMIN, mid)
    assert [f.kind for f in ev.facts] == ["copy.stored", "message.opened"]
    opened = ev.first("message.opened")
    assert opened is not None and opened.at == T0 + timedelta(hours=2)
    assert opened.details["actor"] == "client:c1" and opened.details["contact"] == "k1"
    assert opened.details["via"] == "chat" and opened.source.startswith("audit:")
    assert await reads(app, "c1") == [("contact:k1", f"message:{mid}")]  # once

    doc = json.loads(ev.to_json())
    assert doc["message_id"] == mid and doc["complete"] is True and doc["problems"] == []
    assert [f["kind"] for f in doc["facts"]] == ["copy.stored", "message.opened"]
    assert doc["facts"][1]["at"] == (T0 + timedelta(hours=2)).isoformat()
    assert "Unterlagen" not in ev.to_json()  # never the text


async def test_reads_are_one_audit_entry_per_read_batch(app: ClientComm) -> None:
    ids = [await app.messages.send(ADMIN, "c1", f"Nachricht {i}") for i in range(3)]
    reply = await app.messages.send(ANNA, "c1", "Danke")  # the client's own: not "opened"
    await app.messages.list_for_staff(ADMIN, "c1")  # staff reading records nothing
    assert await reads(app, "c1") == []
    with pytest.raises(InvalidInputError):
        await app.messages.mark_read(ANNA, "c1", up_to_seq=-1)
    assert await reads(app, "c1") == []
    await app.messages.list_for_client(ANNA, limit=2)  # the cursor passes all three
    assert await reads(app, "c1") == [
        ("contact:k1", f"message:{ids[0]}", f"message:{ids[1]}", f"message:{ids[2]}")
    ]
    later = await app.messages.send(ADMIN, "c1", "Noch eine")
    clock(app).advance(60)
    await app.messages.get_for_client(ANNA, later)  # opened alone, past the cursor
    await app.messages.get_for_client(ANNA, later)  # its first opening is recorded once
    await app.audit.chain("f1")
    entries = (await app.audit.query("f1", client="c1", operation="message.read")).entries
    assert entries[-1].objects == ("contact:k1", f"message:{later}")
    assert entries[-1].details == {"count": 1, "via": "message"} and len(entries) == 2
    await app.messages.list_for_client(ANNA)  # the cursor passes it now: not again
    assert len(await reads(app, "c1")) == 2
    ev = await app.messages.evidence(ADMIN, reply)
    assert [f.kind for f in ev.facts] == ["copy.stored"]
    ev = await app.messages.evidence(ADMIN, later)
    assert ev.first_opened_at == T0 + timedelta(seconds=60)


# -- mailing copies ----------------------------------------------------------------------
async def test_mailing_copy_notice_accepted_with_the_servers_reply(app: ClientComm) -> None:
    mailing = await app.mailings.submit(ADMIN, Audience.clients("c1", "c2", "c3"), "Rundschreiben")
    await app.run_step("mailing.fanout")
    c1, c2, c3 = [await copy_of(app, mailing.id, c) for c in ("c1", "c2", "c3")]
    ev = await app.messages.evidence(ADMIN, c1)
    assert [f.kind for f in ev.facts] == ["copy.stored", "notice.pending"]
    assert ev.facts[1].source.startswith("notify.fanout:")  # not expanded yet
    await app.run_step("notifications.expand")
    ev = await app.messages.evidence(ADMIN, c1)
    pending = ev.first("notice.pending")
    assert pending is not None and pending.source.startswith("notify.job:")
    assert pending.details["to"] == "anna@example.com" and pending.at is None

    await app.drain()
    ev = await app.messages.evidence(ADMIN, c1)
    assert ev.mailing_id == mailing.id and ev.complete
    assert [f.kind for f in ev.facts] == ["copy.stored", "notice.accepted"]
    stored, accepted = ev.facts
    [delivered] = (await app.audit.query("f1", client="c1", operation="mailing.delivered")).entries
    assert stored.details["audit"]["position"] == delivered.position
    assert accepted.at == T0 + timedelta(seconds=7)  # when the server accepted it
    assert accepted.details["sent_at"] == T0  # the delivery round
    assert accepted.details["smtp_code"] == 250
    assert accepted.details["smtp_reply"].startswith("250 queued as mem-")
    assert accepted.details["to"] == "anna@example.com"
    assert accepted.details["recipient"] == "contact:k1"
    [mail] = [m for m in app.transport.sent if "anna@example.com" in m.recipients]  # type: ignore[attr-defined]
    assert accepted.details["message_id"] == mail.message_id

    # no notice: a registered contact without an address, and no contact at all
    ev2 = await app.messages.evidence(ADMIN, c2)
    assert [f.kind for f in ev2.facts] == ["copy.stored", "notice.failed"]
    failed = ev2.facts[1]
    assert failed.details["reason"] == "no_address" and failed.details["recipient"] == "contact:k2"
    assert ev2.first("notice.accepted") is None
    ev3 = await app.messages.evidence(ADMIN, c3)
    assert [f.kind for f in ev3.facts] == ["copy.stored", "notice.none"]

    clock(app).advance(timedelta(days=1))
    await app.messages.list_for_client(ANNA)
    ev = await app.messages.evidence(ADMIN, c1)
    assert [f.kind for f in ev.facts] == ["copy.stored", "notice.accepted", "message.opened"]
    assert ev.first_opened_at == T0 + timedelta(days=1, seconds=7)
    assert json.loads(ev.to_json())["facts"][1]["details"]["smtp_code"] == 250


# -- bad paths -----------------------------------------------------------------------------
async def test_unknown_out_of_reach_and_client_actors_are_refused(app: ClientComm) -> None:
    mid = await app.messages.send(ADMIN, "c3", "Nur für Carla")
    answers = []
    for message_id in (mid, "m-none"):  # c3 is out of the restricted clerk's reach
        with pytest.raises(NotFoundError) as info:
            await app.messages.evidence(StaffActor("f1", "restricted"), message_id)
        answers.append((str(info.value).replace(message_id, "<id>"), info.value.context))
    assert answers[0][0] == answers[1][0] == "message '<id>' not found"
    for actor in (ClientActor("f1", "c3"), StaffActor("f1", "gone"), StaffActor("f1", "nobody")):
        with pytest.raises(PermissionDeniedError):
            await app.messages.evidence(actor, mid)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):  # another firm's staff: not found in its firm
        await app.messages.evidence(StaffActor("f2", "admin2"), mid)


async def test_a_tampered_message_fails_visibly(app: ClientComm) -> None:
    mid = await app.messages.send(ADMIN, "c1", "Bescheid")
    await rewrite(app, MESSAGE_KIND, mid, created_at=T0 - timedelta(days=1))  # sent_at
    with pytest.raises(IntegrityError):
        await app.messages.evidence(ADMIN, mid)
    with pytest.raises(IntegrityError):  # nor does the client see it, nor is it "opened"
        await app.messages.get_for_client(ANNA, mid)
    assert await reads(app, "c1") == []
    other = await app.messages.send(ADMIN, "c1", "Zweiter")
    await rewrite(app, MESSAGE_KIND, other, data={"garbage": True})
    with pytest.raises(IntegrityError):
        await app.messages.evidence(ADMIN, other)


async def test_a_tampered_notice_fails_alone(app: ClientComm) -> None:
    mailing = await app.mailings.submit(ADMIN, Audience.clients("c1"), "Rundschreiben")
    await app.drain()
    c1 = await copy_of(app, mailing.id, "c1")
    [job] = (await app.messages.evidence(ADMIN, c1)).of("notice.accepted")
    job_id = job.source.removeprefix("notify.job:")
    async with app.store.transaction("f1") as tx:
        record = (await tx.get_many(JOB_KIND, [job_id]))[job_id]
        await tx.update([record.evolve(data={**record.data, "to": "someone else"})])
    ev = await app.messages.evidence(ADMIN, c1)
    assert not ev.complete and ev.problems == (f"notify.job {job_id}: does not decode",)
    assert [f.kind for f in ev.facts] == ["copy.stored"]  # the rest stands
    assert json.loads(ev.to_json())["complete"] is False
    async with app.store.transaction("f1") as tx:
        await tx.delete(JOB_KIND, [job_id])
    ev = await app.messages.evidence(ADMIN, c1)
    assert ev.problems == (f"notify.job {job_id}: named by its fan-out batch, missing",)


# -- later capabilities add their facts --------------------------------------------------
async def test_a_registered_source_adds_its_facts(app: ClientComm) -> None:
    mid = await app.messages.send(ADMIN, "c1", "Ihr Brief")

    @register_evidence_source(
        "test.letters",
        {"letter.ordered": "posted", "letter.tracked": "registered mail tracking id"},
    )
    async def letters(ctx: EvidenceContext) -> Iterable[Fact]:
        at = ctx.message.sent_at + timedelta(hours=1)
        return [Fact("letter.tracked", at, f"letter:{ctx.message.id}", {"tracking": "RR1DE"})]

    try:
        ev = await app.messages.evidence(ADMIN, mid)
        assert [f.kind for f in ev.facts] == ["copy.stored", "letter.tracked"]
        assert json.loads(ev.to_json())["facts"][1]["details"] == {"tracking": "RR1DE"}
        with pytest.raises(ConfigurationError):  # a kind another source reports
            EVIDENCE_SOURCES.register("test.again", {"letter.ordered": "x"}, letters)
    finally:
        EVIDENCE_SOURCES.unregister("test.letters")

    @register_evidence_source("test.liar", {"share.downloaded": "downloaded"})
    async def liar(ctx: EvidenceContext) -> Iterable[Fact]:
        return [Fact("copy.stored", None, "x:y")]  # a kind it did not declare

    try:
        with pytest.raises(ConfigurationError):
            await app.messages.evidence(ADMIN, mid)
    finally:
        EVIDENCE_SOURCES.unregister("test.liar")
    ev = await app.messages.evidence(ADMIN, mid)
    assert [f.kind for f in ev.facts] == ["copy.stored"]


def test_source_registry_refuses_malformed_kinds() -> None:
    async def fn(ctx: EvidenceContext) -> Iterable[Fact]:
        return []

    for name, kinds in (("messages", {"a.b": "x"}), ("t1", {}), ("t2", {"nodot": "x"})):
        with pytest.raises(ConfigurationError):
            EVIDENCE_SOURCES.register(name, kinds, fn)
    assert "t1" not in EVIDENCE_SOURCES and "t2" not in EVIDENCE_SOURCES
    assert Fact("a.b", None, "s:1").to_dict() == {
        "kind": "a.b",
        "at": None,
        "source": "s:1",
        "details": {},
    }


# -- a real SMTP server ------------------------------------------------------------------
async def test_evidence_shows_the_real_smtp_servers_reply(tmp_path: Path) -> None:
    async with MemoryStore() as store, smtp_server() as server:
        directory = directory_for(store)
        await seed(directory)
        clock_ = ManualClock(T0)
        async with SMTPTransport(server.config(tls="none", timeout=5)) as transport:
            app = ClientComm(
                store=store,
                directory=directory,
                keys=LocalKeyProvider(store, MasterKey.generate(), clock=clock_),
                blobs=MemoryBlobStore(),
                transport=transport,
                links=LINKS,
                mail=MAIL,
                clock=clock_,
            )
            mailing = await app.mailings.submit(ADMIN, Audience.clients("c1"), "Rundschreiben")
            await app.drain()
            c1 = await copy_of(app, mailing.id, "c1")
            ev = await app.messages.evidence(ADMIN, c1)
    [received] = server.handler.messages
    accepted = ev.first("notice.accepted")
    assert accepted is not None
    assert accepted.details["smtp_reply"] == "250 OK queued as test-1"  # the server's words
    assert accepted.details["smtp_code"] == 250
    assert accepted.details["message_id"] == received.message_id
    assert received.rcpt_tos == ("anna@example.com",) == (accepted.details["to"],)
