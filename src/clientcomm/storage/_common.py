"""Small pieces shared by the bundled Store backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

from clientcomm.errors import InvalidInputError
from clientcomm.storage.base import Record, Store, validate_created_range, validate_record


def check_own(record: Record, firm_id: str) -> None:
    """Validate ``record`` and make sure it belongs to the transaction's firm."""
    validate_record(record)
    if record.firm_id != firm_id:
        raise InvalidInputError("firm_id", "record belongs to another firm than the transaction")


async def iterate_pages(
    store: Store,
    firm_id: str,
    kind: str,
    *,
    parent: str | None,
    status: str | None,
    ref: str | None,
    created_from: datetime | None,
    created_before: datetime | None,
    batch: int,
) -> AsyncIterator[Record]:
    """Stream records page by page, one short transaction per page."""
    if batch <= 0:
        raise InvalidInputError("batch", "must be positive")
    validate_created_range(created_from, created_before)
    after = 0
    while True:
        async with store.transaction(firm_id) as tx:
            page = await tx.list(
                kind,
                parent=parent,
                status=status,
                ref=ref,
                created_from=created_from,
                created_before=created_before,
                after_seq=after,
                limit=batch,
            )
        for rec in page:
            yield rec
        if len(page) < batch:
            return
        after = page[-1].seq


def with_version(r: Record, version: int) -> Record:
    """``r.evolve(version=version)``, several times faster (hot path of updates)."""
    return Record(
        kind=r.kind,
        id=r.id,
        firm_id=r.firm_id,
        parent=r.parent,
        ref=r.ref,
        key=r.key,
        status=r.status,
        due_at=r.due_at,
        data=r.data,
        body=r.body,
        seq=r.seq,
        version=version,
        lease_owner=r.lease_owner,
        lease_until=r.lease_until,
        created_at=r.created_at,
    )
