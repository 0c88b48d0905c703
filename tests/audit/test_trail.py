"""The audit trail on every Store backend: one record per operation in its
transaction, tamper evidence with checkpoints, query, paging and export."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import pytest

from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.audit import (
    OPERATIONS,
    AuditEntry,
    AuditTrail,
    Checkpoint,
    Fault,
    PendingAudit,
    append,
    verify_export,
)
from clientcomm.audit.chain import header_bytes, link_hash
from clientcomm.audit.records import AUDIT_KIND, HEAD_ID, AuditHead, payload_of, position_key
from clientcomm.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RetentionError,
)
from clientcomm.records import Records
from clientcomm.rules.audience import Audience
from clientcomm.storage._codec import to_micros
from clientcomm.storage.base import Record, Store
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import T0, make_app

ADMIN = StaffActor("f1", "admin")
ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async for s in open_backend(request.param, tmp_path):
        yield s


@pytest.fixture
async def app(store: Store, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async with make_app(store, tmp_path) as application:
        yield application


async def pending(store: Store, firm_id: str = "f1") -> list[PendingAudit]:
    async with Records(store).transaction(firm_id) as tx:
        return await tx.list(PendingAudit)


async def one_new(store: Store, before: list[PendingAudit]) -> PendingAudit:
    """Exactly one pending record was added since ``before``."""
    seen = {p.id for p in before}
    new = [p for p in await pending(store) if p.id not in seen]
    assert len(new) == 1, [p.operation for p in new]
    return new[0]


# -- one audit path ----------------------------------------------------------------------
async def test_each_operation_writes_exactly_one_record(app: ClientComm) -> None:
    store = app.store
    before = await pending(store)
    receipt = await app.mailings.submit(ADMIN, Audience.clients("c1", "c2"), "Vertraulich!")
    rec = await one_new(store, before)
    assert (rec.operation, rec.subject, rec.actor) == (
        "mailing.submitted",
        f"mailing:{receipt.id}",
        "admin",
    )
    assert rec.details["recipient_count"] == 2
    await app.drain()
    assert await pending(store) == []  # the audit.chain step linked everything
    ops = [e.operation for e in (await app.audit.query("f1")).entries]
    assert ops == ["mailing.submitted", "mailing.delivered", "mailing.completed"]
    [delivered] = (await app.audit.query("f1", operation="mailing.delivered")).entries
    assert sorted(delivered.clients) == ["c1", "c2"] and delivered.details["delivered"] == 2

    before = await pending(store)
    mid = await app.messages.send(ADMIN, "c1", "Geheimer Text")
    rec = await one_new(store, before)
    assert (rec.operation, rec.subject, rec.client, rec.actor) == (
        "message.sent",
        f"message:{mid}",
        "c1",
        "admin",
    )
    before = await pending(store)
    await app.messages.send(ClientActor("f1", "c1", "k1"), "c1", "Antwort")
    rec = await one_new(store, before)
    assert (rec.actor, rec.objects) == ("client:c1", ("contact:k1",))
    before = await pending(store)
    await app.messages.delete(ADMIN, mid)
    assert (await one_new(store, before)).operation == "message.deleted"

    scheduled = await app.mailings.submit(
        ADMIN, Audience.clients("c3"), "Später", schedule_at=T0 + timedelta(days=1)
    )
    before = await pending(store)
    await app.mailings.cancel(ADMIN, scheduled.id)
    assert (await one_new(store, before)).operation == "mailing.cancelled"

    before = await pending(store)
    job = await app.rotate_client_key("f1", "c2", actor="admin")
    rec = await one_new(store, before)
    assert (rec.operation, rec.client, rec.objects) == (
        "keys.rotated",
        "c2",
        (f"key.rewrap:{job.id}",),
    )
    before = await pending(store)
    for _ in range(10):  # a round per sealed kind at most; finished when it audits
        await app.run_step("keys.rewrap")
        if len(await pending(store)) > len(before):
            break
    assert (await one_new(store, before)).operation == "keys.rewrapped"
    before = await pending(store)
    await app.queue_rewrap("f1")
    assert (await one_new(store, before)).operation == "keys.rewrap_queued"
    before = await pending(store)
    assert await app.forget_client("f1", "c1", actor="admin") is True
    rec = await one_new(store, before)
    assert (rec.operation, rec.client, rec.details) == (
        "client.forgotten",
        "c1",
        {"keys_existed": True, "override": False},
    )
    await app.drain()
    result = await app.audit.verify("f1")
    assert result.ok and result.pending == 0
    # nothing of the content reached the trail
    lines = "".join([line async for line in app.audit.export_jsonl("f1")])
    for text in ("Vertraulich", "Geheimer", "Antwort", "Später"):
        assert text not in lines


async def test_failed_operations_write_none(app: ClientComm) -> None:
    store = app.store
    with pytest.raises(InvalidInputError):
        await app.mailings.submit(ADMIN, Audience.clients("c1"), "")
    with pytest.raises(NotFoundError):
        await app.messages.send(ADMIN, "nobody", "Hallo")
    receipt = await app.mailings.submit(ADMIN, Audience.clients("c1"), "Hallo")
    await app.drain()
    with pytest.raises(ConflictError):
        await app.mailings.cancel(ADMIN, receipt.id)  # completed already
    assert await pending(store) == []
    chained = (await app.audit.query("f1")).entries
    # an operation that fails after its append (here: in the same transaction) leaves nothing
    with pytest.raises(RuntimeError):
        async with Records(store).transaction("f1") as tx:
            await append(tx, subject="message:m1", operation="message.sent", actor="a", at=T0)
            raise RuntimeError("the change failed")
    assert await pending(store) == []
    assert (await app.audit.query("f1")).entries == chained


async def test_forget_refused_by_retention_writes_none(store: Store, tmp_path: Path) -> None:
    async with make_app(store, tmp_path, retention=lambda f, c: T0 + timedelta(days=365)) as app:
        with pytest.raises(RetentionError):
            await app.forget_client("f1", "c1")
        assert await pending(store) == []
        await app.forget_client("f1", "c1", override=True, actor="admin")
        [rec] = await pending(store)
        assert rec.details["override"] is True


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"operation": "mailing.exploded"}, "operation"),
        ({"subject": "message:m1"}, "subject"),
        ({"subject": "mailing:"}, "subject"),
        ({"colour": "red"}, "details.colour"),
        ({"text": "Liebe Mandanten"}, "details.text"),
        ({"at": datetime(2026, 1, 1)}, "at"),
        ({"actor": ""}, "actor"),
        ({"actor": "a\x1fb"}, "actor"),
        ({"client": "c\x1e1"}, "client"),
        ({"clients": ["c1"]}, "clients"),
        ({"objects": [""]}, "objects"),
        ({"total": b"bytes"}, "details"),
    ],
)
async def test_append_refuses_bad_input(
    store: Store, kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {
        "subject": "mailing:m1",
        "operation": "mailing.completed",
        "actor": "system",
        "at": T0,
    }
    args.update(kwargs)
    async with Records(store).transaction("f1") as tx:
        with pytest.raises(InvalidInputError) as info:
            await append(tx, **args)  # type: ignore[arg-type]
    assert info.value.field == field
    assert await pending(store) == []


# -- tamper evidence ---------------------------------------------------------------------
async def build_chain(store: Store, n: int = 10, firm_id: str = "f1") -> AuditTrail:
    trail = AuditTrail(store)
    for i in range(n):
        async with Records(store).transaction(firm_id) as tx:
            await append(
                tx,
                subject=f"message:m{i}",
                operation="message.sent",
                actor=f"staff{i % 3}",
                at=T0 + timedelta(minutes=i),
                client=f"c{i % 4}",
                author="staff",
                attachment_count=i,
            )
    assert await trail.chain(firm_id) == n
    return trail


async def raw_at(store: Store, position: int) -> Record:
    async with store.transaction("f1") as tx:
        found = await tx.find_by_key(AUDIT_KIND, position_key(position))
    assert found is not None
    return found


async def replace(store: Store, record: Record, original: str | None = None) -> None:
    """Rewrite a stored row with other values in any column (created_at too:
    delete and insert again, then move the rows after it behind it, so the
    stored order stays the chain's order)."""
    async with store.transaction("f1") as tx:
        later = [r for r in await tx.list(AUDIT_KIND, after_seq=record.seq) if r.key]
        await tx.delete(AUDIT_KIND, [original or record.id, *(r.id for r in later)])
        await tx.insert(
            [record.evolve(seq=0, version=0), *(r.evolve(seq=0, version=0) for r in later)]
        )


async def test_an_untouched_chain_verifies(store: Store) -> None:
    trail = await build_chain(store)
    result = await trail.verify("f1")
    assert result.ok and result.checked == 10 and result.fault is None
    cp = await trail.checkpoint("f1")
    assert (cp.position, cp.hash) == (10, result.hash)
    assert (await trail.verify("f1", checkpoint=cp)).ok
    assert (await AuditTrail(store).verify("f2")).ok  # an empty chain


@pytest.mark.parametrize(
    "edit",
    [
        {"parent": "message:other"},
        {"ref": "c9"},
        {"ref": None},
        {"status": "message.deleted"},
        {"created_at": T0 + timedelta(minutes=4, microseconds=1)},
        {"data": {"actor": "someone"}},
        {"id": "forged-id"},
    ],
    ids=lambda e: next(iter(e)),
)
async def test_editing_a_column_is_detected_at_its_position(
    store: Store, edit: dict[str, object]
) -> None:
    trail = await build_chain(store)
    fifth = await raw_at(store, 5)
    await replace(store, fifth.evolve(**edit), fifth.id)
    result = await trail.verify("f1")
    assert not result.ok and result.fault is not None
    assert (result.fault.fault, result.fault.position) == (Fault.EDITED, 5)
    assert result.checked == 4


@pytest.mark.parametrize("part", ["actor", "details", "clients", "objects", "hash", "prev"])
async def test_editing_the_body_is_detected(store: Store, part: str) -> None:
    trail = await build_chain(store)
    rec = await raw_at(store, 5)
    body = bytearray(rec.body or b"")
    payload = json.loads(bytes(body[64:]))
    if part == "hash":
        body[0] ^= 1
    elif part == "prev":
        body[40] ^= 1
    else:
        payload[part] = {"actor": "intruder", "details": {"attachment_count": 99}}.get(part, ["c9"])
        body[64:] = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    async with store.transaction("f1") as tx:
        await tx.update([rec.evolve(body=bytes(body))])
    fault = (await trail.verify("f1")).fault
    assert fault is not None and fault.position == 5
    assert fault.fault in (Fault.EDITED, Fault.INSERTED)
    if part != "prev":
        assert fault.fault is Fault.EDITED


async def test_editing_the_position_is_detected(store: Store) -> None:
    trail = await build_chain(store)
    rec = await raw_at(store, 5)
    async with store.transaction("f1") as tx:
        await tx.update([rec.evolve(key=position_key(99))])
    fault = (await trail.verify("f1")).fault
    assert fault is not None and fault.position == 5


async def test_removing_an_entry_is_detected(store: Store) -> None:
    trail = await build_chain(store)
    rec = await raw_at(store, 4)
    async with store.transaction("f1") as tx:
        await tx.delete(AUDIT_KIND, [rec.id])
    fault = (await trail.verify("f1")).fault
    assert fault is not None and (fault.fault, fault.position) == (Fault.REMOVED, 4)


async def test_reordering_entries_is_detected(store: Store) -> None:
    trail = await build_chain(store)
    third, fourth = await raw_at(store, 3), await raw_at(store, 4)
    async with store.transaction("f1") as tx:  # store 4 before 3, both behind the rest
        await tx.delete(AUDIT_KIND, [third.id, fourth.id])
        await tx.insert([fourth.evolve(seq=0, version=0), third.evolve(seq=0, version=0)])
    fault = (await trail.verify("f1")).fault
    assert fault is not None and (fault.fault, fault.position) == (Fault.REORDERED, 3)


def forge(firm_id: str, rec: Record, position: int, prev: bytes) -> Record:
    """``rec`` re-hashed correctly at ``position`` after ``prev`` (what an
    intruder who knows the scheme can do: there is no secret in it)."""
    payload = (rec.body or b"")[64:]
    micros = to_micros(rec.created_at)
    assert micros is not None and rec.parent and rec.status
    header = header_bytes(firm_id, position, rec.id, rec.parent, rec.ref, rec.status, micros)
    link = link_hash(prev, header, payload)
    return rec.evolve(key=position_key(position), body=link + prev + payload)


async def test_inserting_an_entry_is_detected(store: Store) -> None:
    trail = await build_chain(store)
    fourth = await raw_at(store, 4)
    async with store.transaction("f1") as tx:  # make room at 5 ...
        for pos in range(10, 4, -1):
            rec = await tx.find_by_key(AUDIT_KIND, position_key(pos))
            assert rec is not None
            await tx.update([rec.evolve(key=position_key(pos + 1))])
        # ... and insert a well-formed entry there, linked to 4
        fake = fourth.evolve(id="forged", seq=0, version=0, ref="c1")
        await tx.insert([forge("f1", fake, 5, (fourth.body or b"")[:32])])
    fault = (await trail.verify("f1")).fault
    assert fault is not None and (fault.fault, fault.position) == (Fault.INSERTED, 5)


async def test_a_record_without_position_is_detected(store: Store) -> None:
    trail = await build_chain(store)
    fifth = await raw_at(store, 5)
    async with store.transaction("f1") as tx:
        await tx.insert([fifth.evolve(id="stray", key=None, seq=0, version=0)])
    fault = (await trail.verify("f1")).fault
    assert fault is not None and (fault.fault, fault.position) == (Fault.INSERTED, 11)


async def test_truncating_the_tail_is_detected_by_head_and_checkpoint(store: Store) -> None:
    trail = await build_chain(store)
    cp = await trail.checkpoint("f1")
    ninth, tenth = await raw_at(store, 9), await raw_at(store, 10)
    async with store.transaction("f1") as tx:
        await tx.delete(AUDIT_KIND, [ninth.id, tenth.id])
    fault = (await trail.verify("f1")).fault
    assert fault is not None and (fault.fault, fault.position) == (Fault.TRUNCATED, 9)
    # the intruder also moves the head back: only the host's checkpoint tells
    eighth = await raw_at(store, 8)
    async with Records(store).transaction("f1") as tx:
        head = await tx.get(AuditHead, HEAD_ID)
        await tx.update([attrs.evolve(head, position=8, hash=(eighth.body or b"")[:32].hex())])
    assert (await trail.verify("f1")).ok
    result = await trail.verify("f1", checkpoint=cp)
    assert result.fault is not None
    assert (result.fault.fault, result.fault.position) == (Fault.TRUNCATED, 9)


async def test_a_rewritten_history_is_detected_by_the_checkpoint(store: Store) -> None:
    trail = await build_chain(store)
    cp = await trail.checkpoint("f1")
    early = Checkpoint("f1", 3, (await raw_at(store, 3)).body[:32].hex(), T0)  # type: ignore[index]
    # edit entry 7 and re-hash everything after it, head included
    prev = ((await raw_at(store, 6)).body or b"")[:32]
    async with store.transaction("f1") as tx:
        for pos in range(7, 11):
            rec = await tx.find_by_key(AUDIT_KIND, position_key(pos))
            assert rec is not None
            if pos == 7:
                rec = rec.evolve(ref="c9")
            forged = forge("f1", rec, pos, prev)
            await tx.update([forged])
            prev = (forged.body or b"")[:32]
    async with Records(store).transaction("f1") as tx:
        head = await tx.get(AuditHead, HEAD_ID)
        await tx.update([attrs.evolve(head, hash=prev.hex())])
    assert (await trail.verify("f1")).ok  # self-consistent: no secret stops a full rewrite
    assert (await trail.verify("f1", checkpoint=early)).ok  # before the rewrite
    fault = (await trail.verify("f1", checkpoint=[early, cp])).fault
    assert fault is not None and (fault.fault, fault.position) == (Fault.REWRITTEN, 10)


async def test_checkpoint_of_another_firm_is_refused(store: Store) -> None:
    trail = await build_chain(store, 2)
    with pytest.raises(InvalidInputError):
        await trail.verify("f1", checkpoint=Checkpoint("f2", 1, "00" * 32, T0))


async def test_chains_are_per_firm_and_the_step_finds_every_firm(store: Store) -> None:
    trail = AuditTrail(store)
    for firm in ("f1", "f2", "f1"):
        async with Records(store).transaction(firm) as tx:
            await append(tx, subject="mailing:m", operation="mailing.cancelled", actor="a", at=T0)
    assert await trail.step(limit=100) == 3
    assert await trail.step(limit=100) == 0
    assert [(await trail.verify(f)).checked for f in ("f1", "f2")] == [2, 1]
    [f2] = (await trail.query("f2")).entries
    assert f2.position == 1 and f2.prev == "00" * 32


async def test_a_second_chainer_conflicts_instead_of_forking(store: Store) -> None:
    """Two chainers that read the same head: the second one's transaction fails
    whole (the unique position keys and the head's version refuse it)."""
    from clientcomm.audit.chain import chain_firm

    trail = await build_chain(store, 3)
    records = Records(store)
    async with records.transaction("f1") as tx:
        await append(tx, subject="mailing:m", operation="mailing.cancelled", actor="a", at=T0)
    async with records.transaction("f1") as tx:
        stale = await tx.get(AuditHead, HEAD_ID)
    assert await chain_firm(records, "f1", limit=10, now=T0) == 1
    async with records.transaction("f1") as tx:
        await append(tx, subject="mailing:m", operation="mailing.cancelled", actor="b", at=T0)
    with pytest.raises(ConflictError):
        async with records.transaction("f1") as tx:
            await tx.update([attrs.evolve(stale, position=4)])
    assert await trail.chain("f1") == 1
    result = await trail.verify("f1")
    assert result.ok and result.checked == 5


# -- query and export ------------------------------------------------------------------------
async def test_query_filters(store: Store) -> None:
    trail = await build_chain(store, 12)
    async with Records(store).transaction("f1") as tx:
        await append(
            tx,
            subject="mailing:big",
            operation="mailing.delivered",
            actor="system",
            at=T0 + timedelta(hours=1),
            clients=["c1", "c7"],
            delivered=2,
        )
    await trail.chain("f1")

    async def ids(**filters: object) -> list[int]:
        page = await trail.query("f1", limit=1000, **filters)  # type: ignore[arg-type]
        return [e.position for e in page.entries]

    assert await ids() == list(range(1, 14))
    assert await ids(client="c1") == [2, 6, 10, 13]  # c1's own entries, and the batch naming it
    assert await ids(client="c7") == [13]
    assert await ids(client="c1", operation="message.sent") == [2, 6, 10]
    assert await ids(client="c1", operation="mailing.delivered") == [13]
    assert await ids(actor="staff1") == [2, 5, 8, 11]
    assert await ids(actor="staff1", client="c1") == [2]
    assert await ids(operation="mailing.delivered") == [13]
    assert await ids(subject="message:m3") == [4]
    assert await ids(
        created_from=T0 + timedelta(minutes=3), created_before=T0 + timedelta(minutes=6)
    ) == [4, 5, 6]
    assert await ids(actor="staff0", created_from=T0 + timedelta(minutes=4)) == [7, 10]
    assert await ids(client="nobody") == []
    with pytest.raises(InvalidInputError):
        await trail.query("f1", limit=0)
    with pytest.raises(InvalidInputError):
        await trail.query("f1", cursor="not-a-cursor")
    with pytest.raises(InvalidInputError):
        await trail.query("f1", created_from=datetime(2026, 1, 1))


@pytest.mark.parametrize("filters", [{}, {"client": "c1"}, {"actor": "staff2"}])
async def test_query_pages_with_a_cursor(store: Store, filters: dict[str, str]) -> None:
    trail = await build_chain(store, 23)
    whole = (await trail.query("f1", limit=1000, **filters)).entries  # type: ignore[arg-type]
    paged: list[AuditEntry] = []
    cursor = None
    pages = 0
    while True:
        page = await trail.query("f1", limit=2, cursor=cursor, **filters)  # type: ignore[arg-type]
        paged.extend(page.entries)
        pages += 1
        if page.cursor is None:
            break
        cursor = page.cursor
    assert [e.id for e in paged] == [e.id for e in whole] and len(whole) > 2
    assert pages == (len(whole) + 1) // 2


async def test_export_lines_carry_the_verification_data(store: Store) -> None:
    trail = await build_chain(store, 5)
    lines = [line async for line in trail.export_jsonl("f1")]
    assert all(line.endswith("\n") for line in lines)
    rows = [json.loads(line) for line in lines]
    assert [r["position"] for r in rows] == [1, 2, 3, 4, 5]
    assert set(rows[0]) == {
        "firm_id", "position", "id", "at", "operation", "subject", "actor", "client",
        "clients", "objects", "details", "prev", "hash",
    }  # fmt: skip
    assert rows[0]["prev"] == "00" * 32
    assert all(rows[i]["prev"] == rows[i - 1]["hash"] for i in range(1, 5))
    assert rows[-1]["hash"] == (await trail.checkpoint("f1")).hash
    assert verify_export(lines) is None
    # an auditor holding the export sees an edited line, and a gap in the links
    edited = dict(rows[2], actor="someone else")
    fault = verify_export([*lines[:2], json.dumps(edited), *lines[3:]])
    assert fault is not None and (fault.fault, fault.position) == (Fault.EDITED, 3)
    bad_link = dict(rows[3], prev=rows[1]["hash"])
    fault = verify_export([*lines[:3], json.dumps(bad_link)])
    assert fault is not None and fault.position == 4
    only_c1 = [line async for line in trail.export_jsonl("f1", client="c1")]
    assert [json.loads(x)["position"] for x in only_c1] == [2] and verify_export(only_c1) is None


async def test_an_undecodable_entry_fails_alone_in_a_query(store: Store) -> None:
    trail = await build_chain(store, 4)
    rec = await raw_at(store, 2)
    async with store.transaction("f1") as tx:
        await tx.update([rec.evolve(body=b"junk")])
    assert [e.position for e in (await trail.query("f1")).entries] == [1, 3, 4]
    fault = (await trail.verify("f1")).fault
    assert fault is not None and (fault.fault, fault.position) == (Fault.EDITED, 2)


def test_every_operation_is_in_the_compliance_table() -> None:
    text = (ROOT / "docs" / "compliance.md").read_text()
    table = {
        line.split("|")[1].strip().strip("`")
        for line in text.splitlines()
        if line.startswith("| `") and "." in line.split("|")[1]
    }
    declared = {op.name for op in OPERATIONS}
    assert declared <= table, declared - table
    assert {t for t in table if t.count(".") == 1 and " " not in t} >= declared


def test_payload_is_canonical() -> None:
    a = PendingAudit(
        "a",
        "mailing:m",
        "mailing.completed",
        "x",
        datetime(2026, 1, 1, tzinfo=UTC),
        {"b": 1, "a": "ü"},
    )
    assert (
        payload_of(a)
        == '{"actor":"x","clients":[],"details":{"a":"ü","b":1},"objects":[]}'.encode()
    )


async def test_suspended_appends_validate_but_write_nothing(store: Store) -> None:
    from clientcomm.testing.audit import suspended

    with suspended():
        async with Records(store).transaction("f1") as tx:
            assert (
                await append(
                    tx, subject="mailing:m", operation="mailing.cancelled", actor="a", at=T0
                )
                is None
            )
            with pytest.raises(InvalidInputError):
                await append(tx, subject="mailing:m", operation="no.such", actor="a", at=T0)
    assert await pending(store) == []
    async with Records(store).transaction("f1") as tx:  # and on again outside
        await append(tx, subject="mailing:m", operation="mailing.cancelled", actor="a", at=T0)
    assert len(await pending(store)) == 1
