"""Key rotation over the registry: the durable ``keys.rewrap`` job moves every
sealed value of a client (found through the registry's sealed kinds) to its
newest key version, in resumable batches, on every Store backend."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import pytest

from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.attachments import AttachmentInput, AttachmentMode
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.clock import ManualClock
from clientcomm.crypto import MasterKey
from clientcomm.crypto.envelope import Sealer, sealed_key_version
from clientcomm.directory.sql import directory_for
from clientcomm.errors import KeyDestroyedError, NotFoundError
from clientcomm.mailing.records import MailingRecord, staging_owner
from clientcomm.messages.records import MessageRecord
from clientcomm.records import REGISTRY, Kind, Records
from clientcomm.records.rewrap import RewrapStatus, run_rewrap_jobs
from clientcomm.rules.audience import Audience
from clientcomm.rules.readstate import UnreadFor
from clientcomm.storage.base import Record, Store
from tests.mailing_support import World, seed

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
ADMIN = StaffActor("f1", "admin")
FILES = {"a.txt": b"erste Anlage " * 100, "b.pdf": b"%PDF-1.4 zweite Anlage " * 50}


@pytest.fixture
async def world(store: Store) -> AsyncIterator[World]:
    directory = directory_for(store)
    await seed(directory)
    yield World(store, directory, MasterKey.generate(), MemoryBlobStore(), ManualClock(T0))


def attachments(*names: str) -> list[AttachmentInput]:
    return [AttachmentInput.from_bytes(n, FILES[n]) for n in names]


async def fill(app: ClientComm) -> dict[str, int]:
    """Messages with attachments to c1 (and c2), a client reply, and two
    mailings (per-copy and shared attachments) to c1 and c2; returns how many
    sealed values each client has (text + one stream key per attachment)."""
    await app.messages.send(ADMIN, "c1", "Hallo Anna", attachments=attachments("a.txt", "b.pdf"))
    await app.messages.send(ADMIN, "c1", "Noch etwas", attachments=attachments("b.pdf"))
    await app.messages.send(ClientActor("f1", "c1", "k1"), "c1", "Danke!")
    await app.messages.send(ADMIN, "c2", "Hallo Bernd", attachments=attachments("a.txt"))
    for mode in (AttachmentMode.PER_COPY, AttachmentMode.SHARED):
        await app.mailings.submit(
            ADMIN,
            Audience.clients("c1", "c2"),
            f"Rundschreiben {mode.value}",
            attachments=attachments("a.txt"),
            attachment_mode=mode,
        )
    await app.drain()
    return {"c1": 3 + 2 + 1 + 2 + 2, "c2": 2 + 2 + 2}


async def client_values(store: Store, firm_id: str, client_id: str) -> list[bytes]:
    """Every sealed value of ``client_id``, found through the registry."""
    out: list[bytes] = []
    records = Records(store)
    for kind in REGISTRY.sealed_kinds():
        if kind.client_column is None:
            continue
        filters: dict[str, Any] = {kind.client_column: client_id}
        async for value in records.iterate(kind.cls, firm_id, **filters):
            if kind.owner is not None and kind.owner(value) == client_id:
                for _, found in kind.sealed_values(value):
                    out.extend(found)
    return out


async def current_version(app: ClientComm, firm_id: str, owner: str) -> int:
    return (await app.sealer.provider.current_versions(firm_id, [owner]))[owner]


async def raw_rows(store: Store, firm_id: str, client_id: str) -> dict[tuple[str, str], Record]:
    """The stored rows of ``client_id``'s sealed kinds (to check they are untouched)."""
    rows: dict[tuple[str, str], Record] = {}
    for kind in REGISTRY.sealed_kinds():
        if kind.client_column is None:
            continue
        filters: dict[str, Any] = {kind.client_column: client_id}
        async for record in store.iterate(firm_id, kind.name, **filters):
            rows[(record.kind, record.id)] = record
    return rows


async def read_everything(app: ClientComm, firm_id: str, client_id: str) -> list[str]:
    """Every text of the client's chat and every attachment's bytes, opened
    through the services (as the client sees them)."""
    actor = ClientActor(firm_id, client_id)
    messages = await app.messages.list_for_client(actor, mark_read=False)
    for m in messages:
        for info in m.attachments:
            stream = await app.messages.open_attachment(actor, m.id, info.id)
            assert b"".join([chunk async for chunk in stream]) == FILES[info.filename]
    return sorted(m.text for m in messages)


