"""Background re-wrapping: move stored envelopes to their client's newest key.

Envelopes live in other capabilities' records, so this module walks records of
one kind and re-wraps the sealed values found in one place of each record,
without re-encrypting any body. Run it after :meth:`Sealer.rotate_client_key`
(or periodically); once nothing is left on an old key version, that version can
be retired.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs

from clientcomm.crypto.envelope import Sealer, decode_sealed, encode_sealed
from clientcomm.errors import ConflictError, IntegrityError, InvalidInputError
from clientcomm.storage.base import Record, Store

__all__ = ["RewrapReport", "rewrap_records"]


@attrs.frozen
class RewrapReport:
    """What one :func:`rewrap_records` run did.

    Attributes:
        examined: sealed values looked at.
        rewrapped: values moved to the newest key version (and written back).
        failed: values that could not be unwrapped (forgotten clients,
            damaged data); left untouched.
        conflicts: values whose record changed during the run; left for the
            next run.
    """

    examined: int = 0
    rewrapped: int = 0
    failed: int = 0
    conflicts: int = 0

    def __add__(self, other: RewrapReport) -> RewrapReport:
        return RewrapReport(
            self.examined + other.examined,
            self.rewrapped + other.rewrapped,
            self.failed + other.failed,
            self.conflicts + other.conflicts,
        )


def _values(record: Record, field: str) -> list[bytes]:
    if field == "body":
        return [] if record.body is None else [bytes(record.body)]
    value = record.data.get(field)
    if value is None:
        return []
    if isinstance(value, str):
        return [decode_sealed(value)]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [decode_sealed(v) for v in value]
    raise IntegrityError("field does not hold sealed values", field=field, id=record.id)


def _replace(record: Record, field: str, values: Sequence[bytes]) -> Record:
    if field == "body":
        return record.evolve(body=values[0])
    data: dict[str, Any] = dict(record.data)
    if isinstance(data[field], str):
        data[field] = encode_sealed(values[0])
    else:
        data[field] = [encode_sealed(v) for v in values]
    return record.evolve(data=data)


async def rewrap_records(
    store: Store,
    sealer: Sealer,
    firm_id: str,
    kind: str,
    *,
    client_of: Callable[[Record], str | None],
    field: str = "body",
    parent: str | None = None,
    status: str | None = None,
    batch: int = 500,
) -> RewrapReport:
    """Re-wrap the sealed values of every ``kind`` record of a firm.

    Args:
        client_of: the client whose key wraps the record's values (``None``
            skips the record).
        field: ``"body"`` for ``Record.body`` (an envelope or stream key), or
            the name of a ``data`` entry holding one :func:`encode_sealed`
            string or a list of them.
        parent, status: narrow the records walked.
        batch: records per provider call and per write transaction.

    One provider round (current versions, unwrap, wrap) and one transaction per
    batch; a record changed concurrently is skipped (counted in
    ``conflicts``) and picked up by the next run.

    Raises:
        InvalidInputError: ``batch`` is not positive.
        StorageError: the Store or key provider failed.
    """
    if batch <= 0:
        raise InvalidInputError("batch", "must be positive")
    report = RewrapReport()
    page: list[Record] = []
    async for rec in store.iterate(firm_id, kind, parent=parent, status=status, batch=batch):
        page.append(rec)
        if len(page) >= batch:
            report += await _rewrap_page(store, sealer, firm_id, kind, page, client_of, field)
            page = []
    if page:
        report += await _rewrap_page(store, sealer, firm_id, kind, page, client_of, field)
    return report


async def _rewrap_page(
    store: Store,
    sealer: Sealer,
    firm_id: str,
    kind: str,
    page: Sequence[Record],
    client_of: Callable[[Record], str | None],
    field: str,
) -> RewrapReport:
    items: list[tuple[str, bytes]] = []
    owners: list[tuple[Record, int]] = []  # record, number of values
    failed = 0
    for rec in page:
        client_id = client_of(rec)
        if client_id is None:
            continue
        try:
            values = _values(rec, field)
        except IntegrityError:
            failed += 1
            continue
        if values:
            owners.append((rec, len(values)))
            items.extend((client_id, v) for v in values)
    if not items:
        return RewrapReport(failed=failed)
    results = await sealer.rewrap_many(firm_id, items)
    updates: dict[str, tuple[Record, int]] = {}
    pos = 0
    for rec, count in owners:
        chunk = results[pos : pos + count]
        originals = items[pos : pos + count]
        pos += count
        new_values: list[bytes] = []
        changed = 0
        for res, (_, old) in zip(chunk, originals, strict=True):
            if isinstance(res, IntegrityError):
                failed += 1
                new_values.append(old)
            else:
                if res is not old:
                    changed += 1
                new_values.append(res)
        if changed:
            updates[rec.id] = (_replace(rec, field, new_values), changed)
    examined = len(items)
    if not updates:
        return RewrapReport(examined=examined, failed=failed)
    conflicts = rewrapped = 0
    try:
        async with store.transaction(firm_id) as tx:
            current = await tx.get_many(kind, list(updates))
            fresh: list[Record] = []
            for rec_id, (new, changed) in updates.items():
                now = current.get(rec_id)
                if now is None or now.version != new.version:
                    conflicts += changed
                else:
                    fresh.append(new)
                    rewrapped += changed
            if fresh:
                await tx.update(fresh)
    except ConflictError:
        conflicts += rewrapped
        rewrapped = 0
    return RewrapReport(examined=examined, rewrapped=rewrapped, failed=failed, conflicts=conflicts)
