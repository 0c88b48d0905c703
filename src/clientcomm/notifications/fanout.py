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

What decides who is notified (the batch's id, event, kind, client and cause
ids) is covered by a MAC under the firm's notice key
(:mod:`clientcomm.notifications.keys`), written with the batch and checked
before it is expanded: a batch edited in the database (a client id added,
moved from another batch) fails alone with reason ``integrity`` and notifies
nobody. Batches written before 0.2 carry no MAC (see
:class:`~clientcomm.notifications.rules.NoticeKey`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import attrs

from clientcomm.directory.base import Directory
from clientcomm.errors import (
    ClientCommError,
    ConfigurationError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    StorageError,
)
from clientcomm.ids import new_id
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.models import NotificationEvent, NotificationKind
from clientcomm.notifications.outbox import notification_jobs, prepare, write_jobs
from clientcomm.notifications.records import NotifyJob
from clientcomm.notifications.rules import NoticeKey, client_contact_recipients, notice_mac
from clientcomm.records import REGISTRY, Kind, Meta, Records, meta_field, unbound
from clientcomm.storage.base import Store

if TYPE_CHECKING:
    from clientcomm.notifications.keys import NoticeKeys

__all__ = [
    "FANOUT_KIND",
    "FanoutBatch",
    "FanoutStatus",
    "batch_mac",
    "batch_ok",
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
    ``mac`` is :func:`batch_mac` under the firm's notice key (empty: written
    before 0.2).
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
    mac: bytes = attrs.field(default=b"", repr=False)
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
            **{
                a: f"mac: covered by the batch's MAC under the firm's notice key ({what})"
                for a, what in {
                    "id": "the batch",
                    "event_id": "the event its notices belong to",
                    "kind": "what the notices say",
                    "client_ids": "who is notified",
                    "cause_ids": "what each client is notified about",
                }.items()
            },
            "mac": "mac: the MAC itself (a batch without one is refused once the firm has a"
            " notice key; batches before 0.2 have none)",
            **unbound(
                "expansion bookkeeping: the jobs it expanded to carry their own MAC",
                "created_at",
                "status",
                "jobs",
                "reason",
            ),
        },
        capability="notifications",
    )
)


def batch_mac(key: bytes, batch: FanoutBatch) -> bytes:
    """The MAC of what decides a batch's notices: its id, event, kind and the
    ``(client, cause)`` pairs in order (one BLAKE2b per batch)."""
    return notice_mac(
        key,
        "notify-fanout",
        (
            batch.id,
            batch.event_id,
            batch.kind.value,
            str(len(batch.client_ids)),
            *batch.client_ids,
            str(len(batch.cause_ids)),
            *batch.cause_ids,
        ),
    )


def fanout_batch(
    event_id: str,
    kind: NotificationKind,
    items: Sequence[tuple[str, str]],
    *,
    now: datetime,
    key: NoticeKey | None = None,
) -> FanoutBatch:
    """A new batch for ``(client_id, cause_id)`` pairs; insert it in the
    transaction of the change that causes the notices. ``key`` is the firm's
    notice key (:meth:`NoticeKeys.get <clientcomm.notifications.keys.NoticeKeys.get>`,
    fetched before that transaction): the batch is MACed under it. Without a
    key the batch carries no MAC and is refused at expansion once the firm
    has a notice key."""
    batch = FanoutBatch(
        id=new_id(),
        event_id=event_id,
        kind=kind,
        client_ids=tuple([c for c, _ in items]),
        cause_ids=tuple([m for _, m in items]),
        created_at=now,
    )
    if key is not None and key.secret is not None:
        batch = attrs.evolve(batch, mac=batch_mac(key.secret, batch))
    return batch