def only_version(values: Sequence[bytes]) -> set[int]:
    return {sealed_key_version(v) for v in values}


# -- one client ----------------------------------------------------------------------
async def test_rotation_rewraps_every_sealed_value_of_the_client(world: World) -> None:
    app = world.app()
    counts = await fill(app)
    texts = {c: await read_everything(app, "f1", c) for c in ("c1", "c2")}
    assert len(await client_values(world.store, "f1", "c1")) == counts["c1"]
    assert only_version(await client_values(world.store, "f1", "c1")) == {1}
    other_before = await raw_rows(world.store, "f1", "c2")

    job = await app.rotate_client_key("f1", "c1")
    assert job.status is RewrapStatus.PENDING
    assert job.client_id == "c1"
    assert (await app.rewrap_status("f1", job.id)).rewrapped == 0
    await app.drain()

    done = await app.rewrap_status("f1", job.id)
    assert done.status is RewrapStatus.DONE
    assert done.finished_at == T0
    assert (done.examined, done.rewrapped, done.failed, done.conflicts) == (
        counts["c1"],
        counts["c1"],
        0,
        0,
    )
    newest = await current_version(app, "f1", "c1")
    assert newest == 2
    assert only_version(await client_values(world.store, "f1", "c1")) == {newest}
    # the other client's rows were not touched at all
    assert await raw_rows(world.store, "f1", "c2") == other_before
    assert only_version(await client_values(world.store, "f1", "c2")) == {1}
    # everything still opens through the services
    assert {c: await read_everything(app, "f1", c) for c in ("c1", "c2")} == texts

    # a second rotation moves everything again; a re-wrap without rotation changes nothing
    second = await app.rotate_client_key("f1", "c1")
    await app.drain()
    assert (await app.rewrap_status("f1", second.id)).rewrapped == counts["c1"]
    assert only_version(await client_values(world.store, "f1", "c1")) == {3}
    idle = await app.queue_rewrap("f1", "c1")
    await app.drain()
    idle = await app.rewrap_status("f1", idle.id)
    assert idle.status is RewrapStatus.DONE
    assert (idle.examined, idle.rewrapped, idle.failed) == (counts["c1"], 0, 0)
    assert await read_everything(app, "f1", "c1") == texts["c1"]


async def test_small_batches_resume_across_rounds_and_processes(world: World) -> None:
    app = world.app()
    counts = await fill(app)
    job = await app.rotate_client_key("f1", "c1")

    # one batch of two records, then the process "crashes"
    examined = await run_rewrap_jobs(
        Records(world.store), app.sealer, owner=app.worker_id, now=world.clock.now(), batch=2
    )
    assert examined > 0
    first = await app.rewrap_status("f1", job.id)
    assert first.status is RewrapStatus.PENDING
    assert first.kind == "message"
    assert first.after_seq > 0
    assert 0 < first.rewrapped == first.examined < counts["c1"]
    assert first.meta.lease_owner is None  # the finished batch released its lease

    # a fresh process over the same store goes on from the cursor, two at a time
    fresh = world.app()
    cursors: list[tuple[str | None, int]] = [(first.kind, first.after_seq)]
    rounds = 0
    while (state := await fresh.rewrap_status("f1", job.id)).status is RewrapStatus.PENDING:
        assert await fresh.run_step("keys.rewrap", limit=2) > 0
        rounds += 1
        state = await fresh.rewrap_status("f1", job.id)
        if state.status is RewrapStatus.PENDING:
            # the cursor moves on within a kind (and restarts at the next kind)
            assert state.kind != cursors[-1][0] or state.after_seq > cursors[-1][1]
            cursors.append((state.kind, state.after_seq))
        assert rounds < 10
    assert rounds >= 2
    assert (state.examined, state.rewrapped, state.failed, state.conflicts) == (
        counts["c1"],
        counts["c1"],
        0,
        0,
    )
    assert only_version(await client_values(world.store, "f1", "c1")) == {2}
    assert len(await read_everything(fresh, "f1", "c1")) == 5


