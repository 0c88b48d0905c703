"""PostgreSQL-specific Store behaviour, beyond the shared conformance suite.

Needs the server from ``scripts/pg-cluster.sh`` (``$CLIENTCOMM_TEST_PG_URL``);
skipped without it unless ``CLIENTCOMM_REQUIRE_PG=1``.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import psycopg.sql
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from clientcomm.errors import (
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    StorageError,
)
from clientcomm.storage import _sqlquery as q
from clientcomm.storage.base import Record, Store, Transaction
from clientcomm.storage.migrations import load_migrations
from clientcomm.storage.postgres import PostgresStore, convert_placeholders
from clientcomm.storage.sql import SqlBackend
from clientcomm.testing.postgres import (
    isolated_schema,
    isolated_store,
    url_with_search_path,
)
from tests.conftest import pg_admin_url

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEASE = timedelta(minutes=5)


def rec(id: str, firm: str = "f1", kind: str = "job", **kw: Any) -> Record:
    kw.setdefault("created_at", T0)
    return Record(kind=kind, id=id, firm_id=firm, **kw)


@pytest.fixture
def admin_url() -> str:
    return pg_admin_url()


@pytest.fixture
async def schema_url(admin_url: str) -> AsyncIterator[str]:
    async with isolated_schema(admin_url) as url:
        yield url


@pytest.fixture
async def store(schema_url: str) -> AsyncIterator[PostgresStore]:
    async with PostgresStore(schema_url, max_size=4) as s:
        yield s


async def scalar(url: str, sql: str) -> Any:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(sql)
        row = await cur.fetchone()
        return None if row is None else row[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


# -- typing / protocol ------------------------------------------------------------
async def test_satisfies_store_and_sql_protocols(store: PostgresStore) -> None:
    typed: Store = store
    backend: SqlBackend = store
    assert isinstance(typed, Store) and isinstance(backend, SqlBackend)
    assert store.dialect == "postgres"
    async with store.transaction("f1") as tx:
        assert isinstance(tx, Transaction) and tx.firm_id == "f1"
    secret = PostgresStore("postgresql://u:s3cret@127.0.0.1:1/db")
    assert "s3cret" not in repr(secret) and "s3cret" not in repr(tx)


# -- claiming ------------------------------------------------------------------------
async def test_two_concurrent_claimers_never_receive_the_same_record(schema_url: str) -> None:
    """Two stores (two pools, as two worker processes would have) race for the
    same queue over many rounds; every record goes to exactly one of them."""
    async with (
        PostgresStore(schema_url, max_size=3) as a,
        PostgresStore(schema_url, max_size=3, migrate=False) as b,
    ):
        for rnd in range(15):
            n = 90
            async with a.transaction("f1") as tx:
                await tx.insert(
                    [rec(f"r{rnd}-{i}", status="q", parent=f"p{rnd}") for i in range(n)]
                )
            now = T0 + timedelta(hours=rnd)

            async def drain(
                s: PostgresStore, owner: str, now: datetime = now, parent: str = f"p{rnd}"
            ) -> list[str]:
                got: list[str] = []
                while True:
                    batch = await s.claim(
                        "job",
                        status="q",
                        owner=owner,
                        now=now,
                        lease=LEASE,
                        limit=4,
                        parent=parent,
                    )
                    if not batch:
                        return got
                    assert all(r.lease_owner == owner for r in batch)
                    assert [r.seq for r in batch] == sorted(r.seq for r in batch)
                    got += [r.id for r in batch]

            results = await asyncio.gather(
                drain(a, "A1"), drain(b, "B1"), drain(a, "A2"), drain(b, "B2")
            )
            flat = [x for r in results for x in r]
            assert len(flat) == len(set(flat)) == n, f"round {rnd}"
            assert set(flat) == {f"r{rnd}-{i}" for i in range(n)}
        # the leases are live: nothing is claimable again at the last `now`
        last = await a.claim(
            "job", status="q", owner="x", now=now, lease=LEASE, limit=10, parent=f"p{rnd}"
        )
        assert last == []


async def test_claim_then_finish_is_exactly_once(schema_url: str) -> None:
    """Workers claim with a short lease and finish with the claimed version;
    a worker whose lease was taken over gets ConflictError, so every job is
    finished exactly once."""
    async with (
        PostgresStore(schema_url) as a,
        PostgresStore(schema_url, migrate=False) as b,
    ):
        async with a.transaction("f1") as tx:
            await tx.insert([rec(f"j{i}", status="q") for i in range(60)])
        finished: list[str] = []
        conflicts = 0

        async def worker(s: PostgresStore, owner: str, step: int) -> None:
            nonlocal conflicts
            clock = T0
            for _ in range(200):
                clock += timedelta(seconds=step)
                batch = await s.claim(
                    "job", status="q", owner=owner, now=clock, lease=timedelta(seconds=2), limit=3
                )
                if not batch:
                    if not await _queued(s):
                        return
                    continue
                try:
                    async with s.transaction("f1") as tx:
                        await tx.update([r.evolve(status="done") for r in batch])
                        await tx.insert([rec(f"out-{r.id}", kind="out") for r in batch])
                    finished.extend(r.id for r in batch)
                except ConflictError:
                    conflicts += 1

        await asyncio.gather(worker(a, "A", 1), worker(b, "B", 3), worker(a, "C", 2))
        assert sorted(finished) == sorted(f"j{i}" for i in range(60))
        async with a.transaction("f1") as tx:
            assert await tx.count("out") == 60
            assert await tx.count_by_status("job") == {"done": 60}


async def _queued(s: PostgresStore) -> int:
    async with s.transaction("f1") as tx:
        return await tx.count("job", status="q")


async def test_claim_across_firms_and_refuses_naive_now(store: PostgresStore) -> None:
    for firm in ("f1", "f2", "f3"):
        async with store.transaction(firm) as tx:
            await tx.insert([rec(f"{firm}-a", firm=firm, status="q")])
    got = await store.claim("job", status="q", owner="w", now=T0, lease=LEASE, limit=10)
    assert [r.firm_id for r in got] == ["f1", "f2", "f3"]
    with pytest.raises(InvalidInputError):
        await store.claim(
            "job", status="q", owner="w", now=datetime(2026, 1, 1), lease=LEASE, limit=1
        )
    with pytest.raises(InvalidInputError):
        await store.claim("job", status="q", owner="w\x00", now=T0, lease=LEASE, limit=1)
    assert await store.claim("job", status="q\x00", owner="w", now=T0, lease=LEASE, limit=1) == []


# -- migrations ----------------------------------------------------------------------
async def test_migrations_are_idempotent(schema_url: str) -> None:
    latest = len(load_migrations("postgres"))
    async with PostgresStore(schema_url, migrate=False) as s:
        assert await s.migrate() == latest
        assert await s.migrate() == latest
    async with PostgresStore(schema_url) as s:
        assert await s.migrate() == latest
    assert await scalar(schema_url, "SELECT count(*) FROM schema_migrations") == latest
    names = await scalar(
        schema_url, "SELECT string_agg(name, ',' ORDER BY version) FROM schema_migrations"
    )
    assert names == ",".join(m.name for m in load_migrations("postgres"))
    assert names.startswith("initial,record_ref")


_V1_ROWS = [  # the columns of schema version 1, in order, without seq
    ("f1", "job", "a", "p", "k-a", "queued", None, '{"n":1}', b"\x00body", 0, None, None, T0),
    ("f1", "job", "b", None, None, None, T0, "{}", None, 3, "w1", T0, T0 + LEASE),
    ("f2", "job", "c", "p", None, "done", None, "{}", None, 0, None, None, T0),
]


@pytest.mark.parametrize("prebuilt", [False, True], ids=["plain", "index-built-concurrently"])
async def test_version_1_database_migrates_to_2(schema_url: str, prebuilt: bool) -> None:
    [v1] = [m for m in load_migrations("postgres") if m.version == 1]
    async with await psycopg.AsyncConnection.connect(schema_url, autocommit=True) as conn:
        async with conn.transaction():
            await conn.execute(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
            )
            await conn.execute(v1.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (1, 'initial')"
            )
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO records (firm_id, kind, id, parent, key, status, due_at, data,"
                    " body, version, lease_owner, lease_until, created_at)"
                    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    _V1_ROWS,
                )
        if prebuilt:  # what docs/storage.md suggests for a large table
            await conn.execute(
                "CREATE INDEX CONCURRENTLY records_created ON records (firm_id, kind, created_at)"
                " WHERE created_at IS NOT NULL"
            )
    async with PostgresStore(schema_url, migrate=False) as s:
        assert await s.migrate() == len(load_migrations("postgres")) >= 2
        async with s.transaction("f1") as tx:
            a, b = await tx.list("job")
            assert (a.id, a.parent, a.key, a.status, a.data, a.body, a.created_at) == (
                "a",
                "p",
                "k-a",
                "queued",
                {"n": 1},
                b"\x00body",
                T0,
            )
            assert (b.id, b.version, b.lease_owner, b.due_at, b.lease_until) == (
                "b",
                3,
                "w1",
                T0,
                T0,
            )
            assert a.ref is None and b.ref is None and a.seq < b.seq
            await tx.update([a.evolve(ref="s1")])
            await tx.insert([rec("new", ref="s1", created_at=T0 + LEASE)])
        async with s.transaction("f1") as tx:
            assert [r.id for r in await tx.list("job", ref="s1")] == ["a", "new"]
            assert [r.id for r in await tx.list("job", created_from=T0 + LEASE)] == ["b", "new"]
        async with s.transaction("f2") as tx:
            assert [(r.id, r.ref) for r in await tx.list("job")] == [("c", None)]
    indexes = await scalar(
        schema_url,
        "SELECT string_agg(indexname, ',' ORDER BY indexname) FROM pg_indexes"
        " WHERE tablename = 'records' AND indexname IN"
        " ('records_created', 'records_ref', 'records_ref_status')",
    )
    assert indexes == "records_created,records_ref,records_ref_status"


async def _plan(url: str, sql: str, params: Sequence[Any], *, generic: bool = False) -> str:
    """EXPLAIN of ``sql`` (``%s`` placeholders); ``generic``: as a prepared
    statement's generic plan (what psycopg's automatic preparing may get)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        if not generic:
            cur = await conn.execute("EXPLAIN " + sql, params)
        else:
            await conn.execute("SET plan_cache_mode = force_generic_plan")
            numbered = sql
            for n in range(1, len(params) + 1):
                numbered = numbered.replace("%s", f"${n}", 1)
            await conn.execute(f"PREPARE q AS {numbered}")
            literal = ", ".join(psycopg.sql.Literal(p).as_string(conn) for p in params)
            cur = await conn.execute(f"EXPLAIN EXECUTE q({literal})")
        return "\n".join(row[0] for row in await cur.fetchall())


