"""Key rotation over the registry: re-wrap every sealed value of a client.

After a client's key is rotated, every envelope and stream key sealed for it
still opens (old key versions stay until retired), but rotation is only
complete once each is re-wrapped to the newest version. The registry knows
where every kind keeps sealed values (:class:`~clientcomm.records.registry.SealedField`)
and whose key seals them, so one call covers mailing copies, attachments,
mailing staging and every later capability by its declaration alone.

The work is a durable :class:`RewrapJob` with a cursor (kind, last ``seq``),
run in batches by the ``keys.rewrap`` background step: each batch's updates and
the job's advanced cursor commit in one transaction, so a crash resumes where
it stopped, and nothing is re-encrypted (only the wrapped data keys change).
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from clientcomm.audit import append as audit
from clientcomm.crypto.envelope import Sealer
from clientcomm.errors import IntegrityError
from clientcomm.ids import new_id
from clientcomm.records.registry import REGISTRY, Kind, Meta, Registry, meta_field
from clientcomm.records.tx import Records
from clientcomm.steps import Step, each_alone

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = ["REWRAP_KIND", "STEPS", "RewrapJob", "RewrapStatus", "rewrap_job", "run_rewrap_jobs"]

log = logging.getLogger("clientcomm.keys")

REWRAP_KIND = "key.rewrap"


class RewrapStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"


@attrs.frozen
class RewrapJob:
    """Re-wrap the sealed values of one client (or, ``client_id`` None, of every
    owner in the firm) to the newest key versions.

    ``kind`` and ``after_seq`` are the cursor; the counts say what was done:
    ``failed`` values could not be unwrapped (forgotten clients, damaged data)
    and were left untouched; ``conflicts`` were changed concurrently and are
    picked up by the next job.
    """

    id: str
    client_id: str | None
    created_at: datetime
    status: RewrapStatus = RewrapStatus.PENDING
    kind: str | None = None
    after_seq: int = 0
    examined: int = 0
    rewrapped: int = 0
    failed: int = 0
    conflicts: int = 0
    finished_at: datetime | None = None
    meta: Meta = meta_field()


REWRAP = REGISTRY.register(
    Kind(
        REWRAP_KIND,
        RewrapJob,
        "a resumable re-wrap of a client's sealed values after key rotation",
        columns={"id": "id", "status": "status", "created_at": "created_at"},
        meanings={"status": "pending until every sealed kind was walked"},
        status=RewrapStatus,
        integrity={"*": "unbound: job bookkeeping (a re-wrap never changes what opens)"},
        capability="crypto",
    )
)


def rewrap_job(client_id: str | None, *, now: datetime) -> RewrapJob:
    """A new job (insert it, e.g. with :meth:`ClientComm.rotate_client_key`)."""
    return RewrapJob(new_id(), client_id, now)


def _kinds(registry: Registry, client_id: str | None) -> list[Kind[Any]]:
    kinds = registry.sealed_kinds()
    if client_id is None:
        return kinds
    return [k for k in kinds if k.client_column is not None]


async def _batch(
    records: Records, sealer: Sealer, job: RewrapJob, *, now: datetime, batch: int
) -> tuple[RewrapJob, int]:
    """One batch of ``job``; returns the advanced job and how many values were
    examined."""
    firm_id = job.meta.firm_id
    kinds = _kinds(records.registry, job.client_id)
    names = [k.name for k in kinds]
    index = names.index(job.kind) if job.kind in names else 0
    if index >= len(kinds):
        return attrs.evolve(job, status=RewrapStatus.DONE, finished_at=now), 0
    while True:
        kind = kinds[index]
        filters: dict[str, Any] = {}
        if job.client_id is not None and kind.client_column is not None:
            filters[kind.client_column] = job.client_id
        async with records.transaction(firm_id) as tx:
            raw = await tx.raw.list(kind.name, after_seq=job.after_seq, limit=batch, **filters)
        # a kind holding nothing of the job's is passed over in the same batch
        if raw or job.after_seq or index + 1 >= len(kinds):
            break
        index += 1
    values: list[Any] = []
    failed = 0
    for record in raw:
        try:
            values.append(kind.decode(record))
        except IntegrityError:
            failed += 1
    items: list[tuple[str, bytes]] = []
    spans: list[tuple[Any, list[tuple[Any, int]]]] = []
    for value in values:
        owner = kind.owner(value) if kind.owner else None
        if owner is None or (job.client_id is not None and owner != job.client_id):
            continue
        places = []
        for field, found in kind.sealed_values(value):
            places.append((field, len(found)))
            items.extend((owner, v) for v in found)
        spans.append((value, places))
    results = await sealer.rewrap_many(firm_id, items) if items else []
    updates: dict[str, Any] = {}
    changed_count: dict[str, int] = {}
    pos = 0
    for value, places in spans:
        new = value
        changed = 0
        for field, count in places:
            chunk = results[pos : pos + count]
            olds = items[pos : pos + count]
            pos += count
            replaced: list[bytes] = []
            for res, (_, old) in zip(chunk, olds, strict=True):
                if isinstance(res, IntegrityError):
                    failed += 1
                    replaced.append(old)
                else:
                    changed += res is not old
                    replaced.append(res)
            if count:
                new = field.replace(new, replaced)
        if changed:
            updates[kind.id_of(value)] = new
            changed_count[kind.id_of(value)] = changed
    last_seq = raw[-1].seq if raw else job.after_seq
    done_kind = len(raw) < batch
    advanced = attrs.evolve(
        job,
        kind=names[index + 1] if done_kind and index + 1 < len(names) else kind.name,
        after_seq=0 if done_kind else last_seq,
        status=RewrapStatus.DONE if done_kind and index + 1 >= len(names) else job.status,
        finished_at=now if done_kind and index + 1 >= len(names) else None,
        examined=job.examined + len(items),
        failed=job.failed + failed,
        meta=attrs.evolve(job.meta, lease_owner=None, lease_until=None),
    )
    rewrapped = conflicts = 0
    async with records.transaction(firm_id) as tx:
        current = await tx.raw.get_many(kind.name, list(updates))
        fresh = []
        for rec_id, new in updates.items():
            now_rec = current.get(rec_id)
            if now_rec is None or now_rec.version != new.meta.version:
                conflicts += changed_count[rec_id]
            else:
                fresh.append(new)
                rewrapped += changed_count[rec_id]
        if fresh:
            await tx.update(fresh)
        advanced = attrs.evolve(
            advanced,
            rewrapped=job.rewrapped + rewrapped,
            conflicts=job.conflicts + conflicts,
        )
        advanced = await tx.update_one(advanced)
        if advanced.status is RewrapStatus.DONE:
            await audit(
                tx,
                subject=f"key.rewrap:{job.id}",
                operation="keys.rewrapped",
                actor="system",
                at=now,
                client=job.client_id,
                examined=advanced.examined,
                rewrapped=advanced.rewrapped,
                failed=advanced.failed,
                conflicts=advanced.conflicts,
            )
    return advanced, len(items)


async def run_rewrap_jobs(
    records: Records,
    sealer: Sealer,
    *,
    owner: str,
    now: datetime,
    lease: timedelta = timedelta(minutes=5),
    batch: int = 500,
    limit: int = 4,
) -> int:
    """One batch of each of up to ``limit`` due jobs (any firm); returns how
    many values were examined (0: idle). A job whose batch fails is logged and
    retried after its lease; the others go on. A :class:`ConfigurationError`
    (a key that cannot open: the wrong master key) is raised at once."""
    jobs, _ = await records.claim(
        RewrapJob, status=RewrapStatus.PENDING, owner=owner, now=now, lease=lease, limit=limit
    )

    async def run(job: RewrapJob) -> int:
        _, examined = await _batch(records, sealer, job, now=now, batch=batch)
        return max(examined, 1)

    return await each_alone(
        jobs, run, describe=lambda j: f"re-wrap job {j.id} of firm {j.meta.firm_id}", logger=log
    )


async def _step(app: ClientComm, limit: int) -> int:
    return await run_rewrap_jobs(
        Records(app.store), app.sealer, owner=app.worker_id, now=app.clock.now(), batch=limit
    )


STEPS = (Step("keys.rewrap", _step, "re-wrap sealed values to their owners' newest keys"),)