async def test_crash_inside_a_batch_commits_nothing_and_resumes(world: World) -> None:
    app = world.app()
    counts = await fill(app)
    before = await raw_rows(world.store, "f1", "c1")
    job = await app.rotate_client_key("f1", "c1")

    class Crash(BaseException):  # the process dies (not an error a job fails alone on)
        pass

    async def crashing(self: Sealer, firm_id: str, items: Any) -> Any:
        raise Crash

    app.sealer.rewrap_many = crashing.__get__(app.sealer)  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await app.run_step("keys.rewrap", limit=3)
    assert await raw_rows(world.store, "f1", "c1") == before
    crashed = await app.rewrap_status("f1", job.id)
    assert (crashed.kind, crashed.after_seq, crashed.examined) == (None, 0, 0)

    fresh = world.app()
    await fresh.drain()  # the dead worker's lease still holds the job
    assert (await fresh.rewrap_status("f1", job.id)).status is RewrapStatus.PENDING
    world.clock.advance(timedelta(minutes=6))
    await fresh.drain()
    done = await fresh.rewrap_status("f1", job.id)
    assert done.status is RewrapStatus.DONE
    assert (done.examined, done.rewrapped, done.failed) == (counts["c1"], counts["c1"], 0)
    assert only_version(await client_values(world.store, "f1", "c1")) == {2}


async def test_a_failing_job_fails_alone(world: World, caplog: pytest.LogCaptureFixture) -> None:
    app = world.app()
    counts = await fill(app)
    bad = await app.rotate_client_key("f1", "c1")
    good = await app.rotate_client_key("f1", "c2")
    real = app.sealer.rewrap_many

    async def failing_for_c1(firm_id: str, items: Any) -> Any:
        items = list(items)
        if any(owner == "c1" for owner, _ in items):
            raise RuntimeError("key service unavailable for c1")
        return await real(firm_id, items)

    app.sealer.rewrap_many = failing_for_c1  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="clientcomm.keys"):
        await app.drain()
    assert (await app.rewrap_status("f1", good.id)).status is RewrapStatus.DONE
    assert (await app.rewrap_status("f1", bad.id)).status is RewrapStatus.PENDING
    assert any(bad.id in r.getMessage() for r in caplog.records)

    app.sealer.rewrap_many = real  # type: ignore[method-assign]
    world.clock.advance(timedelta(minutes=6))  # the failed job's lease ends
    await app.drain()
    done = await app.rewrap_status("f1", bad.id)
    assert (done.status, done.rewrapped) == (RewrapStatus.DONE, counts["c1"])


async def test_forgotten_client_values_fail_and_stay_untouched(world: World) -> None:
    app = world.app()
    counts = await fill(app)
    assert await app.sealer.forget_client("f1", "c1")
    with pytest.raises(KeyDestroyedError):
        await app.rotate_client_key("f1", "c1")
    before = await raw_rows(world.store, "f1", "c1")
    other = await raw_rows(world.store, "f1", "c2")

    job = await app.queue_rewrap("f1", "c1")
    await app.drain()
    done = await app.rewrap_status("f1", job.id)
    assert done.status is RewrapStatus.DONE
    assert (done.examined, done.rewrapped, done.failed, done.conflicts) == (
        counts["c1"],
        0,
        counts["c1"],
        0,
    )
    assert await raw_rows(world.store, "f1", "c1") == before
    assert await raw_rows(world.store, "f1", "c2") == other
    # the forgotten client's chat no longer opens: each message is left out, alone
    page = await app.messages.list_for_client(ClientActor("f1", "c1"), mark_read=False)
    assert list(page) == [] and page.unreadable
    assert len(await read_everything(app, "f1", "c2")) == 3


async def test_concurrent_change_counts_as_conflict_and_is_left_for_the_next_job(
    world: World,
) -> None:
    app = world.app()
    counts = await fill(app)
    records = Records(world.store)
    async with records.transaction("f1") as tx:
        first = (await tx.list(MessageRecord, parent="c1", limit=1))[0]
    assert len(first.attachments) == 2
    job = await app.rotate_client_key("f1", "c1")
    original = app.sealer.rewrap_many

    async def meanwhile(firm_id: str, items: Sequence[tuple[str, bytes]]) -> Any:
        async with records.transaction("f1") as tx:  # another writer changes one message
            current = await tx.get(MessageRecord, first.id)
            await tx.update([attrs.evolve(current, unread_for=UnreadFor.STAFF)])
        return await original(firm_id, items)

    app.sealer.rewrap_many = meanwhile  # type: ignore[method-assign]
    await app.drain()
    done = await app.rewrap_status("f1", job.id)
    assert done.status is RewrapStatus.DONE
    assert (done.examined, done.rewrapped, done.conflicts, done.failed) == (
        counts["c1"],
        counts["c1"] - 3,
        3,
        0,
    )
    changed = await records.get(MessageRecord, "f1", first.id)
    assert changed.unread_for is UnreadFor.STAFF  # the concurrent change won
    assert only_version([changed.sealed_text, *(a.stream_key for a in changed.attachments)]) == {1}

    app.sealer.rewrap_many = original  # type: ignore[method-assign]
    again = await app.queue_rewrap("f1", "c1")
    await app.drain()
    assert (await app.rewrap_status("f1", again.id)).rewrapped == 3
    assert only_version(await client_values(world.store, "f1", "c1")) == {2}