async def test_lookup_by_id_keeps_the_unique_index_without_statistics(
    store: PostgresStore, schema_url: str
) -> None:
    """A freshly filled table has no statistics: the (firm_id, kind, ...) indexes of
    schema 2 must not tie with records_firm_kind_id for the hot update by id."""
    async with store.transaction("f1") as tx:
        await tx.insert(
            [
                rec(f"r{i}", parent="p", ref="s1", status="q", created_at=T0 + timedelta(seconds=i))
                for i in range(3000)
            ]
        )
    update = (
        "UPDATE records SET status=%s, version=version+1"
        " WHERE firm_id=%s AND kind=%s AND id=%s AND version=%s"
    )
    for generic in (False, True):
        plan = await _plan(schema_url, update, ["x", "f1", "job", "r5", 0], generic=generic)
        assert "Index Scan using records_firm_kind_id" in plan, plan
        find, params = q.find_query("%s", "f1", "job", "id", "r5")
        plan = await _plan(schema_url, find, params, generic=generic)
        assert "Index Scan using records_firm_kind_id" in plan, plan


@pytest.mark.parametrize(
    ("filters", "index"),
    [
        ({"ref": "s3"}, "records_ref"),
        ({"ref": "s3", "descending": True}, "records_ref"),
        ({"ref": "s3", "status": "open"}, "records_ref_status"),
        (
            {"created_from": T0 + timedelta(hours=2), "created_before": T0 + timedelta(hours=3)},
            "records_created",
        ),
    ],
)
async def test_filtered_lists_use_an_index(
    store: PostgresStore, schema_url: str, filters: dict[str, Any], index: str
) -> None:
    for f in range(4):  # several firms and kinds, many refs, a day of records
        async with store.transaction(f"f{f}") as tx:
            await tx.insert(
                [
                    rec(
                        f"r{i}",
                        firm=f"f{f}",
                        kind=f"k{i % 4}",
                        ref=f"s{i % 200}" if i % 2 else None,
                        status="open" if i % 5 == 0 else "closed",
                        created_at=T0 + timedelta(seconds=20 * i),
                    )
                    for i in range(4000)
                ]
            )
    async with await psycopg.AsyncConnection.connect(schema_url, autocommit=True) as conn:
        await conn.execute("ANALYZE records")
    sql, params = q.list_query(
        "%s",
        "f1",
        "k3",
        parent=None,
        status=filters.pop("status", None),
        after_seq=0,
        limit=50,
        descending=filters.pop("descending", False),
        **filters,
    )
    for generic in (False, True):
        plan = await _plan(schema_url, sql, params, generic=generic)
        assert f"using {index} on records" in plan, plan
        assert "Seq Scan" not in plan, plan


