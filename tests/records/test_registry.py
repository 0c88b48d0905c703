"""The record registry: every kind round-trips, unregistered classes and
undecodable rows are refused, old layouts are upcast, and ``meta`` carries the
optimistic version (on every Store backend)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clientcomm.audit.records import AuditEntry, PendingAudit
from clientcomm.errors import ConfigurationError, ConflictError, IntegrityError, InvalidInputError
from clientcomm.ids import new_id
from clientcomm.mailing.records import PAGE_KIND, PageSegment, PageState, RecipientPage
from clientcomm.messages.records import MESSAGE_KIND, MessageRecord
from clientcomm.records import REGISTRY, Kind, Meta, Records, Registry, SealedField, meta_field
from clientcomm.records.docs import load_all
from clientcomm.records.registry import converter
from clientcomm.records.rewrap import RewrapJob, RewrapStatus
from clientcomm.rules.readstate import Author, UnreadFor
from clientcomm.storage.base import Record, Store
from clientcomm.storage.sqlite import SQLiteStore
from tests.conformance.conftest import open_backend
from tests.records.strategies import optional_created_attr, records_of

KINDS: list[Kind[Any]] = list(load_all())
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def kind_id(kind: Kind[Any]) -> str:
    return kind.name


def json_round_trip(record: Record) -> Record:
    """``record`` with its data serialised and parsed back as the stores do."""
    text = json.dumps(record.data, ensure_ascii=False, allow_nan=False)
    return record.evolve(data=json.loads(text))


def message(client_id: str = "c1", text: bytes = b"sealed") -> MessageRecord:
    return MessageRecord(
        id=new_id(),
        client_id=client_id,
        unread_for=UnreadFor.CLIENT,
        sealed_text=text,
        sent_at=T0,
        author=Author.STAFF,
        author_id="admin",
    )


@attrs.frozen
class Unregistered:
    id: str
    meta: Meta = meta_field()


def test_registry_has_the_bundled_kinds() -> None:
    names = {k.name for k in KINDS}
    assert {
        "audit",
        "blob.intent",
        "blob.ref",
        "chat.read",
        "key.rewrap",
        "mailing",
        "mailing.page",
        "message",
        "notify.fanout",
        "notify.inapp",
        "notify.job",
    } <= names
    assert [k.name for k in KINDS] == sorted(names)


# -- round trip ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_every_kind_round_trips(kind: Kind[Any], data: st.DataObject) -> None:
    value = data.draw(records_of(kind), label="value")
    record = kind.encode(value, "f1")
    assert record.kind == kind.name
    assert record.id == kind.id_of(value)
    assert record.firm_id == "f1"
    assert ("_v" in record.data) == (kind.version > 1)
    decoded = kind.decode(record)
    assert decoded == value
    assert type(decoded) is kind.cls
    assert decoded.meta.firm_id == "f1"
    # the stores keep data as JSON
    assert kind.decode(json_round_trip(record)) == value
    assert REGISTRY.decode(json_round_trip(REGISTRY.encode(value, "f1"))) == value


OPTIONAL_CREATED = [k for k in KINDS if optional_created_attr(k) is not None]


def test_no_kind_maps_an_optional_attribute_to_created_at() -> None:
    # the created_at column is NOT NULL (the epoch stands for "unset"), so an
    # optional attribute there would read back as 1970-01-01 instead of None
    assert OPTIONAL_CREATED == []


def test_encoding_does_not_depend_on_the_previous_value() -> None:
    kind = REGISTRY.of(PendingAudit)
    first = PendingAudit("a1", "mailing:m1", "mailing.submitted", "admin", T0, {"n": 1})
    second = attrs.evolve(first, id="a2", details={"n": True})
    kind.encode(first, "f1")
    stored = json_round_trip(kind.encode(second, "f1"))
    assert stored.data["details"]["n"] is True
    assert kind.decode(stored).details["n"] is True


def test_consecutive_equal_values_share_one_data_dict() -> None:
    # the fan-out's fast path: equal data is serialised once per batch
    kind = REGISTRY.of(MessageRecord)
    a, b = message(), message()
    assert kind.encode(a, "f1").data is kind.encode(b, "f1").data
    c = attrs.evolve(b, id=new_id(), author_id="clerk")
    assert kind.encode(c, "f1").data["author_id"] == "clerk"


@given(
    rows=st.lists(
        st.tuples(st.text(min_size=1, max_size=20), st.text(max_size=20), st.binary(max_size=64)),
        max_size=8,
    )
)
def test_encode_variants_equals_encoding_each_evolved_value(
    rows: list[tuple[str, str, bytes]],
) -> None:
    kind = REGISTRY.of(MessageRecord)
    template = message()
    names = ("id", "client_id", "sealed_text")
    got = kind.encode_variants(template, "f1", names, rows)
    want = [
        kind.encode(attrs.evolve(template, id=i, client_id=c, sealed_text=b), "f1")
        for i, c, b in rows
    ]
    assert got == want


def test_encode_variants_refuses_attributes_that_need_encoding() -> None:
    kind = REGISTRY.of(MessageRecord)
    for names in (("author_id",), ("unread_for",), ("sent_at",), ("nope",)):
        with pytest.raises(ConfigurationError, match="cannot vary"):
            kind.encode_variants(message(), "f1", names, [("x",)])


async def test_insert_variants_stores_what_insert_stores(tmp_path: Path) -> None:
    async with SQLiteStore(tmp_path / "store.db") as store:
        template = message()
        rows = [(new_id(), f"c{i}", bytes([i]) * 3) for i in range(3)]
        async with Records(store).transaction("f1") as tx:
            await tx.insert_variants(template, ("id", "client_id", "sealed_text"), rows)
        for mid, cid, body in rows:
            got = await Records(store).get(MessageRecord, "f1", mid)
            assert (got.client_id, got.sealed_text, got.author_id) == (
                cid,
                body,
                template.author_id,
            )


@attrs.frozen
class Counted:
    id: str
    n: Any = 0
    label: str | None = None
    meta: Meta = meta_field()


def test_only_text_data_is_shared() -> None:
    # an int field is never shared by ==: 1 == True, but JSON tells them apart
    registry = Registry()
    kind = registry.register(Kind("test.counted", Counted, "a test kind", {"id": "id"}))
    first = kind.encode(Counted("a", n=1), "f1")
    second = kind.encode(Counted("b", n=True), "f1")
    assert second.data["n"] is True and first.data is not second.data
    # text-only data (the int at its default, so omitted) is shared
    x, y = kind.encode(Counted("x", label="L"), "f1"), kind.encode(Counted("y", label="L"), "f1")
    assert x.data is y.data
    assert registry.encode(Counted("z"), "f1").kind == "test.counted"
    with pytest.raises(InvalidInputError):
        registry.encoder(Unregistered)


def test_string_tuples_are_type_checked_on_decode() -> None:
    from clientcomm.notifications.fanout import FanoutBatch
    from clientcomm.notifications.models import NotificationKind

    batch_kind = REGISTRY.of(FanoutBatch)
    batch = FanoutBatch(
        "b1", "m1", NotificationKind.NEW_MESSAGE, ("c1", "c2"), ("x", "y"), created_at=T0
    )
    record = json_round_trip(batch_kind.encode(batch, "f1"))
    assert batch_kind.decode(record).client_ids == ("c1", "c2")
    bad = record.evolve(data={**record.data, "client_ids": ["c1", 7]})
    with pytest.raises(IntegrityError):
        batch_kind.decode(bad)
    not_list = record.evolve(data={**record.data, "cause_ids": "x"})
    with pytest.raises(IntegrityError):
        batch_kind.decode(not_list)


SEALED = [k for k in KINDS if k.sealed]


def test_sealed_and_client_kinds() -> None:
    assert {k.name for k in SEALED} >= {"mailing", "message"}
    assert REGISTRY.sealed_kinds() == SEALED
    assert REGISTRY.client_kinds() == [k for k in KINDS if k.client is not None]
    for kind in SEALED:
        assert kind.owner is not None, f"{kind.name}: sealed values need an owner"
        for field in kind.sealed:
            assert field.what in ("envelope", "stream_key")
            assert field.what == "envelope" or field.blob is not None


@pytest.mark.parametrize("kind", SEALED, ids=kind_id)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_sealed_places_are_found_and_replaced(kind: Kind[Any], data: st.DataObject) -> None:
    value = data.draw(records_of(kind), label="value")
    places = kind.sealed_values(value)
    assert [f for f, _ in places] == list(kind.sealed)
    new = value
    for field, found in places:
        assert all(type(v) is bytes for v in found)
        assert field.replace(new, found) == new
        marked = [b"new:" + v for v in found]
        new = field.replace(new, marked) if found or "[]." in field.path else new
        assert field.values(new) == marked
    # what re-wrapping writes back decodes to the changed value, meta kept
    replaced = kind.decode(kind.encode(attrs.evolve(new, meta=Meta("f1", 7, 3)), None))
    assert replaced == new
    assert (replaced.meta.seq, replaced.meta.version) == (7, 3)
    assert [v for _, vs in kind.sealed_values(replaced) for v in vs] == [
        b"new:" + v for _, vs in places for v in vs
    ]
    assert kind.stream_blobs(value) == [
        getattr(item, f.blob)
        for f in kind.sealed
        if f.what == "stream_key" and f.blob is not None
        for item in getattr(value, f.path.partition("[].")[0])
    ]


# -- store round trip on every backend ------------------------------------------------
@pytest.mark.parametrize("kind", KINDS, ids=kind_id)
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_every_kind_round_trips_through_the_store(
    store: Store, kind: Kind[Any], data: st.DataObject
) -> None:
    value = data.draw(records_of(kind, store_safe=True), label="value")
    value = attrs.evolve(value, **{kind.columns["id"]: new_id()})
    if isinstance(value, AuditEntry):  # its position is a unique key per firm
        value = attrs.evolve(value, position=next(_POSITIONS))
    records = Records(store)
    async with records.transaction("f1") as tx:
        inserted = await tx.insert_one(value)
    assert inserted == value
    assert inserted.meta.firm_id == "f1"
    stored = await records.get(kind.cls, "f1", kind.id_of(value))
    assert stored == value
    assert stored.meta.firm_id == "f1"
    assert stored.meta.seq > 0


_POSITIONS = itertools.count(1)


# -- unregistered classes ---------------------------------------------------------------
def test_unregistered_class_is_refused_by_the_registry() -> None:
    with pytest.raises(InvalidInputError) as info:
        REGISTRY.encode(Unregistered("x"), "f1")
    assert info.value.field == "record"
    with pytest.raises(InvalidInputError):
        REGISTRY.of(Unregistered)


def test_subclass_of_a_registered_class_is_refused() -> None:
    @attrs.frozen
    class Special(AuditEntry):
        pass

    value = Special("a1", "s", "op", "admin", T0)
    with pytest.raises(InvalidInputError):
        REGISTRY.encode(value, "f1")


def test_unknown_kind_name_is_refused() -> None:
    record = Record(kind="no.such.kind", id="x", firm_id="f1")
    with pytest.raises(InvalidInputError) as info:
        REGISTRY.decode(record)
    assert info.value.field == "kind"
    assert "no.such.kind" not in REGISTRY
    assert "message" in REGISTRY


async def test_insert_of_an_unregistered_class_writes_nothing(store: Store) -> None:
    records = Records(store)
    good = message()
    async with records.transaction("f1") as tx:
        with pytest.raises(InvalidInputError):
            await tx.insert([good, Unregistered("x")])
        assert await tx.count(MessageRecord) == 0
        with pytest.raises(InvalidInputError):
            await tx.list(Unregistered)
    async with records.transaction("f1") as tx:
        assert await tx.count(MessageRecord) == 0
        # the transaction went on after the refusal
        await tx.insert([good])
    assert await records.get(MessageRecord, "f1", good.id) == good


# -- registration -------------------------------------------------------------------------
def _kind(name: str, cls: type[Any] = Unregistered, **kw: Any) -> Kind[Any]:
    return Kind(name, cls, "a test kind", columns={"id": "id"}, **kw)


def test_duplicate_registration_is_refused() -> None:
    registry = Registry()
    kind = registry.register(_kind("test.one"))
    assert registry.kind("test.one") is kind
    with pytest.raises(ConfigurationError):
        registry.register(_kind("test.one"))

    @attrs.frozen
    class Other:
        id: str
        meta: Meta = meta_field()

    with pytest.raises(ConfigurationError):
        registry.register(_kind("test.two", Unregistered))  # same class, other name
    registry.register(_kind("test.two", Other))
    assert [k.name for k in registry] == ["test.one", "test.two"]


def test_bundled_kinds_cannot_be_registered_again() -> None:
    before = [k.name for k in REGISTRY]
    message_kind = REGISTRY.kind(MESSAGE_KIND)
    with pytest.raises(ConfigurationError):
        REGISTRY.register(_kind(MESSAGE_KIND))
    with pytest.raises(ConfigurationError):
        REGISTRY.register(Kind("test.message", MessageRecord, "again", columns={"id": "id"}))
    assert [k.name for k in REGISTRY] == before
    assert REGISTRY.kind(MESSAGE_KIND) is message_kind


@pytest.mark.parametrize(
    ("columns", "kw"),
    [
        ({"parent": "id"}, {}),  # id not mapped
        ({"id": "id", "nope": "id"}, {}),  # unknown column
        ({"id": "missing"}, {}),  # unknown attribute
        ({"id": "id"}, {"sealed": (SealedField("id"),)}),  # sealed without owner
        ({"id": "id"}, {"client_column": "parent"}),  # client column not mapped
        ({"id": "id"}, {"version": 3, "upcasters": {1: dict}}),  # no upcaster from 2
    ],
)
def test_inconsistent_kind_is_refused(columns: dict[str, str], kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Kind("test.bad", Unregistered, "bad", columns=columns, **kw)


def test_record_class_needs_meta() -> None:
    @attrs.frozen
    class NoMeta:
        id: str

    with pytest.raises(ConfigurationError):
        Kind("test.nometa", NoMeta, "bad", columns={"id": "id"})


# -- undecodable records --------------------------------------------------------------
def test_garbage_data_raises_integrity_error() -> None:
    kind = REGISTRY.of(MessageRecord)
    record = kind.encode(message(), "f1")
    for garbage in (
        {},  # required attributes missing
        {"author": "nobody", "author_id": "a"},  # not a status value
        {"author": "staff", "author_id": "a", "attachments": "x"},
        {"author": "staff", "author_id": "a", "attachments": [{"id": "a1"}]},
        {"author": "staff", "author_id": "a", "_v": 2},  # a layout from the future
    ):
        with pytest.raises(IntegrityError) as info:
            kind.decode(record.evolve(data=garbage))
        assert info.value.context["id"] == record.id
        assert info.value.context["kind"] == MESSAGE_KIND
    with pytest.raises(IntegrityError):
        kind.decode(record.evolve(status="to_nobody"))
    with pytest.raises(IntegrityError):
        kind.decode(record.evolve(kind=PAGE_KIND))


def test_undecodable_page_body_raises_integrity_error() -> None:
    kind = REGISTRY.of(RecipientPage)
    page = RecipientPage("m1:000000", "m1", PageState.QUEUED, ("c1", "c2"), T0)
    record = kind.encode(page, "f1")
    assert kind.decode(record) == page
    for body in (b"not json", b'{"c1": 1}', b"[1, 2]"):
        with pytest.raises(IntegrityError):
            kind.decode(record.evolve(body=body))


async def _corrupt(store: Store, kind: str, id: str, data: dict[str, Any]) -> None:
    async with store.transaction("f1") as tx:
        raw = await tx.get(kind, id)
        await tx.update([raw.evolve(data=data)])


async def test_undecodable_record_is_skipped_by_list(store: Store) -> None:
    records = Records(store)
    values = [message() for _ in range(3)]
    async with records.transaction("f1") as tx:
        await tx.insert(values)
    await _corrupt(store, MESSAGE_KIND, values[1].id, {"garbage": True})
    async with records.transaction("f1") as tx:
        with pytest.raises(IntegrityError):
            await tx.list(MessageRecord, parent="c1")
        with pytest.raises(IntegrityError):
            await tx.get(MessageRecord, values[1].id)
        listed = await tx.list(MessageRecord, parent="c1", decode_errors="skip")
        many = await tx.get_many(MessageRecord, [v.id for v in values], decode_errors="skip")
    assert listed == [values[0], values[2]]
    assert set(many) == {values[0].id, values[2].id}
    streamed = [m async for m in records.iterate(MessageRecord, "f1")]
    assert streamed == [values[0], values[2]]


async def test_claim_returns_undecodable_records_apart(store: Store) -> None:
    records = Records(store)
    jobs = [RewrapJob(new_id(), f"c{i}", T0) for i in range(3)]
    async with records.transaction("f1") as tx:
        await tx.insert(jobs)
    await _corrupt(store, "key.rewrap", jobs[0].id, {"client_id": "c0", "after_seq": "lots"})
    good, bad = await records.claim(
        RewrapJob,
        status=RewrapStatus.PENDING,
        owner="w1",
        now=T0,
        lease=timedelta(minutes=1),
        limit=10,
        firm_id="f1",
    )
    assert sorted(j.id for j in good) == sorted(j.id for j in jobs[1:])
    assert [r.id for r in bad] == [jobs[0].id]
    assert bad[0].lease_owner == "w1"
    for job in good:
        assert job.meta.lease_owner == "w1"
        assert job.meta.lease_until == T0 + timedelta(minutes=1)
        assert job.meta.version > 0


# -- layout versions ------------------------------------------------------------------
def page_v1(segments: list[list[Any]], *, n: int = 2) -> Record:
    """A mailing.page row as clientcomm 0.1 wrote it."""
    return Record(
        kind=PAGE_KIND,
        id="m1:000000",
        firm_id="f1",
        parent="m1",
        status="queued",
        body=json.dumps(["c1", "c2"]).encode(),
        created_at=T0,
        data={"n": n, "pos": 1, "delivered": 1, "reasons": {}, "segments": segments},
    )


def test_v1_page_is_upcast() -> None:
    kind = REGISTRY.of(RecipientPage)
    at = T0 + timedelta(minutes=5)
    record = page_v1([[1, at.isoformat(), "b1"], [2, at.isoformat(), None]])
    page = kind.decode(record)
    assert page == RecipientPage(
        id="m1:000000",
        mailing_id="m1",
        status=PageState.QUEUED,
        clients=("c1", "c2"),
        created_at=T0,
        pos=1,
        delivered=1,
        segments=(PageSegment(1, at, "b1"), PageSegment(2, at, None)),
    )
    assert all(type(s) is PageSegment for s in page.segments)
    assert page.remaining == 1
    # re-encoding writes the current layout, which decodes to the same value
    again = kind.encode(page, "f1")
    assert again.data["_v"] == kind.version == 2
    assert "n" not in again.data
    assert kind.decode(json_round_trip(again)) == page
    # the upcaster did not touch the row it read
    assert record.data["segments"][0] == [1, at.isoformat(), "b1"]


def test_v1_page_without_segments_is_upcast() -> None:
    record = page_v1([])
    assert REGISTRY.decode(record.evolve(data={"n": 2})).segments == ()


@pytest.mark.parametrize("version", [0, 3, 99, -1, "2", None, 1.5])
def test_unknown_layout_version_raises(version: object) -> None:
    record = page_v1([])
    with pytest.raises(IntegrityError) as info:
        REGISTRY.decode(record.evolve(data={**record.data, "_v": version}))
    assert info.value.context["id"] == "m1:000000"


def test_unknown_layout_version_of_a_v1_kind_raises() -> None:
    kind = REGISTRY.of(PendingAudit)
    record = kind.encode(PendingAudit("a1", "s", "op", "admin", T0), "f1")
    assert "_v" not in record.data
    with pytest.raises(IntegrityError):
        kind.decode(record.evolve(data={**record.data, "_v": 2}))


async def test_v1_page_in_the_store_is_upcast_and_rewritten(store: Store) -> None:
    at = T0 + timedelta(minutes=5)
    async with store.transaction("f1") as raw:
        await raw.insert([page_v1([[1, at.isoformat(), "b1"]])])
    records = Records(store)
    async with records.transaction("f1") as tx:
        page = await tx.get(RecipientPage, "m1:000000")
        assert page.segments == (PageSegment(1, at, "b1"),)
        updated = await tx.update_one(attrs.evolve(page, pos=2, delivered=2))
    async with store.transaction("f1") as raw:
        row = await raw.get(PAGE_KIND, "m1:000000")
    assert row.data["_v"] == 2
    assert "n" not in row.data
    assert row.data["segments"] == [{"end": 1, "at": at.isoformat(), "batch": "b1"}]
    assert await records.get(RecipientPage, "f1", "m1:000000") == updated


# -- meta and optimistic versions ---------------------------------------------------------
async def test_meta_carries_seq_and_version_and_stale_updates_conflict(store: Store) -> None:
    records = Records(store)
    value = message()
    assert value.meta == Meta()
    async with records.transaction("f1") as tx:
        await tx.insert([value, message()])
    read = await records.get(MessageRecord, "f1", value.id)
    assert read.meta.firm_id == "f1"
    assert read.meta.seq > 0
    assert read.meta == attrs.evolve(read.meta)  # frozen value
    async with records.transaction("f1") as tx:
        newer = await tx.update_one(attrs.evolve(read, unread_for=UnreadFor.STAFF))
    assert newer.meta.seq == read.meta.seq
    assert newer.meta.version > read.meta.version
    assert newer.unread_for is UnreadFor.STAFF
    again = await records.get(MessageRecord, "f1", value.id)
    assert again.meta.version == newer.meta.version
    # an update from the stale read is refused (maybe only at commit)
    with pytest.raises(ConflictError):
        async with records.transaction("f1") as tx:
            await tx.update([attrs.evolve(read, author_id="clerk")])
    with pytest.raises(ConflictError):
        async with records.transaction("f1") as tx:
            await tx.update_one(attrs.evolve(read, author_id="clerk"))
    current = await records.get(MessageRecord, "f1", value.id)
    assert current.author_id == "admin"
    assert current.meta.version == newer.meta.version
    # a value without meta (never read) cannot replace a stored one either
    with pytest.raises(ConflictError):
        async with records.transaction("f1") as tx:
            await tx.update([attrs.evolve(current, meta=Meta())])
    assert (await records.get(MessageRecord, "f1", value.id)).meta.version == current.meta.version


@pytest.mark.parametrize(
    "backend",
    [
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
async def test_insert_one_returns_the_stored_seq(backend: str, tmp_path: Path) -> None:
    async for store in open_backend(backend, tmp_path):
        records = Records(store)
        async with records.transaction("f1") as tx:
            await tx.insert([message()])
            inserted = await tx.insert_one(message())
            assert inserted.meta.firm_id == "f1"
            read = await tx.get(MessageRecord, inserted.id)
            assert read.meta.seq > 0
            assert inserted.meta.seq == read.meta.seq
            assert inserted.meta.version == read.meta.version


async def test_values_are_firm_scoped(store: Store) -> None:
    records = Records(store)
    value = message()
    async with records.transaction("f1") as tx:
        await tx.insert([value])
    assert await records.find(MessageRecord, "f2", value.id) is None
    assert await records.find(MessageRecord, "f1", value.id) == value


class _Sub(str):
    pass


@pytest.mark.parametrize(
    "value", [["a", 1], ["a", None], [["a"]], "ab", {"a": 1}, ["a", _Sub("b")]]
)
def test_an_id_tuple_holds_exact_strings_only(value: object) -> None:
    with pytest.raises(TypeError):
        converter.structure(value, tuple[str, ...])
    assert converter.structure(["a", "b"], tuple[str, ...]) == ("a", "b")
    assert converter.structure([], tuple[str, ...]) == ()