async def test_damaged_record_fails_alone(world: World) -> None:
    app = world.app()
    counts = await fill(app)
    async with world.store.transaction("f1") as tx:
        [reply] = [
            r for r in await tx.list("message", parent="c1") if r.data.get("author") == "client"
        ]
        await tx.update([reply.evolve(data={"garbage": True})])
    job = await app.rotate_client_key("f1", "c1")
    await app.drain()
    done = await app.rewrap_status("f1", job.id)
    assert done.status is RewrapStatus.DONE
    assert (done.rewrapped, done.failed) == (counts["c1"] - 1, 1)
    async with world.store.transaction("f1") as tx:
        assert (await tx.get("message", reply.id)).body == reply.body


# -- the whole firm --------------------------------------------------------------------
def staged_values(mailing: MailingRecord) -> list[bytes]:
    kind: Kind[MailingRecord] = REGISTRY.of(MailingRecord)
    return [v for _, found in kind.sealed_values(mailing) for v in found]


async def test_firm_wide_rewrap_includes_mailing_staging(world: World) -> None:
    app = world.app()
    await app.messages.send(ADMIN, "c1", "Hallo Anna", attachments=attachments("a.txt"))
    await app.messages.send(StaffActor("f2", "admin2"), "x1", "Fremde Kanzlei")
    later = T0 + timedelta(days=1)
    receipts = [
        await app.mailings.submit(
            ADMIN,
            Audience.clients("c1", "c2"),
            f"Geplant {mode.value}",
            attachments=attachments("a.txt", "b.pdf"),
            attachment_mode=mode,
            schedule_at=later,
        )
        for mode in (AttachmentMode.PER_COPY, AttachmentMode.SHARED)
    ]
    await app.drain()  # nothing is due yet
    records = Records(world.store)
    for r in receipts:
        staged = await records.get(MailingRecord, "f1", r.id)
        assert len(staged_values(staged)) == 3
        assert only_version(staged_values(staged)) == {1}
        await app.sealer.rotate_client_key("f1", staging_owner(r.id))
    await app.sealer.rotate_client_key("f1", "c1")
    await app.sealer.rotate_client_key("f2", "x1")  # another firm: not this job's

    # a client's job leaves staging alone
    single = await app.queue_rewrap("f1", "c1")
    await app.drain()
    assert (await app.rewrap_status("f1", single.id)).rewrapped == 2
    for r in receipts:
        staged = await records.get(MailingRecord, "f1", r.id)
        assert only_version(staged_values(staged)) == {1}

    job = await app.queue_rewrap("f1")
    assert job.client_id is None
    await app.drain()
    done = await app.rewrap_status("f1", job.id)
    assert done.status is RewrapStatus.DONE
    assert (done.rewrapped, done.failed, done.conflicts) == (2 * 3, 0, 0)
    for r in receipts:
        staged = await records.get(MailingRecord, "f1", r.id)
        assert only_version(staged_values(staged)) == {2}
    assert only_version(await client_values(world.store, "f2", "x1")) == {1}

    # the re-wrapped staging still delivers: every copy opens for its client
    world.clock.set(later + timedelta(minutes=1))
    await app.drain()
    for client in ("c1", "c2"):
        texts = await read_everything(app, "f1", client)
        assert [t for t in texts if t.startswith("Geplant")] == [
            "Geplant per_copy",
            "Geplant shared",
        ]


async def test_unknown_job_and_unknown_client(world: World) -> None:
    app = world.app()
    with pytest.raises(NotFoundError):
        await app.rewrap_status("f1", "no-such-job")
    job = await app.queue_rewrap("f1", "nobody")
    assert job.meta.firm_id == "f1"
    await app.drain()
    done = await app.rewrap_status("f1", job.id)
    assert done.status is RewrapStatus.DONE
    assert (done.examined, done.rewrapped, done.failed) == (0, 0, 0)
    with pytest.raises(NotFoundError):
        await app.rewrap_status("f2", job.id)  # another firm's job is invisible
