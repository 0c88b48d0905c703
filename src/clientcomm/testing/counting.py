"""A Store wrapper that counts every call: how many reads a code path costs.

``CountingStore(store)`` is a Store; pass it to ``ClientComm`` and read
``store.calls`` (a Counter by method name: ``transaction``, ``find``,
``list``, ``insert``, ...), ``store.reads()`` and ``store.writes()``;
``store.reset()`` starts again. The announcements tests and
``bench/announcements.py`` count a page view's store reads with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from clientcomm.storage.base import Record, Store, Transaction

__all__ = ["CountingStore", "CountingTransaction"]

READS = frozenset({"get", "find", "find_by_key", "get_many", "list", "count", "count_by_status"})


class CountingTransaction:
    """A transaction that counts its calls by method name into ``calls``."""

    def __init__(self, inner: Transaction, calls: Counter[str]) -> None:
        self._inner = inner
        self._calls = calls

    @property
    def firm_id(self) -> str:
        return self._inner.firm_id

    async def get(self, kind: str, id: str) -> Record:
        self._calls["get"] += 1
        return await self._inner.get(kind, id)

    async def find(self, kind: str, id: str) -> Record | None:
        self._calls["find"] += 1
        return await self._inner.find(kind, id)

    async def find_by_key(self, kind: str, key: str) -> Record | None:
        self._calls["find_by_key"] += 1
        return await self._inner.find_by_key(kind, key)

    async def get_many(self, kind: str, ids: Iterable[str]) -> Mapping[str, Record]:
        self._calls["get_many"] += 1
        return await self._inner.get_many(kind, ids)

    async def insert(self, records: Iterable[Record]) -> Sequence[Record]:
        self._calls["insert"] += 1
        return await self._inner.insert(records)

    async def update(self, records: Iterable[Record]) -> Sequence[Record]:
        self._calls["update"] += 1
        return await self._inner.update(records)

    async def replace(self, records: Iterable[Record]) -> None:
        self._calls["replace"] += 1
        await self._inner.replace(records)

    async def delete(self, kind: str, ids: Iterable[str]) -> int:
        self._calls["delete"] += 1
        return await self._inner.delete(kind, ids)

    async def list(self, kind: str, **filters: Any) -> Sequence[Record]:
        self._calls["list"] += 1
        return await self._inner.list(kind, **filters)

    async def count(self, kind: str, **filters: Any) -> int:
        self._calls["count"] += 1
        return await self._inner.count(kind, **filters)

    async def count_by_status(self, kind: str, *, parent: str | None = None) -> Mapping[str, int]:
        self._calls["count_by_status"] += 1
        return await self._inner.count_by_status(kind, parent=parent)


class CountingStore:
    """Wraps a Store; ``calls`` counts transactions, their calls, claims and
    iterations. ``reads()`` is the number of read calls."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def reset(self) -> None:
        self.calls.clear()

    def reads(self) -> int:
        return sum(n for name, n in self.calls.items() if name in READS)

    def writes(self) -> int:
        return sum(self.calls[name] for name in ("insert", "update", "replace", "delete"))

    def transaction(self, firm_id: str) -> AbstractAsyncContextManager[Transaction]:
        @asynccontextmanager
        async def counted() -> AsyncIterator[Transaction]:
            self.calls["transaction"] += 1
            async with self.inner.transaction(firm_id) as tx:
                yield CountingTransaction(tx, self.calls)

        return counted()

    async def claim(self, kind: str, **kwargs: Any) -> Sequence[Record]:
        self.calls["claim"] += 1
        return await self.inner.claim(kind, **kwargs)

    async def iterate(self, firm_id: str, kind: str, **kwargs: Any) -> AsyncIterator[Record]:
        self.calls["iterate"] += 1
        async for record in self.inner.iterate(firm_id, kind, **kwargs):
            yield record

    async def migrate(self) -> int:
        return await self.inner.migrate()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self) -> CountingStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _typing_check(store: CountingStore, tx: CountingTransaction) -> tuple[Store, Transaction]:
    return store, tx  # mypy: both satisfy the Protocols