async def test_concurrent_migrations_are_safe(schema_url: str) -> None:
    stores = [PostgresStore(schema_url, migrate=False, max_size=1) for _ in range(6)]
    try:
        versions = await asyncio.gather(*(s.migrate() for s in stores))
    finally:
        for s in stores:
            await s.aclose()
    assert set(versions) == {len(load_migrations("postgres"))}
    assert await scalar(schema_url, "SELECT count(*) FROM schema_migrations") == max(versions)
    assert await scalar(schema_url, "SELECT count(*) FROM records") == 0


async def test_a_newer_schema_is_refused(schema_url: str) -> None:
    async with PostgresStore(schema_url) as s:
        pass
    async with await psycopg.AsyncConnection.connect(schema_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (999, 'future')")
    with pytest.raises(StorageError) as info:
        async with PostgresStore(schema_url):
            pass
    assert "newer" in str(info.value) and info.value.context["current"] == 999
    async with PostgresStore(schema_url, migrate=False) as s:
        with pytest.raises(StorageError):
            await s.migrate()
    # a failed open leaves no pool behind and can be retried on the same store
    retry = PostgresStore(schema_url)
    with pytest.raises(StorageError):
        await retry.open()
    with pytest.raises(StorageError, match="not open"):
        retry.pool  # noqa: B018
    async with await psycopg.AsyncConnection.connect(schema_url, autocommit=True) as conn:
        await conn.execute("DELETE FROM schema_migrations WHERE version = 999")
    async with retry:
        assert await retry.migrate() == len(load_migrations("postgres"))


async def test_unmigrated_schema_gives_storage_error(schema_url: str) -> None:
    async with PostgresStore(schema_url, migrate=False) as s:
        with pytest.raises(StorageError, match="migrate"):
            async with s.transaction("f1") as tx:
                await tx.count("job")


async def test_failed_migration_leaves_nothing_behind(schema_url: str) -> None:
    # A table named like one the migration creates makes the migration fail.
    async with await psycopg.AsyncConnection.connect(schema_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE dir_staff (x int)")
    with pytest.raises(StorageError):
        async with PostgresStore(schema_url):
            pass
    assert await scalar(schema_url, "SELECT to_regclass('records')::text") is None
    assert await scalar(schema_url, "SELECT to_regclass('schema_migrations')::text") is None


# -- error translation -------------------------------------------------------------------
async def test_unreachable_server_is_a_storage_error() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?connect_timeout=2"
    with pytest.raises(StorageError):
        async with PostgresStore(url, timeout=2):
            pass


def test_malformed_url_and_bad_arguments() -> None:
    with pytest.raises(ConfigurationError):
        PostgresStore("host=x port")
    with pytest.raises(InvalidInputError):
        PostgresStore("")
    with pytest.raises(InvalidInputError):
        PostgresStore("postgresql://x/y", min_size=5, max_size=2)
    with pytest.raises(InvalidInputError):
        PostgresStore("postgresql://x/y", copy_threshold=0)


async def test_pool_exhaustion_is_a_storage_error(schema_url: str) -> None:
    async with PostgresStore(schema_url, max_size=1, timeout=0.5) as s:
        entered = asyncio.Event()
        release = asyncio.Event()

        async def hold() -> None:
            async with s.transaction("f1") as tx:
                await tx.count("job")
                entered.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await entered.wait()
        with pytest.raises(StorageError):
            async with s.transaction("f1"):
                pass
        release.set()
        await holder
        async with s.transaction("f1") as tx:  # the pool recovered
            assert await tx.count("job") == 0


async def test_killed_connection_is_a_storage_error_and_the_pool_recovers(
    store: PostgresStore, schema_url: str
) -> None:
    with pytest.raises(StorageError):
        async with store.transaction("f1") as tx:
            await tx.insert([rec("a")])
            pid = await _backend_pid(tx)
            await scalar(schema_url, f"SELECT pg_terminate_backend({pid})")
            await tx.count("job")
    for _ in range(3):  # the broken connection is discarded, not handed out again
        async with store.transaction("f1") as tx:
            assert await tx.count("job") == 0


async def _backend_pid(tx: Transaction) -> int:
    conn = tx._conn  # type: ignore[attr-defined]
    assert isinstance(conn, psycopg.AsyncConnection)
    return int(conn.info.backend_pid)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", "a\x00b"),
        ("parent", "\x00"),
        ("ref", "r\x00"),
        ("key", "k\x00"),
        ("status", "s\x00"),
    ],
)
async def test_nul_characters_are_invalid_input(
    store: PostgresStore, field: str, value: str
) -> None:
    with pytest.raises(InvalidInputError) as info:
        async with store.transaction("f1") as tx:
            await tx.insert([rec(**{"id": "x", field: value})])
    assert info.value.field == field
    async with store.transaction("f1") as tx:
        assert await tx.find("job", "a\x00b") is None
        assert await tx.find_by_key("job", "k\x00") is None
        assert await tx.get_many("job", ["a\x00b"]) == {}
        assert await tx.list("job", parent="\x00") == []
        assert await tx.list("job", ref="\x00") == []
        assert await tx.count("job", status="s\x00") == 0
        assert await tx.count("job", ref="r\x00") == 0
        assert await tx.count_by_status("job", parent="\x00") == {}
        with pytest.raises(InvalidInputError):  # a delete batch is refused whole
            await tx.delete("job", ["a\x00b"])
        assert await tx.delete("job\x00", ["a"]) == 0


