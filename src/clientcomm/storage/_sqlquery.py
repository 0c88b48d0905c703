"""SQL text for the record queries both SQL backends run (one place, two dialects).

``ph`` is the driver's placeholder: ``"?"`` for sqlite3, ``"%s"`` for psycopg.
Every query is scoped to the transaction's firm. ``created_from`` and
``created_before`` arrive already in the dialect's column encoding (integer
microseconds for SQLite, ``datetime`` for PostgreSQL) and already validated.
"""

from __future__ import annotations

from typing import Any

from clientcomm.errors import InvalidInputError

# ``ref`` (schema version 2) comes last, where ALTER TABLE put it.
COLS = (
    "seq, firm_id, kind, id, parent, key, status, due_at, data, body, version,"
    " lease_owner, lease_until, created_at, ref"
)

Query = tuple[str, list[Any]]


def where(
    ph: str,
    firm_id: str,
    kind: str,
    parent: str | None,
    status: str | None,
    ref: str | None = None,
    created_from: Any = None,
    created_before: Any = None,
) -> Query:
    sql = f" WHERE firm_id={ph} AND kind={ph}"
    params: list[Any] = [firm_id, kind]
    if parent is not None:
        sql += f" AND parent={ph}"
        params.append(parent)
    if ref is not None:
        sql += f" AND ref={ph}"
        params.append(ref)
    if status is not None:
        sql += f" AND status={ph}"
        params.append(status)
    # SQLite (no statistics) took records_created for a range next to `ref = ?`, sorting
    # the firm's whole time range instead of reading the group's rows in seq order from
    # records_ref/records_parent. A unary + keeps the term out of SQLite's index choice.
    # (PostgreSQL has no unary + for timestamptz, and its planner has statistics.)
    col = "+created_at" if ph == "?" and (parent is not None or ref is not None) else "created_at"
    if created_from is not None:
        sql += f" AND {col}>={ph}"
        params.append(created_from)
    if created_before is not None:
        sql += f" AND {col}<{ph}"
        params.append(created_before)
    return sql, params


def find_query(ph: str, firm_id: str, kind: str, column: str, value: str) -> Query:
    """One record by ``id`` or ``key``."""
    sql = f"SELECT {COLS} FROM records WHERE firm_id={ph} AND kind={ph} AND {column}={ph}"
    return sql, [firm_id, kind, value]


def list_query(
    ph: str,
    firm_id: str,
    kind: str,
    *,
    parent: str | None,
    status: str | None,
    after_seq: int,
    limit: int | None,
    descending: bool,
    ref: str | None = None,
    created_from: Any = None,
    created_before: Any = None,
) -> Query:
    """``Transaction.list``. Raises InvalidInputError for a negative limit."""
    if limit is not None and limit < 0:
        raise InvalidInputError("limit", "must not be negative")
    sql, params = where(ph, firm_id, kind, parent, status, ref, created_from, created_before)
    if after_seq:
        sql += f" AND seq<{ph}" if descending else f" AND seq>{ph}"
        params.append(after_seq)
    sql = f"SELECT {COLS} FROM records{sql} ORDER BY seq {'DESC' if descending else 'ASC'}"
    if limit is not None:
        sql += f" LIMIT {ph}"
        params.append(limit)
    return sql, params


def count_query(
    ph: str,
    firm_id: str,
    kind: str,
    *,
    parent: str | None,
    status: str | None,
    after_seq: int,
    ref: str | None = None,
    created_from: Any = None,
    created_before: Any = None,
) -> Query:
    sql, params = where(ph, firm_id, kind, parent, status, ref, created_from, created_before)
    if after_seq:
        sql += f" AND seq>{ph}"
        params.append(after_seq)
    return f"SELECT COUNT(*) FROM records{sql}", params


def count_by_status_query(ph: str, firm_id: str, kind: str, *, parent: str | None) -> Query:
    sql, params = where(ph, firm_id, kind, parent, None)
    return (
        f"SELECT status, COUNT(*) FROM records{sql} AND status IS NOT NULL GROUP BY status",
        params,
    )
