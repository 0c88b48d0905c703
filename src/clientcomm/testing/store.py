"""Conformance suite for Store (and WritableDirectory) backends.

Every bundled backend passes it, and an integrator's own adapter runs the very
same tests::

    # tests/test_my_store.py
    import pytest
    from clientcomm.testing.store import DirectoryConformance, StoreConformance

    class TestMyStore(StoreConformance):
        @pytest.fixture
        async def store(self, tmp_path):
            async with MyStore(...) as s:
                yield s

    class TestMyDirectory(DirectoryConformance):
        @pytest.fixture
        async def directory(self):
            yield MyDirectory(...)

The tests are ``async`` and need ``pytest-asyncio`` in auto mode (or mark them).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from clientcomm.directory.base import WritableDirectory
from clientcomm.directory.models import (
    CaseFile,
    Client,
    ClientGroup,
    Contact,
    ContactPreference,
    Firm,
    PostalAddress,
    Role,
    Staff,
    StaffPermission,
)
from clientcomm.errors import (
    ClientCommError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
)
from clientcomm.storage.base import Record, Store

__all__ = ["DirectoryConformance", "StoreConformance"]

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def rec(id: str, firm: str = "f1", kind: str = "item", **kw: Any) -> Record:
    kw.setdefault("created_at", T0)
    return Record(kind=kind, id=id, firm_id=firm, **kw)


REFUSED_CHANGES = [
    {"status": "s\x00"},
    {"firm_id": "f2"},
    {"kind": "Bad Kind"},
    {"data": {"s": {1, 2}}},
    {"created_at": datetime(2026, 1, 1)},
]
"""Changes that make a record refused (``InvalidInputError``) in a write batch."""


class StoreConformance:
    """Shared tests for a :class:`~clientcomm.storage.base.Store`; provide a
    ``store`` fixture yielding an opened, empty store."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[Store]:  # pragma: no cover - overridden
        raise NotImplementedError("provide a `store` fixture")
        yield

    # -- round trips ------------------------------------------------------------
    async def test_round_trip_keeps_every_field(self, store: Store) -> None:
        due = T0 + timedelta(hours=1, microseconds=7)
        r = rec(
            "a",
            parent="p",
            ref="assignee-1",
            key="k-a",
            status="queued",
            due_at=due,
            data={"n": 1, "s": 'Grüße "x"', "l": [1, None, True], "d": {"x": 1.5}},
            body=b"\x00\xffbinary",
        )
        async with store.transaction("f1") as tx:
            await tx.insert([r])
        async with store.transaction("f1") as tx:
            got = await tx.get("item", "a")
            by_key = await tx.find_by_key("item", "k-a")
        assert by_key == got
        assert got.seq > 0 and got.version == 0
        assert (got.parent, got.key, got.status, got.due_at) == ("p", "k-a", "queued", due)
        assert got.ref == "assignee-1"
        assert got.data == r.data and got.body == r.body and got.created_at == T0
        assert got.lease_owner is None and got.lease_until is None

    async def test_seq_increases_with_insertion(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec(f"r{i}") for i in range(5)])
        async with store.transaction("f1") as tx:
            await tx.insert([rec("later")])
            rows = await tx.list("item")
        seqs = [r.seq for r in rows]
        assert seqs == sorted(seqs) and len(set(seqs)) == 6
        assert rows[-1].id == "later"

    async def test_reads_see_own_writes(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a", status="s")])
            assert (await tx.get("item", "a")).status == "s"
            assert await tx.count("item") == 1

    async def test_unknown_ids(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            with pytest.raises(NotFoundError) as info:
                await tx.get("item", "missing")
            assert isinstance(info.value, LookupError)
            assert await tx.find("item", "missing") is None
            assert await tx.find_by_key("item", "missing") is None
            await tx.insert([rec("a")])
            assert set(await tx.get_many("item", ["a", "missing"])) == {"a"}
            assert await tx.delete("item", ["missing"]) == 0

    # -- transactions ------------------------------------------------------------
    async def test_error_inside_transaction_rolls_everything_back(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("keep", status="old"), rec("gone")])
        with pytest.raises(RuntimeError):
            async with store.transaction("f1") as tx:
                await tx.insert([rec("new")])
                keep = await tx.get("item", "keep")
                await tx.update([keep.evolve(status="new")])
                await tx.delete("item", ["gone"])
                raise RuntimeError("boom")
        async with store.transaction("f1") as tx:
            assert await tx.find("item", "new") is None
            assert (await tx.get("item", "keep")).status == "old"
            assert await tx.find("item", "gone") is not None

    async def test_duplicate_id_conflicts_and_rolls_back(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a")])
        with pytest.raises(ConflictError):
            async with store.transaction("f1") as tx:
                await tx.insert([rec("b")])
                await tx.insert([rec("a")])
                await tx.count("item")
        async with store.transaction("f1") as tx:
            assert await tx.find("item", "b") is None
            assert await tx.count("item") == 1

    async def test_duplicate_key_conflicts(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a", key="k")])
        with pytest.raises(ConflictError):
            async with store.transaction("f1") as tx:
                await tx.insert([rec("b", key="k")])
        # same key in another kind or firm is fine
        async with store.transaction("f1") as tx:
            await tx.insert([rec("b", key="k", kind="other")])
        async with store.transaction("f2") as tx:
            await tx.insert([rec("a", firm="f2", key="k")])

    async def test_transaction_refuses_work_after_an_error(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a")])
        with pytest.raises(ClientCommError):
            async with store.transaction("f1") as tx:
                with pytest.raises(ConflictError):
                    await tx.insert([rec("a")])
                    await tx.count("item")
                await tx.insert([rec("c")])
        async with store.transaction("f1") as tx:
            assert await tx.find("item", "c") is None

    async def test_update_bumps_version_and_keeps_identity(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a", status="one")])
        async with store.transaction("f1") as tx:
            cur = await tx.get("item", "a")
            [new] = await tx.update([cur.evolve(status="two", data={"x": 2}, body=b"b")])
            assert new.version == cur.version + 1
        async with store.transaction("f1") as tx:
            got = await tx.get("item", "a")
        assert (got.status, got.data, got.body, got.version) == ("two", {"x": 2}, b"b", 1)
        assert got.seq == cur.seq and got.created_at == T0

    async def test_stale_update_conflicts(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a")])
        async with store.transaction("f1") as tx:
            first = await tx.get("item", "a")
        async with store.transaction("f1") as tx:
            await tx.update([first.evolve(status="winner")])
        with pytest.raises(ConflictError):
            async with store.transaction("f1") as tx:
                await tx.update([first.evolve(status="loser")])
        async with store.transaction("f1") as tx:
            assert (await tx.get("item", "a")).status == "winner"

    async def test_update_of_missing_record_conflicts(self, store: Store) -> None:
        with pytest.raises((ConflictError, NotFoundError)):
            async with store.transaction("f1") as tx:
                await tx.update([rec("ghost")])

    async def test_update_to_taken_key_conflicts(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a", key="ka"), rec("b", key="kb")])
        with pytest.raises(ConflictError):
            async with store.transaction("f1") as tx:
                b = await tx.get("item", "b")
                await tx.update([b.evolve(key="ka")])

    async def test_delete(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a", key="k"), rec("b")])
        async with store.transaction("f1") as tx:
            assert await tx.delete("item", ["a", "b", "zzz"]) == 2
        async with store.transaction("f1") as tx:
            assert await tx.count("item") == 0
            await tx.insert([rec("a2", key="k")])  # the key is free again

    async def test_stale_update_lands_nothing_of_its_transaction(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a"), rec("b")])
        async with store.transaction("f1") as tx:
            first = await tx.get("item", "a")
        async with store.transaction("f1") as tx:
            await tx.update([first.evolve(status="winner")])
        with pytest.raises(ConflictError):
            async with store.transaction("f1") as tx:
                await tx.insert([rec("before")])
                await tx.update([first.evolve(status="loser")])
                await tx.replace([rec("b", status="moved")])
                await tx.insert([rec("after"), rec("after2")])
        async with store.transaction("f1") as tx:
            got = {r.id: r.status for r in await tx.list("item")}
        assert got == {"a": "winner", "b": None}

    async def test_replace_moves_a_record_to_the_newest(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a", parent="p", status="one", data={"n": 1}), rec("b")])
        async with store.transaction("f1") as tx:
            a = await tx.get("item", "a")
            await tx.update([a.evolve(status="two")])  # version 1
        async with store.transaction("f1") as tx:
            await tx.replace(
                [rec("a", parent="q", ref="r", status="three", data={"n": 3}), rec("new")]
            )
            assert (await tx.get("item", "a")).status == "three"  # reads see it
        async with store.transaction("f1") as tx:
            listed = await tx.list("item")
            moved = await tx.get("item", "a")
            assert [r.id for r in await tx.list("item", ref="r")] == ["a"]
            assert await tx.list("item", parent="p") == []
        assert [r.id for r in listed] == ["b", "a", "new"]
        got = (moved.parent, moved.status, moved.data, moved.version)
        assert got == ("q", "three", {"n": 3}, 0)
        assert moved.seq > a.seq

    async def test_replace_of_a_taken_key_conflicts(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a", key="ka"), rec("b", key="kb")])
        async with store.transaction("f1") as tx:
            await tx.replace([rec("a", key="ka2")])  # its own key may change
        with pytest.raises(ConflictError):
            async with store.transaction("f1") as tx:
                await tx.replace([rec("b", key="ka2")])
                await tx.count("item")
        async with store.transaction("f1") as tx:
            got = {r.id: r.key for r in await tx.list("item")}
        assert got == {"a": "ka2", "b": "kb"}

    @pytest.mark.parametrize("bad", REFUSED_CHANGES)
    async def test_a_refused_replace_batch_changes_nothing(
        self, store: Store, bad: dict[str, Any]
    ) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a", status="old"), rec("b", status="old")])
        async with store.transaction("f1") as tx:
            with pytest.raises(InvalidInputError):  # the second record is refused...
                await tx.replace([rec("a", status="new"), rec("b", status="new").evolve(**bad)])
            await tx.insert([rec("after")])  # ...the transaction goes on and commits
        async with store.transaction("f1") as tx:
            got = {r.id: r.status for r in await tx.list("item")}
        assert got == {"a": "old", "b": "old", "after": None}

    # -- queries ------------------------------------------------------------------
    async def test_list_filters_paging_and_counts(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert(
                [
                    rec(f"m{i}", parent="c1" if i % 2 else "c2", status="s" if i < 6 else "t")
                    for i in range(10)
                ]
            )
            await tx.insert([rec("other-kind", kind="else", parent="c1", status="s")])
        async with store.transaction("f1") as tx:
            c1 = await tx.list("item", parent="c1")
            assert [r.id for r in c1] == ["m1", "m3", "m5", "m7", "m9"]
            assert [r.id for r in await tx.list("item", status="t")] == ["m6", "m7", "m8", "m9"]
            both = await tx.list("item", parent="c1", status="s")
            assert [r.id for r in both] == ["m1", "m3", "m5"]
            page1 = await tx.list("item", limit=4)
            page2 = await tx.list("item", limit=4, after_seq=page1[-1].seq)
            assert [r.id for r in [*page1, *page2]] == [f"m{i}" for i in range(8)]
            newest = await tx.list("item", descending=True, limit=3)
            assert [r.id for r in newest] == ["m9", "m8", "m7"]
            older = await tx.list("item", descending=True, limit=3, after_seq=newest[-1].seq)
            assert [r.id for r in older] == ["m6", "m5", "m4"]
            assert await tx.count("item") == 10
            assert await tx.count("item", parent="c1") == 5
            assert await tx.count("item", parent="c1", after_seq=c1[1].seq) == 3
            assert await tx.count_by_status("item") == {"s": 6, "t": 4}
            assert await tx.count_by_status("item", parent="c2") == {"s": 3, "t": 2}
            assert await tx.count("nothing") == 0

    async def test_list_by_ref(self, store: Store) -> None:
        # ref groups independently of parent, is not unique, and combines with the others
        async with store.transaction("f1") as tx:
            await tx.insert(
                [
                    rec(
                        f"c{i}",
                        parent="chat" if i < 5 else "other",
                        ref="s1" if i % 3 == 0 else "s2" if i % 3 == 1 else None,
                        status="open" if i % 2 == 0 else "closed",
                    )
                    for i in range(10)
                ]
            )
            await tx.insert([rec("else", kind="else", ref="s1", status="open")])

        async def ids(**kw: Any) -> list[str]:
            async with store.transaction("f1") as tx:
                return [r.id for r in await tx.list("item", **kw)]

        assert await ids(ref="s1") == ["c0", "c3", "c6", "c9"]
        assert await ids(ref="s2") == ["c1", "c4", "c7"]
        assert await ids(ref="s1", status="open") == ["c0", "c6"]
        assert await ids(ref="s1", status="closed") == ["c3", "c9"]
        assert await ids(ref="s1", parent="chat") == ["c0", "c3"]
        assert await ids(ref="s1", parent="chat", status="closed") == ["c3"]
        assert await ids(ref="nobody") == []
        assert await ids(ref="s1", descending=True) == ["c9", "c6", "c3", "c0"]
        assert await ids(ref="s1", descending=True, limit=2) == ["c9", "c6"]
        async with store.transaction("f1") as tx:
            newest = await tx.list("item", ref="s1", descending=True, limit=2)
            older = await tx.list("item", ref="s1", descending=True, after_seq=newest[-1].seq)
            assert [r.id for r in older] == ["c3", "c0"]
            first = await tx.list("item", ref="s1", status="open", limit=1)
            rest = await tx.list("item", ref="s1", status="open", after_seq=first[0].seq)
            assert [r.id for r in [*first, *rest]] == ["c0", "c6"]
            assert await tx.count("item", ref="s1") == 4
            assert await tx.count("item", ref="s1", status="open") == 2
            assert await tx.count("item", ref="s2", parent="other") == 1
            assert await tx.count("item", ref="s1", after_seq=first[0].seq) == 3
            assert await tx.count("else", ref="s1") == 1
            # the defaults are unchanged: no ref filter means every record
            assert await tx.count("item") == 10
        got = [r.id async for r in store.iterate("f1", "item", ref="s2", batch=2)]
        assert got == ["c1", "c4", "c7"]
        got = [r.id async for r in store.iterate("f1", "item", ref="s1", status="open", batch=1)]
        assert got == ["c0", "c6"]
        async with store.transaction("f2") as tx:
            assert await tx.list("item", ref="s1") == []
            assert await tx.count("item", ref="s1") == 0
        assert [r async for r in store.iterate("f2", "item", ref="s1")] == []

    async def test_update_changes_ref(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a", ref="s1", status="open"), rec("b", ref="s1")])
        async with store.transaction("f1") as tx:
            a = await tx.get("item", "a")
            [a2] = await tx.update([a.evolve(ref="s2")])
            assert a2.ref == "s2"
            assert [r.id for r in await tx.list("item", ref="s2")] == ["a"]  # own write
            assert [r.id for r in await tx.list("item", ref="s1")] == ["b"]
        async with store.transaction("f1") as tx:
            got = await tx.get("item", "a")
            assert (got.ref, got.version, got.seq) == ("s2", 1, a.seq)
            assert [r.id for r in await tx.list("item", ref="s2", status="open")] == ["a"]
            b = await tx.get("item", "b")
            await tx.update([b.evolve(ref=None)])
        async with store.transaction("f1") as tx:
            assert (await tx.get("item", "b")).ref is None
            assert await tx.list("item", ref="s1") == []
            assert await tx.count("item") == 2

    async def test_list_by_created_range(self, store: Store) -> None:
        times = [T0 + timedelta(minutes=i) for i in range(6)]
        async with store.transaction("f1") as tx:
            # inserted out of created_at order: seq order and time order differ
            await tx.insert(
                [
                    rec(f"e{i}", created_at=times[i], ref="actor" if i % 2 else None)
                    for i in (3, 0, 5, 1, 4, 2)
                ]
            )
            await tx.insert([rec("x", kind="else", created_at=times[2])])
        async with store.transaction("f2") as tx:
            await tx.insert([rec("foreign", firm="f2", created_at=times[2])])

        async def ids(**kw: Any) -> list[str]:
            async with store.transaction("f1") as tx:
                return [r.id for r in await tx.list("item", **kw)]

        # created_from is inclusive, created_before exclusive; results stay in seq order
        assert await ids(created_from=times[1], created_before=times[4]) == ["e3", "e1", "e2"]
        assert await ids(created_from=times[4]) == ["e5", "e4"]
        assert await ids(created_before=times[1]) == ["e0"]
        assert await ids(created_from=times[2], created_before=times[2]) == []
        assert await ids(created_from=times[3], created_before=times[2]) == []
        just_after = times[5] + timedelta(microseconds=1)
        assert await ids(created_from=times[5], created_before=just_after) == ["e5"]
        assert await ids(created_from=just_after) == []
        # the same instant in another zone is the same bound
        plus2 = timezone(timedelta(hours=2))
        assert await ids(created_from=times[4].astimezone(plus2)) == ["e5", "e4"]
        assert await ids(created_from=times[1], created_before=times[4], descending=True) == [
            "e2",
            "e1",
            "e3",
        ]
        assert await ids(created_from=times[1], ref="actor") == ["e3", "e5", "e1"]
        assert await ids(created_from=times[1], ref="actor", descending=True, limit=2) == [
            "e1",
            "e5",
        ]
        async with store.transaction("f1") as tx:
            assert await tx.count("item", created_from=times[1], created_before=times[4]) == 3
            assert await tx.count("item", created_before=times[3], ref="actor") == 1
            assert await tx.count("else", created_from=times[2]) == 1
            page = await tx.list("item", created_from=times[1], limit=2)
            more = await tx.list("item", created_from=times[1], after_seq=page[-1].seq)
            assert [r.id for r in [*page, *more]] == ["e3", "e5", "e1", "e4", "e2"]
            assert await tx.count("item", created_from=times[1], after_seq=page[-1].seq) == 3
        got = [r.id async for r in store.iterate("f1", "item", created_from=times[2], batch=2)]
        assert got == ["e3", "e5", "e4", "e2"]
        got = [
            r.id
            async for r in store.iterate(
                "f1", "item", ref="actor", created_before=times[5], batch=1
            )
        ]
        assert got == ["e3", "e1"]
        async with store.transaction("f2") as tx:
            assert [r.id for r in await tx.list("item", created_before=times[5])] == ["foreign"]

    @pytest.mark.parametrize("field", ["created_from", "created_before"])
    @pytest.mark.parametrize("value", [datetime(2026, 3, 1), "2026-03-01T00:00:00+00:00"])
    async def test_created_range_must_be_aware(self, store: Store, field: str, value: Any) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a")])
            with pytest.raises(InvalidInputError) as info:
                await tx.list("item", **{field: value})
            assert info.value.field == field
            with pytest.raises(InvalidInputError) as info:
                await tx.count("item", **{field: value})
            assert info.value.field == field
        with pytest.raises(InvalidInputError) as info:
            async for _ in store.iterate("f1", "item", **{field: value}):
                pass
        assert info.value.field == field
        async with store.transaction("f1") as tx:
            assert await tx.count("item") == 1  # refusing the read aborted nothing

    async def test_iterate_streams_in_order(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec(f"r{i:03}", parent="p") for i in range(25)])
            await tx.insert([rec("x", parent="q")])
        got = [r.id async for r in store.iterate("f1", "item", parent="p", batch=7)]
        assert got == [f"r{i:03}" for i in range(25)]

    # -- firm isolation ---------------------------------------------------------
    async def test_firm_isolation(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a", parent="p", key="k", status="s")])
        async with store.transaction("f2") as tx:
            assert await tx.find("item", "a") is None
            assert await tx.find_by_key("item", "k") is None
            assert await tx.get_many("item", ["a"]) == {}
            assert await tx.list("item") == []
            assert await tx.list("item", status="s") == []
            assert await tx.count("item", parent="p") == 0
            assert await tx.count_by_status("item") == {}
            assert await tx.delete("item", ["a"]) == 0
            with pytest.raises(NotFoundError):
                await tx.get("item", "a")
            with pytest.raises(InvalidInputError):
                await tx.insert([rec("b", firm="f1")])
        with pytest.raises((ConflictError, NotFoundError)):
            async with store.transaction("f2") as tx:
                await tx.update([rec("a", firm="f2")])
        async with store.transaction("f1") as tx:
            assert (await tx.get("item", "a")).version == 0
        assert [r.id async for r in store.iterate("f2", "item")] == []

    # -- bad input --------------------------------------------------------------
    @pytest.mark.parametrize(
        "bad",
        [
            {"kind": "Bad Kind"},
            {"kind": ""},
            {"id": ""},
            {"id": "x" * 201},
            {"due_at": datetime(2026, 1, 1)},
            {"created_at": datetime(2026, 1, 1)},
            {"data": {"s": {1, 2}}},
            {"data": {"b": b"bytes"}},
            {"data": {1: "int key"}},
            {"data": {"nan": float("nan")}},
            {"id": "a\x00b"},
            {"parent": "p\x00"},
            {"status": 7},
            {"ref": "r\x00"},
            {"ref": "x" * 401},
            {"ref": 7},
        ],
    )
    async def test_bad_records_are_refused(self, store: Store, bad: dict[str, Any]) -> None:
        with pytest.raises(InvalidInputError):
            async with store.transaction("f1") as tx:
                await tx.insert([rec("ok")])
                await tx.insert([rec(**{"id": "bad", **bad})])
        async with store.transaction("f1") as tx:
            assert await tx.count("item") == 0

    async def test_a_refused_batch_queues_nothing(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("before")])
            with pytest.raises(InvalidInputError):
                await tx.insert([rec("good"), rec("bad\x00")])
        async with store.transaction("f1") as tx:
            assert [r.id for r in await tx.list("item")] == ["before"]

    @pytest.mark.parametrize("bad", REFUSED_CHANGES)
    async def test_a_refused_update_batch_writes_nothing(
        self, store: Store, bad: dict[str, Any]
    ) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a"), rec("b"), rec("c")])
        async with store.transaction("f1") as tx:
            a, b, c = (await tx.get_many("item", ["a", "b", "c"])).values()
            with pytest.raises(InvalidInputError):  # the third record is refused...
                await tx.update([a.evolve(status="new"), b.evolve(status="new"), c.evolve(**bad)])
            await tx.insert([rec("after")])  # ...the transaction goes on and commits
        async with store.transaction("f1") as tx:
            got = {r.id: (r.status, r.version) for r in await tx.list("item")}
        assert got == {"a": (None, 0), "b": (None, 0), "c": (None, 0), "after": (None, 0)}

    @pytest.mark.parametrize("bad_id", ["", "b\x00", "x" * 201, 7, None])
    async def test_a_refused_delete_batch_deletes_nothing(self, store: Store, bad_id: Any) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a"), rec("b")])
        async with store.transaction("f1") as tx:
            with pytest.raises(InvalidInputError):
                await tx.delete("item", ["a", bad_id, "b"])
            assert await tx.count("item") == 2
            await tx.insert([rec("after")])
        async with store.transaction("f1") as tx:
            assert [r.id for r in await tx.list("item")] == ["a", "b", "after"]

    async def test_records_sharing_one_data_object(self, store: Store) -> None:
        shared = {"author": "staff", "n": [1, 2]}
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a", data=shared), rec("b", data=shared), rec("c", data={})])

        def changing() -> Iterator[Record]:  # a generator may change the object between records
            data: dict[str, Any] = {"n": 1}
            yield rec("d", data=data)
            data["n"] = 2
            yield rec("e", data=data)

        async with store.transaction("f1") as tx:
            await tx.insert(changing())
        async with store.transaction("f1") as tx:
            got = {r.id: dict(r.data) for r in await tx.list("item")}
        assert got == {"a": shared, "b": shared, "c": {}, "d": {"n": 1}, "e": {"n": 2}}

    async def test_empty_firm_is_refused(self, store: Store) -> None:
        with pytest.raises(InvalidInputError):
            async with store.transaction(""):
                pass

    async def test_migrate_is_idempotent(self, store: Store) -> None:
        v1 = await store.migrate()
        assert v1 >= 1 and await store.migrate() == v1

    # -- concurrency and leases -------------------------------------------------
    async def test_concurrent_writers_all_land(self, store: Store) -> None:
        async def writer(n: int) -> None:
            async with store.transaction("f1") as tx:
                await tx.insert([rec(f"w{n}-{i}") for i in range(20)])

        await asyncio.gather(*(writer(n) for n in range(10)))
        async with store.transaction("f1") as tx:
            assert await tx.count("item") == 200

    async def test_concurrent_optimistic_increments(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("counter", data={"n": 0})])

        async def bump() -> None:
            while True:
                try:
                    async with store.transaction("f1") as tx:
                        cur = await tx.get("item", "counter")
                        await asyncio.sleep(0)
                        await tx.update([cur.evolve(data={"n": cur.data["n"] + 1})])
                    return
                except ConflictError:
                    continue

        await asyncio.gather(*(bump() for _ in range(15)))
        async with store.transaction("f1") as tx:
            assert (await tx.get("item", "counter")).data["n"] == 15

    async def test_claim_respects_status_due_and_leases(self, store: Store) -> None:
        now = T0
        async with store.transaction("f1") as tx:
            await tx.insert(
                [
                    rec("due", status="queued"),
                    rec("future", status="queued", due_at=now + timedelta(minutes=5)),
                    rec("done", status="done"),
                    rec("past", status="queued", due_at=now - timedelta(minutes=5)),
                ]
            )
        async with store.transaction("f2") as tx:
            await tx.insert([rec("other-firm", firm="f2", status="queued")])
        lease = timedelta(seconds=30)
        got = await store.claim("item", status="queued", owner="w1", now=now, lease=lease, limit=10)
        assert [r.id for r in got] == ["due", "past", "other-firm"]
        assert all(r.lease_owner == "w1" and r.lease_until == now + lease for r in got)
        assert all(r.version == 1 for r in got)
        # leased: nobody else gets them until the lease expires
        again = await store.claim(
            "item", status="queued", owner="w2", now=now, lease=lease, limit=10
        )
        assert again == []
        later = now + timedelta(minutes=10)
        stolen = await store.claim(
            "item", status="queued", owner="w2", now=later, lease=lease, limit=10, firm_id="f1"
        )
        assert [r.id for r in stolen] == ["due", "future", "past"]
        # w1 lost its lease: finishing with its stale copy conflicts
        with pytest.raises(ConflictError):
            async with store.transaction("f1") as tx:
                await tx.update([got[0].evolve(status="done")])
        async with store.transaction("f1") as tx:
            await tx.update([stolen[0].evolve(status="done", lease_owner=None, lease_until=None)])
            assert (await tx.get("item", "due")).status == "done"

    async def test_claim_limit_parent_and_bad_input(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert(
                [rec(f"r{i}", parent="a" if i < 3 else "b", status="q") for i in range(6)]
            )
        got = await store.claim(
            "item", status="q", owner="w", now=T0, lease=timedelta(seconds=5), limit=2, parent="b"
        )
        assert [r.id for r in got] == ["r3", "r4"]
        with pytest.raises(InvalidInputError):
            await store.claim(
                "item", status="q", owner="w", now=T0, lease=timedelta(seconds=5), limit=0
            )
        with pytest.raises(InvalidInputError):
            await store.claim(
                "item", status="q", owner="", now=T0, lease=timedelta(seconds=5), limit=1
            )

    async def test_concurrent_claimers_never_share(self, store: Store) -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec(f"j{i:03}", status="q") for i in range(120)])

        async def claimer(name: str) -> list[str]:
            out: list[str] = []
            while True:
                got = await store.claim(
                    "item", status="q", owner=name, now=T0, lease=timedelta(minutes=1), limit=7
                )
                if not got:
                    return out
                out += [r.id for r in got]

        results = await asyncio.gather(*(claimer(f"w{i}") for i in range(4)))
        flat = [x for r in results for x in r]
        assert sorted(flat) == [f"j{i:03}" for i in range(120)]


class DirectoryConformance:
    """Shared tests for a :class:`~clientcomm.directory.base.WritableDirectory`;
    provide a ``directory`` fixture yielding an empty one."""

    @pytest.fixture
    async def directory(self) -> AsyncIterator[WritableDirectory]:  # pragma: no cover
        raise NotImplementedError("provide a `directory` fixture")
        yield

    async def _seed(self, d: WritableDirectory) -> None:
        await d.put_firm(Firm("f1", "Kanzlei Müller", office_email="office@mueller.example"))
        await d.put_firm(Firm("f2", "Other firm"))
        await d.put_group(ClientGroup("g1", "f1", "Vermieter"))
        await d.put_group(ClientGroup("g2", "f1", "GmbHs"))
        await d.put_client(Client("c1", "f1", "Anna Alt", group_ids={"g1"}))
        await d.put_client(Client("c2", "f1", "Bernd Bau", group_ids={"g1", "g2"}))
        await d.put_client(Client("c3", "f1", "Carla Chor", active=False, group_ids={"g2"}))
        await d.put_client(Client("c4", "f1", "Dora Dach"))
        await d.put_client(Client("x1", "f2", "Foreign"))

    async def test_firms_and_clients_round_trip(self, directory: WritableDirectory) -> None:
        await self._seed(directory)
        firm = await directory.get_firm("f1")
        assert firm.name == "Kanzlei Müller" and firm.office_email == "office@mueller.example"
        c2 = await directory.get_client("f1", "c2")
        assert c2 == Client("c2", "f1", "Bernd Bau", group_ids={"g1", "g2"})
        assert [g.id for g in await directory.list_groups("f1")] == ["g1", "g2"]
        assert await directory.list_groups("f2") == []

    async def test_list_clients_filters(self, directory: WritableDirectory) -> None:
        await self._seed(directory)

        async def ids(**kw: Any) -> list[str]:
            return [c.id for c in await directory.list_clients("f1", **kw)]

        assert await ids() == ["c1", "c2", "c3", "c4"]
        assert await ids(active=True) == ["c1", "c2", "c4"]
        assert await ids(active=False) == ["c3"]
        assert await ids(group_ids=["g2"]) == ["c2", "c3"]
        assert await ids(group_ids=["g1", "g2"], active=True) == ["c1", "c2"]
        assert await ids(group_ids=[]) == []
        assert await ids(ids=["c4", "c1", "x1", "nope"]) == ["c1", "c4"]

    async def test_updates_replace(self, directory: WritableDirectory) -> None:
        await self._seed(directory)
        await directory.put_client(Client("c1", "f1", "Anna Neu", active=False, group_ids={"g2"}))
        c1 = await directory.get_client("f1", "c1")
        assert (c1.name, c1.active, c1.group_ids) == ("Anna Neu", False, frozenset({"g2"}))
        assert [c.id for c in await directory.list_clients("f1", group_ids=["g1"])] == ["c2"]

    async def test_contacts_staff_case_files(self, directory: WritableDirectory) -> None:
        await self._seed(directory)
        addr = PostalAddress("Anna Alt", "Hauptstr. 1", "10115", "Berlin", "DE")
        await directory.put_contact(
            Contact(
                "k1",
                "f1",
                "c1",
                "Anna Alt",
                email="anna@example.com",
                registered=True,
                preference=ContactPreference.LETTER,
                address=addr,
                language="en",
            )
        )
        await directory.put_contact(Contact("k2", "f1", "c1", "Ohne Mail"))
        staff = Staff(
            "s1",
            "f1",
            "Sabine",
            Role.CLERK,
            email="s@k.example",
            unrestricted=False,
            client_ids={"c1", "c2"},
            permissions={StaffPermission.CLIENT_PORTAL},
        )
        await directory.put_staff(staff)
        await directory.put_staff(Staff("s0", "f1", "Adam", Role.ADMIN))
        await directory.put_case_file(
            CaseFile("a1", "f1", "c1", "Mietsache", handler_id="s1", assistant_ids={"s0"})
        )
        contacts = await directory.list_contacts("f1", ["c1", "c2"])
        assert [c.id for c in contacts["c1"]] == ["k1", "k2"] and list(contacts["c2"]) == []
        assert contacts["c1"][0].address == addr
        assert contacts["c1"][0].preference is ContactPreference.LETTER
        assert await directory.get_staff("f1", "s1") == staff
        # restricted unless the host says otherwise; the flag round-trips
        assert not (await directory.get_staff("f1", "s0")).unrestricted
        everyone = Staff("s2", "f1", "Uwe", Role.CLERK, unrestricted=True)
        await directory.put_staff(everyone)
        assert await directory.get_staff("f1", "s2") == everyone
        assert [s.id for s in await directory.list_staff("f1")] == ["s0", "s1", "s2"]
        case = await directory.get_case_file("f1", "a1")
        assert case.assistant_ids == frozenset({"s0"}) and case.handler_id == "s1"
        assert [c.id for c in await directory.list_case_files("f1", "c1")] == ["a1"]

    async def test_unknown_ids_and_isolation(self, directory: WritableDirectory) -> None:
        await self._seed(directory)
        with pytest.raises(NotFoundError):
            await directory.get_firm("nope")
        with pytest.raises(NotFoundError):
            await directory.get_client("f1", "x1")  # exists, but in f2
        with pytest.raises(NotFoundError):
            await directory.get_staff("f1", "nope")
        with pytest.raises(NotFoundError):
            await directory.get_case_file("f1", "nope")
        with pytest.raises(NotFoundError):
            await directory.put_client(Client("c9", "f1", "X", group_ids={"unknown"}))
        with pytest.raises(NotFoundError):
            await directory.put_contact(Contact("k9", "f1", "x1", "Wrong firm"))
        with pytest.raises(NotFoundError):
            await directory.put_client(Client("c9", "nofirm", "X"))
        assert [c.id for c in await directory.list_clients("f2")] == ["x1"]
        assert await directory.list_clients("nofirm") == []

    @pytest.mark.parametrize(
        "entry",
        [
            Firm("", "No id"),
            Firm("f9", "  "),
            Client("", "f1", "x"),
            Staff("s9", "f1", "", Role.CLERK),
            Contact("k9", "f1", "c1", "Evil", email="a@b.c\r\nBcc: x@y.z"),
        ],
    )
    async def test_bad_input(self, directory: WritableDirectory, entry: Any) -> None:
        await self._seed(directory)
        puts: dict[type, Callable[[Any], Awaitable[None]]] = {
            Firm: directory.put_firm,
            Client: directory.put_client,
            Staff: directory.put_staff,
            Contact: directory.put_contact,
        }
        put = puts[type(entry)]
        with pytest.raises(InvalidInputError):
            await put(entry)
