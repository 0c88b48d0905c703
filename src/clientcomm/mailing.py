"""Mass mailing (seed 000): one message to many clients, each getting its own
encrypted copy in its own chat, sent in the background.

Flow:

1. :meth:`MailingService.submit` validates, authorises, resolves and freezes the
   recipient list, stages the (sealed) text and attachments and writes the
   mailing, one ``mailing.recipient`` outbox record per recipient and an audit
   record — in one transaction — and returns at once.
2. :meth:`MailingService.step` (called by :class:`~clientcomm.worker.Worker` or by
   a host's task queue) claims a batch of due recipients with a lease, seals
   each client's copy, and in **one transaction** writes the copies, their
   notification jobs and marks the recipients delivered. The recipients were
   claimed with a version bump, so a worker that lost its lease (or whose
   recipients were cancelled meanwhile) conflicts and rolls back: no copy is
   lost, none is doubled, whatever instant a worker dies at.
3. :meth:`MailingService.status` / :meth:`MailingService.follow` report progress;
   :meth:`MailingService.cancel` stops recipients not yet reached;
   :meth:`MailingService.ledger` exports the per-recipient delivery ledger.

The staged text and attachments are sealed for a per-mailing staging key
(``mailing:<id>``), which is forgotten once the mailing is completed or
cancelled.
"""

from __future__ import annotations

import asyncio
import csv
import enum
import io
import json
import logging
import os
import socket
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from clientcomm.access import AccessPolicy, RoleAccessPolicy, require_mailing, resolve_staff
from clientcomm.actors import StaffActor
from clientcomm.attachments import (
    BLOB_REF_KIND,
    AttachmentInput,
    AttachmentMode,
    AttachmentStore,
    StagedAttachment,
)
from clientcomm.audience import Audience, ResolvedAudience, resolve_audience
from clientcomm.clock import Clock, SystemClock, utc
from clientcomm.crypto.context import SealContext
from clientcomm.crypto.envelope import OpenRequest, Sealer, SealRequest
from clientcomm.directory.base import Directory
from clientcomm.directory.models import Client, Staff
from clientcomm.errors import ConflictError, IntegrityError, KeyDestroyedError
from clientcomm.messages import build_message_record, text_context, validate_text
from clientcomm.notify.links import LinkTemplates
from clientcomm.notify.models import NotificationEvent, NotificationKind
from clientcomm.notify.outbox import JOB_KIND, notification_jobs, prepare
from clientcomm.notify.rules import client_contact_recipients
from clientcomm.readstate import Author, DefaultReadPolicy, ReadPolicy
from clientcomm.storage.base import Record, Store, Transaction

__all__ = [
    "DeliveryEvent",
    "LedgerEntry",
    "MailingPreview",
    "MailingProgress",
    "MailingReceipt",
    "MailingService",
    "MailingState",
    "RecipientState",
]

log = logging.getLogger("clientcomm.mailing")

MAILING_KIND = "mailing"
RECIPIENT_KIND = "mailing.recipient"
NOTIFY_BATCH_KIND = "mailing.notify"
AUDIT_KIND = "audit"


class MailingState(enum.StrEnum):
    SCHEDULED = "scheduled"
    SENDING = "sending"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class RecipientState(enum.StrEnum):
    QUEUED = "queued"
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    FAILED = "failed"


def staging_owner(mailing_id: str) -> str:
    """The key-provider "client" whose key seals a mailing's staged content."""
    return f"mailing:{mailing_id}"


@attrs.frozen
class MailingPreview:
    """Who would receive: ``count`` and the clients, before sending."""

    count: int
    clients: tuple[Client, ...]
    skipped: tuple[tuple[str, str], ...]  # (client id, reason)


@attrs.frozen
class MailingReceipt:
    id: str
    total: int
    scheduled_at: datetime | None
    skipped: tuple[tuple[str, str], ...]


