"""Notification fan-out: "notify the contacts of these clients about event E".

A capability that notifies many clients at once (a mailing's fan-out step, a
share, a serial letter's release, an announcement) writes **one**
:class:`FanoutBatch` in the transaction of its own change, naming the clients
and what each is notified about (the cause, e.g. the copy's message id). The
``notifications.expand`` step later expands each batch into per-contact outbox
jobs (the client's contacts with portal access and an address, seeds 000/001)
exactly once: the jobs and the batch's ``done`` mark are written in one
transaction, and the batch was claimed with a lease, so a worker that dies
half-way leaves the batch to the next one.

A batch that cannot be expanded (its firm is gone, a link template is missing,
a Directory value that can never be rendered) is marked ``failed`` with a
reason, alone; the other batches claimed with it proceed.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

import attrs

from clientcomm.directory.base import Directory
from clientcomm.errors import ClientCommError, ConflictError, InvalidInputError, StorageError
from clientcomm.ids import new_id
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.models import NotificationEvent, NotificationKind
from clientcomm.notifications.outbox import notification_jobs, prepare, write_jobs
from clientcomm.notifications.records import NotifyJob
from clientcomm.notifications.rules import client_contact_recipients
from clientcomm.records import REGISTRY, Kind, Meta, Records, meta_field
from clientcomm.storage.base import Store

__all__ = [
    "FANOUT_KIND",
    "FanoutBatch",
    "FanoutStatus",
    "expand_due",
    "fanout_batch",
]

log = logging.getLogger("clientcomm.notifications")

FANOUT_KIND = "notify.fanout"


class FanoutStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


@attrs.frozen
class FanoutBatch:
    """Clients to notify about one event (see module docs).

    ``client_ids[i]`` is notified about ``cause_ids[i]`` (e.g. its copy's
    message id); two flat tuples, so a batch of 500 costs no object per item.
    ``jobs`` maps each cause to the outbox job ids it expanded to (filled in
    when expanded), so reports find a recipient's notices without a scan.
    """

    id: str
    event_id: str
    kind: NotificationKind
    client_ids: tuple[str, ...]
    cause_ids: tuple[str, ...]
    created_at: datetime
    status: FanoutStatus = FanoutStatus.PENDING
    jobs: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    reason: str | None = None
    meta: Meta = meta_field()

    @property
    def items(self) -> list[tuple[str, str]]:
        """``(client_id, cause_id)`` pairs."""
        return list(zip(self.client_ids, self.cause_ids, strict=True))

    @property
    def pending_count(self) -> int:
        """Notices not yet expanded (0 once done or failed)."""
        return len(self.client_ids) if self.status is FanoutStatus.PENDING else 0


FANOUT = REGISTRY.register(
    Kind(
        FANOUT_KIND,
        FanoutBatch,
        "clients to notify about one event, expanded into outbox jobs once",
        columns={"id": "id", "parent": "event_id", "status": "status", "created_at": "created_at"},
        meanings={"parent": "the event (mailing, share, ...)", "status": "pending/done/failed"},
        status=FanoutStatus,
        integrity={
            "*": "unbound: OPEN - decides who gets a content-free e-mail notice"
            " (not yet authenticated)"
        },
        capability="notifications",
    )
)


def fanout_batch(
    event_id: str,
    kind: NotificationKind,
    items: Sequence[tuple[str, str]],
    *,
    now: datetime,
) -> FanoutBatch:
    """A new batch for ``(client_id, cause_id)`` pairs; insert it in the
    transaction of the change that causes the notices."""
    return FanoutBatch(
        id=new_id(),
        event_id=event_id,
        kind=kind,
        client_ids=tuple(c for c, _ in items),
        cause_ids=tuple(m for _, m in items),
        created_at=now,
    )


async def _expand(
    directory: Directory, links: LinkTemplates, batch: FanoutBatch, now: datetime
) -> tuple[list[NotifyJob], Mapping[str, tuple[str, ...]]]:
    firm_id = batch.meta.firm_id
    firm = await directory.get_firm(firm_id)
    client_ids = list(batch.client_ids)
    contacts = await directory.list_contacts(firm_id, client_ids)
    jobs: list[NotifyJob] = []
    by_cause: dict[str, tuple[str, ...]] = {}
    for client_id, cause_id in batch.items:
        event = NotificationEvent(
            kind=batch.kind,
            firm_id=firm_id,
            firm_name=firm.name,
            event_id=batch.event_id,
            cause_id=cause_id,
            client_id=client_id,
        )
        plan = client_contact_recipients(contacts.get(client_id, ()))
        made = notification_jobs(prepare(event, plan, links), now=now)
        jobs.extend(made)
        by_cause[cause_id] = tuple(j.id for j in made)
    return jobs, by_cause


async def expand_due(
    store: Store,
    directory: Directory,
    links: LinkTemplates,
    *,
    owner: str,
    now: datetime,
    lease: timedelta = timedelta(seconds=60),
    limit: int = 20,
) -> int:
    """Expand up to ``limit`` pending batches (any firm) into outbox jobs.
    Returns how many notices were handled (expanded or failed)."""
    records = Records(store)
    batches, damaged = await records.claim(
        FanoutBatch, status=FanoutStatus.PENDING, owner=owner, now=now, lease=lease, limit=limit
    )
    done = 0
    for raw in damaged:  # does not decode: fail it alone, visibly
        async with store.transaction(raw.firm_id) as rtx:
            await rtx.update(
                [raw.evolve(status=FanoutStatus.FAILED.value, lease_owner=None, lease_until=None)]
            )
    for batch in batches:
        settled = attrs.evolve(batch.meta, lease_owner=None, lease_until=None)
        try:
            jobs, by_cause = await _expand(directory, links, batch, now)
            async with records.transaction(batch.meta.firm_id) as tx:
                await write_jobs(tx, jobs)
                await tx.update(
                    [
                        attrs.evolve(
                            batch, status=FanoutStatus.DONE, jobs=dict(by_cause), meta=settled
                        )
                    ]
                )
        except ConflictError:
            continue  # another worker took it over
        except (ClientCommError, UnicodeError, ValueError) as exc:
            # One batch that cannot be expanded or written fails alone, visibly;
            # the other batches claimed with it proceed.
            if isinstance(exc, StorageError):
                raise
            if not await _fail(records, batch, settled, exc):
                continue
        done += len(batch.client_ids)
    return done


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InvalidInputError):
        return f"invalid {exc.field}"[:200]
    return type(exc).__name__


async def _fail(records: Records, batch: FanoutBatch, settled: Meta, exc: BaseException) -> bool:
    """Mark ``batch`` failed with the reason; False if another worker has it."""
    reason = _reason(exc)
    log.error("notification batch %s of %s failed (%s): %s", batch.id, batch.event_id, reason, exc)
    failed = attrs.evolve(batch, status=FanoutStatus.FAILED, reason=reason, meta=settled)
    try:
        async with records.transaction(batch.meta.firm_id) as tx:
            await tx.update([failed])
    except ConflictError:
        return False
    return True
