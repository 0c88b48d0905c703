"""In-memory Store: faithful to the SQL backends (same uniqueness, versioning,
lease and isolation rules, same errors), for users' tests and quick experiments.

One transaction runs at a time (like SQLite's single writer); writes apply at
once and are undone on rollback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

import attrs

from clientcomm.errors import ConflictError, InvalidInputError, NotFoundError, StorageError
from clientcomm.storage._codec import dump_data, load_data
from clientcomm.storage._common import check_own, iterate_pages
from clientcomm.storage._lock import WriterLock
from clientcomm.storage.base import (
    Record,
    Transaction,
    validate_created_range,
    validate_ids,
)
from clientcomm.storage.migrations import load_migrations

__all__ = ["MemoryStore"]

_Key = tuple[str, str, str]  # firm, kind, id


@attrs.define
class _Row:
    record: Record  # data held as the JSON text in `data_json`
    data_json: str


class MemoryStore:
    """A Store held in process memory. ``MemoryStore()``; nothing to migrate."""

    def __init__(self) -> None:
        self._rows: dict[_Key, _Row] = {}
        self._keys: dict[tuple[str, str, str], str] = {}  # (firm, kind, key) -> id
        self._by_parent: dict[tuple[str, str, str | None], dict[int, str]] = {}
        self._by_ref: dict[tuple[str, str, str], dict[int, str]] = {}  # only rows with a ref
        self._by_status: dict[tuple[str, str | None], dict[int, _Key]] = {}
        self._seq = 0
        self._lock = WriterLock()
        self._closed = False

    # -- Store protocol ---------------------------------------------------
    @asynccontextmanager
    async def transaction(self, firm_id: str) -> AsyncIterator[Transaction]:
        if not isinstance(firm_id, str) or not firm_id:
            raise InvalidInputError("firm_id", "must be a non-empty string")
        self._check_open()
        async with self._lock.hold():
            tx = _MemoryTransaction(self, firm_id)
            try:
                yield tx
                if tx._failed is not None:
                    raise StorageError(
                        "transaction aborted by an earlier error; rolled back"
                    ) from tx._failed
            except BaseException:
                tx._rollback()
                raise
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
        self._check_open()
        if limit <= 0:
            raise InvalidInputError("limit", "must be positive")
        if not owner:
            raise InvalidInputError("owner", "must be a non-empty string")
        until = now + lease
        out: list[Record] = []
        async with self._lock.hold():
            bucket = self._by_status.get((kind, status), {})
            for seq in sorted(bucket):
                key = bucket[seq]
                row = self._rows[key]
                rec = row.record
                if firm_id is not None and rec.firm_id != firm_id:
                    continue
                if parent is not None and rec.parent != parent:
                    continue
                if rec.due_at is not None and rec.due_at > now:
                    continue
                if rec.lease_until is not None and rec.lease_until > now:
                    continue
                new = attrs.evolve(
                    rec, lease_owner=owner, lease_until=until, version=rec.version + 1
                )
                row.record = new
                out.append(self._public(row))
                if len(out) >= limit:
                    break
        return out

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

    async def migrate(self) -> int:
        """Nothing to migrate; the schema version this store behaves like."""
        return load_migrations("sqlite")[-1].version

    async def aclose(self) -> None:
        self._closed = True

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- internals ----------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise StorageError("store is closed")

    @staticmethod
    def _public(row: _Row) -> Record:
        return attrs.evolve(row.record, data=load_data(row.data_json))

    def _index_add(self, row: _Row) -> None:
        r = row.record
        self._by_parent.setdefault((r.firm_id, r.kind, r.parent), {})[r.seq] = r.id
        if r.ref is not None:
            self._by_ref.setdefault((r.firm_id, r.kind, r.ref), {})[r.seq] = r.id
        self._by_status.setdefault((r.kind, r.status), {})[r.seq] = (r.firm_id, r.kind, r.id)
        if r.key is not None:
            self._keys[(r.firm_id, r.kind, r.key)] = r.id

    def _index_remove(self, row: _Row) -> None:
        r = row.record
        self._by_parent.get((r.firm_id, r.kind, r.parent), {}).pop(r.seq, None)
        if r.ref is not None:
            self._by_ref.get((r.firm_id, r.kind, r.ref), {}).pop(r.seq, None)
        self._by_status.get((r.kind, r.status), {}).pop(r.seq, None)
        if r.key is not None:
            self._keys.pop((r.firm_id, r.kind, r.key), None)


class _MemoryTransaction:
    def __init__(self, store: MemoryStore, firm_id: str) -> None:
        self._store = store
        self._firm = firm_id
        self._undo: list[tuple[_Key, _Row | None]] = []  # previous row for each changed key
        self._failed: BaseException | None = None
        self._done = False

    @property
    def firm_id(self) -> str:
        return self._firm

    # -- helpers --
    def _check(self) -> None:
        if self._done:
            raise StorageError("transaction is finished")
        if self._failed is not None:
            raise StorageError("transaction aborted by an earlier error") from self._failed

    def _fail(self, exc: BaseException) -> BaseException:
        self._failed = exc
        return exc

    def _set(self, key: _Key, row: _Row | None) -> None:
        s = self._store
        old = s._rows.get(key)
        self._undo.append((key, old))
        if old is not None:
            s._index_remove(old)
            del s._rows[key]
        if row is not None:
            s._rows[key] = row
            s._index_add(row)

    def _rollback(self) -> None:
        s = self._store
        for key, old in reversed(self._undo):
            cur = s._rows.pop(key, None)
            if cur is not None:
                s._index_remove(cur)
            if old is not None:
                s._rows[key] = old
                s._index_add(old)
        self._undo.clear()

    def _own(self, record: Record) -> None:
        check_own(record, self._firm)

    # -- reads --
    async def get(self, kind: str, id: str) -> Record:
        rec = await self.find(kind, id)
        if rec is None:
            raise NotFoundError(kind, id)
        return rec

    async def find(self, kind: str, id: str) -> Record | None:
        self._check()
        row = self._store._rows.get((self._firm, kind, id))
        return None if row is None else MemoryStore._public(row)

    async def find_by_key(self, kind: str, key: str) -> Record | None:
        self._check()
        id = self._store._keys.get((self._firm, kind, key))
        return None if id is None else await self.find(kind, id)

    async def get_many(self, kind: str, ids: Iterable[str]) -> Mapping[str, Record]:
        self._check()
        out: dict[str, Record] = {}
        for id in ids:
            row = self._store._rows.get((self._firm, kind, id))
            if row is not None:
                out[id] = MemoryStore._public(row)
        return out

    def _select(
        self,
        kind: str,
        parent: str | None,
        status: str | None,
        after_seq: int,
        descending: bool,
        ref: str | None = None,
        created_from: datetime | None = None,
        created_before: datetime | None = None,
    ) -> list[_Row]:
        validate_created_range(created_from, created_before)
        s = self._store
        rows: list[_Row] = []
        if parent is not None:
            seqs = s._by_parent.get((self._firm, kind, parent), {})
            keys: Iterable[_Key] = ((self._firm, kind, id) for id in seqs.values())
        elif ref is not None:
            seqs = s._by_ref.get((self._firm, kind, ref), {})
            keys = ((self._firm, kind, id) for id in seqs.values())
        elif status is not None:
            keys = s._by_status.get((kind, status), {}).values()
        else:
            keys = (k for k in s._rows if k[0] == self._firm and k[1] == kind)
        for key in keys:
            if key[0] != self._firm:
                continue
            row = s._rows[key]
            r = row.record
            if status is not None and r.status != status:
                continue
            if ref is not None and r.ref != ref:
                continue
            if created_from is not None and r.created_at < created_from:
                continue
            if created_before is not None and r.created_at >= created_before:
                continue
            if after_seq:
                if not descending and r.seq <= after_seq:
                    continue
                if descending and r.seq >= after_seq:
                    continue
            rows.append(row)
        rows.sort(key=lambda row: row.record.seq, reverse=descending)
        return rows

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
        self._check()
        if limit is not None and limit < 0:
            raise InvalidInputError("limit", "must not be negative")
        rows = self._select(
            kind, parent, status, after_seq, descending, ref, created_from, created_before
        )
        if limit is not None:
            rows = rows[:limit]
        return [MemoryStore._public(row) for row in rows]

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
        self._check()
        return len(
            self._select(kind, parent, status, after_seq, False, ref, created_from, created_before)
        )

    async def count_by_status(self, kind: str, *, parent: str | None = None) -> Mapping[str, int]:
        self._check()
        out: dict[str, int] = {}
        for row in self._select(kind, parent, None, 0, False):
            st = row.record.status
            if st is not None:
                out[st] = out.get(st, 0) + 1
        return out

    # -- writes --
    async def insert(self, records: Iterable[Record]) -> Sequence[Record]:
        self._check()
        s = self._store
        out: list[Record] = []
        checked: list[tuple[Record, str]] = []
        for record in records:  # all validated first: a bad record queues nothing
            self._own(record)
            checked.append((record, dump_data(record.data)))
        for record, data_json in checked:
            key = (self._firm, record.kind, record.id)
            if key in s._rows:
                raise self._fail(
                    ConflictError(f"{record.kind} {record.id!r} already exists", id=record.id)
                )
            if record.key is not None and (self._firm, record.kind, record.key) in s._keys:
                raise self._fail(
                    ConflictError(
                        f"{record.kind} key {record.key!r} already exists", key=record.key
                    )
                )
            s._seq += 1
            body = bytes(record.body) if record.body is not None else None
            stored = attrs.evolve(record, seq=s._seq, version=0, body=body, data={})
            self._set(key, _Row(stored, data_json))
            out.append(attrs.evolve(stored, data=load_data(data_json)))
        return out

    async def update(self, records: Iterable[Record]) -> Sequence[Record]:
        self._check()
        s = self._store
        out: list[Record] = []
        checked: list[tuple[Record, str]] = []
        for record in records:  # all validated first: a bad record queues nothing
            self._own(record)
            checked.append((record, dump_data(record.data)))
        for record, data_json in checked:
            key = (self._firm, record.kind, record.id)
            old = s._rows.get(key)
            if old is None:
                raise self._fail(
                    ConflictError(f"{record.kind} {record.id!r} does not exist", id=record.id)
                )
            if old.record.version != record.version:
                raise self._fail(
                    ConflictError(
                        f"{record.kind} {record.id!r} was changed concurrently", id=record.id
                    )
                )
            if record.key is not None and record.key != old.record.key:
                holder = s._keys.get((self._firm, record.kind, record.key))
                if holder is not None and holder != record.id:
                    raise self._fail(
                        ConflictError(
                            f"{record.kind} key {record.key!r} already exists", key=record.key
                        )
                    )
            body = bytes(record.body) if record.body is not None else None
            stored = attrs.evolve(
                record,
                seq=old.record.seq,
                created_at=old.record.created_at,
                version=old.record.version + 1,
                body=body,
                data={},
            )
            self._set(key, _Row(stored, data_json))
            out.append(attrs.evolve(stored, data=load_data(data_json)))
        return out

    async def replace(self, records: Iterable[Record]) -> None:
        self._check()
        batch = list(records)
        for record in batch:  # all validated first: a bad record removes nothing
            self._own(record)
            dump_data(record.data)
        for record in batch:
            key = (self._firm, record.kind, record.id)
            if key in self._store._rows:
                self._set(key, None)
        await self.insert(batch)

    async def delete(self, kind: str, ids: Iterable[str]) -> int:
        self._check()
        n = 0
        for id in validate_ids(ids):  # all validated first: a bad id deletes nothing
            key = (self._firm, kind, id)
            if key in self._store._rows:
                self._set(key, None)
                n += 1
        return n