@attrs.frozen
class MailingProgress:
    """Progress of a mailing at one moment."""

    mailing_id: str
    state: MailingState
    total: int
    delivered: int
    pending: int
    failed: int
    cancelled: int
    skipped: int
    notifications_sent: int = 0
    notifications_pending: int = 0
    notifications_failed: int = 0

    @property
    def done(self) -> bool:
        return self.state in (MailingState.COMPLETED, MailingState.CANCELLED) and not self.pending

    @property
    def fraction(self) -> float:
        return 1.0 if not self.total else (self.total - self.pending) / self.total


@attrs.frozen
class DeliveryEvent:
    """Published to hooks after a recipient's copy is committed (or skipped)."""

    firm_id: str
    mailing_id: str
    client_id: str
    state: RecipientState
    message_id: str | None
    at: datetime


@attrs.frozen
class LedgerEntry:
    """One row of the per-recipient delivery ledger."""

    mailing_id: str
    client_id: str
    state: str
    message_id: str | None
    delivered_at: str | None
    reason: str | None
    notifications_sent: int
    notifications_failed: int
    notifications_pending: int
    notification_errors: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["notification_errors"] = list(self.notification_errors)
        return d


DeliveryHook = Callable[[DeliveryEvent], Awaitable[None] | None]


@attrs.frozen
class _Loaded:
    record: Record
    text: bytes = attrs.field(repr=False)
    staged: tuple[StagedAttachment, ...]


