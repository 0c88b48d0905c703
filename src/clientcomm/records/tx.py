"""A typed view of a Store: services read and write registered attrs values.

:class:`Records` wraps a :class:`~clientcomm.storage.base.Store` and a
:class:`~clientcomm.records.registry.Registry`; its transactions
(:class:`RecordTx`) take and return the record classes declared in the registry,
so no service builds a ``data`` dict by hand. Writing a value whose class is not
registered is refused with :class:`~clientcomm.errors.InvalidInputError` before
anything reaches the store.

A record that does not decode (edited or damaged ``data``) raises
:class:`~clientcomm.errors.IntegrityError` from ``get``/``find``; the listing
methods offer ``decode_errors="skip"`` so one bad record fails alone instead of
hiding a whole page (the skipped ids are logged).
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from clientcomm.errors import IntegrityError, InvalidInputError
from clientcomm.records.registry import REGISTRY, Registry
from clientcomm.storage.base import Record, Store, Transaction

__all__ = ["RecordTx", "Records", "check_lease"]

T = TypeVar("T")

log = logging.getLogger("clientcomm.records")

DecodeErrors = Literal["raise", "skip"]


def check_lease(lease: object, field: str = "lease") -> timedelta:
    """Return ``lease`` if it is a positive :class:`~datetime.timedelta`.

    Raises:
        InvalidInputError: anything else (a zero or negative lease would hand
            the same work to every worker at once).
    """
    if not isinstance(lease, timedelta) or lease <= timedelta(0):
        raise InvalidInputError(field, "must be a positive timedelta")
    return lease


class RecordTx:
    """A Store transaction that speaks registered record classes.

    ``raw`` is the underlying :class:`~clientcomm.storage.base.Transaction`.
    """

    def __init__(self, raw: Transaction, registry: Registry) -> None:
        self.raw = raw
        self.registry = registry

    @property
    def firm_id(self) -> str:
        return self.raw.firm_id

    def _decode_all(
        self, cls: type[T], records: Iterable[Record], errors: DecodeErrors
    ) -> builtins.list[T]:
        kind = self.registry.of(cls)
        out: builtins.list[T] = []
        for record in records:
            try:
                out.append(kind.decode(record))
            except IntegrityError:
                if errors == "raise":
                    raise
                log.error("%s record %s does not decode; skipped", kind.name, record.id)
        return out

    async def get(self, cls: type[T], id: str) -> T:
        """Raises NotFoundError if absent, IntegrityError if it does not decode."""
        kind = self.registry.of(cls)
        return kind.decode(await self.raw.get(kind.name, id))

    async def find(self, cls: type[T], id: str) -> T | None:
        kind = self.registry.of(cls)
        record = await self.raw.find(kind.name, id)
        return None if record is None else kind.decode(record)

    async def find_by_key(self, cls: type[T], key: str) -> T | None:
        kind = self.registry.of(cls)
        record = await self.raw.find_by_key(kind.name, key)
        return None if record is None else kind.decode(record)

    async def get_many(
        self, cls: type[T], ids: Iterable[str], *, decode_errors: DecodeErrors = "raise"
    ) -> dict[str, T]:
        kind = self.registry.of(cls)
        found = await self.raw.get_many(kind.name, ids)
        values = self._decode_all(cls, found.values(), decode_errors)
        return {kind.id_of(v): v for v in values}

    async def list(
        self, cls: type[T], *, decode_errors: DecodeErrors = "raise", **filters: Any
    ) -> builtins.list[T]:
        """As :meth:`Transaction.list`, decoded (``filters``: parent, status,
        after_seq, limit, descending and the store's other filters)."""
        kind = self.registry.of(cls)
        records = await self.raw.list(kind.name, **filters)
        return self._decode_all(cls, records, decode_errors)

    async def count(self, cls: type[T], **filters: Any) -> int:
        return await self.raw.count(self.registry.of(cls).name, **filters)

    async def count_by_status(
        self, cls: type[T], *, parent: str | None = None
    ) -> Mapping[str, int]:
        return await self.raw.count_by_status(self.registry.of(cls).name, parent=parent)

    async def insert(self, values: Iterable[T]) -> None:
        """Insert new values (their firm is this transaction's). Nothing is
        decoded back (the fan-out inserts thousands): use :meth:`insert_one`
        for the stored value with its ``seq`` and ``version``.

        Raises:
            InvalidInputError: an unregistered class, or a value the store refuses.
            ConflictError: an id or key exists already (maybe at commit).
        """
        firm = self.raw.firm_id
        encoder = self.registry.encoder
        records = [encoder(type(v))(v, firm) for v in values]
        if records:
            await self.raw.insert(records)

    async def insert_variants(
        self, template: T, names: tuple[str, ...], rows: Iterable[Sequence[Any]]
    ) -> None:
        """Insert ``attrs.evolve(template, **dict(zip(names, row)))`` for every
        row, encoding ``template`` once (:meth:`Kind.encode_variants`: only
        plain column attributes may vary). The fan-out's copies differ only in
        id, client and sealed text.

        Raises:
            ConfigurationError: a name cannot vary.
            InvalidInputError: an unregistered class, or a value the store refuses.
            ConflictError: an id or key exists already (maybe at commit).
        """
        records = self.registry.of(type(template)).encode_variants(
            template, self.raw.firm_id, names, rows
        )
        if records:
            await self.raw.insert(records)

    async def insert_one(self, value: T) -> T:
        """Insert one value; returns it as stored (``meta`` filled in)."""
        kind = self.registry.of(type(value))
        await self.raw.insert([kind.encode(value, self.raw.firm_id)])
        # buffering backends assign seq at flush: read it back (flushes)
        return kind.decode(await self.raw.get(kind.name, kind.id_of(value)))

    async def update(self, values: Iterable[T]) -> None:
        """Replace values read (or claimed) earlier; checked against the version
        in their ``meta``. Use :meth:`update_one` for the new stored value.

        Raises:
            ConflictError: changed or claimed since it was read.
            NotFoundError: gone.
        """
        firm = self.raw.firm_id
        encoder = self.registry.encoder
        records = [encoder(type(v))(v, firm) for v in values]
        if records:
            await self.raw.update(records)

    async def update_one(self, value: T) -> T:
        """Replace one value; returns it as stored (its new ``version``)."""
        [stored] = await self.raw.update([self.registry.encode(value, self.raw.firm_id)])
        decoded: T = self.registry.decode(stored)
        return decoded

    async def replace(self, values: Iterable[Any]) -> None:
        """Insert values, each in place of the stored value of the same kind
        and id if there is one, as the newest in ``seq`` order (a list index
        entry moving to the top); nothing is read (:meth:`Transaction.replace`).

        Raises:
            InvalidInputError: an unregistered class, or a value the store refuses.
        """
        firm = self.raw.firm_id
        encoder = self.registry.encoder
        records = [encoder(type(v))(v, firm) for v in values]
        if records:
            await self.raw.replace(records)

    async def delete(self, cls: type[Any], ids: Iterable[str]) -> int:
        return await self.raw.delete(self.registry.of(cls).name, ids)


class Records:
    """A Store seen through the record registry (see module docs)."""

    def __init__(self, store: Store, registry: Registry = REGISTRY) -> None:
        self.store = store
        self.registry = registry

    @asynccontextmanager
    async def transaction(self, firm_id: str) -> AsyncIterator[RecordTx]:
        """A typed unit of work for ``firm_id`` (commits on normal exit)."""
        async with self.store.transaction(firm_id) as raw:
            yield RecordTx(raw, self.registry)

    async def get(self, cls: type[T], firm_id: str, id: str) -> T:
        """One value in a transaction of its own.

        Raises:
            NotFoundError: absent. IntegrityError: does not decode.
        """
        async with self.transaction(firm_id) as tx:
            return await tx.get(cls, id)

    async def find(self, cls: type[T], firm_id: str, id: str) -> T | None:
        async with self.transaction(firm_id) as tx:
            return await tx.find(cls, id)

    async def claim(
        self,
        cls: type[T],
        *,
        status: str,
        owner: str,
        now: datetime,
        lease: timedelta,
        limit: int,
        firm_id: str | None = None,
        parent: str | None = None,
    ) -> tuple[builtins.list[T], builtins.list[Record]]:
        """Lease due values (see :meth:`Store.claim`). Returns the decoded values
        and the claimed records that do not decode (the caller marks those
        failed, so one bad record never blocks the queue).

        Raises:
            InvalidInputError: ``lease`` is not a positive timedelta.
        """
        check_lease(lease)
        kind = self.registry.of(cls)
        claimed = await self.store.claim(
            kind.name,
            status=status,
            owner=owner,
            now=now,
            lease=lease,
            limit=limit,
            firm_id=firm_id,
            parent=parent,
        )
        good: builtins.list[T] = []
        bad: builtins.list[Record] = []
        for record in claimed:
            try:
                good.append(kind.decode(record))
            except IntegrityError:
                log.error("%s record %s does not decode", kind.name, record.id)
                bad.append(record)
        return good, bad

    async def iterate(
        self, cls: type[T], firm_id: str, *, batch: int = 1000, **filters: Any
    ) -> AsyncIterator[T]:
        """Stream values in ``seq`` order (bounded memory); records that do not
        decode are logged and skipped."""
        kind = self.registry.of(cls)
        async for record in self.store.iterate(firm_id, kind.name, batch=batch, **filters):
            try:
                yield kind.decode(record)
            except IntegrityError:
                log.error("%s record %s does not decode; skipped", kind.name, record.id)
