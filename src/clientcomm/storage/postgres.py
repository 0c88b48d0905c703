"""PostgreSQL Store (psycopg 3, async, with a connection pool).

This is the backend for several worker processes on several machines sharing
one database:

* Every transaction runs on its own pooled connection (READ COMMITTED). It
  buffers its writes and sends them together with the next read or with the
  commit, in one pipeline (the implicit BEGIN, every batch and the read or
  COMMIT share a round trip): ``executemany`` for updates and small inserts,
  binary ``COPY`` for inserts of ``copy_threshold`` (10) rows or more
  (measured here, ~2 KB bodies: 1.6-1.75x the rows/s of ``executemany`` at
  100-1000 rows per transaction, 1.1x at 10, slower below ~8). A duplicate or
  a stale version is therefore reported at the next read or at commit, never
  after commit.
* :meth:`PostgresStore.claim` leases work with ``FOR UPDATE SKIP LOCKED``, so
  concurrent claimers never block each other and never receive the same row.
* :meth:`PostgresStore.migrate` applies the versioned migrations in
  ``migrations/postgres`` under an advisory lock: processes that start at the
  same time migrate one after the other, and a database newer than this
  library is refused.

Timestamps are stored as ``timestamptz`` and always returned in UTC.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
import psycopg.errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, PoolClosed, PoolTimeout

from clientcomm.errors import (
    ClientCommError,
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    StorageError,
)
from clientcomm.storage import _sqlquery as q
from clientcomm.storage._codec import data_dumper, dump_data, load_data
from clientcomm.storage._common import check_own, iterate_pages, with_version
from clientcomm.storage.base import (
    Record,
    Transaction,
    validate_created_range,
    validate_ids,
)
from clientcomm.storage.migrations import load_migrations

__all__ = ["PostgresStore"]

T = TypeVar("T")

_Conn = psycopg.AsyncConnection[Any]
_Cursor = psycopg.AsyncCursor[tuple[Any, ...]]

# pg_advisory_xact_lock key serialising migrations ("clientcm" as a big-endian int64).
MIGRATION_LOCK_ID = 0x636C69656E74636D

_COLS = q.COLS
_Rows = list[tuple[Any, ...]]
_Records = list[Record]

_INSERT_COLS = (
    "firm_id, kind, id, parent, key, status, due_at, data, body,"
    " lease_owner, lease_until, created_at, ref"
)
_INSERT = (
    f"INSERT INTO records ({_INSERT_COLS}, version)"
    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,0)"
)
_VALUES_ROWS = 3
"""Rows per multi-row INSERT of a small batch: 3 x 13 parameters stay within
the 50 up to which psycopg parses a statement once (more are parsed on every
call), and one statement of 3 rows costs less client time than 3 of one (6
rows and COMMIT in a pipeline of plain psycopg: 0.53 ms as two statements,
0.75 ms by executemany; a comment-shaped transaction of the store 1.09 ->
1.05 ms)."""


@functools.cache
def _insert_values(n: int) -> str:
    """One INSERT of ``n`` rows."""
    one = "(%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,0)"
    return f"INSERT INTO records ({_INSERT_COLS}, version) VALUES " + ",".join([one] * n)


_COPY = f"COPY records ({_INSERT_COLS}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = [
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
    "timestamptz",
    "text",
    "bytea",
    "text",
    "timestamptz",
    "timestamptz",
    "text",
]
_UPDATE = (
    "UPDATE records SET parent=%s, ref=%s, key=%s, status=%s, due_at=%s, data=%s, body=%s,"
    " version=version+1, lease_owner=%s, lease_until=%s"
    " WHERE firm_id=%s AND kind=%s AND id=%s AND version=%s"
)
# The same update checked on the server (migration 6): no row changed aborts the
# transaction there, so the writes and COMMIT go in one round trip.
_UPDATE_EXPECTING_ONE = (
    f"WITH u AS ({_UPDATE} RETURNING 1) SELECT clientcomm_expect_one(count(*)) FROM u"
)
_SERVER_CHECKS = 6
"""The schema version from which the server checks updates (migration 6)."""
_REMOVE = "DELETE FROM records WHERE firm_id=%s AND kind=%s AND id=%s"
# Counted in SQL: in pipeline mode a cursor's rowcount is not known until a sync.
_DELETE = (
    "WITH d AS (DELETE FROM records WHERE firm_id=%s AND kind=%s AND id = ANY(%s) RETURNING 1)"
    " SELECT count(*) FROM d"
)


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is UTC:
        return value
    return value.astimezone(UTC)


def _row_to_record(row: tuple[Any, ...]) -> Record:
    created = row[13]
    return Record(
        seq=row[0],
        firm_id=row[1],
        kind=row[2],
        id=row[3],
        parent=row[4],
        key=row[5],
        status=row[6],
        due_at=_utc(row[7]),
        data=load_data(row[8]),
        body=row[9],
        version=row[10],
        lease_owner=row[11],
        lease_until=_utc(row[12]),
        created_at=created if created.tzinfo is UTC else created.astimezone(UTC),
        ref=row[14],
    )


def _describe(exc: BaseException) -> str:
    """The server's primary message only: DETAIL lines (and data errors) can
    quote row values, which must not end up in logs."""
    primary = getattr(getattr(exc, "diag", None), "message_primary", None)
    return str(primary) if primary else str(exc).split("\n", 1)[0]


def _translate(exc: BaseException) -> ClientCommError:
    """The clientcomm error for a psycopg / pool error."""
    if isinstance(exc, ClientCommError):
        return exc
    diag = getattr(exc, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, pg_errors.UniqueViolation):
        return ConflictError(
            f"duplicate id or key ({constraint or 'unique constraint'})", constraint=constraint
        )
    if isinstance(exc, psycopg.IntegrityError):
        return ConflictError(f"constraint violated: {_describe(exc)}", constraint=constraint)
    if isinstance(
        exc,
        pg_errors.SerializationFailure | pg_errors.DeadlockDetected | pg_errors.LockNotAvailable,
    ):
        return ConflictError(f"concurrent update: {_describe(exc)}", sqlstate=sqlstate)
    if isinstance(exc, pg_errors.UndefinedTable):
        return StorageError(f"PostgreSQL schema missing (run migrate()): {_describe(exc)}")
    if isinstance(exc, psycopg.DataError):
        return InvalidInputError(
            "value", f"rejected by PostgreSQL ({type(exc).__name__})", value=sqlstate
        )
    if isinstance(exc, UnicodeEncodeError):
        return InvalidInputError("value", "text must be valid Unicode (no lone surrogates)")
    if isinstance(exc, PoolTimeout):
        return StorageError(f"no PostgreSQL connection available: {exc}")
    if isinstance(exc, PoolClosed):
        return StorageError("store is closed")
    return StorageError(f"PostgreSQL failed: {_describe(exc)}", sqlstate=sqlstate)


_DRIVER_ERRORS = (psycopg.Error, PoolTimeout, PoolClosed, UnicodeEncodeError)


def _has_nul(*values: str | None) -> bool:
    return any(v is not None and "\x00" in v for v in values)


@functools.lru_cache(maxsize=512)
def convert_placeholders(sql: str) -> str:
    """Turn ``?`` placeholders into psycopg's ``%s`` (and ``%`` into ``%%``),
    leaving quoted strings, quoted identifiers and comments alone."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in ("'", '"'):
            j = i + 1
            while j < n:
                if sql[j] == ch:
                    if j + 1 < n and sql[j + 1] == ch:  # doubled quote
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i : j + 1].replace("%", "%%"))
            i = j + 1
        elif ch == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        elif ch == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j].replace("%", "%%"))
            i = j
        elif ch == "?":
            out.append("%s")
            i += 1
        elif ch == "%":
            out.append("%%")
            i += 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _sql_params(params: Sequence[object]) -> tuple[object, ...]:
    # The Directory's SQL is shared with SQLite, where booleans are integers.
    return tuple(int(p) if isinstance(p, bool) else p for p in params)