async def test_lone_surrogate_is_invalid_input(store: PostgresStore) -> None:
    with pytest.raises(InvalidInputError):
        async with store.transaction("f1") as tx:
            await tx.insert([rec("bad\ud800")])
            await tx.count("job")


async def test_deadlock_is_reported_as_conflict(store: PostgresStore) -> None:
    async with store.transaction("f1") as tx:
        await tx.insert([rec("a"), rec("b")])
    async with store.transaction("f1") as tx:
        a, b = (await tx.get("job", "a")), (await tx.get("job", "b"))
    both_locked = asyncio.Barrier(2)

    async def lock_in_order(first: Record, second: Record) -> None:
        async with store.transaction("f1") as tx:
            await tx.update([first.evolve(status="x")])
            await tx.count("job")  # flushed: the row lock is held
            await both_locked.wait()
            await tx.update([second.evolve(status="y")])
            await tx.count("job")

    results = await asyncio.gather(lock_in_order(a, b), lock_in_order(b, a), return_exceptions=True)
    assert sum(isinstance(r, ConflictError) for r in results) >= 1
    assert all(r is None or isinstance(r, ConflictError) for r in results)


# -- transactions, pool, lifecycle -----------------------------------------------------------
async def test_nested_transaction_in_one_task_is_refused(store: PostgresStore) -> None:
    async with store.transaction("f1") as tx:
        with pytest.raises(StorageError, match="nested"):
            async with store.transaction("f1"):
                pass
        with pytest.raises(StorageError, match="nested"):
            await store.claim("job", status="q", owner="w", now=T0, lease=LEASE, limit=1)
        await tx.insert([rec("still-fine")])
    async with store.transaction("f1") as tx:
        assert await tx.find("job", "still-fine") is not None