class MailingService:
    """Submit, run, follow, cancel and report mass mailings."""

    def __init__(
        self,
        *,
        store: Store,
        directory: Directory,
        sealer: Sealer,
        attachments: AttachmentStore,
        links: LinkTemplates,
        clock: Clock | None = None,
        access: AccessPolicy | None = None,
        read_policy: ReadPolicy | None = None,
        lease: timedelta = timedelta(seconds=60),
        batch_size: int = 500,
    ) -> None:
        self._store = store
        self._directory = directory
        self._sealer = sealer
        self._attachments = attachments
        self._links = links
        self._clock = clock or SystemClock()
        self._access = access or RoleAccessPolicy()
        self._read = read_policy or DefaultReadPolicy()
        self._lease = lease
        self._batch = batch_size
        self._hooks: list[DeliveryHook] = []
        self._owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._cache: dict[tuple[str, str], _Loaded] = {}
        self._touched: set[tuple[str, str]] = set()

    # -- hooks -----------------------------------------------------------------
    def subscribe(self, hook: DeliveryHook) -> Callable[[], None]:
        """Call ``hook`` with a :class:`DeliveryEvent` after each recipient is
        committed; returns a function that unsubscribes. Exceptions from hooks
        are logged, never propagated into the worker."""
        self._hooks.append(hook)
        return lambda: self._hooks.remove(hook)

    async def _publish(self, events: Sequence[DeliveryEvent]) -> None:
        for hook in list(self._hooks):
            for ev in events:
                try:
                    result = hook(ev)
                    if result is not None:
                        await result
                except Exception:  # a host's hook must not break the worker
                    log.exception("delivery hook failed")

    # -- audience --------------------------------------------------------------
    async def _sender(self, actor: StaffActor) -> Staff:
        staff = await resolve_staff(
            self._directory, actor.firm_id, actor.staff_id, action="mailing.send"
        )
        require_mailing(self._access, staff)
        return staff

    async def _resolve(
        self, actor: StaffActor, audience: Audience
    ) -> tuple[ResolvedAudience, list[Client]]:
        staff = await self._sender(actor)
        groups = await self._directory.list_groups(actor.firm_id)
        clients = list(await self._directory.list_clients(actor.firm_id))
        resolved = resolve_audience(
            audience, sender=staff, policy=self._access, clients=clients, groups=groups
        )
        return resolved, clients

    async def preview(self, actor: StaffActor, audience: Audience) -> MailingPreview:
        """Count and list the recipients ``audience`` resolves to now.

        Raises: as :meth:`submit` (PermissionDeniedError, InvalidInputError,
        NotFoundError); nothing is written.
        """
        resolved, clients = await self._resolve(actor, audience)
        by_id = {c.id: c for c in clients}
        return MailingPreview(
            count=resolved.count,
            clients=tuple(by_id[c] for c in resolved.recipient_ids),
            skipped=tuple((s.client_id, s.reason) for s in resolved.skipped),
        )

    # -- submit ----------------------------------------------------------------
    async def submit(
        self,
        actor: StaffActor,
        audience: Audience,
        text: str,
        *,
        attachments: Sequence[AttachmentInput] = (),
        attachment_mode: AttachmentMode = AttachmentMode.PER_COPY,
        schedule_at: datetime | None = None,
        notify: bool = True,
    ) -> MailingReceipt:
        """Submit a mailing; returns at once (the fan-out runs in the background).

        Raises:
            PermissionDeniedError: the sender may not send mailings, or picked
                clients outside their access (``offending_ids``); nothing is written.
            InvalidInputError: empty text, empty audience, groups in a firm
                without groups, unknown groups, bad attachments, a naive
                ``schedule_at`` (a past one means "send now").
            NotFoundError: picked clients that do not exist.
        """
        validate_text(text)
        prepared = self._attachments.prepare(attachments)
        now = self._clock.now()
        if schedule_at is not None:
            schedule_at = utc(schedule_at)
            if schedule_at <= now:
                schedule_at = None  # due already: send now
        resolved, _ = await self._resolve(actor, audience)
        firm_id = actor.firm_id
        mailing_id = uuid.uuid4().hex
        owner = staging_owner(mailing_id)
        [sealed_text] = await self._sealer.seal_many(
            [
                SealRequest(
                    SealContext(firm_id, owner, MAILING_KIND, mailing_id, "text"), text.encode()
                )
            ]
        )
        staged = await self._attachments.stage(
            firm_id, owner, mailing_id, prepared, attachment_mode
        )
        try:
            mailing = Record(
                kind=MAILING_KIND,
                id=mailing_id,
                firm_id=firm_id,
                status=(MailingState.SCHEDULED if schedule_at else MailingState.SENDING).value,
                body=sealed_text,
                data={
                    "sender": actor.staff_id,
                    "audience": audience.to_dict(),
                    "total": resolved.count,
                    "mode": attachment_mode.value,
                    "attachments": [s.to_dict() for s in staged],
                    "notify": notify,
                    "scheduled_at": schedule_at.isoformat() if schedule_at else None,
                },
                created_at=now,
            )

            def recipients(ids: Sequence[str]) -> list[Record]:
                return [
                    Record(
                        kind=RECIPIENT_KIND,
                        id=f"{mailing_id}:{cid}",
                        firm_id=firm_id,
                        parent=mailing_id,
                        status=RecipientState.QUEUED.value,
                        due_at=schedule_at,
                        data={"client_id": cid},
                        created_at=now,
                    )
                    for cid in ids
                ]

            skipped = [
                Record(
                    kind=RECIPIENT_KIND,
                    id=f"{mailing_id}:{s.client_id}",
                    firm_id=firm_id,
                    parent=mailing_id,
                    status=RecipientState.SKIPPED.value,
                    data={"client_id": s.client_id, "reason": s.reason},
                    created_at=now,
                )
                for s in resolved.skipped
            ]
            audit = Record(
                kind=AUDIT_KIND,
                id=uuid.uuid4().hex,
                firm_id=firm_id,
                parent=f"mailing:{mailing_id}",
                status="mailing.submitted",
                data={
                    "actor": actor.staff_id,
                    "at": now.isoformat(),
                    "audience": audience.to_dict(),
                    "recipient_count": resolved.count,
                    "attachment_count": len(staged),
                    "scheduled_at": schedule_at.isoformat() if schedule_at else None,
                },
                created_at=now,
            )
            async with self._store.transaction(firm_id) as tx:
                await tx.insert([mailing, audit, *skipped])
                ids = resolved.recipient_ids
                for i in range(0, len(ids), 5000):  # built chunk by chunk: bounded memory
                    await tx.insert(recipients(ids[i : i + 5000]))
        except BaseException:
            await self._attachments.discard_staged(firm_id, staged, force=True)
            raise
        return MailingReceipt(
            id=mailing_id,
            total=resolved.count,
            scheduled_at=schedule_at,
            skipped=tuple((s.client_id, s.reason) for s in resolved.skipped),
        )

    # -- fan-out -----------------------------------------------------------------
    async def _load(self, firm_id: str, mailing_id: str) -> _Loaded | None:
        key = (firm_id, mailing_id)
        async with self._store.transaction(firm_id) as tx:
            record = await tx.find(MAILING_KIND, mailing_id)
        if record is None:
            self._cache.pop(key, None)
            return None
        cached = self._cache.get(key)
        if cached is not None and cached.record.version == record.version:
            return cached
        if record.status not in (MailingState.SENDING, MailingState.SCHEDULED):
            self._cache.pop(key, None)
            return _Loaded(record, b"", ())
        owner = staging_owner(mailing_id)
        [text] = await self._sealer.open_many(
            [
                OpenRequest(
                    SealContext(firm_id, owner, MAILING_KIND, mailing_id, "text"),
                    record.body or b"",
                )
            ]
        )
        staged = tuple(StagedAttachment.from_dict(a) for a in record.data.get("attachments", ()))
        loaded = _Loaded(record, text, staged)
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[key] = loaded
        return loaded

    async def step(self, *, limit: int | None = None) -> int:
        """Claim and deliver one batch of due recipients (any firm, any mailing).

        Returns how many recipients were finished (delivered, cancelled or
        failed). A host's task queue can call this repeatedly; 0 means idle.
        """
        now = self._clock.now()
        batch = limit or self._batch
        claimed = await self._store.claim(
            RECIPIENT_KIND,
            status=RecipientState.QUEUED.value,
            owner=self._owner,
            now=now,
            lease=self._lease,
            limit=batch,
        )
        groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
        for r in claimed:
            groups[(r.firm_id, r.parent or "")].append(r)
        done = 0
        for (firm_id, mailing_id), items in groups.items():
            self._touched.add((firm_id, mailing_id))
            done += await self._deliver(firm_id, mailing_id, items)
        if len(claimed) < batch:
            # The queue looks drained: complete the mailings this worker worked on.
            touched, self._touched = self._touched, set()
            if not claimed:
                # Idle: also pick up mailings whose last batch another (maybe dead)
                # worker finished. The short lease keeps workers from all checking.
                stale = await self._store.claim(
                    MAILING_KIND,
                    status=MailingState.SENDING.value,
                    owner=self._owner,
                    now=now,
                    lease=self._lease,
                    limit=20,
                )
                touched |= {(m.firm_id, m.id) for m in stale}
            for firm_id, mailing_id in touched:
                await self._maybe_complete(firm_id, mailing_id)
        return done

    async def _deliver(self, firm_id: str, mailing_id: str, items: list[Record]) -> int:
        now = self._clock.now()
        try:
            loaded = await self._load(firm_id, mailing_id)
        except IntegrityError:
            loaded = None  # staging key forgotten: the mailing was cancelled meanwhile
        if loaded is None or loaded.record.status not in (
            MailingState.SENDING.value,
            MailingState.SCHEDULED.value,
        ):
            return await self._finish_unsent(firm_id, items, RecipientState.CANCELLED, now)
        mailing = loaded.record
        client_ids = [r.data["client_id"] for r in items]
        message_ids = [os.urandom(16).hex() for _ in items]
        try:
            sealed = await self._sealer.seal_many(
                [
                    SealRequest(text_context(firm_id, cid, mid), loaded.text)
                    for cid, mid in zip(client_ids, message_ids, strict=True)
                ]
            )
            copies = await self._attachments.copies(
                firm_id,
                staging_owner(mailing_id),
                loaded.staged,
                list(zip(client_ids, message_ids, strict=True)),
            )
        except KeyDestroyedError as exc:
            # Forgotten clients (crypto-shredded after submit) can never receive:
            # record them as failed and deliver the rest of the batch.
            gone = set(exc.context.get("client_ids", ())) & set(client_ids)
            if not gone:  # the staging key itself: the mailing was cancelled
                return await self._finish_unsent(firm_id, items, RecipientState.CANCELLED, now)
            failed = await self._finish_unsent(
                firm_id,
                [r for r in items if r.data["client_id"] in gone],
                RecipientState.FAILED,
                now,
                reason="key_destroyed",
            )
            rest = [r for r in items if r.data["client_id"] not in gone]
            return failed + (await self._deliver(firm_id, mailing_id, rest) if rest else 0)
        unread_for = self._read.unread_for(Author.STAFF, via_mailing=True)
        sender = str(mailing.data["sender"])
        messages: list[Record] = []
        for cid, mid, body in zip(client_ids, message_ids, sealed, strict=True):
            messages.append(
                build_message_record(
                    firm_id=firm_id,
                    client_id=cid,
                    message_id=mid,
                    sealed_text=body,
                    author=Author.STAFF,
                    author_id=sender,
                    unread_for=unread_for,
                    sent_at=now,
                    attachments=copies.stored.get(cid, ()),
                    mailing_id=mailing_id,
                )
            )
        notify_batch: Record | None = None
        if mailing.data.get("notify", True):
            # One durable record names this batch's copies; notify_step() expands it
            # into per-contact e-mail jobs later, exactly once.
            notify_batch = Record(
                kind=NOTIFY_BATCH_KIND,
                id=uuid.uuid4().hex,
                firm_id=firm_id,
                parent=mailing_id,
                status="pending",
                data={"items": [[c, m] for c, m in zip(client_ids, message_ids, strict=True)]},
                created_at=now,
            )
        delivered_at = now.isoformat()
        batch_id = notify_batch.id if notify_batch is not None else None
        finished = [
            Record(
                kind=RECIPIENT_KIND,
                id=r.id,
                firm_id=firm_id,
                parent=mailing_id,
                status=RecipientState.DELIVERED.value,
                data={
                    "client_id": cid,
                    "message_id": mid,
                    "delivered_at": delivered_at,
                    "notify_batch": batch_id,
                },
                version=r.version,
                created_at=r.created_at,
            )
            for r, cid, mid in zip(items, client_ids, message_ids, strict=True)
        ]
        try:
            async with self._store.transaction(firm_id) as tx:
                await tx.insert(messages)
                if copies.refs:
                    await tx.insert(copies.refs)
                if notify_batch is not None:
                    await tx.insert([notify_batch])
                await tx.update(finished)
                if mailing.status == MailingState.SCHEDULED.value:
                    await self._set_state(tx, mailing_id, MailingState.SENDING)
        except BaseException as exc:
            # Nothing of ours landed: drop the blobs written for this batch.
            await self._attachments.discard(firm_id, [a for v in copies.stored.values() for a in v])
            if not isinstance(exc, ConflictError):
                raise
            log.info(
                "mailing %s: batch of %d rolled back (lease lost or cancelled)",
                mailing_id,
                len(items),
            )
            return 0
        await self._publish(
            [
                DeliveryEvent(firm_id, mailing_id, cid, RecipientState.DELIVERED, mid, now)
                for cid, mid in zip(client_ids, message_ids, strict=True)
            ]
        )
        return len(items)

    async def notify_step(self, *, limit: int = 20) -> int:
        """Expand delivered batches into per-contact notification jobs (the
        client's registered contacts, seed 000/001), exactly once: the jobs and
        the batch's "done" mark are written in one transaction. Returns how many
        copies were handled; the outbox worker then sends the e-mails."""
        now = self._clock.now()
        batches = await self._store.claim(
            NOTIFY_BATCH_KIND,
            status="pending",
            owner=self._owner,
            now=now,
            lease=self._lease,
            limit=limit,
        )
        done = 0
        for batch in batches:
            pairs = [(str(c), str(m)) for c, m in batch.data["items"]]
            jobs = await self._notification_jobs(
                batch.firm_id,
                batch.parent or "",
                [c for c, _ in pairs],
                [m for _, m in pairs],
                now,
            )
            try:
                async with self._store.transaction(batch.firm_id) as tx:
                    await tx.insert([j for js in jobs.values() for j in js])
                    await tx.update(
                        [
                            batch.evolve(
                                status="done",
                                lease_owner=None,
                                lease_until=None,
                                data={
                                    **batch.data,
                                    "jobs": {m: [j.id for j in jobs.get(c, ())] for c, m in pairs},
                                },
                            )
                        ]
                    )
            except ConflictError:
                continue  # another worker took it over
            done += len(pairs)
        return done

    async def _notification_jobs(
        self,
        firm_id: str,
        mailing_id: str,
        client_ids: Sequence[str],
        message_ids: Sequence[str],
        now: datetime,
    ) -> dict[str, list[Record]]:
        firm = await self._directory.get_firm(firm_id)
        contacts = await self._directory.list_contacts(firm_id, client_ids)
        jobs: dict[str, list[Record]] = {}
        for cid, mid in zip(client_ids, message_ids, strict=True):
            event = NotificationEvent(
                kind=NotificationKind.NEW_MESSAGE,
                firm_id=firm_id,
                firm_name=firm.name,
                event_id=mailing_id,
                cause_id=mid,
                client_id=cid,
            )
            plan = client_contact_recipients(contacts.get(cid, ()))
            jobs[cid] = notification_jobs(prepare(event, plan, self._links), now=now)
        return jobs

    async def _finish_unsent(
        self,
        firm_id: str,
        items: Sequence[Record],
        state: RecipientState,
        now: datetime,
        *,
        reason: str | None = None,
    ) -> int:
        try:
            async with self._store.transaction(firm_id) as tx:
                await tx.update(
                    [
                        r.evolve(
                            status=state.value,
                            lease_owner=None,
                            lease_until=None,
                            data={**r.data, "reason": reason or state.value},
                        )
                        for r in items
                    ]
                )
        except ConflictError:
            return 0
        await self._publish(
            [
                DeliveryEvent(firm_id, r.parent or "", r.data["client_id"], state, None, now)
                for r in items
            ]
        )
        return len(items)

    async def _set_state(
        self, tx: Transaction, mailing_id: str, state: MailingState, **extra: Any
    ) -> None:
        cur = await tx.get(MAILING_KIND, mailing_id)
        await tx.update([cur.evolve(status=state.value, data={**cur.data, **extra})])

    async def _maybe_complete(self, firm_id: str, mailing_id: str) -> None:
        try:
            async with self._store.transaction(firm_id) as tx:
                cur = await tx.find(MAILING_KIND, mailing_id)
                if cur is None or cur.status != MailingState.SENDING.value:
                    return
                if await tx.count(
                    RECIPIENT_KIND, parent=mailing_id, status=RecipientState.QUEUED.value
                ):
                    return
                await tx.update(
                    [
                        cur.evolve(
                            status=MailingState.COMPLETED.value,
                            data={**cur.data, "completed_at": self._clock.now().isoformat()},
                        )
                    ]
                )
        except ConflictError:
            return
        await self._release_staging(firm_id, mailing_id)

    async def _release_staging(self, firm_id: str, mailing_id: str) -> None:
        """Drop what only the mailing needed: staged per-copy blobs, shared blobs
        nobody received, and the staging key (crypto-shredding the staged text)."""
        async with self._store.transaction(firm_id) as tx:
            cur = await tx.find(MAILING_KIND, mailing_id)
            staged = [
                StagedAttachment.from_dict(a)
                for a in (cur.data.get("attachments", ()) if cur else ())
            ]
            unreferenced = [
                s
                for s in staged
                if s.mode is AttachmentMode.PER_COPY
                or not await tx.count(BLOB_REF_KIND, parent=s.blob_id)
            ]
        await self._attachments.discard_staged(firm_id, unreferenced, force=True)
        await self._sealer.provider.forget(firm_id, staging_owner(mailing_id))
        self._cache.pop((firm_id, mailing_id), None)

    # -- cancel ----------------------------------------------------------------
    async def cancel(self, actor: StaffActor, mailing_id: str) -> MailingProgress:
        """Cancel a mailing: recipients not yet reached get nothing.

        Raises:
            PermissionDeniedError: the actor may not send mailings.
            NotFoundError: unknown mailing (or another firm's).
            ConflictError: the mailing is already completed or cancelled.
        """
        await self._sender(actor)
        firm_id = actor.firm_id
        now = self._clock.now()
        while True:
            try:
                async with self._store.transaction(firm_id) as tx:
                    cur = await tx.get(MAILING_KIND, mailing_id)
                    if cur.status not in (MailingState.SENDING.value, MailingState.SCHEDULED.value):
                        raise ConflictError(
                            f"mailing {mailing_id} is already {cur.status}",
                            state=cur.status,
                            final=True,
                        )
                    await tx.update(
                        [
                            cur.evolve(
                                status=MailingState.CANCELLED.value,
                                data={
                                    **cur.data,
                                    "cancelled_at": now.isoformat(),
                                    "cancelled_by": actor.staff_id,
                                },
                            )
                        ]
                    )
                    while True:
                        queued = await tx.list(
                            RECIPIENT_KIND,
                            parent=mailing_id,
                            status=RecipientState.QUEUED.value,
                            limit=2000,
                        )
                        if not queued:
                            break
                        await tx.update(
                            [
                                r.evolve(
                                    status=RecipientState.CANCELLED.value,
                                    lease_owner=None,
                                    lease_until=None,
                                    data={**r.data, "reason": "cancelled"},
                                )
                                for r in queued
                            ]
                        )
                    await tx.insert(
                        [
                            Record(
                                kind=AUDIT_KIND,
                                id=uuid.uuid4().hex,
                                firm_id=firm_id,
                                parent=f"mailing:{mailing_id}",
                                status="mailing.cancelled",
                                data={"actor": actor.staff_id, "at": now.isoformat()},
                                created_at=now,
                            )
                        ]
                    )
                break
            except ConflictError as exc:
                if exc.context.get("final"):
                    raise
                continue  # a worker finished some recipients meanwhile: retry
        await self._release_staging(firm_id, mailing_id)
        return await self.status(actor, mailing_id)

    # -- progress ------------------------------------------------------------------
    async def status(self, actor: StaffActor, mailing_id: str) -> MailingProgress:
        """Progress now: total, delivered, pending, failed, cancelled, skipped, and
        the client notifications' outcomes.

        Raises:
            PermissionDeniedError: the actor may not send mailings.
            NotFoundError: unknown mailing.
        """
        await self._sender(actor)
        return await self._progress(actor.firm_id, mailing_id)

    async def _progress(self, firm_id: str, mailing_id: str) -> MailingProgress:
        async with self._store.transaction(firm_id) as tx:
            cur = await tx.get(MAILING_KIND, mailing_id)
            counts = await tx.count_by_status(RECIPIENT_KIND, parent=mailing_id)
            notes = await tx.count_by_status(JOB_KIND, parent=mailing_id)
            unexpanded = sum(
                len(b.data["items"])
                for b in await tx.list(NOTIFY_BATCH_KIND, parent=mailing_id, status="pending")
            )
        return MailingProgress(
            mailing_id=mailing_id,
            state=MailingState(cur.status or MailingState.SENDING),
            total=int(cur.data["total"]),
            delivered=counts.get(RecipientState.DELIVERED, 0),
            pending=counts.get(RecipientState.QUEUED, 0),
            failed=counts.get(RecipientState.FAILED, 0),
            cancelled=counts.get(RecipientState.CANCELLED, 0),
            skipped=counts.get(RecipientState.SKIPPED, 0),
            notifications_sent=notes.get("sent", 0),
            notifications_pending=notes.get("pending", 0) + unexpanded,
            notifications_failed=notes.get("failed", 0),
        )

    async def follow(
        self, actor: StaffActor, mailing_id: str, *, interval: float = 0.5
    ) -> AsyncIterator[MailingProgress]:
        """Yield progress whenever it changes, until the mailing is done.

        Draw a progress bar from ``progress.fraction``. Polls every ``interval``
        seconds (through the Clock), and wakes early on local deliveries.
        """
        await self._sender(actor)
        wake = asyncio.Event()

        def on_event(ev: DeliveryEvent) -> None:
            if ev.mailing_id == mailing_id:
                wake.set()

        unsubscribe = self.subscribe(on_event)
        try:
            last: MailingProgress | None = None
            while True:
                progress = await self._progress(actor.firm_id, mailing_id)
                if progress != last:
                    yield progress
                    last = progress
                if progress.done:
                    return
                wake.clear()
                sleeper = asyncio.ensure_future(self._clock.sleep(interval))
                waiter = asyncio.ensure_future(wake.wait())
                await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
                for t in (sleeper, waiter):
                    t.cancel()
        finally:
            unsubscribe()

    # -- ledger ------------------------------------------------------------------
    async def ledger(self, actor: StaffActor, mailing_id: str) -> AsyncIterator[LedgerEntry]:
        """Stream the per-recipient delivery ledger (bounded memory).

        Raises:
            PermissionDeniedError / NotFoundError: as :meth:`status`.
        """
        await self._sender(actor)
        firm_id = actor.firm_id
        async with self._store.transaction(firm_id) as tx:
            await tx.get(MAILING_KIND, mailing_id)
        page: list[Record] = []
        async for rec in self._store.iterate(firm_id, RECIPIENT_KIND, parent=mailing_id, batch=500):
            page.append(rec)
            if len(page) == 500:
                for entry in await self._ledger_page(firm_id, mailing_id, page):
                    yield entry
                page = []
        for entry in await self._ledger_page(firm_id, mailing_id, page):
            yield entry

    async def _ledger_page(
        self, firm_id: str, mailing_id: str, page: Sequence[Record]
    ) -> list[LedgerEntry]:
        if not page:
            return []
        message_ids = [r.data.get("message_id") for r in page]
        async with self._store.transaction(firm_id) as tx:
            batch_ids = {r.data["notify_batch"] for r in page if r.data.get("notify_batch")}
            batches = await tx.get_many(NOTIFY_BATCH_KIND, batch_ids)
            job_ids: dict[str, list[str]] = {}
            for b in batches.values():
                job_ids.update(b.data.get("jobs", {}))
            found = await tx.get_many(JOB_KIND, [j for ids in job_ids.values() for j in ids])
        jobs: dict[str, list[Record]] = {
            mid or "": [found[j] for j in job_ids.get(mid or "", ()) if j in found]
            for mid in message_ids
        }
        return [
            LedgerEntry(
                mailing_id=mailing_id,
                client_id=r.data["client_id"],
                state=r.status or "",
                message_id=mid,
                delivered_at=r.data.get("delivered_at"),
                reason=r.data.get("reason"),
                notifications_sent=sum(1 for j in jobs[mid or ""] if j.status == "sent"),
                notifications_failed=sum(1 for j in jobs[mid or ""] if j.status == "failed"),
                notifications_pending=sum(1 for j in jobs[mid or ""] if j.status == "pending"),
                notification_errors=tuple(
                    str(j.data.get("error", {}).get("reason"))
                    for j in jobs[mid or ""]
                    if j.status == "failed"
                ),
            )
            for r, mid in zip(page, message_ids, strict=True)
        ]

    async def export_csv(self, actor: StaffActor, mailing_id: str) -> AsyncIterator[str]:
        """The ledger as CSV text, streamed line by line (header first)."""
        await self._sender(actor)
        async with self._store.transaction(actor.firm_id) as tx:
            await tx.get(MAILING_KIND, mailing_id)  # NotFoundError before any output
        fields = [f.name for f in attrs.fields(LedgerEntry)]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        yield buf.getvalue()
        async for entry in self.ledger(actor, mailing_id):
            buf.seek(0)
            buf.truncate()
            row = entry.to_dict()
            row["notification_errors"] = ";".join(entry.notification_errors)
            writer.writerow(row)
            yield buf.getvalue()

    async def export_jsonl(self, actor: StaffActor, mailing_id: str) -> AsyncIterator[str]:
        """The ledger as JSON lines, streamed."""
        async for entry in self.ledger(actor, mailing_id):
            yield json.dumps(entry.to_dict(), ensure_ascii=False) + "\n"
