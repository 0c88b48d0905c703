"""Mass mailing (seed 000): one message to many clients, each getting its own
encrypted copy in its own chat, sent in the background.

Flow:

1. :meth:`MailingService.submit` validates, authorises, resolves and freezes the
   recipient list, stages the (sealed) text and attachments and writes the
   mailing, its recipient *pages* (``mailing.page``: up to ``batch_size`` client
   ids each, with a delivery cursor) and an audit record — in one transaction —
   and returns at once.
2. :meth:`MailingService.step` (called by :class:`~clientcomm.worker.Worker` or by
   a host's task queue) claims a page with a lease, seals each next client's
   copy, and in **one transaction** writes the copies, a notification batch and
   the page's advanced cursor. The page was claimed with a version bump, so a
   worker that lost its lease (or whose page was cancelled meanwhile) conflicts
   and rolls back; a copy's id is derived from mailing and client, so the
   store's unique id refuses a second copy outright. No copy is lost, none is
   doubled, whatever instant a worker dies at. One row per recipient is written
   in the fan-out: its copy.
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
import hashlib
import io
import json
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from clientcomm.actors import StaffActor
from clientcomm.attachments import (
    BLOB_REF_KIND,
    AttachmentInput,
    AttachmentMode,
    AttachmentStore,
    Copies,
    StagedAttachment,
)
from clientcomm.clock import Clock, SystemClock, utc
from clientcomm.crypto.context import SealContext
from clientcomm.crypto.envelope import OpenRequest, Sealer, SealRequest
from clientcomm.directory.base import Directory
from clientcomm.directory.models import Client, Staff
from clientcomm.errors import ConflictError, IntegrityError, InvalidInputError, KeyDestroyedError
from clientcomm.messages import build_message_record, text_contexts, validate_text
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.models import NotificationEvent, NotificationKind
from clientcomm.notifications.outbox import JOB_KIND, notification_jobs, prepare
from clientcomm.notifications.rules import client_contact_recipients
from clientcomm.rules.access import AccessPolicy, RoleAccessPolicy, require_mailing, resolve_staff
from clientcomm.rules.audience import Audience, ResolvedAudience, resolve_audience
from clientcomm.rules.readstate import Author, DefaultReadPolicy, ReadPolicy
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
    "copy_message_id",
]

log = logging.getLogger("clientcomm.mailing")

MAILING_KIND = "mailing"
PAGE_KIND = "mailing.page"
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


class PageState(enum.StrEnum):
    """State of a recipient page (see :func:`_new_page`)."""

    QUEUED = "queued"
    DONE = "done"
    CANCELLED = "cancelled"


def copy_message_id(mailing_id: str, client_id: str) -> str:
    """The id of ``client_id``'s copy of a mailing.

    Derived from the mailing and the client, so the store's unique id is the
    last guard of exactly-once delivery (a second copy cannot be inserted) and
    the ledger needs not store it. It is opaque: 32 hex digits like any message
    id, revealing neither the mailing nor the other recipients.
    """
    digest = hashlib.sha256(f"clientcomm.mailing-copy\x00{mailing_id}\x00{client_id}".encode())
    return digest.hexdigest()[:32]


def _new_page(
    mailing_id: str,
    firm_id: str,
    index: int,
    client_ids: Sequence[str],
    due_at: datetime | None,
    now: datetime,
) -> Record:
    """A page of a mailing's frozen recipient list: the client ids (in ``body``)
    and a cursor with counts (in ``data``). Recipients before ``pos`` were
    reached (delivered, or failed with a reason in ``reasons``); ``segments``
    are ``[end, delivered_at, notify batch id]`` per delivery step."""
    return Record(
        kind=PAGE_KIND,
        id=f"{mailing_id}:{index:06d}",
        firm_id=firm_id,
        parent=mailing_id,
        status=PageState.QUEUED.value,
        due_at=due_at,
        data={
            "n": len(client_ids),
            "pos": 0,
            "delivered": 0,
            "failed": 0,
            "cancelled": 0,
            "reasons": {},
            "segments": [],
        },
        body=json.dumps(list(client_ids), separators=(",", ":")).encode(),
        created_at=now,
    )


def _page_clients(page: Record) -> list[str]:
    clients: list[str] = json.loads(page.body or b"[]")
    return clients


def _cancelled_page(page: Record) -> Record:
    """The page with every recipient not yet reached cancelled."""
    n, pos = int(page.data["n"]), int(page.data["pos"])
    return page.evolve(
        status=PageState.CANCELLED.value,
        lease_owner=None,
        lease_until=None,
        data={**page.data, "cancelled": int(page.data.get("cancelled", 0)) + n - pos},
    )


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
    """Submit, run, follow, cancel and report mass mailings.

    ``batch_size`` is both the number of recipients per page of a submitted
    mailing and the default ``limit`` of :meth:`step`; ``lease`` is how long a
    claimed page stays with one worker before another may take it over.

    Raises:
        InvalidInputError: ``batch_size`` is not a positive integer.
    """

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
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise InvalidInputError("batch_size", "must be a positive number of recipients")
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
        staged, reservation = await self._attachments.stage(
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
                    "skipped": [[s.client_id, s.reason] for s in resolved.skipped],
                },
                created_at=now,
            )

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
            ids = resolved.recipient_ids
            size = self._batch
            async with self._store.transaction(firm_id) as tx:
                await tx.insert([mailing, audit])
                await self._attachments.settle(tx, reservation)
                for first in range(0, len(ids), size * 20):  # built 20 pages at a time
                    await tx.insert(
                        _new_page(
                            mailing_id,
                            firm_id,
                            start // size,
                            ids[start : start + size],
                            schedule_at,
                            now,
                        )
                        for start in range(first, min(first + size * 20, len(ids)), size)
                    )
        except BaseException:
            await self._attachments.discard_staged(
                firm_id, staged, force=True, reservation=reservation
            )
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
        """Deliver up to ``limit`` due recipients (any firm, any mailing).

        Claims recipient pages one at a time with a lease and delivers from each
        page's cursor on. Returns how many recipients were finished (delivered,
        failed or cancelled). A host's task queue can call this repeatedly; 0
        means idle.

        Raises:
            InvalidInputError: ``limit`` is not positive.
            StorageError: the backend failed (the transaction rolled back).
        """
        budget = self._batch if limit is None else limit
        if budget <= 0:
            raise InvalidInputError("limit", "must be positive")
        done = 0
        claimed_any = False
        drained = False
        conflicts = 0
        while budget > 0:
            now = self._clock.now()
            claimed = await self._store.claim(
                PAGE_KIND,
                status=PageState.QUEUED.value,
                owner=self._owner,
                now=now,
                lease=self._lease,
                limit=1,
            )
            if not claimed:
                drained = True
                break
            claimed_any = True
            page = claimed[0]
            self._touched.add((page.firm_id, page.parent or ""))
            finished = await self._deliver(page, budget)
            if finished == 0:
                conflicts += 1  # lease lost or cancelled meanwhile: try another page
                if conflicts > 3:
                    break
            done += finished
            budget -= finished
        if drained:
            # The queue looks drained: complete the mailings this worker worked on.
            touched, self._touched = self._touched, set()
            if not claimed_any:
                # Idle: also pick up mailings whose last page another (maybe dead)
                # worker finished. The short lease keeps workers from all checking.
                stale = await self._store.claim(
                    MAILING_KIND,
                    status=MailingState.SENDING.value,
                    owner=self._owner,
                    now=self._clock.now(),
                    lease=self._lease,
                    limit=20,
                )
                touched |= {(m.firm_id, m.id) for m in stale}
            for firm_id, mailing_id in touched:
                await self._maybe_complete(firm_id, mailing_id)
        return done

    async def _seal_copies(
        self, loaded: _Loaded, firm_id: str, mailing_id: str, take: Sequence[str]
    ) -> tuple[list[tuple[str, str]], list[bytes], Copies, set[str]] | None:
        """Seal the text (and attachments) for each client in ``take``; clients
        whose keys were destroyed are left out and returned as ``gone``. Returns
        ``(client_id, message_id)`` pairs, the sealed texts, the attachment
        copies and ``gone``; None when the staging key itself is gone (the
        mailing was cancelled)."""
        gone: set[str] = set()
        while True:
            live = [c for c in take if c not in gone] if gone else list(take)
            pairs = [(c, copy_message_id(mailing_id, c)) for c in live]
            try:
                text = loaded.text
                sealed = await self._sealer.seal_many(
                    [SealRequest(ctx, text) for ctx in text_contexts(firm_id, pairs)]
                )
                copies = await self._attachments.copies(
                    firm_id, staging_owner(mailing_id), loaded.staged, pairs
                )
            except KeyDestroyedError as exc:
                # Forgotten clients (crypto-shredded after submit) can never receive:
                # they fail alone and the rest of the page is delivered.
                newly = set(exc.context.get("client_ids", ())) & set(live)
                if not newly:  # the staging key itself: the mailing was cancelled
                    return None
                gone |= newly
                continue
            return pairs, sealed, copies, gone

    async def _deliver(self, page: Record, budget: int) -> int:
        """Deliver up to ``budget`` recipients of a claimed page from its cursor
        on: the copies, the notification batch and the page's new cursor are
        written in one transaction, guarded by the page's version (a worker that
        lost its lease, or whose page was cancelled, conflicts and rolls back)."""
        firm_id, mailing_id = page.firm_id, page.parent or ""
        now = self._clock.now()
        state = page.data
        pos = int(state["pos"])
        clients = _page_clients(page)
        take = clients[pos : pos + budget]
        try:
            loaded = await self._load(firm_id, mailing_id)
        except IntegrityError:
            loaded = None  # staging key forgotten: the mailing was cancelled meanwhile
        if loaded is None or loaded.record.status not in (
            MailingState.SENDING.value,
            MailingState.SCHEDULED.value,
        ):
            return await self._cancel_page(page, now)
        mailing = loaded.record
        outcome = await self._seal_copies(loaded, firm_id, mailing_id, take)
        if outcome is None:
            return await self._cancel_page(page, now)
        live, sealed, copies, gone = outcome
        unread_for = self._read.unread_for(Author.STAFF, via_mailing=True)
        sender = str(mailing.data["sender"])
        stored = copies.stored
        shared: dict[str, Any] = {}
        messages = [
            build_message_record(
                firm_id=firm_id,
                client_id=cid,
                message_id=mid,
                sealed_text=body,
                author=Author.STAFF,
                author_id=sender,
                unread_for=unread_for,
                sent_at=now,
                attachments=stored.get(cid, ()),
                mailing_id=mailing_id,
                shared=shared,
            )
            for (cid, mid), body in zip(live, sealed, strict=True)
        ]
        notify_batch: Record | None = None
        if live and mailing.data.get("notify", True):
            # One durable record names this step's copies; notify_step() expands it
            # into per-contact e-mail jobs later, exactly once.
            notify_batch = Record(
                kind=NOTIFY_BATCH_KIND,
                id=uuid.uuid4().hex,
                firm_id=firm_id,
                parent=mailing_id,
                status="pending",
                data={"items": [[m.parent, m.id] for m in messages]},
                created_at=now,
            )
        new_pos = pos + len(take)
        reasons = dict(state.get("reasons", {}))
        for i, cid in enumerate(take):
            if cid in gone:
                reasons[str(pos + i)] = "key_destroyed"
        segment = [new_pos, now.isoformat(), notify_batch.id if notify_batch else None]
        done = new_pos >= len(clients)
        moved = Record(
            kind=PAGE_KIND,
            id=page.id,
            firm_id=firm_id,
            parent=mailing_id,
            status=(PageState.DONE if done else PageState.QUEUED).value,
            due_at=page.due_at,
            data={
                **state,
                "pos": new_pos,
                "delivered": int(state["delivered"]) + len(live),
                "failed": int(state["failed"]) + len(gone),
                "reasons": reasons,
                "segments": [*state.get("segments", ()), segment],
            },
            body=page.body,
            version=page.version,
            created_at=page.created_at,
        )
        try:
            async with self._store.transaction(firm_id) as tx:
                if messages:
                    await tx.insert(messages)
                if copies.refs:
                    await tx.insert(copies.refs)
                await self._attachments.settle(tx, copies.reservation)
                if notify_batch is not None:
                    await tx.insert([notify_batch])
                await tx.update([moved])
                if mailing.status == MailingState.SCHEDULED.value:
                    await self._set_state(tx, mailing_id, MailingState.SENDING)
        except BaseException as exc:
            # Nothing of ours landed: drop the blobs written for this batch.
            await self._attachments.discard(firm_id, copies)
            if not isinstance(exc, ConflictError):
                raise
            log.info(
                "mailing %s: %d recipients rolled back (lease lost or cancelled)",
                mailing_id,
                len(take),
            )
            return 0
        if self._hooks:
            await self._publish(
                [
                    DeliveryEvent(
                        firm_id,
                        mailing_id,
                        cid,
                        RecipientState.FAILED if cid in gone else RecipientState.DELIVERED,
                        None if cid in gone else copy_message_id(mailing_id, cid),
                        now,
                    )
                    for cid in take
                ]
            )
        return len(take)

    async def _cancel_page(self, page: Record, now: datetime) -> int:
        """Mark the page's recipients not yet reached as cancelled (the mailing
        was cancelled or is gone); returns how many."""
        try:
            async with self._store.transaction(page.firm_id) as tx:
                [closed] = await tx.update([_cancelled_page(page)])
        except ConflictError:
            return 0
        clients = _page_clients(page)
        pos = int(page.data["pos"])
        if self._hooks:
            await self._publish(
                [
                    DeliveryEvent(
                        page.firm_id,
                        page.parent or "",
                        cid,
                        RecipientState.CANCELLED,
                        None,
                        now,
                    )
                    for cid in clients[pos:]
                ]
            )
        return int(closed.data["cancelled"]) - int(page.data.get("cancelled", 0))

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
                if await tx.count(PAGE_KIND, parent=mailing_id, status=PageState.QUEUED.value):
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
                            PAGE_KIND, parent=mailing_id, status=PageState.QUEUED.value, limit=200
                        )
                        if not queued:
                            break
                        await tx.update([_cancelled_page(page) for page in queued])
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
        delivered = failed = cancelled = pending = 0
        async with self._store.transaction(firm_id) as tx:
            cur = await tx.get(MAILING_KIND, mailing_id)
            after = 0
            while True:
                pages = await tx.list(PAGE_KIND, parent=mailing_id, after_seq=after, limit=500)
                for page in pages:
                    d = page.data
                    delivered += int(d["delivered"])
                    failed += int(d["failed"])
                    cancelled += int(d["cancelled"])
                    if page.status == PageState.QUEUED.value:
                        pending += int(d["n"]) - int(d["pos"])
                if len(pages) < 500:
                    break
                after = pages[-1].seq
            notes = await tx.count_by_status(JOB_KIND, parent=mailing_id)
            unexpanded = sum(
                len(b.data["items"])
                for b in await tx.list(NOTIFY_BATCH_KIND, parent=mailing_id, status="pending")
            )
        return MailingProgress(
            mailing_id=mailing_id,
            state=MailingState(cur.status or MailingState.SENDING),
            total=int(cur.data["total"]),
            delivered=delivered,
            pending=pending,
            failed=failed,
            cancelled=cancelled,
            skipped=len(cur.data.get("skipped", ())),
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
        """Stream the per-recipient delivery ledger (bounded memory): skipped
        recipients first, then every frozen recipient in order.

        Raises:
            PermissionDeniedError / NotFoundError: as :meth:`status`.
        """
        await self._sender(actor)
        firm_id = actor.firm_id
        async with self._store.transaction(firm_id) as tx:
            mailing = await tx.get(MAILING_KIND, mailing_id)
        for client_id, reason in mailing.data.get("skipped", ()):
            yield LedgerEntry(
                mailing_id=mailing_id,
                client_id=client_id,
                state=RecipientState.SKIPPED.value,
                message_id=None,
                delivered_at=None,
                reason=reason,
                notifications_sent=0,
                notifications_failed=0,
                notifications_pending=0,
                notification_errors=(),
            )
        async for page in self._store.iterate(firm_id, PAGE_KIND, parent=mailing_id, batch=20):
            for entry in await self._ledger_page(firm_id, mailing_id, page):
                yield entry

    async def _ledger_page(self, firm_id: str, mailing_id: str, page: Record) -> list[LedgerEntry]:
        state = page.data
        pos = int(state["pos"])
        reasons: dict[str, str] = state.get("reasons", {})
        segments: list[list[Any]] = state.get("segments", [])
        async with self._store.transaction(firm_id) as tx:
            batches = await tx.get_many(
                NOTIFY_BATCH_KIND, [str(seg[2]) for seg in segments if seg[2]]
            )
            job_ids: dict[str, list[str]] = {}
            for b in batches.values():
                job_ids.update(b.data.get("jobs", {}))
            found = await tx.get_many(JOB_KIND, [j for ids in job_ids.values() for j in ids])
        cancelled = page.status == PageState.CANCELLED.value
        out: list[LedgerEntry] = []
        seg = 0
        for i, cid in enumerate(_page_clients(page)):
            while seg < len(segments) and i >= int(segments[seg][0]):
                seg += 1
            reached = i < pos
            failed = reached and str(i) in reasons
            mid = copy_message_id(mailing_id, cid) if reached and not failed else None
            jobs = [found[j] for j in job_ids.get(mid or "", ()) if j in found]
            if failed:
                entry_state, reason = RecipientState.FAILED.value, reasons[str(i)]
            elif reached:
                entry_state, reason = RecipientState.DELIVERED.value, None
            elif cancelled:
                entry_state, reason = RecipientState.CANCELLED.value, "cancelled"
            else:
                entry_state, reason = RecipientState.QUEUED.value, None
            out.append(
                LedgerEntry(
                    mailing_id=mailing_id,
                    client_id=cid,
                    state=entry_state,
                    message_id=mid,
                    delivered_at=str(segments[seg][1]) if mid and seg < len(segments) else None,
                    reason=reason,
                    notifications_sent=sum(1 for j in jobs if j.status == "sent"),
                    notifications_failed=sum(1 for j in jobs if j.status == "failed"),
                    notifications_pending=sum(1 for j in jobs if j.status == "pending"),
                    notification_errors=tuple(
                        str(j.data.get("error", {}).get("reason"))
                        for j in jobs
                        if j.status == "failed"
                    ),
                )
            )
        return out

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