async def test_pool_connections_are_reused(schema_url: str) -> None:
    async with PostgresStore(schema_url, min_size=1, max_size=3) as s:
        for i in range(40):
            async with s.transaction("f1") as tx:
                await tx.insert([rec(f"r{i}")])
                await tx.count("job")
        stats = s.pool.get_stats()
        assert stats["connections_num"] <= 3
        assert stats["requests_num"] >= 40

        async def one(i: int) -> None:
            async with s.transaction("f1") as tx:
                await tx.insert([rec(f"c{i}")])
                await asyncio.sleep(0.01)

        await asyncio.gather(*(one(i) for i in range(20)))
        stats = s.pool.get_stats()
        assert stats["pool_max"] == 3 and stats["connections_num"] <= 3


async def test_a_pool_passed_in_is_used_and_left_open(schema_url: str) -> None:
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        schema_url, min_size=1, max_size=2, open=False, kwargs={"autocommit": True}
    )
    await pool.open()
    try:
        async with PostgresStore(pool) as s:
            async with s.transaction("f1") as tx:
                await tx.insert([rec("a")])
            with pytest.raises(RuntimeError):
                async with s.transaction("f1") as tx:
                    await tx.insert([rec("b")])
                    await tx.count("job")  # flushed: autocommit would have kept it
                    raise RuntimeError("rollback")
            async with s.transaction("f1") as tx:
                assert [r.id for r in await tx.list("job")] == ["a"]
        assert not pool.closed
        async with pool.connection() as conn:
            assert conn.autocommit  # restored
    finally:
        await pool.close()


async def test_closed_store_refuses_work(schema_url: str) -> None:
    s = PostgresStore(schema_url)
    await s.open()
    await s.aclose()
    await s.aclose()  # idempotent
    with pytest.raises(StorageError):
        async with s.transaction("f1"):
            pass
    with pytest.raises(StorageError):
        await s.claim("job", status="q", owner="w", now=T0, lease=LEASE, limit=1)
    with pytest.raises(StorageError):
        await s.migrate()