def batch_ok(key: NoticeKey, batch: FanoutBatch) -> bool:
    """Whether ``batch`` is as it was written (its MAC under ``key``)."""
    return key.ok(batch.mac, batch_mac(key.secret, batch) if key.secret else None)


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
    keys: NoticeKeys | None = None,
) -> int:
    """Expand up to ``limit`` pending batches (any firm) into outbox jobs.
    Returns how many notices were handled (expanded or failed).

    With ``keys`` (the app's :class:`~clientcomm.notifications.keys.NoticeKeys`)
    each batch's MAC is checked first (a batch that does not match fails
    alone, reason ``integrity``) and the jobs are MACed; the firm's key is
    fetched (created on first use) once per call. A firm whose key cannot be
    opened leaves its batches leased (logged): they are retried after the
    lease. Without ``keys`` nothing is checked or MACed (as before 0.2)."""
    records = Records(store)
    batches, damaged = await records.claim(
        FanoutBatch, status=FanoutStatus.PENDING, owner=owner, now=now, lease=lease, limit=limit
    )
    firm_keys: dict[str, NoticeKey | None] = {}
    if keys is not None and batches:
        batches = await _with_keys(records, keys, batches, firm_keys)
    done = 0
    for raw in damaged:  # does not decode: fail it alone, visibly
        async with store.transaction(raw.firm_id) as rtx:
            await rtx.update(
                [raw.evolve(status=FanoutStatus.FAILED.value, lease_owner=None, lease_until=None)]
            )
    for batch in batches:
        settled = attrs.evolve(batch.meta, lease_owner=None, lease_until=None)
        key = firm_keys.get(batch.meta.firm_id)
        if keys is not None:
            if key is None:
                continue  # the firm's key does not open: left leased (logged)
            if not batch_ok(key, batch):
                if await _fail(records, batch, settled, None, "integrity"):
                    done += len(batch.client_ids)
                continue
        try:
            jobs, by_cause = await _expand(directory, links, batch, now)
            async with records.transaction(batch.meta.firm_id) as tx:
                await write_jobs(tx, jobs, key=key)
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


async def _with_keys(
    records: Records,
    keys: NoticeKeys,
    batches: list[FanoutBatch],
    firm_keys: dict[str, NoticeKey | None],
) -> list[FanoutBatch]:
    """Fetch each firm's notice key once (``None``: it cannot be opened). A key
    created just now adopted the firm's batches written before 0.2 (MACed
    them, new versions): those of ``batches`` are read again."""
    out = list(batches)
    for firm_id in dict.fromkeys(b.meta.firm_id for b in batches):
        try:
            key, created = await keys.ensure(firm_id)
        except ConfigurationError:
            raise
        except (IntegrityError, InvalidInputError) as exc:
            log.error("notification batches of firm %s left: notice key: %s", firm_id, exc)
            firm_keys[firm_id] = None
            continue
        firm_keys[firm_id] = key
        if created:
            ids = [b.id for b in out if b.meta.firm_id == firm_id]
            async with records.transaction(firm_id) as tx:
                fresh = await tx.get_many(FanoutBatch, ids, decode_errors="skip")
            out = [fresh.get(b.id, b) if b.meta.firm_id == firm_id else b for b in out]
    return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, InvalidInputError):
        return f"invalid {exc.field}"[:200]
    return type(exc).__name__


async def _fail(
    records: Records,
    batch: FanoutBatch,
    settled: Meta,
    exc: BaseException | None,
    reason: str | None = None,
) -> bool:
    """Mark ``batch`` failed with the reason; False if another worker has it."""
    if reason is None:
        reason = _reason(exc) if exc is not None else "failed"
        log.error(
            "notification batch %s of %s failed (%s): %s", batch.id, batch.event_id, reason, exc
        )
    else:
        log.error(
            "notification batch %s of %s failed (%s): it does not match its MAC (edited?)",
            batch.id,
            batch.event_id,
            reason,
        )
    failed = attrs.evolve(batch, status=FanoutStatus.FAILED, reason=reason, meta=settled)
    try:
        async with records.transaction(batch.meta.firm_id) as tx:
            await tx.update([failed])
    except ConflictError:
        return False
    return True
