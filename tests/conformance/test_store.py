"""The Store and Directory conformance suites over every bundled backend, and the
SQLite specifics of the Store schema (migration from version 1, query plans)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clientcomm.directory.base import WritableDirectory
from clientcomm.storage import _sqlquery as q
from clientcomm.storage._codec import from_micros, to_micros
from clientcomm.storage.base import Record, Store
from clientcomm.storage.migrations import load_migrations
from clientcomm.storage.sqlite import SQLiteStore
from clientcomm.testing.store import DirectoryConformance, StoreConformance


class TestStore(StoreConformance):
    @pytest.fixture
    async def store(self, any_store: Store) -> AsyncIterator[Store]:
        yield any_store


class TestDirectory(DirectoryConformance):
    @pytest.fixture
    async def directory(self, any_directory: WritableDirectory) -> AsyncIterator[WritableDirectory]:
        yield any_directory


# -- SQLite specifics of schema version 2 (the ref column and the created_at index) --------
T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)

_V1_ROWS = [  # the columns of schema version 1, in order, without seq
    ("f1", "item", "a", "p", "k-a", "queued", None, '{"n":1}', b"\x00body", 0, None, None),
    ("f1", "item", "b", None, None, None, 1_772_366_400_000_000, "{}", None, 3, "w1", 5),
    ("f2", "item", "c", "p", None, "done", None, "{}", None, 0, None, None),
]


async def test_sqlite_version_1_database_migrates_to_2(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    [v1] = [m for m in load_migrations("sqlite") if m.version == 1]
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at INTEGER NOT NULL);\n"
        + v1.sql
        + "\n;INSERT INTO schema_migrations VALUES (1, 'initial', 0);"
    )
    conn.executemany(
        "INSERT INTO records (firm_id, kind, id, parent, key, status, due_at, data, body,"
        " version, lease_owner, lease_until, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [(*row, to_micros(T0)) for row in _V1_ROWS],
    )
    conn.commit()
    conn.close()
    async with SQLiteStore(path, migrate=False) as store:
        latest = len(load_migrations("sqlite"))
        assert await store.migrate() == latest >= 2
        assert await store.migrate() == latest
        names = await store.sql_read("SELECT version, name FROM schema_migrations ORDER BY 1")
        assert names[:2] == [(1, "initial"), (2, "record_ref")]
        assert names == [(m.version, m.name) for m in load_migrations("sqlite")]
        async with store.transaction("f1") as tx:
            a, b = await tx.list("item")
            assert (a.id, a.parent, a.key, a.status, a.data, a.body) == (
                "a",
                "p",
                "k-a",
                "queued",
                {"n": 1},
                b"\x00body",
            )
            assert (b.id, b.version, b.lease_owner) == ("b", 3, "w1")
            assert b.due_at == from_micros(1_772_366_400_000_000)
            assert b.lease_until == from_micros(5)
            assert a.ref is None and b.ref is None and a.created_at == T0
            assert a.seq < b.seq and await tx.find_by_key("item", "k-a") == a
            await tx.update([a.evolve(ref="s1")])
            await tx.insert([Record(kind="item", id="new", firm_id="f1", ref="s1", created_at=T0)])
        async with store.transaction("f1") as tx:
            assert [r.id for r in await tx.list("item", ref="s1")] == ["a", "new"]
            assert [r.id for r in await tx.list("item", created_from=T0)] == ["a", "b", "new"]
        async with store.transaction("f2") as tx:
            assert [(r.id, r.ref) for r in await tx.list("item")] == [("c", None)]


def _plan_of(**filters: Any) -> Any:
    parent, status = filters.pop("parent", None), filters.pop("status", None)
    for name in ("created_from", "created_before"):
        if name in filters:
            filters[name] = to_micros(filters[name])
    return q.list_query(
        "?",
        "f1",
        "item",
        parent=parent,
        status=status,
        after_seq=0,
        limit=50,
        descending=filters.pop("descending", False),
        **filters,
    )


@pytest.mark.parametrize(
    ("filters", "index", "sorted_by_index"),
    [
        ({"ref": "s1"}, "records_ref", True),
        ({"ref": "s1", "descending": True}, "records_ref", True),
        ({"ref": "s1", "status": "open"}, "records_ref_status", True),
        ({"ref": "s1", "created_from": T0}, "records_ref", True),
        ({"parent": "p", "created_before": T0}, "records_parent", True),
        ({"created_from": T0, "created_before": T0 + timedelta(days=1)}, "records_created", False),
        ({"created_before": T0}, "records_created", False),
    ],
)
async def test_sqlite_filtered_lists_use_an_index(
    tmp_path: Path, filters: dict[str, Any], index: str, sorted_by_index: bool
) -> None:
    async with SQLiteStore(tmp_path / "plan.db") as store:
        async with store.transaction("f1") as tx:  # some rows, and no statistics
            await tx.insert(
                [
                    Record(
                        kind="item",
                        id=f"r{i}",
                        firm_id="f1",
                        parent=f"p{i % 10}",
                        ref=f"s{i % 20}" if i % 2 else None,
                        status="open" if i % 3 else "closed",
                        created_at=T0 + timedelta(minutes=i),
                    )
                    for i in range(500)
                ]
            )
        sql, params = _plan_of(**filters)
        plan = " | ".join(
            row[3] for row in await store.sql_read("EXPLAIN QUERY PLAN " + sql, params)
        )
        assert f"SEARCH records USING INDEX {index} " in plan, plan
        assert "SCAN records" not in plan, plan
        assert ("TEMP B-TREE" not in plan) == sorted_by_index, plan
