"""Mass mailing (seed 000): the host API.

1. :meth:`MailingService.submit` validates, authorises, resolves and freezes the
   recipient list, stages the (sealed) text and attachments and writes the
   mailing, its recipient pages and an audit record in one transaction, and
   returns at once.
2. The ``mailing.fanout`` background step (:mod:`clientcomm.mailing.steps`)
   delivers the copies page by page.
3. :meth:`status` / :meth:`follow` report progress; :meth:`cancel` stops
   recipients not yet reached; :meth:`ledger` and the exports list every
   recipient (:mod:`clientcomm.mailing.ledger`).

The staged text and attachments are sealed for a per-mailing staging key
(``mailing:<id>``), which is forgotten once the mailing is completed or
cancelled. A mailing whose staged text does not open (damaged, not cancelled)
is marked failed and keeps its staging key and staged files; the wrong master
key is a ``ConfigurationError`` out of the fan-out step that changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import Literal

import attrs

from clientcomm.actors import StaffActor
from clientcomm.attachments.models import AttachmentInput, AttachmentMode, StagedAttachment
from clientcomm.attachments.records import BlobRef
from clientcomm.attachments.service import AttachmentStore, BlobReservation
from clientcomm.audit import append as audit
from clientcomm.clock import Clock, SystemClock, utc
from clientcomm.crypto.context import SealContext
from clientcomm.crypto.envelope import Sealer, SealRequest
from clientcomm.directory.base import Directory
from clientcomm.directory.models import Client, Staff
from clientcomm.errors import ConflictError, InvalidInputError, NotFoundError
from clientcomm.ids import new_id
from clientcomm.mailing.ledger import Ledger
from clientcomm.mailing.models import (
    DeliveryEvent,
    DeliveryHook,
    LedgerEntry,
    MailingPreview,
    MailingProgress,
    MailingReceipt,
    MailingState,
    PreviewCopy,
)
from clientcomm.mailing.personalise import (
    ClientFields,
    CopyTemplate,
    Personaliser,
    Unrenderable,
    is_template,
    known_fields,
)
from clientcomm.mailing.records import (
    MAILING_KIND,
    MailingRecord,
    PageState,
    RecipientPage,
    staging_owner,
)
from clientcomm.mailing.rules import cancel_page, encode_staged, mailing_meta, new_pages
from clientcomm.messages.records import MessageRecord
from clientcomm.messages.rules import decode_body, validate_subject, validate_text
from clientcomm.notifications.fanout import FanoutBatch, FanoutStatus
from clientcomm.notifications.keys import NoticeKeys
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.records import NotifyJob
from clientcomm.records import Records, RecordTx, bound
from clientcomm.records.tx import check_lease
from clientcomm.rules.access import AccessPolicy, acting_staff, as_policy
from clientcomm.rules.audience import Audience, ResolvedAudience, resolve_audience
from clientcomm.rules.readstate import DefaultReadPolicy, ReadPolicy
from clientcomm.storage.base import Store

__all__ = ["MailingService"]

log = logging.getLogger("clientcomm.mailing")


def _check_audience(audience: object) -> None:
    if not isinstance(audience, Audience):
        raise InvalidInputError(
            "audience",
            f"must be an Audience (Audience.everyone(), .groups(...), .clients(...)), "
            f"not {type(audience).__name__}",
        )


def _check_schedule(schedule_at: object) -> None:
    if not isinstance(schedule_at, datetime):
        raise InvalidInputError(
            "schedule_at", f"must be a datetime, not {type(schedule_at).__name__}"
        )
    if schedule_at.tzinfo is None or schedule_at.utcoffset() is None:
        raise InvalidInputError("schedule_at", "must be timezone-aware (e.g. tzinfo=UTC)")


def _own_staged(mailing_id: str, staged: Sequence[StagedAttachment]) -> list[StagedAttachment]:
    """The staged attachments whose blobs are this mailing's own (named
    ``mail-<mailing id>-...`` when staged): a blob id edited in the database
    never makes the clean-up delete another blob."""
    own = f"mail-{mailing_id}-"
    keep = [s for s in staged if s.blob_id.startswith(own)]
    if len(keep) != len(staged):
        log.error("mailing %s: staged attachments name foreign blobs; left alone", mailing_id)
    return keep


class MailingService:
    """Submit, follow, cancel and report mass mailings.

    ``batch_size`` is both the number of recipients per page of a submitted
    mailing and the default ``limit`` of a fan-out step; ``lease`` is how long a
    claimed page stays with one worker before another may take it over;
    ``fields`` supplies the host's own placeholder values of personalised
    mailings (:class:`~clientcomm.mailing.personalise.ClientFields`).

    Raises:
        InvalidInputError: ``batch_size`` is not a positive integer, or
            ``lease`` is not a positive timedelta.
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
        fields: ClientFields | None = None,
        notice_keys: NoticeKeys | None = None,
    ) -> None:
        from clientcomm.mailing.steps import MailingFanout

        self.store = store
        self.records = Records(store)
        self.directory = directory
        self.sealer = sealer
        self.attachments = attachments
        self.links = links
        self.clock: Clock = clock or SystemClock()
        self.notice_keys = notice_keys or NoticeKeys(store, sealer, clock=self.clock)
        self.access = as_policy(access)
        self.read_policy = read_policy or DefaultReadPolicy()
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise InvalidInputError("batch_size", "must be a positive number of recipients")
        check_lease(lease)
        self.lease = lease
        self.batch_size = batch_size
        self.fields = fields
        self.personaliser = Personaliser(directory, fields)
        self._hooks: list[DeliveryHook] = []
        self.fanout = MailingFanout(self)
        self._ledger = Ledger(self)

    # -- hooks -----------------------------------------------------------------
    def subscribe(self, hook: DeliveryHook) -> Callable[[], None]:
        """Call ``hook`` with a :class:`DeliveryEvent` after each recipient is
        committed; returns a function that unsubscribes. Exceptions from hooks
        are logged, never propagated into the worker."""
        self._hooks.append(hook)
        return lambda: self._hooks.remove(hook)

    @property
    def has_hooks(self) -> bool:
        return bool(self._hooks)

    async def publish(self, events: Sequence[DeliveryEvent]) -> None:
        for hook in list(self._hooks):
            for ev in events:
                try:
                    result = hook(ev)
                    if result is not None:
                        await result
                except Exception:  # a host's hook must not break the worker
                    log.exception("delivery hook failed")

    # -- audience --------------------------------------------------------------
    async def sender(self, actor: StaffActor, action: str = "mailing.send") -> Staff:
        """The acting staff member, if it may do ``action``.

        Raises:
            PermissionDeniedError: unknown, inactive or not allowed, or not a
                staff actor.
        """
        return await acting_staff(self.directory, self.access, actor, action)

    async def _resolve(
        self, actor: StaffActor, audience: Audience
    ) -> tuple[ResolvedAudience, list[Client]]:
        staff = await self.sender(actor)
        groups = await self.directory.list_groups(actor.firm_id)
        clients = list(await self.directory.list_clients(actor.firm_id))
        resolved = resolve_audience(
            audience, sender=staff, policy=self.access, clients=clients, groups=groups
        )
        return resolved, clients

    async def preview(
        self,
        actor: StaffActor,
        audience: Audience,
        text: str | None = None,
        *,
        subject: str | None = None,
        for_client: str | None = None,
    ) -> MailingPreview:
        """Count and list the recipients ``audience`` resolves to now, and, with
        ``text``, the copy one of them would get (:attr:`MailingPreview.copy`):
        subject and text rendered for ``for_client`` (default: the first
        recipient), exactly as the fan-out renders them.

        Raises: as :meth:`submit` (PermissionDeniedError, InvalidInputError for
        the text, subject and placeholders, NotFoundError); nothing is written.
        Also NotFoundError when ``for_client`` is not one of the recipients,
        InvalidInputError (``for_client`` without ``text``), and
        InvalidInputError naming the placeholder when the chosen client's copy
        cannot be rendered (the fan-out would fail that copy alone).
        """
        _check_audience(audience)
        template: CopyTemplate | None = None
        if text is not None:
            subject, template = await self._template(actor, text, subject)
        elif for_client is not None or subject is not None:
            raise InvalidInputError("text", "is needed to preview a copy")
        resolved, clients = await self._resolve(actor, audience)
        by_id = {c.id: c for c in clients}
        copy = None
        if text is not None:
            ids = resolved.recipient_ids
            if for_client is not None and for_client not in set(ids):
                raise NotFoundError("client", for_client)
            chosen = for_client if for_client is not None else (ids[0] if ids else None)
            if chosen is not None:
                copy = await self._render_preview(actor.firm_id, chosen, text, subject, template)
        return MailingPreview(
            count=resolved.count,
            clients=tuple(by_id[c] for c in resolved.recipient_ids),
            skipped=tuple((s.client_id, s.reason) for s in resolved.skipped),
            copy=copy,
        )

    async def _template(
        self, actor: StaffActor, text: str, subject: str | None
    ) -> tuple[str | None, CopyTemplate | None]:
        """Validate text and subject; parse them if they hold placeholders.
        Returns the subject (None for none) and the template (None: plain text)."""
        validate_text(text)
        subject = validate_subject(subject)
        if not (is_template(text) or is_template(subject)):
            return subject, None
        template = CopyTemplate.parse(text, subject)  # the syntax
        await self.sender(actor)  # the firm's field names: only for who may send
        template.check_known(await known_fields(self.fields, actor.firm_id))
        return subject, template

    async def _render_preview(
        self,
        firm_id: str,
        client_id: str,
        text: str,
        subject: str | None,
        template: CopyTemplate | None,
    ) -> PreviewCopy:
        if template is None:
            return PreviewCopy(client_id, subject, text)
        firm = await self.directory.get_firm(firm_id)
        values = await self.personaliser.values(
            firm_id, template, [client_id], language=firm.language
        )
        try:
            body = template.render(values[client_id])
        except Unrenderable as exc:
            name = exc.reason.partition(":")[2]
            raise InvalidInputError(
                name,
                f"cannot be rendered for client {client_id!r} "
                "(missing, too long, or not one line where it must be)",
                value=client_id,
            ) from None
        rendered_subject, rendered_text = decode_body(body)
        return PreviewCopy(client_id, rendered_subject, rendered_text)

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
        subject: str | None = None,
    ) -> MailingReceipt:
        """Submit a mailing; returns at once (the fan-out runs in the background).

        ``subject`` is an optional subject line, shown with every copy like a
        single message's subject. ``text`` and ``subject`` may hold
        placeholders (``{{ client_name }}``, ``{{ salutation }}`` and the
        host's :class:`~clientcomm.mailing.personalise.ClientFields`), rendered
        for each client's copy; see :mod:`clientcomm.mailing.personalise`.

        Raises:
            PermissionDeniedError: the sender may not send mailings; nothing is
                written.
            InvalidInputError: empty text, a subject that is not one line of
                at most 200 characters, an unknown or malformed placeholder
                (the error names it), empty audience, groups in a firm
                without groups, unknown groups, bad attachments, a naive
                ``schedule_at`` (a past one means "send now").
            NotFoundError: picked clients that do not exist or are outside the
                sender's access (the same answer, naming them all); nothing is
                written.
        """
        _check_audience(audience)
        if schedule_at is not None:
            _check_schedule(schedule_at)
        subject, template = await self._template(actor, text, subject)
        if template is None:
            staged_body = encode_staged(text, subject)
        elif not template.fields:  # only escapes: plain text after all
            staged_body = encode_staged(
                template.text.render({}),
                None if template.subject is None else template.subject.render({}),
            )
        else:
            staged_body = encode_staged(text, subject, template=True)
        prepared = await self.attachments.intake(attachments)  # read, checked, scanned
        now = self.clock.now()
        if schedule_at is not None:
            schedule_at = utc(schedule_at)
            if schedule_at <= now:
                schedule_at = None  # due already: send now
        resolved, _ = await self._resolve(actor, audience)
        firm_id = actor.firm_id
        mailing_id = new_id()
        owner = staging_owner(mailing_id)
        # Reserved before the staging key exists (staging or sealing makes it):
        # a submit killed from here on leaves a reservation, and the sweep
        # deletes its blobs and forgets the key (the mailing never committed).
        reservation = await self.attachments.reserve(
            firm_id,
            self.attachments.staged_blob_ids(mailing_id, prepared),
            key_owner=owner,
            holder=(MAILING_KIND, mailing_id),
        )
        staged: list[StagedAttachment] = []
        try:
            staged, reservation = await self.attachments.stage(
                firm_id, owner, mailing_id, prepared, attachment_mode, reservation=reservation
            )
            mailing = MailingRecord(
                id=mailing_id,
                status=MailingState.SCHEDULED if schedule_at else MailingState.SENDING,
                sealed_text=b"",
                sender=actor.staff_id,
                audience=audience.to_dict(),
                total=resolved.count,
                created_at=now,
                mode=attachment_mode,
                attachments=tuple(staged),
                notify=notify,
                scheduled_at=schedule_at,
                skipped=tuple((s.client_id, s.reason) for s in resolved.skipped),
                copy_secret=os.urandom(32),
            )
            page_key = os.urandom(32)  # held only in the sealed value (the pages' MAC key)
            [sealed_text] = await self.sealer.seal_many(
                [
                    SealRequest(
                        SealContext(firm_id, owner, MAILING_KIND, mailing_id, "text"),
                        bound.pack(mailing_meta(mailing, page_key), staged_body),
                    )
                ]
            )
            mailing = attrs.evolve(
                mailing,
                sealed_text=sealed_text,
                attachments=tuple(a.stripped() for a in mailing.attachments),
            )
            ids = resolved.recipient_ids
            size = self.batch_size
            chunk = size * 20  # pages built 20 at a time
            async with self.records.transaction(firm_id) as tx:
                await tx.insert([mailing])
                await audit(
                    tx,
                    subject=f"mailing:{mailing_id}",
                    operation="mailing.submitted",
                    actor=actor.staff_id,
                    at=now,
                    audience=audience.to_dict(),
                    recipient_count=resolved.count,
                    attachment_count=len(staged),
                    scheduled_at=schedule_at.isoformat() if schedule_at else None,
                    skipped_count=len(resolved.skipped),
                )
                await self.attachments.settle(tx, reservation)
                for first in range(0, len(ids), chunk):
                    await tx.insert(
                        new_pages(
                            mailing_id,
                            ids[first : first + chunk],
                            size=size,
                            due_at=schedule_at,
                            now=now,
                            first_index=first // size,
                            key=page_key,
                        )
                    )
        except BaseException:
            await self._abandon(firm_id, owner, staged, reservation)
            raise
        return MailingReceipt(
            id=mailing_id,
            total=resolved.count,
            scheduled_at=schedule_at,
            skipped=mailing.skipped,
        )

    async def _abandon(
        self,
        firm_id: str,
        owner: str,
        staged: Sequence[StagedAttachment],
        reservation: BlobReservation | None,
    ) -> None:
        """Undo a submit that did not commit: its staged blobs and its staging
        key. Best effort: what fails here is left to the sweep (the reservation
        names both), and never hides the submit's own error."""
        try:
            if reservation is not None:
                await self.attachments.release(firm_id, reservation)
            else:  # an AttachmentStore without a store: no reservation to lean on
                await self.attachments.discard_staged(firm_id, staged, force=True)
                await self.sealer.provider.forget(firm_id, owner)
        except Exception:
            log.warning("clean-up of mailing %s failed; the sweep will do it", owner, exc_info=True)

    # -- background work (see clientcomm.mailing.steps) ---------------------------
    async def step(self, *, limit: int | None = None) -> int:
        """Deliver up to ``limit`` due recipients (any firm, any mailing); the
        ``mailing.fanout`` step. Returns how many recipients were finished."""
        return await self.fanout.step(limit=limit)

    async def release_staging(self, firm_id: str, mailing_id: str) -> None:
        """Drop what only the mailing needed: staged per-copy blobs, shared blobs
        nobody received, and the staging key (crypto-shredding the staged text)."""
        async with self.records.transaction(firm_id) as tx:
            cur = await tx.find(MailingRecord, mailing_id)
            staged = _own_staged(mailing_id, cur.attachments) if cur else ()
            unreferenced = [
                s
                for s in staged
                if s.mode is AttachmentMode.PER_COPY
                or not await tx.count(BlobRef, parent=s.blob_id)
            ]
        await self.attachments.discard_staged(firm_id, unreferenced, force=True)
        await self.sealer.provider.forget(firm_id, staging_owner(mailing_id))
        self.fanout.forget(firm_id, mailing_id)

    async def shared_blobs_in_use(self, tx: RecordTx, message: MessageRecord) -> list[str]:
        """The shared blobs a copy's mailing still fans out (a
        :data:`~clientcomm.messages.service.MessageGuard`)."""
        if message.mailing_id is None:
            return []
        mailing = await tx.find(MailingRecord, message.mailing_id)
        if mailing is None or mailing.status not in (
            MailingState.SENDING,
            MailingState.SCHEDULED,
            MailingState.FAILED,  # a failed mailing keeps its staged content
        ):
            return []
        return [a.blob_id for a in message.attachments if a.mode is AttachmentMode.SHARED]

    # -- cancel ----------------------------------------------------------------
    async def cancel(self, actor: StaffActor, mailing_id: str) -> MailingProgress:
        """Cancel a mailing: recipients not yet reached get nothing.

        Cancelling needs authority over the whole mailing: ``mailing.cancel``
        on every one of its clients (recipients and skipped ones).

        Raises:
            PermissionDeniedError: the actor may not cancel mailings at all.
            NotFoundError: unknown mailing, another firm's, or one with a client
                outside the actor's authority (the same answer).
            ConflictError: the mailing is already completed or cancelled.
        """
        staff = await self.sender(actor, "mailing.cancel")
        firm_id = actor.firm_id
        reach = await self._ledger.reach(staff, firm_id, mailing_id, "mailing.cancel")
        if not reach.full:
            raise NotFoundError(MAILING_KIND, mailing_id)
        now = self.clock.now()
        while True:
            try:
                async with self.records.transaction(firm_id) as tx:
                    cur = await tx.get(MailingRecord, mailing_id)
                    if cur.status not in (MailingState.SENDING, MailingState.SCHEDULED):
                        raise ConflictError(
                            f"mailing {mailing_id} is already {cur.status}",
                            state=cur.status.value,
                            final=True,
                        )
                    await tx.update(
                        [
                            attrs.evolve(
                                cur,
                                status=MailingState.CANCELLED,
                                cancelled_at=now,
                                cancelled_by=actor.staff_id,
                            )
                        ]
                    )
                    while True:
                        queued = await tx.list(
                            RecipientPage,
                            parent=mailing_id,
                            status=PageState.QUEUED.value,
                            limit=200,
                        )
                        if not queued:
                            break
                        await tx.update([cancel_page(page) for page in queued])
                    await audit(
                        tx,
                        subject=f"mailing:{mailing_id}",
                        operation="mailing.cancelled",
                        actor=actor.staff_id,
                        at=now,
                    )
                break
            except ConflictError as exc:
                if exc.context.get("final"):
                    raise
                continue  # a worker finished some recipients meanwhile: retry
        await self.release_staging(firm_id, mailing_id)
        return await self.progress(firm_id, mailing_id)  # she has the whole mailing

    # -- progress ------------------------------------------------------------------
    async def status(self, actor: StaffActor, mailing_id: str) -> MailingProgress:
        """Progress now: total, delivered, pending, failed, cancelled, skipped, and
        the client notifications' outcomes, counted over the mailing's clients
        the actor may see (``mailing.view``; all of them for full access).

        Raises:
            PermissionDeniedError: the actor may not view mailings at all.
            NotFoundError: unknown mailing, or one without a client the actor
                may see (the same answer).
        """
        staff = await self.sender(actor, "mailing.view")
        reach = await self._ledger.reach(staff, actor.firm_id, mailing_id, "mailing.view")
        return await self._ledger.progress(actor.firm_id, reach)

    async def progress(self, firm_id: str, mailing_id: str) -> MailingProgress:
        """:meth:`status` without the access check (for the host's own jobs)."""
        delivered = failed = cancelled = pending = 0
        async with self.records.transaction(firm_id) as tx:
            cur = await tx.get(MailingRecord, mailing_id)
            after = 0
            while True:
                pages = await tx.list(RecipientPage, parent=mailing_id, after_seq=after, limit=500)
                for page in pages:
                    delivered += page.delivered
                    failed += page.failed
                    cancelled += page.cancelled
                    if page.status is PageState.QUEUED:
                        pending += page.remaining
                if len(pages) < 500:
                    break
                after = pages[-1].meta.seq
            notes = await tx.count_by_status(NotifyJob, parent=mailing_id)
            batches = await tx.list(
                FanoutBatch, parent=mailing_id, status=FanoutStatus.PENDING.value
            )
            unexpanded = sum(b.pending_count for b in batches)
            # a batch that could not be expanded (e.g. a firm name no e-mail can
            # carry) failed every notice it names
            unexpandable = sum(
                len(b.client_ids)
                for b in await tx.list(
                    FanoutBatch, parent=mailing_id, status=FanoutStatus.FAILED.value
                )
            )
        return MailingProgress(
            mailing_id=mailing_id,
            state=cur.status,
            total=cur.total,
            delivered=delivered,
            pending=pending,
            failed=failed,
            cancelled=cancelled,
            skipped=len(cur.skipped),
            notifications_sent=notes.get("sent", 0),
            notifications_pending=notes.get("pending", 0) + unexpanded,
            notifications_failed=notes.get("failed", 0) + unexpandable,
            notification_batches_pending=len(batches),
            failure=cur.failure,
        )

    async def follow(
        self,
        actor: StaffActor,
        mailing_id: str,
        *,
        interval: float = 0.5,
        until: Literal["all", "copies"] = "all",
    ) -> AsyncIterator[MailingProgress]:
        """Yield progress whenever it changes, until the mailing is finished.

        With ``until="all"`` (the default) it ends when
        :attr:`~MailingProgress.all_done`: every copy delivered or cancelled *and*
        every e-mail notice sent or failed (a notice waiting for a retry keeps
        it going; a mailing with ``notify=False`` has none). With
        ``until="copies"`` it ends when :attr:`~MailingProgress.done`, while
        notices may still be pending.

        Draw a progress bar from ``progress.fraction``. Polls every ``interval``
        seconds (through the Clock), and wakes early on local deliveries.

        Raises:
            InvalidInputError: ``until`` is neither ``"all"`` nor ``"copies"``,
                or ``interval`` is not a positive number (0 would poll the
                database without pause).
            PermissionDeniedError / NotFoundError: as :meth:`status`.
        """
        if until not in ("all", "copies"):
            raise InvalidInputError("until", 'must be "all" or "copies"', value=until)
        if (
            not isinstance(interval, int | float)
            or isinstance(interval, bool)
            or not math.isfinite(interval)
            or interval <= 0
        ):
            raise InvalidInputError("interval", "must be a positive number of seconds")
        staff = await self.sender(actor, "mailing.view")
        reach = await self._ledger.reach(staff, actor.firm_id, mailing_id, "mailing.view")
        wake = asyncio.Event()

        def on_event(ev: DeliveryEvent) -> None:
            if ev.mailing_id == mailing_id:
                wake.set()

        unsubscribe = self.subscribe(on_event)
        try:
            last: MailingProgress | None = None
            while True:
                progress = await self._ledger.progress(actor.firm_id, reach)
                if progress != last:
                    yield progress
                    last = progress
                if progress.all_done if until == "all" else progress.done:
                    return
                wake.clear()
                sleeper = asyncio.ensure_future(self.clock.sleep(interval))
                waiter = asyncio.ensure_future(wake.wait())
                await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
                for t in (sleeper, waiter):
                    t.cancel()
        finally:
            unsubscribe()

    # -- ledger ------------------------------------------------------------------
    def ledger(self, actor: StaffActor, mailing_id: str) -> AsyncIterator[LedgerEntry]:
        """Stream the per-recipient delivery ledger (bounded memory): skipped
        recipients first, then every frozen recipient in order; only the
        clients the actor may see (``mailing.view``).

        Raises:
            PermissionDeniedError / NotFoundError: as :meth:`status`.
        """
        return self._ledger.entries(actor, mailing_id)

    def export_csv(self, actor: StaffActor, mailing_id: str) -> AsyncIterator[str]:
        """The ledger as CSV text, streamed line by line (header first)."""
        return self._ledger.csv(actor, mailing_id)

    def export_jsonl(self, actor: StaffActor, mailing_id: str) -> AsyncIterator[str]:
        """The ledger as JSON lines, streamed."""
        return self._ledger.jsonl(actor, mailing_id)
