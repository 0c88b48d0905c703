"""Background work of mass mailing: the ``mailing.fanout`` step.

The step claims a recipient page with a lease, seals each next client's copy,
and in **one transaction** writes the copies, one notification fan-out batch
(:mod:`clientcomm.notifications.fanout`) and the page's advanced cursor. The
page was claimed with a version bump, so a worker that lost its lease (or whose
page was cancelled meanwhile) conflicts and rolls back; a copy's id is derived
from mailing and client, so the store's unique id refuses a second copy
outright. No copy is lost, none is doubled, whatever instant a worker dies at.
One row per recipient is written in the fan-out: its copy.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from clientcomm.attachments.models import StoredAttachment
from clientcomm.attachments.service import Copies
from clientcomm.audit import append as audit
from clientcomm.crypto.context import SealContext
from clientcomm.crypto.envelope import OpenRequest, SealRequest
from clientcomm.errors import ConflictError, IntegrityError, InvalidInputError, KeyDestroyedError
from clientcomm.ids import worker_id
from clientcomm.mailing.models import DeliveryEvent, MailingState, RecipientState
from clientcomm.mailing.records import (
    MAILING_KIND,
    MailingRecord,
    PageState,
    RecipientPage,
    staging_owner,
)
from clientcomm.mailing.rules import advance_page, cancel_page, copy_message_id
from clientcomm.messages.records import MessageRecord
from clientcomm.messages.rules import text_contexts
from clientcomm.notifications.fanout import fanout_batch
from clientcomm.notifications.models import NotificationKind
from clientcomm.rules.readstate import Author
from clientcomm.steps import Step

if TYPE_CHECKING:
    from clientcomm.app import ClientComm
    from clientcomm.mailing.service import MailingService

__all__ = ["STEPS", "MailingFanout"]

log = logging.getLogger("clientcomm.mailing")

_LIVE = (MailingState.SENDING, MailingState.SCHEDULED)


@attrs.frozen
class _Loaded:
    mailing: MailingRecord
    text: bytes = attrs.field(repr=False)


class MailingFanout:
    """The fan-out of one :class:`MailingService` (see module docs)."""

    def __init__(self, service: MailingService) -> None:
        self._svc = service
        self._owner = worker_id("mailing")
        self._cache: dict[tuple[str, str], _Loaded] = {}
        self._touched: set[tuple[str, str]] = set()

    def forget(self, firm_id: str, mailing_id: str) -> None:
        self._cache.pop((firm_id, mailing_id), None)

    async def _load(self, firm_id: str, mailing_id: str) -> _Loaded | None:
        key = (firm_id, mailing_id)
        mailing = await self._svc.records.find(MailingRecord, firm_id, mailing_id)
        if mailing is None:
            self._cache.pop(key, None)
            return None
        cached = self._cache.get(key)
        if cached is not None and cached.mailing.meta.version == mailing.meta.version:
            return cached
        if mailing.status not in _LIVE:
            self._cache.pop(key, None)
            return _Loaded(mailing, b"")
        owner = staging_owner(mailing_id)
        [text] = await self._svc.sealer.open_many(
            [
                OpenRequest(
                    SealContext(firm_id, owner, MAILING_KIND, mailing_id, "text"),
                    mailing.sealed_text,
                )
            ]
        )
        loaded = _Loaded(mailing, text)
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[key] = loaded
        return loaded

    async def step(self, *, limit: int | None = None) -> int:
        """Deliver up to ``limit`` due recipients (any firm, any mailing).

        Claims recipient pages one at a time with a lease and delivers from each
        page's cursor on. Returns how many recipients were finished (delivered,
        failed or cancelled); 0 means idle.

        Raises:
            InvalidInputError: ``limit`` is not positive.
            StorageError: the backend failed (the transaction rolled back).
        """
        svc = self._svc
        budget = svc.batch_size if limit is None else limit
        if budget <= 0:
            raise InvalidInputError("limit", "must be positive")
        done = 0
        claimed_any = False
        drained = False
        conflicts = 0
        while budget > 0:
            claimed, _damaged = await svc.records.claim(
                RecipientPage,
                status=PageState.QUEUED.value,
                owner=self._owner,
                now=svc.clock.now(),
                lease=svc.lease,
                limit=1,
            )
            if not claimed:
                drained = not _damaged
                if drained:
                    break
                continue  # a page that does not decode stays leased, alone
            claimed_any = True
            page = claimed[0]
            self._touched.add((page.meta.firm_id, page.mailing_id))
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
                stale, _ = await svc.records.claim(
                    MailingRecord,
                    status=MailingState.SENDING.value,
                    owner=self._owner,
                    now=svc.clock.now(),
                    lease=svc.lease,
                    limit=20,
                )
                touched |= {(m.meta.firm_id, m.id) for m in stale}
            for firm_id, mailing_id in touched:
                await self._maybe_complete(firm_id, mailing_id)
        return done

    async def _seal_copies(
        self, loaded: _Loaded, firm_id: str, take: Sequence[str]
    ) -> tuple[list[tuple[str, str]], list[bytes], Copies, set[str]] | None:
        """Seal the text (and attachments) for each client in ``take``; clients
        whose keys were destroyed are left out and returned as ``gone``. None
        when the staging key itself is gone (the mailing was cancelled)."""
        svc = self._svc
        mailing_id = loaded.mailing.id
        gone: set[str] = set()
        while True:
            live = [c for c in take if c not in gone] if gone else list(take)
            secret = loaded.mailing.copy_secret
            pairs = [(c, copy_message_id(mailing_id, c, secret)) for c in live]
            try:
                text = loaded.text
                sealed = await svc.sealer.seal_many(
                    [SealRequest(ctx, text) for ctx in text_contexts(firm_id, pairs)]
                )
                copies = await svc.attachments.copies(
                    firm_id, staging_owner(mailing_id), loaded.mailing.attachments, pairs
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

    async def _deliver(self, page: RecipientPage, budget: int) -> int:
        """Deliver up to ``budget`` recipients of a claimed page from its cursor
        on, in one transaction guarded by the page's version."""
        svc = self._svc
        firm_id, mailing_id = page.meta.firm_id, page.mailing_id
        now = svc.clock.now()
        take = page.clients[page.pos : page.pos + budget]
        try:
            loaded = await self._load(firm_id, mailing_id)
        except IntegrityError:
            loaded = None  # staging key forgotten: the mailing was cancelled meanwhile
        if loaded is None or loaded.mailing.status not in _LIVE:
            return await self._cancel_page(page, now)
        mailing = loaded.mailing
        outcome = await self._seal_copies(loaded, firm_id, take)
        if outcome is None:
            return await self._cancel_page(page, now)
        live, sealed, copies, gone = outcome
        unread_for = svc.read_policy.unread_for(Author.STAFF, via_mailing=True)
        stored = copies.stored
        none: tuple[StoredAttachment, ...] = ()
        messages = [
            MessageRecord(
                id=mid,
                client_id=cid,
                unread_for=unread_for,
                sealed_text=body,
                sent_at=now,
                author=Author.STAFF,
                author_id=mailing.sender,
                attachments=stored.get(cid, none),
                mailing_id=mailing_id,
            )
            for (cid, mid), body in zip(live, sealed, strict=True)
        ]
        batch = None
        if live and mailing.notify:
            # One durable batch names this step's copies; notifications.expand
            # turns it into per-contact e-mail jobs later, exactly once.
            batch = fanout_batch(
                mailing_id,
                NotificationKind.NEW_MESSAGE,
                [(m.client_id, m.id) for m in messages],
                now=now,
            )
        failed = {page.pos + i: "key_destroyed" for i, cid in enumerate(take) if cid in gone}
        moved = advance_page(
            page, taken=len(take), failed=failed, at=now, batch=batch.id if batch else None
        )
        try:
            async with svc.records.transaction(firm_id) as tx:
                if messages:
                    await tx.insert(messages)
                if copies.refs:
                    await tx.insert(copies.refs)
                await svc.attachments.settle(tx, copies.reservation)
                if batch is not None:
                    await tx.insert([batch])
                await tx.update([moved])
                # one audit record per delivered batch (not per copy: the fan-out's cost)
                await audit(
                    tx,
                    subject=f"mailing:{mailing_id}",
                    operation="mailing.delivered",
                    actor="system",
                    at=now,
                    clients=[cid for cid, _ in live],
                    objects=[f"mailing.page:{page.id}"],
                    page=page.id,
                    delivered=len(live),
                    failed=len(gone),
                    failed_clients=sorted(gone),
                )
                if mailing.status is MailingState.SCHEDULED:
                    cur = await tx.get(MailingRecord, mailing_id)
                    await tx.update([attrs.evolve(cur, status=MailingState.SENDING)])
        except BaseException as exc:
            # Nothing of ours landed: drop the blobs written for this batch.
            await svc.attachments.discard(firm_id, copies)
            if not isinstance(exc, ConflictError):
                raise
            log.info(
                "mailing %s: %d recipients rolled back (lease lost or cancelled)",
                mailing_id,
                len(take),
            )
            return 0
        if svc.has_hooks:
            copy_ids = dict(live)
            await svc.publish(
                [
                    DeliveryEvent(
                        firm_id,
                        mailing_id,
                        cid,
                        RecipientState.FAILED if cid in gone else RecipientState.DELIVERED,
                        copy_ids.get(cid),
                        now,
                    )
                    for cid in take
                ]
            )
        return len(take)

    async def _cancel_page(self, page: RecipientPage, now: datetime) -> int:
        """Mark the page's recipients not yet reached as cancelled (the mailing
        was cancelled or is gone); returns how many."""
        svc = self._svc
        try:
            async with svc.records.transaction(page.meta.firm_id) as tx:
                closed = await tx.update_one(cancel_page(page))
        except ConflictError:
            return 0
        if svc.has_hooks:
            await svc.publish(
                [
                    DeliveryEvent(
                        page.meta.firm_id, page.mailing_id, cid, RecipientState.CANCELLED, None, now
                    )
                    for cid in page.clients[page.pos :]
                ]
            )
        return closed.cancelled - page.cancelled

    async def _maybe_complete(self, firm_id: str, mailing_id: str) -> None:
        svc = self._svc
        try:
            async with svc.records.transaction(firm_id) as tx:
                cur = await tx.find(MailingRecord, mailing_id)
                if cur is None or cur.status is not MailingState.SENDING:
                    return
                if await tx.count(RecipientPage, parent=mailing_id, status=PageState.QUEUED.value):
                    return
                completed_at = svc.clock.now()
                await tx.update(
                    [
                        attrs.evolve(
                            cur,
                            status=MailingState.COMPLETED,
                            completed_at=completed_at,
                            meta=attrs.evolve(cur.meta, lease_owner=None, lease_until=None),
                        )
                    ]
                )
                await audit(
                    tx,
                    subject=f"mailing:{mailing_id}",
                    operation="mailing.completed",
                    actor="system",
                    at=completed_at,
                    total=cur.total,
                )
        except ConflictError:
            return
        await svc.release_staging(firm_id, mailing_id)


async def fanout(app: ClientComm, limit: int) -> int:
    """Deliver due mailing copies, page by page (see module docs)."""
    return await app.mailings.fanout.step(limit=limit)


STEPS = (Step("mailing.fanout", fanout, "deliver due mailing copies, page by page"),)