async def test_cancellation_mid_query_rolls_back(store: PostgresStore) -> None:
    async def slow() -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("never")])
            await store_sleep(tx, 5)

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with store.transaction("f1") as tx:
        assert await tx.find("job", "never") is None


async def store_sleep(tx: Transaction, seconds: float) -> None:
    run = tx._run  # type: ignore[attr-defined]

    async def sleep(cur: psycopg.AsyncCursor[Any]) -> None:
        await cur.execute("SELECT pg_sleep(%s)", (seconds,))

    await run(sleep)


async def test_writes_are_invisible_until_commit(store: PostgresStore) -> None:
    inserted = asyncio.Event()
    checked = asyncio.Event()

    async def writer() -> None:
        async with store.transaction("f1") as tx:
            await tx.insert([rec("w")])
            await tx.count("job")  # flushed to the server, not committed
            inserted.set()
            await checked.wait()

    task = asyncio.create_task(writer())
    await inserted.wait()
    async with store.transaction("f1") as tx:
        assert await tx.find("job", "w") is None
    checked.set()
    await task
    async with store.transaction("f1") as tx:
        assert await tx.find("job", "w") is not None


# -- bulk paths ------------------------------------------------------------------------------
@pytest.mark.parametrize("threshold", [1, 10_000])
async def test_bulk_insert_paths_round_trip_and_conflict(schema_url: str, threshold: int) -> None:
    """The COPY path (threshold 1) and executemany agree on values and errors."""
    async with PostgresStore(schema_url, copy_threshold=threshold) as s:
        rows = [
            rec(
                f"b{i}",
                parent="p",
                ref=f"s{i % 7}" if i % 2 else None,
                key=f"k{i}" if i % 2 else None,
                status="q",
                due_at=T0 + timedelta(microseconds=i),
                data={"i": i, "t": "ä\u0000"},
                body=bytes([i % 256]) * 2048,
                lease_owner="w" if i % 3 == 0 else None,
                lease_until=T0 if i % 3 == 0 else None,
            )
            for i in range(300)
        ]
        async with s.transaction("f1") as tx:
            await tx.insert(rows)
        async with s.transaction("f1") as tx:
            got = await tx.list("job", parent="p")
        assert [g.evolve(seq=0) for g in got] == rows
        async with s.transaction("f1") as tx:
            by_ref = await tx.list("job", ref="s3", status="q")
        assert [g.evolve(seq=0) for g in by_ref] == [r for r in rows if r.ref == "s3"]
        with pytest.raises(ConflictError):
            async with s.transaction("f1") as tx:
                await tx.insert([rec(f"new{i}") for i in range(150)] + [rec("b7")])
        with pytest.raises(ConflictError):
            async with s.transaction("f1") as tx:
                await tx.insert(
                    [rec(f"new{i}", key="k1" if i == 149 else None) for i in range(150)]
                )
        async with s.transaction("f1") as tx:
            assert await tx.count("job") == 300


async def test_mixed_buffered_writes_apply_in_order(store: PostgresStore) -> None:
    async with store.transaction("f1") as tx:
        [a] = await tx.insert([rec("a", status="s0")])
        [a1] = await tx.update([a.evolve(status="s1")])
        [a2] = await tx.update([a1.evolve(status="s2")])
        await tx.insert([rec(f"x{i}") for i in range(200)])
        assert await tx.delete("job", ["x0", "x1"]) == 2
        await tx.update([a2.evolve(status="s3")])
    async with store.transaction("f1") as tx:
        got = await tx.get("job", "a")
        assert (got.status, got.version) == ("s3", 3)
        assert await tx.count("job") == 199


_text = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=30
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=10,
)
_when = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
    ),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.dictionaries(_text, _json, max_size=5),
    body=st.none() | st.binary(max_size=300),
    parent=st.none() | _text,
    ref=st.none() | _text,
    due=st.none() | _when,
    created=_when,
    bulk=st.booleans(),
)
async def test_values_round_trip_exactly(
    store: PostgresStore,
    data: dict[str, Any],
    body: bytes | None,
    parent: str | None,
    ref: str | None,
    due: datetime | None,
    created: datetime,
    bulk: bool,
) -> None:
    import secrets

    r = rec(
        secrets.token_hex(8),
        parent=parent,
        ref=ref,
        due_at=due,
        created_at=created,
        data=data,
        body=body,
    )
    filler = [rec(secrets.token_hex(8)) for _ in range(150 if bulk else 0)]
    async with store.transaction("f1") as tx:
        await tx.insert([r, *filler])
    async with store.transaction("f1") as tx:
        got = await tx.get("job", r.id)
    assert got.evolve(seq=0) == r
    assert got.created_at.tzinfo is UTC and got.created_at == created
    assert got.due_at is None or got.due_at.tzinfo is UTC


