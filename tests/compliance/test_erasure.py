"""Retention and erasure (issue 11 part 6) on every Store backend: an erased
client leaves nothing readable (records, blobs, key material) but its audit
records and a tombstone; every other client stays intact; a killed erasure
resumes; the retention rule refuses early erasure unless overridden (audited)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clientcomm.actors import ClientActor
from clientcomm.app import ClientComm
from clientcomm.attachments import AttachmentMode
from clientcomm.compliance import (
    ErasureJob,
    ErasureStatus,
    RetentionPolicy,
    erasure_due,
    retain_until,
    run_erasure_jobs,
)
from clientcomm.compliance.records import FirmRetention
from clientcomm.crypto.local import KEY_RECORD_KIND
from clientcomm.errors import InvalidInputError, NotFoundError, RetentionError
from clientcomm.mailing.records import MailingRecord
from clientcomm.messages.records import MessageRecord
from clientcomm.records import REGISTRY, Records
from clientcomm.rules.audience import Audience
from clientcomm.storage.base import Record
from tests.compliance.support import (
    ADMIN,
    C1_SECRETS,
    C2_TEXTS,
    T0,
    attachments,
    dump,
    fill,
    owned_by,
    read_everything,
    row_bytes,
    world,
)
from tests.mailing_support import World

__all__ = ["world"]  # the fixture


async def c1_footprint(app: ClientComm, world: World) -> dict[str, Any]:
    """What c1's data consists of before erasure: its per-copy blobs, its
    shared blobs, its sealed values and its key material (to search for)."""
    rows = await dump(world.store, "f1")
    mine = owned_by(rows, "c1")
    per_copy: set[str] = set()
    shared: set[str] = set()
    sealed: set[bytes] = set()
    for r in mine.values():
        if r.kind == "message":
            m = REGISTRY.kind("message").decode(r)
            sealed.add(m.sealed_text)
            for a in m.attachments:
                sealed.add(a.stream_key)
                (per_copy if a.mode is AttachmentMode.PER_COPY else shared).add(a.blob_id)
    key = rows[(KEY_RECORD_KIND, "c1")]
    key_material = list(key.data["keys"].values())  # version -> wrapped key (text)
    assert key_material and all(len(k) > 40 for k in key_material)
    return {
        "per_copy": per_copy,
        "shared": shared,
        "sealed": sealed,
        "keys": [str(k).encode() for k in key_material],
        "kinds": {r.kind for r in mine.values()},
    }


async def assert_erased(app: ClientComm, world: World, footprint: dict[str, Any]) -> None:
    rows = await dump(world.store, "f1")
    # no record the registry declares as c1's data is left
    assert owned_by(rows, "c1") == {}
    everything = b"".join(row_bytes(r) for r in rows.values())
    for secret in C1_SECRETS:  # no plaintext of c1 anywhere in the store
        assert secret.encode() not in everything, secret
    for value in footprint["sealed"]:  # no sealed value or wrapped key of c1
        assert value not in everything
    for k in footprint["keys"]:  # no key material of c1
        assert k not in everything
    key = rows[(KEY_RECORD_KIND, "c1")]
    assert not key.data.get("keys") and key.data.get("forgotten_at")
    # c1's own blobs are gone; a shared blob stays while c2's copy needs it
    blobs = set(world.blobs.blob_ids("f1"))
    assert footprint["per_copy"] and not footprint["per_copy"] & blobs
    assert footprint["shared"] <= blobs
    # every blob left is referenced by a record that remains
    referenced: set[str] = set()
    for r in rows.values():
        if r.kind in REGISTRY and REGISTRY.kind(r.kind).sealed:
            kind = REGISTRY.kind(r.kind)
            referenced.update(kind.stream_blobs(kind.decode(r)))
    assert blobs <= referenced
    # what remains of c1: audit records and the tombstone
    tomb = await app.compliance.tombstone("f1", "c1")
    assert tomb is not None and tomb.client_id == "c1"
    page = await app.messages.list_for_client(ClientActor("f1", "c1"), mark_read=False)
    assert list(page) == [] and not page.unreadable
    await app.audit.chain("f1")
    ops = [e.operation for e in (await app.audit.query("f1", client="c1", limit=1000)).entries]
    assert ops.count("client.erased") == 1 and "client.forgotten" in ops
    assert (await app.audit.verify("f1")).ok


async def test_erasure_leaves_nothing_of_the_client_and_others_intact(world: World) -> None:
    app = world.app()
    await fill(app)
    footprint = await c1_footprint(app, world)
    before = b"".join(row_bytes(r) for r in (await dump(world.store, "f1")).values())
    for clear in ("anna@example.com", "Anna Alt"):  # the scan is not vacuous: stored in clear
        assert clear.encode() in before, clear
    assert {"message", "chat.read", "notify.job", "blob.ref"} <= footprint["kinds"]
    rows = await dump(world.store, "f1")
    others = rows.keys() - owned_by(rows, "c1").keys()
    c2_rows = owned_by(await dump(world.store, "f1"), "c2")
    f2_rows = await dump(world.store, "f2")

    job = await app.compliance.erase("f1", "c1", actor="admin")
    assert job.status is ErasureStatus.PENDING
    # crypto-shredding at once: nothing of c1 opens any more
    page = await app.messages.list_for_client(ClientActor("f1", "c1"), mark_read=False)
    assert list(page) == [] and len(page.unreadable) == 5
    await app.drain()

    done = await app.compliance.erasure_status("f1", "c1")
    assert done.status is ErasureStatus.DONE and done.finished_at == T0
    assert done.records >= 10 and done.blobs == len(footprint["per_copy"])
    assert done.shared_kept == len(footprint["shared"])
    await assert_erased(app, world, footprint)
    # every other client intact: c2's rows unchanged, everything opens
    assert owned_by(await dump(world.store, "f1"), "c2") == c2_rows
    assert sorted(await read_everything(app, "f1", "c2")) == sorted(C2_TEXTS)
    assert await dump(world.store, "f2") == f2_rows
    assert await read_everything(app, "f2", "x1") == ["Fremde Kanzlei"]
    after = await dump(world.store, "f1")
    for key in others:  # nothing else was deleted (pending audit records get chained)
        assert key in after or key[0] == "audit.pending", key
    # erasing again answers the finished job; the tombstone names the rule
    assert (await app.compliance.erase("f1", "c1")).status is ErasureStatus.DONE
    tomb = await app.compliance.tombstone("f1", "c1")
    assert tomb is not None
    assert (tomb.erased_by, tomb.reason, tomb.override) == ("admin", "request", False)


async def test_killed_erasure_resumes(world: World) -> None:
    app = world.app()
    await fill(app)
    footprint = await c1_footprint(app, world)

    class Crash(BaseException):  # the process dies
        pass

    deleted: list[str] = []
    real_delete = world.blobs.delete

    async def crash_on_first_blob(firm_id: str, blob_id: str) -> bool:
        if not deleted:
            deleted.append(blob_id)
            raise Crash
        return await real_delete(firm_id, blob_id)

    await app.compliance.erase("f1", "c1")
    world.blobs.delete = crash_on_first_blob  # type: ignore[method-assign]
    for _ in range(40):  # small batches until the first blob deletion kills it
        try:
            await run_erasure_jobs(app, now=world.clock.now(), batch=2)
        except Crash:
            break
    else:
        raise AssertionError("never reached a blob")
    world.blobs.delete = real_delete  # type: ignore[method-assign]
    crashed = await app.compliance.erasure_status("f1", "c1")
    assert crashed.status is ErasureStatus.PENDING
    assert crashed.pending_blobs  # the batch committed; its blobs are remembered
    assert deleted[0] in crashed.pending_blobs

    assert crashed.meta.lease_owner is None  # the committed batch released its lease
    assert await world.blobs.exists("f1", deleted[0])

    fresh = world.app()  # a new process goes on from the cursor
    await fresh.drain()
    assert not await world.blobs.exists("f1", deleted[0])
    done = await fresh.compliance.erasure_status("f1", "c1")
    assert done.status is ErasureStatus.DONE
    assert done.blobs == len(footprint["per_copy"])
    await assert_erased(fresh, world, footprint)
    assert sorted(await read_everything(fresh, "f1", "c2")) == sorted(C2_TEXTS)


async def test_crash_after_the_keys_went_resumes_on_the_next_call(world: World) -> None:
    app = world.app()
    await fill(app)
    footprint = await c1_footprint(app, world)
    real = app.forget_client

    class Crash(BaseException):
        pass

    async def forget_then_die(*args: Any, **kwargs: Any) -> bool:
        await real(*args, **kwargs)
        raise Crash

    app.forget_client = forget_then_die  # type: ignore[method-assign]
    with pytest.raises(Crash):
        await app.compliance.erase("f1", "c1")
    with pytest.raises(NotFoundError):
        await app.compliance.erasure_status("f1", "c1")
    fresh = world.app()
    await fresh.compliance.erase("f1", "c1")  # the keys are gone already: goes on
    await fresh.drain()
    await assert_erased(fresh, world, footprint)


async def test_interrupted_batch_commits_nothing(world: World) -> None:
    app = world.app()
    await fill(app)
    await app.compliance.erase("f1", "c1")
    before = await dump(world.store, "f1")

    class Crash(BaseException):
        pass

    real = app.messages.blobs_kept

    async def crash(*args: Any) -> Any:
        raise Crash

    app.messages.blobs_kept = crash  # type: ignore[method-assign,assignment]
    with pytest.raises(Crash):
        await app.drain()
    app.messages.blobs_kept = real  # type: ignore[method-assign]
    after = await dump(world.store, "f1")
    assert owned_by(after, "c1").keys() == owned_by(before, "c1").keys() - {
        k for k in owned_by(before, "c1") if k[0] in ("blob.ref", "chat.read")
    }
    assert any(k[0] == "message" for k in owned_by(after, "c1"))  # the batch rolled back
    world.clock.advance(timedelta(minutes=6))
    await app.drain()
    assert owned_by(await dump(world.store, "f1"), "c1") == {}


async def test_a_copy_committed_after_the_walk_passed_is_erased_too(world: World) -> None:
    app = world.app()
    await fill(app)
    footprint = await c1_footprint(app, world)
    async with world.store.transaction("f1") as tx:
        [late] = await tx.list("message", parent="c1", limit=1)
    await app.compliance.erase("f1", "c1")
    for _ in range(50):  # walk every kind, stop before the job finishes
        state = await app.compliance.erasure_status("f1", "c1")
        if state.kind == "~end":
            break
        await run_erasure_jobs(app, now=world.clock.now(), batch=3)
    else:
        raise AssertionError("the walk never ended")
    async with world.store.transaction("f1") as tx:  # a racing writer commits a copy
        await tx.insert([late.evolve(seq=0, version=0)])
    await app.drain()
    done = await app.compliance.erasure_status("f1", "c1")
    assert done.status is ErasureStatus.DONE
    await assert_erased(app, world, footprint)

    # one committed after the erasure finished: erasing again walks again
    assert (await app.compliance.erase("f1", "c1")).status is ErasureStatus.DONE  # nothing left
    async with world.store.transaction("f1") as tx:
        await tx.insert([late.evolve(seq=0, version=0)])
    again = await app.compliance.erase("f1", "c1")
    assert (again.status, again.kind) == (ErasureStatus.PENDING, None)
    await app.drain()
    assert (await app.compliance.erasure_status("f1", "c1")).status is ErasureStatus.DONE
    await app.audit.chain("f1")
    queued = (await app.audit.query("f1", operation="client.erasure_queued")).entries
    assert [e.details["reason"] for e in queued] == ["request", "left_behind"]
    rows = await dump(world.store, "f1")
    assert owned_by(rows, "c1") == {}
    assert len([r for r in rows.values() if r.kind == "client.tombstone"]) == 1


# -- retention ------------------------------------------------------------------------
def test_retention_rules() -> None:
    last = datetime(2026, 6, 1, tzinfo=UTC)
    assert retain_until(RetentionPolicy(6), last) == datetime(2033, 1, 1, tzinfo=UTC)
    assert retain_until(RetentionPolicy(0), last) == datetime(2027, 1, 1, tzinfo=UTC)
    host = datetime(2030, 3, 1, tzinfo=UTC)
    assert retain_until(RetentionPolicy(6), last, host) == host  # the host's date decides
    assert retain_until(None, last, host) == host
    assert retain_until(None, last) is None
    assert retain_until(RetentionPolicy(), last) is None
    assert retain_until(RetentionPolicy(6), None) is None
    assert not erasure_due(None, last)
    assert not erasure_due(datetime(2033, 1, 1, tzinfo=UTC), datetime(2032, 12, 31, tzinfo=UTC))
    assert erasure_due(datetime(2033, 1, 1, tzinfo=UTC), datetime(2033, 1, 1, tzinfo=UTC))
    for bad in (-1, 201, 1.5, True, "6"):
        with pytest.raises(InvalidInputError) as err:
            RetentionPolicy(bad)  # type: ignore[arg-type]
        assert err.value.field == "years"
    with pytest.raises(InvalidInputError):
        retain_until(RetentionPolicy(6), datetime(2026, 6, 1))


async def test_early_erasure_is_refused_and_the_override_audited(world: World) -> None:
    app = world.app()
    await fill(app)
    await app.compliance.set_policy("f1", RetentionPolicy(6), actor="admin")
    assert await app.compliance.policy("f1") == RetentionPolicy(6)
    assert await app.compliance.retain_until("f1", "c1") == datetime(2033, 1, 1, tzinfo=UTC)
    rows = await dump(world.store, "f1")
    with pytest.raises(RetentionError) as err:
        await app.compliance.erase("f1", "c1", actor="admin")
    assert err.value.context["retain_until"] == "2033-01-01T00:00:00+00:00"
    assert await dump(world.store, "f1") == rows  # nothing destroyed or written
    assert len(await read_everything(app, "f1", "c1")) == 5

    # a host-set date replaces the period; an earlier one makes c1 erasable
    await app.compliance.set_retention_date("f1", "c1", T0 + timedelta(days=30), actor="admin")
    with pytest.raises(RetentionError):
        await app.compliance.erase("f1", "c1")
    job = await app.compliance.erase("f1", "c1", actor="admin", override=True)
    assert job.override and job.retain_until == T0 + timedelta(days=30)
    await app.drain()
    await app.audit.chain("f1")
    entries = (await app.audit.query("f1", client="c1", limit=1000)).entries
    by_op = {e.operation: e for e in entries}
    assert by_op["client.erasure_queued"].details == {
        "reason": "request",
        "override": True,
        "retain_until": (T0 + timedelta(days=30)).isoformat(),
    }
    assert by_op["client.erasure_queued"].actor == "admin"
    assert by_op["client.forgotten"].details["override"] is True
    assert by_op["client.erased"].details["override"] is True
    assert "retention.date_set" in by_op
    firm_ops = (await app.audit.query("f1", operation="retention.policy_set")).entries
    assert [e.details for e in firm_ops] == [{"years": 6, "removed": False}]
    # the retention date record was c1's data: erased too
    rows = await dump(world.store, "f1")
    assert ("retention.client", "c1") not in rows


async def test_the_sweep_erases_who_is_due_and_nobody_else(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    kept_by_law = {"c3"}

    def statutory(firm_id: str, client_id: str) -> datetime | None:
        return datetime(2040, 1, 1, tzinfo=UTC) if client_id in kept_by_law else None

    app = world.app(retention=statutory)
    await fill(app)
    await app.messages.send(ADMIN, "c3", "Carla bleibt")
    world.clock.advance(timedelta(days=400))  # 2027: c4 is written to later
    await app.messages.send(ADMIN, "c4", "Dora spaeter")
    await app.compliance.set_policy("f1", RetentionPolicy(6))
    await app.drain()
    assert await app.compliance.due("f1") == []
    assert await Records(world.store).find(ErasureJob, "f1", "c1") is None

    world.clock.set(datetime(2033, 1, 1, 0, 0, tzinfo=UTC))  # c1, c2, c3 are due
    due = await app.compliance.due("f1")
    assert [d.client_id for d in due] == ["c1", "c2", "c3"]
    assert due[0].last_activity is not None and due[0].last_activity.year == 2026
    with caplog.at_level(logging.WARNING, logger="clientcomm.compliance"):
        await app.drain()
    for client in ("c1", "c2"):
        done = await app.compliance.erasure_status("f1", client)
        assert (done.status, done.reason, done.actor) == (ErasureStatus.DONE, "policy", "system")
    # the statutory rule keeps c3 (it stays due, logged); c4 and f2 are untouched
    assert await Records(world.store).find(ErasureJob, "f1", "c3") is None
    assert any("c3" in r.getMessage() for r in caplog.records)
    assert await read_everything(app, "f1", "c3") == ["Carla bleibt"]
    assert await read_everything(app, "f1", "c4") == ["Dora spaeter"]
    assert await read_everything(app, "f2", "x1") == ["Fremde Kanzlei"]
    # the next sweep is a day later; by then c4's retention has not ended
    assert await app.run_step("clients.erase") == 0
    world.clock.advance(timedelta(days=1, seconds=1))
    assert await app.run_step("clients.erase") == 1  # one firm swept, nothing queued
    with pytest.raises(NotFoundError):
        await app.compliance.erasure_status("f1", "c4")


async def test_a_changed_policy_is_swept_at_once_even_if_a_dead_sweeper_held_it(
    world: World,
) -> None:
    app = world.app()
    await app.compliance.set_policy("f1", RetentionPolicy(10))
    claimed, _ = await Records(world.store).claim(
        FirmRetention,
        status="active",
        owner="dead-worker",
        now=world.clock.now(),
        lease=timedelta(minutes=30),
        limit=5,
    )
    assert len(claimed) == 1
    assert await app.run_step("clients.erase") == 0  # leased by the dead sweeper
    await app.compliance.set_policy("f1", RetentionPolicy(6), actor="admin")
    assert await app.run_step("clients.erase") == 1  # swept (nothing due)
    await app.compliance.set_policy("f1", None, actor="admin")
    assert await app.compliance.policy("f1") is None
    world.clock.advance(timedelta(days=2))
    assert await app.run_step("clients.erase") == 0


async def test_erasing_a_client_does_not_break_a_mailing_to_others(world: World) -> None:
    app = world.app()
    await app.messages.send(ADMIN, "c1", "Hallo Anna")
    later = T0 + timedelta(hours=1)
    for mode in (AttachmentMode.PER_COPY, AttachmentMode.SHARED):
        await app.mailings.submit(
            ADMIN,
            Audience.clients("c1", "c2"),
            f"Geplant {mode.value}",
            attachments=attachments("a.txt"),
            attachment_mode=mode,
            schedule_at=later,
        )
    await app.compliance.erase("f1", "c1")
    await app.drain()
    assert (await app.compliance.erasure_status("f1", "c1")).status is ErasureStatus.DONE
    world.clock.set(later)
    await app.drain()
    assert sorted(await read_everything(app, "f1", "c2")) == ["Geplant per_copy", "Geplant shared"]
    records = Records(world.store)
    async with records.transaction("f1") as tx:
        assert await tx.list(MessageRecord, parent="c1") == []
        mailings = await tx.list(MailingRecord)
    assert {m.status.value for m in mailings} == {"completed"}
    # the shared blob lives on for c2 only
    rows = await dump(world.store, "f1")
    assert all(r.data.get("client_id") != "c1" for r in rows.values() if r.kind == "blob.ref")


async def test_a_damaged_record_of_another_client_is_left_alone(world: World) -> None:
    app = world.app()
    await fill(app)
    async with world.store.transaction("f1") as tx:
        jobs = [r for r in await tx.list("notify.job") if r.data.get("client_id") == "c2"]
        assert jobs
        bad: Record = jobs[0].evolve(data={"garbage": True})
        await tx.update([bad])
    await app.compliance.erase("f1", "c1")
    await app.drain()
    done = await app.compliance.erasure_status("f1", "c1")
    assert done.status is ErasureStatus.DONE and done.undecodable == 1
    async with world.store.transaction("f1") as tx:
        assert (await tx.get("notify.job", bad.id)).data == {"garbage": True}


async def test_bad_input(world: World) -> None:
    app = world.app()
    for bad in ("", "x" * 500, None):
        with pytest.raises(InvalidInputError):
            await app.compliance.erase("f1", bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await app.compliance.set_policy("f1", 6)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        await app.compliance.set_retention_date("f1", "c1", datetime(2030, 1, 1))
    assert await app.compliance.policy("f1") is None
