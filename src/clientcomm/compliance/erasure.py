"""The erasure job: delete one client's records and blobs over the registry.

Its keys are destroyed first (crypto-shredding, when the job is queued), so
nothing of the client opens any more from that moment. The job then walks every
kind the record registry declares as client data (``Kind.client``), in
resumable batches (cursor: kind, last ``seq``), like the re-wrap job: a kind
with an indexed client column is read by that column, any other kind is read
whole and filtered by ``Kind.client`` of each decoded value. Each batch deletes
the client's records and moves the cursor in one transaction; the blob ids the
deleted records held (``Kind.stream_blobs``) are kept in the job
(``pending_blobs``) in that same transaction and deleted from the BlobStore
right after, and again at the start of the next batch (idempotently), so a
crash anywhere loses neither a record nor a blob. Before it finishes, the job
looks once more for records under the client's column (a mailing copy sealed
just before the keys went and committed after the walk passed) and walks again
if it finds one. A shared attachment blob
another client's copy still references (a ``blob.ref``), or that its mailing
still fans out, stays: only the erased client's wrapped key to it goes. The
last batch writes the tombstone and the ``client.erased`` audit record.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from clientcomm.attachments.records import BlobRef
from clientcomm.audit import append as audit
from clientcomm.compliance.records import ErasureJob, ErasureStatus, Tombstone
from clientcomm.errors import IntegrityError
from clientcomm.messages.records import MessageRecord
from clientcomm.records import Records
from clientcomm.records.registry import Kind
from clientcomm.steps import each_alone

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = ["erasure_kinds", "left_behind", "run_erasure_jobs"]

log = logging.getLogger("clientcomm.compliance")

_END = "~end"  # the cursor after the last kind (no kind name starts with "~")


def erasure_kinds(records: Records) -> list[Kind[Any]]:
    """The kinds an erasure walks: every kind declared as client data, the
    ``blob.ref`` kind first (so that a shared blob's remaining references are
    other clients' when the client's messages are reached)."""
    kinds = records.registry.client_kinds()
    return sorted(kinds, key=lambda k: (k.cls is not BlobRef, k.name))


async def _flush_blobs(app: ClientComm, records: Records, job: ErasureJob) -> ErasureJob:
    """Delete the blobs a committed batch left to delete; returns the job."""
    if not job.pending_blobs:
        return job
    firm_id = job.meta.firm_id
    for blob_id in job.pending_blobs:
        await app.blobs.delete(firm_id, blob_id)
    async with records.transaction(firm_id) as tx:
        return await tx.update_one(
            attrs.evolve(job, pending_blobs=(), blobs=job.blobs + len(job.pending_blobs))
        )


async def left_behind(records: Records, job: ErasureJob) -> bool:
    """Whether a record filed under the client's column exists again (one a
    concurrent writer committed after the walk passed its kind, e.g. a mailing
    copy sealed just before the keys went)."""
    async with records.transaction(job.meta.firm_id) as tx:
        for kind in erasure_kinds(records):
            if kind.client_column is not None:
                filters: dict[str, Any] = {kind.client_column: job.client_id}
                if await tx.raw.list(kind.name, limit=1, **filters):
                    return True
    return False


async def _finish(records: Records, job: ErasureJob, now: datetime) -> ErasureJob:
    done = attrs.evolve(
        job,
        status=ErasureStatus.DONE,
        finished_at=now,
        meta=attrs.evolve(job.meta, lease_owner=None, lease_until=None),
    )
    async with records.transaction(job.meta.firm_id) as tx:
        done = await tx.update_one(done)
        existing = await tx.find(Tombstone, job.client_id)
        if existing is None:
            await tx.insert(
                [
                    Tombstone(
                        job.client_id,
                        job.client_id,
                        now,
                        job.actor,
                        job.reason,
                        job.override,
                        job.retain_until,
                        job.records,
                        job.blobs,
                    )
                ]
            )
        await audit(
            tx,
            subject=f"client:{job.client_id}",
            operation="client.erased",
            actor=job.actor,
            at=now,
            client=job.client_id,
            records=job.records,
            blobs=job.blobs,
            shared_kept=job.shared_kept,
            undecodable=job.undecodable,
            reason=job.reason,
            override=job.override,
        )
    return done


async def _batch(
    app: ClientComm, records: Records, job: ErasureJob, *, now: datetime, batch: int
) -> tuple[ErasureJob, int]:
    """One batch of ``job``; returns the advanced job and how many records it
    looked at (at least 1 when it did anything)."""
    job = await _flush_blobs(app, records, job)
    firm_id, client_id = job.meta.firm_id, job.client_id
    kinds = erasure_kinds(records)
    names = [k.name for k in kinds]
    if job.kind == _END:
        if await left_behind(records, job):  # a write that raced the walk: walk again
            async with records.transaction(firm_id) as tx:
                await tx.update_one(
                    attrs.evolve(
                        job,
                        kind=None,
                        after_seq=0,
                        meta=attrs.evolve(job.meta, lease_owner=None, lease_until=None),
                    )
                )
            return job, 1
        await _finish(records, job, now)
        return job, 1
    index = names.index(job.kind) if job.kind in names else 0
    kind = kinds[index]
    filters: dict[str, Any] = {}
    if kind.client_column is not None:
        filters[kind.client_column] = client_id
    async with records.transaction(firm_id) as tx:
        raw = await tx.raw.list(kind.name, after_seq=job.after_seq, limit=batch, **filters)
        doomed: list[str] = []
        blobs: dict[str, Any] = {}
        undecodable = 0
        for record in raw:
            try:
                value = kind.decode(record)
            except IntegrityError:
                undecodable += 1
                if kind.client_column is not None:  # filed under the client: it goes
                    doomed.append(record.id)
                continue
            if (
                kind.client_column is None
                and kind.client is not None
                and kind.client(value) != client_id
            ):
                continue
            doomed.append(record.id)
            for blob_id in kind.stream_blobs(value):
                blobs.setdefault(blob_id, value)
        if doomed:
            await tx.raw.delete(kind.name, doomed)
        gone: list[str] = []
        kept = 0
        for blob_id, value in blobs.items():
            guarded = (
                await app.messages.blobs_kept(tx, value) if isinstance(value, MessageRecord) else ()
            )
            if blob_id in guarded or await tx.count(BlobRef, parent=blob_id):
                kept += 1  # shared: other copies (or the mailing) still need it
            else:
                gone.append(blob_id)
        done_kind = len(raw) < batch
        advanced = attrs.evolve(
            job,
            kind=(names[index + 1] if index + 1 < len(names) else _END) if done_kind else kind.name,
            after_seq=0 if done_kind else raw[-1].seq,
            records=job.records + len(doomed),
            shared_kept=job.shared_kept + kept,
            undecodable=job.undecodable + undecodable,
            pending_blobs=tuple(dict.fromkeys(gone)),
            meta=attrs.evolve(job.meta, lease_owner=None, lease_until=None),
        )
        advanced = await tx.update_one(advanced)
    advanced = await _flush_blobs(app, records, advanced)
    return advanced, max(len(raw), 1)


async def run_erasure_jobs(
    app: ClientComm,
    *,
    now: datetime,
    lease: timedelta = timedelta(minutes=5),
    batch: int = 500,
    limit: int = 4,
) -> int:
    """One batch of each of up to ``limit`` pending erasure jobs (any firm);
    returns how many records were looked at (0: idle). A job whose batch fails
    is logged and retried after its lease; the others go on."""
    records = Records(app.store)
    jobs, _ = await records.claim(
        ErasureJob,
        status=ErasureStatus.PENDING,
        owner=app.worker_id,
        now=now,
        lease=lease,
        limit=limit,
    )

    async def run(job: ErasureJob) -> int:
        _, looked = await _batch(app, records, job, now=now, batch=batch)
        return looked

    return await each_alone(
        jobs,
        run,
        describe=lambda j: f"erasure of client {j.client_id} of firm {j.meta.firm_id}",
        logger=log,
    )