async def test_timestamps_come_back_in_utc_whatever_the_session_zone(schema_url: str) -> None:
    params = conninfo_to_dict(schema_url)
    params["options"] = f"{params['options']} -c TimeZone=Europe/Berlin"
    berlin = make_conninfo("", **params)
    assert await scalar(berlin, "SHOW TimeZone") == "Europe/Berlin"
    async with PostgresStore(berlin) as s:
        async with s.transaction("f1") as tx:
            await tx.insert([rec("a", due_at=T0.astimezone(timezone(timedelta(hours=2))))])
        async with s.transaction("f1") as tx:
            got = await tx.get("job", "a")
    assert got.due_at == T0 and got.due_at.tzinfo is UTC and got.created_at.tzinfo is UTC


# -- SqlBackend ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM t WHERE a=? AND b=?", "SELECT * FROM t WHERE a=%s AND b=%s"),
        ("SELECT '?', \"?\" FROM t WHERE a=?", "SELECT '?', \"?\" FROM t WHERE a=%s"),
        ("SELECT 'it''s ?' WHERE x LIKE 'a%'", "SELECT 'it''s ?' WHERE x LIKE 'a%%'"),
        ("SELECT 5 % 2, ? -- what?\n", "SELECT 5 %% 2, %s -- what?\n"),
        ("SELECT /* ? */ ?", "SELECT /* ? */ %s"),
        ("", ""),
    ],
)
def test_convert_placeholders(sql: str, expected: str) -> None:
    assert convert_placeholders(sql) == expected


@given(st.lists(st.sampled_from(["?", "'a?'", "x", "%", " ", '"q?"', "--c?\n"]), max_size=20))
def test_convert_placeholders_counts(parts: list[str]) -> None:
    sql = "".join(parts)
    out = convert_placeholders(sql)
    assert out.count("%s") == parts.count("?")
    assert out.replace("%s", "").replace("%%", "").count("%") == 0


async def test_sql_read_and_write(store: PostgresStore) -> None:
    await store.sql_write(
        [
            (
                "INSERT INTO dir_firms (id, name, language) VALUES (?, ?, ?)",
                [("f1", "F 100%", "de")],
            ),
            (
                "INSERT INTO dir_clients (firm_id, id, name, active) VALUES (?, ?, ?, ?)",
                [("f1", "c1", "Anna", True), ("f1", "c2", "Bernd", False)],
            ),
        ]
    )
    rows = await store.sql_read(
        "SELECT id, active FROM dir_clients WHERE firm_id=? AND name LIKE 'A%' ORDER BY id", ["f1"]
    )
    assert rows == [("c1", 1)]
    assert await store.sql_read("SELECT name FROM dir_firms WHERE id=?", ("f1",)) == [("F 100%",)]
    assert await store.sql_read("SELECT count(*) FROM dir_clients WHERE active=?", [False]) == [
        (1,)
    ]


async def test_sql_write_is_one_transaction_and_translates_errors(store: PostgresStore) -> None:
    await store.sql_write([("INSERT INTO dir_firms (id, name) VALUES (?, ?)", [("f1", "F")])])
    with pytest.raises(ConflictError):  # duplicate primary key
        await store.sql_write(
            [
                ("INSERT INTO dir_firms (id, name) VALUES (?, ?)", [("f2", "F2")]),
                ("INSERT INTO dir_firms (id, name) VALUES (?, ?)", [("f1", "again")]),
            ]
        )
    with pytest.raises(ConflictError) as info:  # foreign key
        await store.sql_write(
            [
                (
                    "INSERT INTO dir_clients (firm_id, id, name) VALUES (?, ?, ?)",
                    [("secret-firm", "c", "C")],
                )
            ]
        )
    assert "secret-firm" not in str(info.value)  # the server's DETAIL quotes the row
    with pytest.raises(ConflictError) as info:  # not null
        await store.sql_write(
            [("INSERT INTO dir_firms (id, name) VALUES (?, ?)", [("secret-id", None)])]
        )
    assert "secret-id" not in str(info.value)
    assert await store.sql_read("SELECT id FROM dir_firms ORDER BY id") == [("f1",)]
    with pytest.raises(StorageError):
        await store.sql_read("SELECT * FROM no_such_table")
    async with store.transaction("f1"):
        with pytest.raises(StorageError, match="nested"):
            await store.sql_write([("DELETE FROM dir_firms", [()])])


