"""Mass mailing (seed 000) against every Store backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import attrs
import pytest

from clientcomm import (
    ConflictError,
    IntegrityError,
    InvalidInputError,
    ManualClock,
    NotFoundError,
    PermissionDeniedError,
)
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.attachments import BLOB_REF_KIND, AttachmentInput, AttachmentMode
from clientcomm.mail.memory import MemoryTransport
from clientcomm.mailing import PAGE_KIND, DeliveryEvent, MailingState
from clientcomm.messages import MESSAGE_KIND, READ_KIND
from clientcomm.rules.audience import Audience
from clientcomm.storage.base import Store
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import make_app, recipient_states

ADMIN = StaffActor("f1", "admin")
TEXT = "Liebe Mandantinnen und Mandanten, bitte beachten Sie die neuen Fristen."


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path) as application:
            yield application


def clock_of(app: ClientComm) -> ManualClock:
    assert isinstance(app.clock, ManualClock)
    return app.clock


async def count(store: Store, kind: str, firm: str = "f1", **kw: object) -> int:
    async with store.transaction(firm) as tx:
        return await tx.count(kind, **kw)  # type: ignore[arg-type]


# -- who may send -------------------------------------------------------------------
@pytest.mark.parametrize("staff_id", ["admin", "manager", "clerk"])
async def test_allowed_senders(app: ClientComm, staff_id: str) -> None:
    receipt = await app.mailings.submit(StaffActor("f1", staff_id), Audience.everyone(), TEXT)
    assert receipt.total == 5  # c1..c4, c6 (c5 inactive)


@pytest.mark.parametrize("staff_id", ["restricted", "assistant", "gone", "nobody"])
async def test_refused_senders_write_nothing(app: ClientComm, staff_id: str) -> None:
    with pytest.raises(PermissionDeniedError):
        await app.mailings.submit(StaffActor("f1", staff_id), Audience.clients("c1"), TEXT)
    with pytest.raises(PermissionDeniedError):
        await app.mailings.preview(StaffActor("f1", staff_id), Audience.everyone())
    assert await count(app.store, "mailing") == 0
    assert await count(app.store, PAGE_KIND) == 0


# -- audience -------------------------------------------------------------------------
async def test_audience_union_dedupes_and_skips_inactive(app: ClientComm) -> None:
    preview = await app.mailings.preview(
        ADMIN, Audience.groups("g1") | Audience.clients("c2", "c4")
    )
    assert [c.id for c in preview.clients] == ["c1", "c2", "c4"]
    assert preview.count == 3 and preview.skipped == ()
    picked = await app.mailings.preview(ADMIN, Audience.clients("c5", "c6"))
    assert [c.id for c in picked.clients] == ["c6"] and picked.skipped == (("c5", "inactive"),)
    everyone = await app.mailings.preview(ADMIN, Audience.everyone() | Audience.groups("g2"))
    assert [c.id for c in everyone.clients] == ["c1", "c2", "c3", "c4", "c6"]


async def test_audience_errors(app: ClientComm) -> None:
    with pytest.raises(InvalidInputError) as info:
        await app.mailings.submit(StaffActor("f2", "admin2"), Audience.groups("g1"), TEXT)
    assert info.value.field == "audience.group_ids"
    with pytest.raises(InvalidInputError, match="unknown group"):
        await app.mailings.submit(ADMIN, Audience.groups("g1", "nope"), TEXT)
    with pytest.raises(NotFoundError):
        await app.mailings.submit(ADMIN, Audience.clients("c1", "ghost"), TEXT)
    with pytest.raises(NotFoundError):  # another firm's client is unknown here
        await app.mailings.submit(ADMIN, Audience.clients("x1"), TEXT)
    with pytest.raises(InvalidInputError):
        await app.mailings.submit(ADMIN, Audience(), TEXT)
    with pytest.raises(InvalidInputError, match="no active recipients"):
        await app.mailings.submit(ADMIN, Audience.clients("c5"), TEXT)
    for bad in ("", "   ", "x\x00y", "x" * 100_001):
        with pytest.raises(InvalidInputError):
            await app.mailings.submit(ADMIN, Audience.everyone(), bad)
    assert await count(app.store, "mailing") == 0


async def test_clerk_picks_outside_access_are_named(app: ClientComm) -> None:
    # unrestricted clerks reach everyone; a restricted one may not mail at all
    receipt = await app.mailings.submit(StaffActor("f1", "clerk"), Audience.clients("c3"), TEXT)
    assert receipt.total == 1
    from clientcomm.directory.models import Role, Staff
    from clientcomm.rules.access import RoleAccessPolicy

    def let_restricted_mail(staff: Staff, client_id: str | None) -> bool:
        ok = staff.active and staff.role is not Role.ASSISTANT
        return ok and (client_id is None or staff.can_access(client_id))

    app.mailings.access = RoleAccessPolicy({"mailing.send": let_restricted_mail})
    with pytest.raises(NotFoundError) as info:  # out of reach answers as missing
        await app.mailings.submit(
            StaffActor("f1", "restricted"), Audience.clients("c1", "c3", "c4"), TEXT
        )
    assert (info.value.kind, info.value.id) == ("client", "c3, c4")
    # "all clients" for a restricted sender means those it has access to
    allowed = await app.mailings.preview(StaffActor("f1", "restricted"), Audience.everyone())
    assert [c.id for c in allowed.clients] == ["c1", "c2"]


# -- submit, fan-out, copies ------------------------------------------------------------
async def test_submit_returns_at_once_and_worker_delivers(app: ClientComm) -> None:
    receipt = await app.mailings.submit(ADMIN, Audience.everyone(), TEXT)
    progress = await app.mailings.status(ADMIN, receipt.id)
    assert (progress.total, progress.pending, progress.delivered) == (5, 5, 0)
    assert progress.state is MailingState.SENDING
    assert await count(app.store, MESSAGE_KIND) == 0
    await app.drain()
    progress = await app.mailings.status(ADMIN, receipt.id)
    assert (progress.delivered, progress.pending, progress.state) == (5, 0, MailingState.COMPLETED)
    assert progress.done and progress.fraction == 1.0
    assert await count(app.store, MESSAGE_KIND) == 5
    for cid in ("c1", "c2", "c3", "c4", "c6"):
        [msg] = await app.messages.list_for_client(ClientActor("f1", cid))
        assert msg.text == TEXT and msg.from_firm and msg.unread
        # the client-side value carries no recipient list, mailing id or count
        fields = {f.name for f in attrs.fields(type(msg))}
        assert fields == {
            "id", "from_firm", "text", "sent_at", "attachments", "unread", "seq", "subject"
        }  # fmt: skip
    assert await count(app.store, MESSAGE_KIND, parent="c5") == 0


async def test_each_client_sees_only_its_own_copy(app: ClientComm) -> None:
    await app.mailings.submit(ADMIN, Audience.clients("c1", "c2"), TEXT)
    await app.drain()
    [m1] = await app.messages.list_for_client(ClientActor("f1", "c1"))
    with pytest.raises(NotFoundError):
        await app.messages.get_for_client(ClientActor("f1", "c2"), m1.id)
    with pytest.raises(NotFoundError):
        await app.messages.list_for_client(ClientActor("f1", "ghost"))
    own = await app.messages.get_for_client(ClientActor("f1", "c1"), m1.id)
    assert own.text == TEXT


async def test_copies_are_sealed_per_client(app: ClientComm) -> None:
    await app.mailings.submit(ADMIN, Audience.clients("c1", "c2"), TEXT)
    await app.drain()
    async with app.store.transaction("f1") as tx:
        r1 = (await tx.list(MESSAGE_KIND, parent="c1"))[0]
        r2 = (await tx.list(MESSAGE_KIND, parent="c2"))[0]
        assert TEXT.encode() not in (r1.body or b"")
        assert r1.body != r2.body
        # swap the ciphertexts: each now fails to open instead of leaking the other's
        await tx.update([r1.evolve(body=r2.body), r2.evolve(body=r1.body)])
    page = await app.messages.list_for_client(ClientActor("f1", "c1"))
    assert list(page) == [] and page.unreadable == (r1.id,)  # left out, alone
    with pytest.raises(IntegrityError):
        await app.messages.get_for_client(ClientActor("f1", "c1"), r1.id)


async def test_frozen_at_submit(app: ClientComm) -> None:
    from clientcomm.directory.models import Client

    receipt = await app.mailings.submit(ADMIN, Audience.groups("g2"), TEXT)
    directory = app.directory
    assert hasattr(directory, "put_client")
    await directory.put_client(Client("c4", "f1", "Dora Dach", group_ids={"g2"}))  # joins g2
    await directory.put_client(Client("c2", "f1", "Bernd Bau", group_ids={"g1"}))  # leaves g2
    await app.drain()
    delivered = [e.client_id async for e in app.mailings.ledger(ADMIN, receipt.id)]
    assert delivered == ["c2", "c3"]


# -- read state ------------------------------------------------------------------------
async def test_read_state(app: ClientComm) -> None:
    await app.mailings.submit(ADMIN, Audience.everyone(), TEXT)
    await app.drain()
    # no read-state rows were written for staff: the copy is read for all of them
    assert await count(app.store, READ_KIND) == 0
    for staff in ("admin", "manager", "clerk"):
        assert await app.messages.unread_count(StaffActor("f1", staff), "c1") == 0
    client = ClientActor("f1", "c1", "k1")
    assert await app.messages.unread_count(client, "c1") == 1
    await app.messages.list_for_client(client)
    assert await app.messages.unread_count(client, "c1") == 0
    await app.messages.send(client, "c1", "Danke, erledigt.")
    assert await app.messages.unread_count(StaffActor("f1", "admin"), "c1") == 1
    assert await app.messages.unread_counts(StaffActor("f1", "manager"), ["c1", "c2"]) == {
        "c1": 1,
        "c2": 0,
    }
    staff_view = await app.messages.list_for_staff(StaffActor("f1", "admin"), "c1")
    assert [m.unread for m in staff_view] == [True, False]
    assert staff_view[1].mailing_id is not None  # staff may see it came from a mailing
    assert await app.messages.unread_count(StaffActor("f1", "admin"), "c1") == 0
    assert await app.messages.unread_count(StaffActor("f1", "manager"), "c1") == 1
    with pytest.raises(NotFoundError):  # out of reach answers as missing
        await app.messages.unread_count(StaffActor("f1", "restricted"), "c3")


# -- attachments ------------------------------------------------------------------------
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 800 + b"\n%%EOF\n"


async def read_attachment(app: ClientComm, actor: ClientActor) -> bytes:
    [msg] = await app.messages.list_for_client(actor, mark_read=False)
    [att] = msg.attachments
    stream = await app.messages.open_attachment(actor, msg.id, att.id)
    return b"".join([chunk async for chunk in stream])


async def test_per_copy_attachments(app: ClientComm, tmp_path: Path) -> None:
    path = tmp_path / "Rundschreiben.pdf"
    path.write_bytes(PDF)
    await app.mailings.submit(
        ADMIN,
        Audience.clients("c1", "c2"),
        TEXT,
        attachments=[AttachmentInput.from_path(path, content_type="application/pdf")],
    )
    await app.drain()
    blobs = set()
    for cid in ("c1", "c2"):
        assert await read_attachment(app, ClientActor("f1", cid)) == PDF
        async with app.store.transaction("f1") as tx:
            [r] = await tx.list(MESSAGE_KIND, parent=cid)
        blobs.add(r.data["attachments"][0]["blob_id"])
    assert len(blobs) == 2  # a separately sealed copy per recipient


async def test_shared_attachments_and_garbage_collection(app: ClientComm) -> None:
    await app.mailings.submit(
        ADMIN,
        Audience.clients("c1", "c2", "c3"),
        TEXT,
        attachments=[AttachmentInput.from_bytes("Info.pdf", PDF, "application/pdf")],
        attachment_mode=AttachmentMode.SHARED,
    )
    await app.drain()
    async with app.store.transaction("f1") as tx:
        records = [(await tx.list(MESSAGE_KIND, parent=c))[0] for c in ("c1", "c2", "c3")]
    blob_ids = {r.data["attachments"][0]["blob_id"] for r in records}
    assert len(blob_ids) == 1
    [blob_id] = blob_ids
    assert await count(app.store, BLOB_REF_KIND, parent=blob_id) == 3
    # forgetting one client leaves the others readable
    [seen] = await app.messages.list_for_client(ClientActor("f1", "c1"), mark_read=False)
    await app.sealer.forget_client("f1", "c1", override=True)
    page = await app.messages.list_for_client(ClientActor("f1", "c1"), mark_read=False)
    assert list(page) == [] and page.unreadable == (seen.id,)  # left out, alone
    with pytest.raises(IntegrityError):
        stream = await app.messages.open_attachment(
            ClientActor("f1", "c1"), seen.id, seen.attachments[0].id
        )
        b"".join([chunk async for chunk in stream])
    assert await read_attachment(app, ClientActor("f1", "c2")) == PDF
    # deleting copies: the blob goes with the last reference
    await app.messages.delete(ADMIN, records[1].id)
    assert await read_attachment(app, ClientActor("f1", "c3")) == PDF
    assert await app.blobs.exists("f1", blob_id)
    await app.messages.delete(ADMIN, records[0].id)
    await app.messages.delete(ADMIN, records[2].id)
    assert not await app.blobs.exists("f1", blob_id)


async def test_bad_attachments_are_refused_and_nothing_written(
    app: ClientComm, tmp_path: Path
) -> None:
    cases = [
        AttachmentInput.from_bytes("leer.pdf", b""),
        AttachmentInput.from_path(tmp_path / "missing.pdf"),
        AttachmentInput.from_bytes("../evil.pdf", b"x"),
        AttachmentInput.from_bytes("a\r\nb.pdf", b"x"),
        AttachmentInput.from_bytes("ok.pdf", b"x", "not a mime type"),
    ]
    for bad in cases:
        with pytest.raises(InvalidInputError) as info:
            await app.mailings.submit(ADMIN, Audience.everyone(), TEXT, attachments=[bad])
        assert info.value.field.startswith("attachments[0]")
    app.attachments.max_size = 1000
    with pytest.raises(InvalidInputError, match="limit is 1000 bytes"):
        await app.mailings.submit(
            ADMIN, Audience.everyone(), TEXT, attachments=[AttachmentInput.from_bytes("b", PDF)]
        )
    assert await count(app.store, "mailing") == 0


# -- schedule, cancel, progress ---------------------------------------------------------
async def test_scheduled_mailing_waits(app: ClientComm) -> None:
    clock = clock_of(app)
    receipt = await app.mailings.submit(
        ADMIN, Audience.everyone(), TEXT, schedule_at=clock.now() + timedelta(hours=2)
    )
    assert (await app.mailings.status(ADMIN, receipt.id)).state is MailingState.SCHEDULED
    await app.drain()
    assert await count(app.store, MESSAGE_KIND) == 0
    clock.advance(timedelta(hours=2))
    await app.drain()
    status = await app.mailings.status(ADMIN, receipt.id)
    assert status.delivered == 5 and status.state is MailingState.COMPLETED


async def test_cancel_midway(app: ClientComm) -> None:
    receipt = await app.mailings.submit(ADMIN, Audience.everyone(), TEXT)
    assert await app.mailings.step(limit=2) == 2
    status = await app.mailings.cancel(ADMIN, receipt.id)
    assert (status.delivered, status.cancelled, status.pending) == (2, 3, 0)
    assert status.state is MailingState.CANCELLED and status.done
    await app.drain()
    assert await count(app.store, MESSAGE_KIND) == 2
    entries = {e.client_id: e.state async for e in app.mailings.ledger(ADMIN, receipt.id)}
    assert sorted(entries.values()) == ["cancelled"] * 3 + ["delivered"] * 2
    with pytest.raises(ConflictError):
        await app.mailings.cancel(ADMIN, receipt.id)
    with pytest.raises(NotFoundError):
        await app.mailings.cancel(ADMIN, "no-such-mailing")
    with pytest.raises(PermissionDeniedError):
        await app.mailings.cancel(StaffActor("f1", "assistant"), receipt.id)


async def test_cancel_scheduled_sends_nothing(app: ClientComm) -> None:
    clock = clock_of(app)
    receipt = await app.mailings.submit(
        ADMIN, Audience.everyone(), TEXT, schedule_at=clock.now() + timedelta(minutes=5)
    )
    await app.mailings.cancel(ADMIN, receipt.id)
    clock.advance(timedelta(hours=1))
    await app.drain()
    assert await count(app.store, MESSAGE_KIND) == 0


async def test_follow_yields_progress_until_done(app: ClientComm) -> None:
    receipt = await app.mailings.submit(ADMIN, Audience.everyone(), TEXT)
    seen: list[float] = []

    async def worker() -> None:
        while await app.mailings.step(limit=1):
            await asyncio.sleep(0)

    task = asyncio.create_task(worker())
    async for progress in app.mailings.follow(ADMIN, receipt.id, interval=0.01, until="copies"):
        seen.append(progress.fraction)
    await task
    assert seen[-1] == 1.0 and seen == sorted(seen) and len(seen) >= 2
    assert progress.done and not progress.notifications_done  # c1's notice is still due


async def test_progress_reports_notices_apart_from_copies(app: ClientComm) -> None:
    receipt = await app.mailings.submit(ADMIN, Audience.clients("c1", "c2", "c3"), TEXT)
    status = await app.mailings.status(ADMIN, receipt.id)
    assert not status.done and status.notifications_done and not status.all_done
    while await app.run_step("mailing.fanout"):
        pass
    status = await app.mailings.status(ADMIN, receipt.id)
    # the copies are finished; the notices wait in fan-out batches, not expanded
    assert status.done and status.delivered == 3
    assert status.notification_batches_pending >= 1 and status.notifications_pending == 3
    assert not status.notifications_done and not status.all_done
    await app.run_step("notifications.expand")
    status = await app.mailings.status(ADMIN, receipt.id)
    # c1's registered contact waits in the outbox; k2 (no address) failed at once;
    # k3 is not registered
    assert status.notification_batches_pending == 0
    assert (status.notifications_pending, status.notifications_failed) == (1, 1)
    assert not status.notifications_done and not status.all_done
    await app.run_step("notifications.deliver")
    status = await app.mailings.status(ADMIN, receipt.id)
    assert (status.notifications_sent, status.notifications_pending) == (1, 0)
    assert status.done and status.notifications_done and status.all_done


async def test_progress_of_a_mailing_without_notices(app: ClientComm) -> None:
    receipt = await app.mailings.submit(ADMIN, Audience.everyone(), TEXT, notify=False)
    while await app.run_step("mailing.fanout"):
        pass
    status = await app.mailings.status(ADMIN, receipt.id)
    assert status.done and status.notifications_done and status.all_done
    assert (status.notifications_sent, status.notifications_pending) == (0, 0)
    [progress] = [p async for p in app.mailings.follow(ADMIN, receipt.id, interval=0.01)]
    assert progress.all_done


async def test_follow_waits_for_the_notices_by_default(app: ClientComm) -> None:
    receipt = await app.mailings.submit(ADMIN, Audience.clients("c1", "c2"), TEXT)
    copies_seen = asyncio.Event()

    async def worker() -> None:
        while await app.mailings.step(limit=1):
            await asyncio.sleep(0)
        await copies_seen.wait()  # the notices go out only after follow saw the copies
        await app.run_step("notifications.expand")
        await app.run_step("notifications.deliver")

    task = asyncio.create_task(worker())
    seen = []
    try:
        async for progress in app.mailings.follow(ADMIN, receipt.id, interval=0.01):
            seen.append(progress)
            if progress.done:
                copies_seen.set()
    finally:
        copies_seen.set()
        await task
    assert any(p.done and not p.notifications_done for p in seen)
    assert seen[-1].all_done and seen[-1].notifications_sent == 1


async def test_follow_refuses_an_unknown_until(app: ClientComm) -> None:
    receipt = await app.mailings.submit(ADMIN, Audience.clients("c1"), TEXT)
    with pytest.raises(InvalidInputError):
        async for _ in app.mailings.follow(ADMIN, receipt.id, until="notices"):  # type: ignore[arg-type]
            pass


async def test_ledger_notifications_hooks_and_audit(app: ClientComm) -> None:
    events: list[DeliveryEvent] = []
    unsubscribe = app.mailings.subscribe(events.append)
    receipt = await app.mailings.submit(ADMIN, Audience.clients("c1", "c2", "c3"), TEXT)
    await app.drain()
    unsubscribe()
    assert sorted(e.client_id for e in events) == ["c1", "c2", "c3"]
    transport = app.transport
    assert isinstance(transport, MemoryTransport)
    # c1's registered contact was notified; the mail carries no message text
    [mail] = transport.messages()
    assert mail["To"].addresses[0].addr_spec == "anna@example.com"
    assert "Fristen" not in mail.as_string()
    status = await app.mailings.status(ADMIN, receipt.id)
    assert (status.notifications_sent, status.notifications_failed) == (1, 1)  # k2: no address
    rows = [json.loads(line) async for line in app.mailings.export_jsonl(ADMIN, receipt.id)]
    by_client = {r["client_id"]: r for r in rows}
    assert by_client["c1"]["notifications_sent"] == 1
    assert by_client["c2"]["notification_errors"] == ["no_address"]
    assert by_client["c3"]["notifications_sent"] == 0  # contact not registered in the portal
    csv_text = "".join([line async for line in app.mailings.export_csv(ADMIN, receipt.id)])
    assert csv_text.splitlines()[0].startswith("mailing_id,client_id,state")
    assert len(csv_text.splitlines()) == 4
    page = await app.audit.query("f1", subject=f"mailing:{receipt.id}")
    submitted, delivered, completed = page.entries
    assert submitted.operation == "mailing.submitted"
    assert submitted.details["recipient_count"] == 3 and submitted.actor == "admin"
    assert sorted(delivered.clients) == ["c1", "c2", "c3"]
    assert completed.operation == "mailing.completed"
    exported = "".join([line async for line in app.audit.export_jsonl("f1")])
    assert TEXT not in exported and "Fristen" not in exported


# -- exactly once ---------------------------------------------------------------------
async def test_crashed_worker_is_finished_by_the_next(app: ClientComm) -> None:
    clock = clock_of(app)
    await app.mailings.submit(ADMIN, Audience.everyone(), TEXT)
    # a worker claims everything and dies
    [dead] = await app.store.claim(
        PAGE_KIND,
        status="queued",
        owner="dead",
        now=clock.now(),
        lease=timedelta(seconds=60),
        limit=100,
    )
    assert len(json.loads(dead.body or b"")) == 5
    assert await app.mailings.step() == 0  # leased: nobody else touches them
    clock.advance(timedelta(seconds=61))
    await app.drain()
    # the dead worker wakes up with its stale batch: nothing doubles
    from clientcomm.records import REGISTRY

    assert await app.mailings.fanout._deliver(REGISTRY.decode(dead), 100) == 0
    assert await count(app.store, MESSAGE_KIND) == 5
    for cid in ("c1", "c2", "c3", "c4", "c6"):
        assert await count(app.store, MESSAGE_KIND, parent=cid) == 1


@pytest.mark.postgres
async def test_two_workers_on_postgres_share_without_doubling(tmp_path: Path) -> None:
    from clientcomm import WritableDirectory
    from clientcomm.directory.models import Client
    from clientcomm.mailing import MailingService
    from clientcomm.storage.postgres import PostgresStore
    from clientcomm.testing.postgres import isolated_schema
    from tests.conftest import pg_admin_url

    async with isolated_schema(pg_admin_url()) as url:  # noqa: SIM117 - url is needed below
        async with (
            PostgresStore(url) as first,
            PostgresStore(url) as second,
            make_app(first, tmp_path, mailing_batch=13) as app,
        ):
            directory = app.directory
            assert isinstance(directory, WritableDirectory)
            for i in range(400):
                await directory.put_client(Client(f"p{i:04}", "f1", f"Mandant {i}"))
            receipt = await app.mailings.submit(ADMIN, Audience.everyone(), TEXT)
            other = MailingService(
                store=second,
                directory=directory,
                sealer=app.sealer,
                attachments=app.attachments,
                links=app.mailings.links,
                clock=app.clock,
                batch_size=13,
            )
            counts: dict[str, int] = {"a": 0, "b": 0}

            async def run(name: str, service: MailingService) -> None:
                while n := await service.step(limit=13):
                    counts[name] += n

            await asyncio.gather(run("a", app.mailings), run("b", other))
            assert counts["a"] > 0 and counts["b"] > 0  # both did real work
            assert counts["a"] + counts["b"] == receipt.total
            async with first.transaction("f1") as tx:
                messages = await tx.list(MESSAGE_KIND)
            assert await recipient_states(first) == {"delivered": receipt.total}
            assert len(messages) == receipt.total
            assert len({m.parent for m in messages}) == receipt.total


async def test_forgotten_client_fails_alone_and_the_batch_goes_on(app: ClientComm) -> None:
    receipt = await app.mailings.submit(ADMIN, Audience.clients("c1", "c2", "c3"), TEXT)
    await app.sealer.forget_client("f1", "c2", override=True)
    await app.drain()
    status = await app.mailings.status(ADMIN, receipt.id)
    assert (status.delivered, status.failed, status.pending) == (2, 1, 0)
    assert status.state is MailingState.COMPLETED
    entries = {e.client_id: e async for e in app.mailings.ledger(ADMIN, receipt.id)}
    assert entries["c2"].state == "failed" and entries["c2"].reason == "key_destroyed"
    assert await count(app.store, MESSAGE_KIND, parent="c2") == 0


async def test_export_checks_access_before_any_output(app: ClientComm) -> None:
    receipt = await app.mailings.submit(ADMIN, Audience.clients("c1"), TEXT)
    with pytest.raises(PermissionDeniedError):
        await anext(aiter(app.mailings.export_csv(StaffActor("f1", "assistant"), receipt.id)))
    with pytest.raises(NotFoundError):
        await anext(aiter(app.mailings.export_csv(ADMIN, "nope")))


# -- recipient pages ----------------------------------------------------------------------
@pytest.fixture(params=STORE_BACKENDS)
async def paged(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    """An app whose mailings freeze their recipients in pages of two."""
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path, mailing_batch=2) as application:
            yield application


async def test_steps_cross_page_boundaries_and_cancel_stops_the_rest(paged: ClientComm) -> None:
    app = paged
    clock = clock_of(app)
    receipt = await app.mailings.submit(ADMIN, Audience.everyone(), TEXT)
    assert await count(app.store, PAGE_KIND, parent=receipt.id) == 3  # 5 recipients, pages of 2
    assert await app.mailings.step(limit=3) == 3  # one full page and one from the next
    clock.advance(timedelta(minutes=1))
    assert await app.mailings.step(limit=1) == 1
    status = await app.mailings.cancel(ADMIN, receipt.id)
    assert (status.delivered, status.cancelled, status.pending, status.total) == (4, 1, 0, 5)
    await app.drain()
    assert await count(app.store, MESSAGE_KIND) == 4
    entries = [e async for e in app.mailings.ledger(ADMIN, receipt.id)]
    assert [e.client_id for e in entries] == ["c1", "c2", "c3", "c4", "c6"]  # frozen order
    assert [e.state for e in entries] == ["delivered"] * 4 + ["cancelled"]
    # each recipient carries the time of the step that reached it
    assert entries[0].delivered_at == entries[2].delivered_at != entries[3].delivered_at
    assert entries[4].message_id is None and entries[4].reason == "cancelled"
    assert await recipient_states(app.store) == {"delivered": 4, "cancelled": 1}


async def test_a_forgotten_client_fails_alone_inside_a_page(paged: ClientComm) -> None:
    app = paged
    receipt = await app.mailings.submit(ADMIN, Audience.clients("c1", "c2", "c3"), TEXT)
    await app.sealer.forget_client("f1", "c1", override=True)
    await app.drain()
    entries = {e.client_id: e async for e in app.mailings.ledger(ADMIN, receipt.id)}
    assert (entries["c1"].state, entries["c1"].reason) == ("failed", "key_destroyed")
    assert entries["c2"].state == entries["c3"].state == "delivered"
    status = await app.mailings.status(ADMIN, receipt.id)
    assert (status.delivered, status.failed, status.state) == (2, 1, MailingState.COMPLETED)


async def test_copy_ids_are_opaque_and_a_second_copy_is_refused(app: ClientComm) -> None:
    from clientcomm.mailing import MailingRecord, copy_message_id
    from clientcomm.messages import MessageRecord
    from clientcomm.records import REGISTRY, Records
    from clientcomm.rules.readstate import Author, UnreadFor

    receipt = await app.mailings.submit(ADMIN, Audience.clients("c1", "c2"), TEXT)
    await app.drain()
    secret = (await Records(app.store).get(MailingRecord, "f1", receipt.id)).copy_secret
    assert len(secret) == 32
    ids = {copy_message_id(receipt.id, c, secret) for c in ("c1", "c2")}
    # knowing the mailing id and a client id is not enough to name the copy
    assert not ids & {copy_message_id(receipt.id, c) for c in ("c1", "c2")}
    async with app.store.transaction("f1") as tx:
        stored = {m.id for m in await tx.list(MESSAGE_KIND)}
    assert stored == ids
    assert all(len(i) == 32 and receipt.id not in i for i in ids)
    again = REGISTRY.encode(
        MessageRecord(
            id=copy_message_id(receipt.id, "c1", secret),
            client_id="c1",
            unread_for=UnreadFor.CLIENT,
            sealed_text=b"x",
            sent_at=clock_of(app).now(),
            author=Author.STAFF,
            author_id="admin",
            mailing_id=receipt.id,
        ),
        "f1",
    )
    with pytest.raises(ConflictError):
        async with app.store.transaction("f1") as tx:
            await tx.insert([again])
    assert await count(app.store, MESSAGE_KIND, parent="c1") == 1


async def test_step_limit_must_be_positive(app: ClientComm) -> None:
    await app.mailings.submit(ADMIN, Audience.clients("c1"), TEXT)
    for bad in (0, -1):
        with pytest.raises(InvalidInputError):
            await app.mailings.step(limit=bad)
    assert await count(app.store, MESSAGE_KIND) == 0
    assert await app.mailings.step(limit=1) == 1
