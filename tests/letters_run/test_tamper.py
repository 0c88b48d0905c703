"""The metadata tamper cases of the run's kinds (letters.run, letters.doc,
letters.download), from their integrity declarations: every protected
attribute edited in the store, and sealed values swapped between records, is
refused; the tampered record fails alone. On every Store backend."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import attrs
import pytest

from clientcomm import StaffActor
from clientcomm.app import ClientComm
from clientcomm.errors import IntegrityError
from clientcomm.letters.run_records import DOC_KIND, DOWNLOAD_KIND, RUN_KIND
from clientcomm.records import REGISTRY
from clientcomm.records.bound import stamp
from clientcomm.storage.base import Record
from tests.letters_run.support import CLERK
from tests.letters_run.test_runs import new_run

PROTECTED = {"sealed", "aad", "bound", "mac", "key"}


def protected(kind_name: str) -> list[str]:
    kind = REGISTRY.kind(kind_name)
    return [
        f.name
        for f in attrs.fields(kind.cls)
        if f.name != "meta" and (kind.integrity_of(f.name) or "").partition(":")[0] in PROTECTED
    ]


async def raw(app: ClientComm, kind: str, id: str) -> Record:
    async with app.store.transaction("f1") as tx:
        return await tx.get(kind, id)


async def put(app: ClientComm, record: Record) -> None:
    """Replace the stored record as a database editor would (delete and
    insert, so ``created_at`` changes too)."""
    new = record.evolve(seq=0, version=0, lease_owner=None, lease_until=None)
    async with app.store.transaction("f1") as tx:
        await tx.delete(record.kind, [record.id])
        await tx.insert([new])


def edited(kind_name: str, record: Record, attr: str, other: Record) -> Record:
    """``record`` with ``attr`` taken from ``other`` (a swap), or changed."""
    kind = REGISTRY.kind(kind_name)
    column = next((c for c, a in kind.columns.items() if a == attr), None)
    if column is not None:
        mine, theirs = getattr(record, column), getattr(other, column)
        if mine == theirs:
            theirs = mine + timedelta(seconds=1) if column == "created_at" else "edited"
        return record.evolve(**{column: theirs})
    data: dict[str, Any] = dict(record.data)
    if attr == "stored":
        items = [dict(x) for x in data["stored"]]
        items[0]["blob_id"] = other.data["stored"][0]["blob_id"]
        data["stored"] = items
    else:
        data[attr] = other.data.get(attr, "edited")
    return record.evolve(data=data)


def test_the_kinds_declare_what_is_protected() -> None:
    assert set(protected(RUN_KIND)) == {"id", "property_id", "state", "created_at", "sealed_state"}
    assert set(protected(DOC_KIND)) == {
        "id",
        "run_id",
        "unit_id",
        "role",
        "created_at",
        "sealed_info",
        "stored",
    }
    assert set(protected(DOWNLOAD_KIND)) == {"id", "run_id", "sealed_request", "stored"}


@pytest.mark.parametrize("attr", ["property_id", "state", "created_at", "sealed_state"])
async def test_run_tampering_is_refused(app: ClientComm, attr: str) -> None:
    run_a = await new_run(app)
    run_b = await app.letter_runs.create(CLERK, property_id="p1", title="B", unit_ids=["u3"])
    app.clock.advance(1)  # type: ignore[attr-defined]
    a, b = await raw(app, RUN_KIND, run_a), await raw(app, RUN_KIND, run_b.id)
    await put(app, edited(RUN_KIND, a, attr, b))
    with pytest.raises(IntegrityError):
        await app.letter_runs.get(CLERK, run_a)
    assert (await app.letter_runs.get(CLERK, run_b.id)).title == "B"  # fails alone


async def test_run_id_swap_is_refused(app: ClientComm) -> None:
    """A run's sealed state moved under another id does not open there."""
    run_a = await new_run(app)
    run_b = await app.letter_runs.create(CLERK, property_id="p1", title="B", unit_ids=["u3"])
    a, b = await raw(app, RUN_KIND, run_a), await raw(app, RUN_KIND, run_b.id)
    await put(app, b.evolve(body=a.body, parent=a.parent, status=a.status))
    with pytest.raises(IntegrityError):
        await app.letter_runs.get(CLERK, run_b.id)


@pytest.mark.parametrize(
    "attr", ["run_id", "unit_id", "role", "created_at", "sealed_info", "stored"]
)
async def test_doc_tampering_is_refused(app: ClientComm, attr: str) -> None:
    run_id = await new_run(app)
    other_run = await new_run(app)
    docs = {d.unit_id: d for d in await app.letter_runs.documents(CLERK, run_id)}
    theirs = {d.unit_id: d for d in await app.letter_runs.documents(CLERK, other_run)}
    target = docs["u1"]
    # swap with another unit's document of another run (other unit, other run, other blob)
    source = theirs["u2"] if attr != "role" else theirs[None]
    app.clock.advance(1)  # type: ignore[attr-defined]
    record = await raw(app, DOC_KIND, target.id)
    other = await raw(app, DOC_KIND, source.id)
    await put(app, edited(DOC_KIND, record, attr, other))
    shown = {d.id for d in await app.letter_runs.documents(CLERK, run_id)}
    assert target.id not in shown  # the tampered document fails alone ...
    assert {d.id for d in docs.values()} - {target.id} <= shown  # ... the others stay
    with pytest.raises((IntegrityError, LookupError)):
        await app.letter_runs.download_document(CLERK, run_id, target.id)
    assert stamp(record.created_at)  # the value was stored as a time


async def test_doc_sealed_info_of_the_same_unit_swapped(app: ClientComm) -> None:
    """Two documents of one unit (same key): swapping descriptors is refused."""
    run_id = await new_run(app)
    other_run = await new_run(app)
    a = {d.unit_id: d for d in await app.letter_runs.documents(CLERK, run_id)}["u1"]
    b = {d.unit_id: d for d in await app.letter_runs.documents(CLERK, other_run)}["u1"]
    ra, rb = await raw(app, DOC_KIND, a.id), await raw(app, DOC_KIND, b.id)
    await put(app, ra.evolve(body=rb.body))
    with pytest.raises(IntegrityError):
        await app.letter_runs.download_document(CLERK, run_id, a.id)


APPROVER = StaffActor("f1", "approver")


@pytest.mark.parametrize("attr", ["run_id", "sealed_request"])
async def test_download_tampering_is_refused(app: ClientComm, attr: str) -> None:
    run_a = await new_run(app, APPROVER)
    run_b = await new_run(app, APPROVER)
    a = await app.letter_runs.request_download(APPROVER, run_a)
    b = await app.letter_runs.request_download(APPROVER, run_b)
    ra, rb = await raw(app, DOWNLOAD_KIND, a.id), await raw(app, DOWNLOAD_KIND, b.id)
    await put(app, edited(DOWNLOAD_KIND, ra, attr, rb))
    with pytest.raises((IntegrityError, LookupError)):
        await app.letter_runs.download_status(APPROVER, run_a, a.id)
    with pytest.raises((IntegrityError, LookupError)):
        await app.letter_runs.download_status(APPROVER, run_b, a.id)
    assert (await app.letter_runs.download_status(APPROVER, run_b, b.id)).id == b.id