# -- the isolation helper --------------------------------------------------------------------
async def test_isolated_stores_do_not_see_each_other(admin_url: str) -> None:
    async with isolated_store(admin_url) as one, isolated_store(admin_url) as two:
        async with one.transaction("f1") as tx:
            await tx.insert([rec("only-in-one")])
        async with two.transaction("f1") as tx:
            assert await tx.count("job") == 0
        async with one.transaction("f1") as tx:
            assert await tx.count("job") == 1


async def test_isolated_schema_is_dropped(admin_url: str) -> None:
    async with isolated_schema(admin_url) as url:
        name = await scalar(url, "SELECT current_schema()")
        assert isinstance(name, str) and name.startswith("cc_test_")
    exists = await scalar(admin_url, f"SELECT count(*) FROM pg_namespace WHERE nspname = '{name}'")
    assert exists == 0


def test_url_with_search_path_validates() -> None:
    url = url_with_search_path("postgresql://u@h:5/db?options=-c%20work_mem%3D8MB", "s1")
    assert "search_path=s1" in url and "work_mem=8MB" in url
    with pytest.raises(ConfigurationError):
        url_with_search_path("postgresql://u@h/db", "bad; drop")
    with pytest.raises(ConfigurationError):
        url_with_search_path("host=x port", "s")


@pytest.mark.parametrize("server_checks", [True, False])
async def test_a_stale_update_at_commit_lands_nothing(schema_url: str, server_checks: bool) -> None:
    """From schema version 6 a version-checked update is checked by the server
    and the writes share COMMIT's round trip; an older (unmigrated) schema
    checks them client-side before COMMIT. Either way a stale update refuses
    the whole transaction."""
    async with PostgresStore(schema_url) as s:
        async with s.transaction("f1") as tx:
            await tx.insert([rec("a")])
            first = await tx.get("job", "a")
        if not server_checks:
            s._version = 5  # as opened on a schema before migration 6
        async with s.transaction("f1") as tx:
            await tx.update([first.evolve(status="winner")])
        with pytest.raises(ConflictError):
            async with s.transaction("f1") as tx:
                await tx.insert([rec("before")])
                await tx.update([first.evolve(status="loser")])
                await tx.insert([rec("after")])
        async with s.transaction("f1") as tx:
            assert [(r.id, r.status) for r in await tx.list("job")] == [("a", "winner")]
            [fresh] = (await tx.get_many("job", ["a"])).values()
            await tx.update([fresh.evolve(status="again")])  # a current version lands
        async with s.transaction("f1") as tx:
            assert (await tx.get("job", "a")).status == "again"


@pytest.mark.parametrize("n", [2, 9, 10, 25])
async def test_small_and_large_insert_batches_keep_every_field(
    store: PostgresStore, n: int
) -> None:
    """Fewer rows than ``copy_threshold`` (10) go as one ``unnest`` INSERT, more
    by COPY: both keep every field, NULLs included, in order."""
    rows = [
        rec(
            f"r{i}",
            parent=None if i % 2 else f"p{i}",
            key=None if i % 3 else f"k{i}",
            status=None if i % 4 == 1 else "queued",
            due_at=None if i % 2 else T0 + timedelta(microseconds=i),
            data={} if i % 5 else {"n": i, "s": "ä\\u0000"},
            body=None if i % 3 == 1 else bytes([i]) * i,
            ref=None if i % 2 == 0 else f"staff-{i}",
        )
        for i in range(n)
    ]
    async with store.transaction("f1") as tx:
        await tx.insert(rows)
    async with store.transaction("f1") as tx:
        got = await tx.list("job")
    assert [r.id for r in got] == [r.id for r in rows]
    for want, have in zip(rows, got, strict=True):
        assert (
            have.parent,
            have.key,
            have.status,
            have.due_at,
            have.data,
            have.body,
            have.ref,
        ) == (want.parent, want.key, want.status, want.due_at, want.data, want.body, want.ref)
    with pytest.raises(InvalidInputError):  # a lone surrogate in a small batch
        async with store.transaction("f1") as tx:
            await tx.insert([rec("ok-1"), rec("bad", status="\ud800")])
    async with store.transaction("f1") as tx:
        assert await tx.find("job", "ok-1") is None