class _Op:
    __slots__ = ("check", "copy", "rows", "sql")

    def __init__(self, sql: str, check: bool, copy: bool) -> None:
        self.sql = sql
        self.rows: list[tuple[Any, ...]] = []
        self.check = check
        self.copy = copy


class PostgresStore:
    """A Store in a PostgreSQL database (15 or newer).

    Args:
        url_or_pool: a libpq URL / conninfo string (the store creates and owns a
            pool), or an :class:`psycopg_pool.AsyncConnectionPool` you own (the
            store opens it if needed but never closes it).
        min_size, max_size: pool size when the store creates the pool.
        timeout: seconds to wait for a pooled connection (and for the pool to
            open) before raising :class:`~clientcomm.errors.StorageError`.
        migrate: apply pending migrations when opened (default).
        copy_threshold: inserts of at least this many rows in one flush use
            binary ``COPY`` instead of ``executemany``.

    Use ``async with PostgresStore(url) as store:`` or ``await store.open()``.
    A pool you pass may hand out autocommit connections (the store switches
    them off for its transactions and back afterwards) and any row factory.

    Raises:
        ConfigurationError: the URL is not a valid libpq URL/conninfo.
        InvalidInputError: bad pool sizes or ``copy_threshold``.
    """

    dialect = "postgres"

    def __init__(
        self,
        url_or_pool: str | AsyncConnectionPool[Any],
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 30.0,
        migrate: bool = True,
        copy_threshold: int = 10,
    ) -> None:
        self._pool: AsyncConnectionPool[Any] | None
        if isinstance(url_or_pool, AsyncConnectionPool):
            self._pool = url_or_pool
            self._owns_pool = False
            self._url = ""
        elif isinstance(url_or_pool, str) and url_or_pool:
            try:
                conninfo_to_dict(url_or_pool)
            except psycopg.ProgrammingError:
                # libpq's message may quote parts of the URL (the password, too).
                raise ConfigurationError(
                    "invalid PostgreSQL URL or conninfo string (see libpq's connection strings)"
                ) from None
            if min_size < 0 or max_size < max(min_size, 1):
                raise InvalidInputError("max_size", "need 0 <= min_size <= max_size, max_size >= 1")
            self._pool = None  # created by open()
            self._owns_pool = True
            self._url = url_or_pool
            self._min_size, self._max_size = min_size, max_size
        else:
            raise InvalidInputError("url_or_pool", "must be a PostgreSQL URL or a connection pool")
        if copy_threshold < 1:
            raise InvalidInputError("copy_threshold", "must be positive")
        self._timeout = timeout
        self._auto_migrate = migrate
        self._copy_threshold = copy_threshold
        self._open_lock = asyncio.Lock()
        self._opened = False
        self._closed = False
        self._version = 0
        self._busy: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"<PostgresStore opened={self._opened} closed={self._closed}>"

    # -- lifecycle ------------------------------------------------------------
    async def open(self) -> PostgresStore:
        """Open the pool (and migrate, unless disabled). Idempotent.

        Raises:
            StorageError: the server is unreachable, or its schema is newer
                than this library.
        """
        if self._closed:
            raise StorageError("store is closed")
        if self._opened:
            return self
        async with self._open_lock:
            if self._opened:
                return self
            if self._owns_pool:
                await self._open_own_pool()
            else:
                assert self._pool is not None
                try:
                    await self._pool.open()
                except _DRIVER_ERRORS as exc:
                    raise StorageError(f"cannot open the connection pool: {exc}") from exc
                if self._auto_migrate:
                    async with self._checkout(autocommit=False) as conn:
                        await self._migrate_on(conn)
            self._opened = True
        return self

    async def _open_own_pool(self) -> None:
        # One direct connection first: a wrong host or password fails at once
        # with the server's reason (not after the pool's retries), and the
        # migrations run on it. Nothing is left running if this fails.
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=False, connect_timeout=max(1, round(self._timeout))
            )
        except _DRIVER_ERRORS as exc:
            raise StorageError(f"cannot connect to PostgreSQL: {exc}") from exc
        try:
            if self._auto_migrate:
                await self._migrate_on(conn)
        finally:
            await conn.close()
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            self._url,
            min_size=self._min_size,
            max_size=self._max_size,
            timeout=self._timeout,
            open=False,
            name="clientcomm",
            kwargs={"autocommit": False},
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, _DRIVER_ERRORS):
                raise StorageError(f"cannot fill the connection pool: {exc}") from exc
            raise
        self._pool = pool

    async def aclose(self) -> None:
        """Close the store (and its pool, if the store created it). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_pool and self._pool is not None:
            await self._pool.close()

    async def __aenter__(self) -> PostgresStore:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def pool(self) -> AsyncConnectionPool[Any]:
        """The connection pool (for inspection; do not close it).

        Raises:
            StorageError: the store has not been opened.
        """
        if self._pool is None:
            raise StorageError("store is not open")
        return self._pool

    # -- connections ----------------------------------------------------------
    @asynccontextmanager
    async def _connection(self, *, autocommit: bool = False) -> AsyncIterator[_Conn]:
        """A pooled connection of the opened store (see :meth:`_checkout`).

        Raises:
            StorageError: the store is closed, or no connection is available.
        """
        if self._closed:
            raise StorageError("store is closed")
        if not self._opened:
            await self.open()
        async with self._checkout(autocommit=autocommit) as conn:
            yield conn

    @asynccontextmanager
    async def _checkout(self, *, autocommit: bool) -> AsyncIterator[_Conn]:
        """A pooled connection, idle, in the wanted autocommit mode.

        On exit it is left idle in its original mode; if that fails (an error or
        a cancellation in the middle of a command) it is closed so the pool
        discards it. Driver errors raised inside become clientcomm errors.
        """
        if self._pool is None:
            raise StorageError("store is not open")
        try:
            async with self._pool.connection(timeout=self._timeout) as conn:
                original = conn.autocommit
                if original != autocommit:
                    await conn.set_autocommit(autocommit)
                try:
                    yield conn
                finally:
                    await self._settle(conn, original)
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc

    @staticmethod
    async def _settle(conn: _Conn, autocommit: bool) -> None:
        """Leave ``conn`` idle (rolling back what is open) in autocommit mode
        ``autocommit``, or close it, so the pool never hands out a connection in
        the middle of something."""
        if conn.closed:
            return
        try:
            if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                await conn.rollback()
            if conn.autocommit != autocommit:
                await conn.set_autocommit(autocommit)
        except BaseException as exc:
            await conn.close()
            if not isinstance(exc, Exception):
                raise

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """Refuse nesting (a task using the store while it holds a transaction of
        it) the way the single-writer backends do, instead of risking a
        deadlock between the task's two connections."""
        task = asyncio.current_task()
        if task is not None:
            if task in self._busy:
                raise StorageError(
                    "nested transaction: this task already holds a transaction of this"
                    " store; finish it before opening another"
                )
            self._busy.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._busy.discard(task)

    # -- migrations -------------------------------------------------------------
    async def migrate(self) -> int:
        """Apply pending schema migrations; returns the schema version.

        Each migration runs in its own transaction holding an advisory lock, so
        processes migrating at the same time are safe.

        Raises:
            StorageError: the database schema is newer than this library, a
                migration failed, or the server is unreachable.
        """
        if self._closed:
            raise StorageError("store is closed")
        if not self._opened:
            await self.open()
            if self._auto_migrate:
                return self._version
        async with self._checkout(autocommit=False) as conn:
            return await self._migrate_on(conn)

    async def _migrate_on(self, conn: _Conn) -> int:
        migrations = load_migrations("postgres")
        latest = migrations[-1].version if migrations else 0
        try:
            while True:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
                    await conn.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                    )
                    cur = await conn.execute(
                        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations"
                    )
                    row = await cur.fetchone()
                    current = int(row[0]) if row is not None else 0
                    if current > latest:
                        raise StorageError(
                            f"database schema version {current} is newer than this "
                            f"clientcomm ({latest}); upgrade clientcomm",
                            current=current,
                            supported=latest,
                        )
                    if current == latest:
                        break
                    m = migrations[current]  # numbered 1..n: this is current + 1
                    await conn.execute(m.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (m.version, m.name),
                    )
        except _DRIVER_ERRORS as exc:
            raise StorageError(f"migration failed: {_describe(exc)}") from exc
        self._version = latest
        return latest

    # -- Store protocol -----------------------------------------------------------
    @asynccontextmanager
    async def transaction(self, firm_id: str) -> AsyncIterator[Transaction]:
        """Open a unit of work for ``firm_id`` on a pooled connection; commits on
        normal exit, rolls back on exception.

        Raises:
            InvalidInputError: empty firm id.
            ConflictError: a buffered write clashed (duplicate, stale version) at
                commit.
            StorageError: the server failed, the store is closed, the task
                already holds a transaction of this store, or an earlier error
                inside the block aborted the transaction.
        """
        if not isinstance(firm_id, str) or not firm_id:
            raise InvalidInputError("firm_id", "must be a non-empty string")
        if self._closed:
            raise StorageError("store is closed")
        async with self._exclusive(), self._connection() as conn:
            tx = _PostgresTransaction(self, conn, firm_id)
            try:
                yield tx
                if tx._failed is not None:
                    raise StorageError(
                        "transaction aborted by an earlier error; rolled back"
                    ) from tx._failed
                await tx._commit()
            finally:
                tx._done = True

    async def claim(
        self,
        kind: str,
        *,
        status: str,
        owner: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        firm_id: str | None = None,
        parent: str | None = None,
    ) -> Sequence[Record]:
        """Lease up to ``limit`` due, unleased records (see
        :meth:`clientcomm.storage.base.Store.claim`), using ``FOR UPDATE SKIP
        LOCKED``; commits at once.

        Raises:
            InvalidInputError: ``limit`` not positive, empty ``owner``, naive ``now``.
            StorageError: the server failed.
        """
        if limit <= 0:
            raise InvalidInputError("limit", "must be positive")
        if not owner:
            raise InvalidInputError("owner", "must be a non-empty string")
        if now.tzinfo is None:
            raise InvalidInputError("now", "must be timezone-aware")
        if _has_nul(kind, status, firm_id, parent):
            return []
        if "\x00" in owner:
            raise InvalidInputError("owner", "must not contain NUL characters")
        where = (
            "kind=%s AND status=%s AND (due_at IS NULL OR due_at<=%s)"
            " AND (lease_until IS NULL OR lease_until<=%s)"
        )
        params: list[Any] = [kind, status, now, now]
        if firm_id is not None:
            where += " AND firm_id=%s"
            params.append(firm_id)
        if parent is not None:
            where += " AND parent=%s"
            params.append(parent)
        params.append(limit)
        sql = (
            "WITH picked AS MATERIALIZED ("
            f" SELECT seq FROM records WHERE {where}"
            " ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED)"
            " UPDATE records r SET lease_owner=%s, lease_until=%s, version=r.version+1"
            " FROM picked WHERE r.seq=picked.seq"
            f" RETURNING {', '.join('r.' + c.strip() for c in _COLS.split(','))}"
        )
        params += [owner, now + lease]
        # One statement in autocommit mode: atomic, committed, one round trip.
        async with (
            self._exclusive(),
            self._connection(autocommit=True) as conn,
            conn.cursor(row_factory=tuple_row, binary=True) as cur,
        ):
            await cur.execute(sql, params)
            rows = await cur.fetchall()
        return sorted((_row_to_record(r) for r in rows), key=lambda r: r.seq)

    async def iterate(
        self,
        firm_id: str,
        kind: str,
        *,
        parent: str | None = None,
        status: str | None = None,
        ref: str | None = None,
        created_from: datetime | None = None,
        created_before: datetime | None = None,
        batch: int = 1000,
    ) -> AsyncIterator[Record]:
        """Stream matching records in ``seq`` order, ``batch`` per short
        transaction.

        Raises:
            InvalidInputError: ``batch`` not positive; a naive ``created_from``
                or ``created_before``.
            StorageError: the server failed.
        """
        async for rec in iterate_pages(
            self,
            firm_id,
            kind,
            parent=parent,
            status=status,
            ref=ref,
            created_from=created_from,
            created_before=created_before,
            batch=batch,
        ):
            yield rec

    # -- SqlBackend (for the SQL-backed Directory) -------------------------------
    async def sql_read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one query (``?`` placeholders) and return all rows.

        Raises:
            StorageError: the server failed.
        """
        query = convert_placeholders(sql)
        async with (
            self._connection(autocommit=True) as conn,
            conn.cursor(row_factory=tuple_row) as cur,
        ):
            await cur.execute(query, _sql_params(params))
            rows = await cur.fetchall() if cur.description is not None else []
        return rows

    async def sql_write(self, statements: Sequence[tuple[str, Sequence[Sequence[object]]]]) -> None:
        """Run each statement over its parameter rows (``executemany``), all in
        one transaction.

        Raises:
            ConflictError: a unique or foreign-key constraint was violated.
            StorageError: the server failed, or the task holds a transaction.
        """
        async with self._exclusive(), self._connection() as conn:
            async with conn.cursor() as cur:
                for sql, rows in statements:
                    query = convert_placeholders(sql)
                    await cur.executemany(query, [_sql_params(r) for r in rows])
            await conn.commit()


class _PostgresTransaction:
    def __init__(self, store: PostgresStore, conn: _Conn, firm_id: str) -> None:
        self._store = store
        self._conn = conn
        self._firm = firm_id
        self._ops: list[_Op] = []
        self._failed: BaseException | None = None
        self._done = False

    @property
    def firm_id(self) -> str:
        return self._firm

    def __repr__(self) -> str:
        return f"<PostgresTransaction firm_id={self._firm!r}>"

    # -- plumbing --
    def _check(self) -> None:
        if self._done:
            raise StorageError("transaction is finished")
        if self._failed is not None:
            raise StorageError("transaction aborted by an earlier error") from self._failed

    def _queue(self, sql: str, row: tuple[Any, ...], *, check: bool, copy: bool) -> None:
        if not self._ops or self._ops[-1].sql != sql:
            self._ops.append(_Op(sql, check, copy))
        self._ops[-1].rows.append(row)

    def _uses_copy(self, op: _Op) -> bool:
        return op.copy and len(op.rows) >= self._store._copy_threshold

    async def _send(self, op: _Op, pipelined: bool) -> tuple[_Op, _Cursor] | None:
        """Send one batch; returns what must be checked once its result is in."""
        cur = self._conn.cursor(row_factory=tuple_row)
        if self._uses_copy(op):
            async with cur.copy(_COPY) as cp:
                cp.set_types(_COPY_TYPES)
                for row in op.rows:
                    await cp.write_row(row)
            return None
        if len(op.rows) == 1 and pipelined:
            await cur.execute(op.sql, op.rows[0])
        elif op.sql is _INSERT and pipelined:  # a few rows (fewer than COPY's)
            for i in range(0, len(op.rows), _VALUES_ROWS):
                part = op.rows[i : i + _VALUES_ROWS]
                await cur.execute(_insert_values(len(part)), [v for row in part for v in row])
        else:
            await cur.executemany(op.sql, op.rows)
        return (op, cur) if op.check else None

    @staticmethod
    def _verify(sent: Sequence[tuple[_Op, _Cursor] | None]) -> None:
        for item in sent:
            if item is None:
                continue
            op, cur = item
            if cur.rowcount != len(op.rows):
                raise ConflictError(
                    f"{len(op.rows) - cur.rowcount} record(s) were changed concurrently or "
                    "no longer exist",
                    expected=len(op.rows),
                    updated=cur.rowcount,
                )

    async def _run(self, fn: Callable[[_Cursor], Awaitable[T]]) -> T:
        """Flush pending writes, then run ``fn``; any error aborts the transaction.

        Without COPY batches everything goes in one pipeline: the implicit
        BEGIN, every write batch and the read cost a single round trip. With
        nothing buffered the read goes alone, outside a pipeline: psycopg's
        pipeline costs more client time than the round trip it saves here
        (BEGIN, one SELECT and COMMIT: 0.40 ms pipelined, 0.25 ms plain, on
        loopback).
        """
        self._check()
        ops, self._ops = self._ops, []
        try:
            cur = self._conn.cursor(row_factory=tuple_row, binary=True)
            if not ops:
                return await fn(cur)
            if any(self._uses_copy(op) for op in ops):  # COPY cannot run in a pipeline
                sent = [await self._send(op, False) for op in ops]
                self._verify(sent)
                return await fn(cur)
            async with self._conn.pipeline():
                sent = [await self._send(op, True) for op in ops]
                result = await fn(cur)
            self._verify(sent)
            return result
        except _DRIVER_ERRORS as exc:
            err = _translate(exc)
            self._failed = err
            raise err from exc
        except ClientCommError as exc:
            self._failed = exc
            raise
        except BaseException as exc:  # cancelled mid-command: the connection is unusable
            self._failed = exc
            raise

    async def _commit(self) -> None:
        ops = self._ops
        try:
            server_checks = self._store._version >= _SERVER_CHECKS
            if ops and not any(
                (op.check and not server_checks) or self._uses_copy(op) for op in ops
            ):
                # Nothing to verify client-side (checked updates are checked by
                # the server): the writes and COMMIT share a round trip (an
                # error makes the server skip the COMMIT).
                self._ops = []
                async with self._conn.pipeline():
                    for op in ops:
                        if op.check:
                            checked = _Op(_UPDATE_EXPECTING_ONE, False, False)
                            checked.rows = op.rows
                            op = checked
                        await self._send(op, True)
                    await self._conn.commit()
                return
            if ops:
                await self._run(self._flush_only)
            await self._conn.commit()
        except _DRIVER_ERRORS as exc:
            raise _translate(exc) from exc

    @staticmethod
    async def _flush_only(cur: _Cursor) -> None:
        return None

    # -- reads --
    async def get(self, kind: str, id: str) -> Record:
        rec = await self.find(kind, id)
        if rec is None:
            raise NotFoundError(kind, id)
        return rec

    async def _one(self, sql: str, params: Sequence[Any]) -> Record | None:
        async def run(cur: _Cursor) -> tuple[Any, ...] | None:
            await cur.execute(sql, params)
            return await cur.fetchone()

        row = await self._run(run)
        return None if row is None else _row_to_record(row)

    async def _all(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        async def run(cur: _Cursor) -> list[tuple[Any, ...]]:
            await cur.execute(sql, params)
            return await cur.fetchall()

        return await self._run(run)

    async def find(self, kind: str, id: str) -> Record | None:
        if _has_nul(kind, id):
            await self._run(self._flush_only)
            return None
        return await self._one(*q.find_query("%s", self._firm, kind, "id", id))

    async def find_by_key(self, kind: str, key: str) -> Record | None:
        if _has_nul(kind, key):
            await self._run(self._flush_only)
            return None
        return await self._one(*q.find_query("%s", self._firm, kind, "key", key))

    async def get_many(self, kind: str, ids: Iterable[str]) -> Mapping[str, Record]:
        wanted = [i for i in dict.fromkeys(ids) if "\x00" not in i]
        if not wanted or _has_nul(kind):
            await self._run(self._flush_only)
            return {}
        sql = f"SELECT {_COLS} FROM records WHERE firm_id=%s AND kind=%s AND id = ANY(%s)"
        rows = await self._all(sql, (self._firm, kind, wanted))
        out: dict[str, Record] = {}
        for row in rows:
            rec = _row_to_record(row)
            out[rec.id] = rec
        return out

    async def list(
        self,
        kind: str,
        *,
        parent: str | None = None,
        status: str | None = None,
        ref: str | None = None,
        created_from: datetime | None = None,
        created_before: datetime | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        descending: bool = False,
    ) -> Sequence[Record]:
        validate_created_range(created_from, created_before)
        sql, params = q.list_query(
            "%s",
            self._firm,
            kind,
            parent=parent,
            status=status,
            after_seq=after_seq,
            limit=limit,
            descending=descending,
            ref=ref,
            created_from=created_from,
            created_before=created_before,
        )
        if _has_nul(kind, parent, status, ref):
            await self._run(self._flush_only)
            return []
        return [_row_to_record(r) for r in await self._all(sql, params)]

    async def count(
        self,
        kind: str,
        *,
        parent: str | None = None,
        status: str | None = None,
        ref: str | None = None,
        created_from: datetime | None = None,
        created_before: datetime | None = None,
        after_seq: int = 0,
    ) -> int:
        validate_created_range(created_from, created_before)
        if _has_nul(kind, parent, status, ref):
            await self._run(self._flush_only)
            return 0
        sql, params = q.count_query(
            "%s",
            self._firm,
            kind,
            parent=parent,
            status=status,
            after_seq=after_seq,
            ref=ref,
            created_from=created_from,
            created_before=created_before,
        )
        rows = await self._all(sql, params)
        return int(rows[0][0])

    async def count_by_status(self, kind: str, *, parent: str | None = None) -> Mapping[str, int]:
        if _has_nul(kind, parent):
            await self._run(self._flush_only)
            return {}
        sql, params = q.count_by_status_query("%s", self._firm, kind, parent=parent)
        return {str(s): int(n) for s, n in await self._all(sql, params)}

    # -- writes --
    async def insert(self, records: Iterable[Record]) -> Sequence[Record]:
        self._check()
        rows, out = self._insert_rows(records)
        for row in rows:  # all validated first: a bad record queues nothing
            self._queue(_INSERT, row, check=False, copy=True)
        return out

    def _insert_rows(self, records: Iterable[Record]) -> tuple[_Rows, _Records]:
        out: list[Record] = []
        rows: list[tuple[Any, ...]] = []
        dump = data_dumper(records)
        for r in records:
            check_own(r, self._firm)  # refuses NUL in text columns too
            body = bytes(r.body) if r.body is not None else None
            rows.append(
                (
                    r.firm_id,
                    r.kind,
                    r.id,
                    r.parent,
                    r.key,
                    r.status,
                    r.due_at,
                    dump(r.data),
                    body,
                    r.lease_owner,
                    r.lease_until,
                    r.created_at,
                    r.ref,
                )
            )
            out.append(r if r.version == 0 else r.evolve(version=0))
        return rows, out

    async def replace(self, records: Iterable[Record]) -> None:
        self._check()
        batch = list(records)
        rows, _ = self._insert_rows(batch)  # all validated first: nothing queued
        for r in batch:
            self._queue(_REMOVE, (r.firm_id, r.kind, r.id), check=False, copy=False)
        for row in rows:
            self._queue(_INSERT, row, check=False, copy=True)

    async def update(self, records: Iterable[Record]) -> Sequence[Record]:
        self._check()
        out: list[Record] = []
        rows: list[tuple[Any, ...]] = []
        for r in records:
            check_own(r, self._firm)  # refuses NUL in text columns too
            body = bytes(r.body) if r.body is not None else None
            rows.append(
                (
                    r.parent,
                    r.ref,
                    r.key,
                    r.status,
                    r.due_at,
                    dump_data(r.data),
                    body,
                    r.lease_owner,
                    r.lease_until,
                    r.firm_id,
                    r.kind,
                    r.id,
                    r.version,
                )
            )
            out.append(with_version(r, r.version + 1))
        for row in rows:
            self._queue(_UPDATE, row, check=True, copy=False)
        return out

    async def delete(self, kind: str, ids: Iterable[str]) -> int:
        self._check()
        wanted = validate_ids(ids)  # all validated first: a bad id deletes nothing
        if not wanted or _has_nul(kind):
            await self._run(self._flush_only)
            return 0

        async def run(cur: _Cursor) -> int:
            await cur.execute(_DELETE, (self._firm, kind, wanted))
            row = await cur.fetchone()
            return int(row[0]) if row is not None else 0

        return await self._run(run)
