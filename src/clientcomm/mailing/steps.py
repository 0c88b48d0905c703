"""Background work of mass mailing: the ``mailing.fanout`` step.

The step claims a recipient page with a lease, seals each next client's copy,
and in **one transaction** writes the copies, one notification fan-out batch
(:mod:`clientcomm.notifications.fanout`) and the page's advanced cursor. The
page was claimed with a version bump, so a worker that lost its lease (or whose
page was cancelled meanwhile) conflicts and rolls back; a copy's id is derived
from mailing and client, so the store's unique id refuses a second copy
outright. No copy is lost, none is doubled, whatever instant a worker dies at.
One row per recipient is written in the fan-out: its copy.

Only an explicit cancel or a real tombstone of the staging key
(``KeyDestroyedError``) cancels the recipients not yet reached. The wrong
master key (``ConfigurationError``) gives the page back and propagates: nothing
is cancelled, failed or forgotten. Staged text that does not open
(``IntegrityError``: tampered, or a damaged staging key record) fails the
mailing with :data:`STAGED_TEXT_DAMAGED`, with an audit record, and keeps the
staging key.

Each copy's sealed plaintext binds its metadata (author, sent time, mailing,
attachment descriptors; :mod:`clientcomm.records.bound`): without attachments
the header is built once per batch, so a copy costs one concatenation more;
with attachments one small JSON encoding per copy. A page is checked against
its MAC (:func:`~clientcomm.mailing.rules.page_mac`) once per step.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from clientcomm.attachments.models import StoredAttachment
from clientcomm.attachments.service import Copies
from clientcomm.audit import append as audit
from clientcomm.crypto.context import SealContext
from clientcomm.crypto.envelope import OpenRequest
from clientcomm.errors import (
    ConfigurationError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    KeyDestroyedError,
    NotFoundError,
)
from clientcomm.ids import worker_id
from clientcomm.mailing.models import DeliveryEvent, MailingState, RecipientState
from clientcomm.mailing.personalise import CopyTemplate, Unrenderable
from clientcomm.mailing.records import (
    MAILING_KIND,
    MailingRecord,
    PageState,
    RecipientPage,
    staging_owner,
)
from clientcomm.mailing.rules import (
    TEMPLATE_MARK,
    advance_page,
    authenticated_mailing,
    cancel_page,
    copy_message_ids,
    decode_staged,
    fail_page,
    page_mac_ok,
)
from clientcomm.messages.records import MESSAGE_KIND, MessageRecord
from clientcomm.messages.rules import TEXT_FIELD, bound_meta
from clientcomm.notifications.fanout import fanout_batch
from clientcomm.notifications.models import NotificationKind
from clientcomm.notifications.rules import NoticeKey
from clientcomm.records import bound
from clientcomm.rules.readstate import Author
from clientcomm.rules.text import all_identifiers, is_identifier
from clientcomm.steps import Step

if TYPE_CHECKING:
    from clientcomm.app import ClientComm
    from clientcomm.mailing.service import MailingService

__all__ = ["STAGED_TEXT_DAMAGED", "STEPS", "MailingFanout"]

log = logging.getLogger("clientcomm.mailing")

_LIVE = (MailingState.SENDING, MailingState.SCHEDULED)


STAGED_TEXT_DAMAGED = "staged_text_damaged"
"""Failure reason of a mailing whose staged text (or its staging key record)
does not open: tampered or damaged, not cancelled."""


_COPY_VARIES = ("id", "client_id", "sealed_text")
"""What differs between a mailing's copies without attachments."""


@attrs.frozen
class _Loaded:
    """A live mailing as a worker holds it, as its sealed value authenticates
    it: ``text`` is every copy's body, or, for a personalised mailing, the
    staged sources and their ``template`` (parsed once here, rendered per
    copy); ``page_key`` MACs its recipient pages (None: submitted before 0.2)."""

    mailing: MailingRecord
    text: bytes = attrs.field(repr=False)
    template: CopyTemplate | None = attrs.field(default=None, repr=False)
    language: str | None = None
    page_key: bytes | None = attrs.field(default=None, repr=False)


class _StagedDamage(Exception):
    """The staged text of a live mailing does not open (not a tombstone)."""

    def __init__(self, error: IntegrityError) -> None:
        super().__init__(error.message)
        self.error = error


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
        try:
            [text] = await self._svc.sealer.open_many(
                [
                    OpenRequest(
                        SealContext(firm_id, owner, MAILING_KIND, mailing_id, "text"),
                        mailing.sealed_text,
                    )
                ]
            )
        except KeyDestroyedError:
            raise  # a real tombstone: the staging key was forgotten (cancelled)
        except IntegrityError as exc:  # tampered text or a damaged staging key record
            self._cache.pop(key, None)
            raise _StagedDamage(exc) from exc
        try:
            # bound metadata checked against the clear record (edited: damaged)
            mailing, text, page_key = authenticated_mailing(mailing, text)
            loaded = attrs.evolve(await self._prepare(firm_id, mailing, text), page_key=page_key)
        except IntegrityError as exc:  # edited metadata, or a template that does not parse
            self._cache.pop(key, None)
            raise _StagedDamage(exc) from exc
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[key] = loaded
        return loaded

    async def _prepare(self, firm_id: str, mailing: MailingRecord, text: bytes) -> _Loaded:
        """The loaded mailing; a personalised one's sources parsed (once)."""
        if not text.startswith(TEMPLATE_MARK):
            return _Loaded(mailing, text)  # every copy gets these very bytes
        try:
            subject, source, _ = decode_staged(text)
            template = CopyTemplate.parse(source, subject)
        except (ValueError, InvalidInputError) as exc:  # sealed, so written by us
            raise IntegrityError(f"mailing {mailing.id}: staged template unreadable") from exc
        try:
            language: str | None = (await self._svc.directory.get_firm(firm_id)).language
        except NotFoundError:
            language = None
        return _Loaded(mailing, text, template, language)

    async def _render(
        self, loaded: _Loaded, firm_id: str, take: Sequence[str]
    ) -> tuple[dict[str, bytes], dict[str, str]]:
        """Each client's rendered body, and the clients whose copy cannot be
        rendered with their reasons (they fail alone)."""
        template = loaded.template
        assert template is not None
        values = await self._svc.personaliser.values(
            firm_id, template, take, language=loaded.language
        )
        bodies: dict[str, bytes] = {}
        failed: dict[str, str] = {}
        render = template.render
        for cid in take:
            try:
                bodies[cid] = render(values[cid])
            except Unrenderable as exc:
                failed[cid] = exc.reason
        if failed:
            log.warning(
                "mailing %s: %d copies cannot be rendered and fail alone (%s)",
                loaded.mailing.id,
                len(failed),
                ", ".join(sorted(set(failed.values()))),
            )
        return bodies, failed

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
            if finished is None:
                continue  # left alone (its mailing does not decode): go on with others
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
        self, loaded: _Loaded, firm_id: str, take: Sequence[str], template: MessageRecord
    ) -> tuple[list[tuple[str, str]], list[bytes], Copies, dict[str, str]] | None:
        """Seal the text (and attachments) for each client in ``take``, with the
        copy's metadata of ``template`` bound in; clients whose keys were
        destroyed or whose personalised copy cannot be rendered are left out and
        returned in ``gone`` with their reasons. None when the staging key
        itself is gone (the mailing was cancelled)."""
        svc = self._svc
        mailing_id = loaded.mailing.id
        gone: dict[str, str] = {}
        bodies: dict[str, bytes] | None = None
        if loaded.template is not None:
            bodies, gone = await self._render(loaded, firm_id, take)
        while True:
            live = [c for c in take if c not in gone] if gone else list(take)
            secret = loaded.mailing.copy_secret
            pairs = copy_message_ids(mailing_id, live, secret)
            copies: Copies | None = None
            try:
                copies = await svc.attachments.copies(
                    firm_id, staging_owner(mailing_id), loaded.mailing.attachments, pairs
                )
                plains = _copy_plaintexts(template, loaded.text, live, copies, bodies)
                # one batch call: the copies' texts, each sealed for its client and id
                sealed = await svc.sealer.seal_batch(
                    firm_id, MESSAGE_KIND, TEXT_FIELD, pairs, plains
                )
            except KeyDestroyedError as exc:
                if copies is not None:
                    await svc.attachments.discard(firm_id, copies)
                # Forgotten clients (crypto-shredded after submit) can never receive:
                # they fail alone and the rest of the page is delivered.
                newly = set(exc.context.get("client_ids", ())) & set(live)
                if not newly:  # the staging key itself: the mailing was cancelled
                    return None
                gone.update(dict.fromkeys(newly, "key_destroyed"))
                continue
            return pairs, sealed, copies, gone

    async def _deliver(self, page: RecipientPage, budget: int) -> int | None:
        """Deliver up to ``budget`` recipients of a claimed page from its cursor
        on, in one transaction guarded by the page's version. Returns how many
        were finished (0: lease lost or changed meanwhile), or None when the page
        is left alone, leased, because its mailing record does not decode."""
        svc = self._svc
        firm_id, mailing_id = page.meta.firm_id, page.mailing_id
        now = svc.clock.now()
        take = page.clients[page.pos : page.pos + budget]
        try:
            try:
                loaded = await self._load(firm_id, mailing_id)
            except KeyDestroyedError:
                loaded = None  # staging key forgotten: the mailing was cancelled meanwhile
            except _StagedDamage as damage:
                return await self._fail_mailing(page, damage.error, now)
            except IntegrityError:
                # The mailing record itself does not decode: the page stays
                # leased (alone) and nothing is cancelled or forgotten.
                log.error(
                    "mailing %s: the mailing record does not decode; page %s left",
                    mailing_id,
                    page.id,
                )
                return None
            if loaded is not None and loaded.mailing.status is MailingState.FAILED:
                return await self._fail_page(page, loaded.mailing.failure, now)
            if loaded is None or loaded.mailing.status not in _LIVE:
                return await self._cancel_page(page, now)
            if not page_mac_ok(loaded.page_key, page):
                return await self._fail_integrity(page, now)
            mailing = loaded.mailing
            notice_key = await self._notice_key(firm_id) if mailing.notify else None
            unread_for = svc.read_policy.unread_for(Author.STAFF, via_mailing=True)
            template = MessageRecord(
                id=mailing_id,
                client_id="",
                unread_for=unread_for,
                sealed_text=b"",
                sent_at=now,
                author=Author.STAFF,
                author_id=mailing.sender,
                mailing_id=mailing_id,
            )
            # A client id no store or cipher takes (NUL, a lone surrogate; pages
            # written before ids were checked at submit) fails that recipient alone.
            unusable = set() if all_identifiers(take) else {c for c in take if not is_identifier(c)}
            try:
                outcome = await self._seal_copies(
                    loaded,
                    firm_id,
                    [c for c in take if c not in unusable] if unusable else take,
                    template,
                )
            except IntegrityError as exc:  # a staged attachment does not open: tampered
                if isinstance(exc, KeyDestroyedError):
                    raise
                return await self._fail_integrity(page, now, "staged_integrity")
        except ConfigurationError:
            # The wrong master key: nothing is cancelled, failed or forgotten;
            # the page goes back to the queue for a worker with the right key.
            await self._release(page)
            raise
        if outcome is None:
            return await self._cancel_page(page, now)
        live, sealed, copies, gone = outcome
        if unusable:
            log.error(
                "mailing %s: %d recipients with unusable ids failed", mailing_id, len(unusable)
            )
        stored = copies.stored
        # A copy is the template with its own id, client and sealed text (one
        # encoding for the batch); copies with attachments carry their own.
        plain = [
            (mid, cid, body)
            for (cid, mid), body in zip(live, sealed, strict=True)
            if cid not in stored
        ]
        with_files = [
            attrs.evolve(
                template,
                id=mid,
                client_id=cid,
                sealed_text=body,
                attachments=tuple(a.stripped() for a in stored[cid]),
            )
            for (cid, mid), body in zip(live, sealed, strict=True)
            if cid in stored
        ]
        batch = None
        if live and mailing.notify:
            # One durable batch names this step's copies; notifications.expand
            # turns it into per-contact e-mail jobs later, exactly once.
            batch = fanout_batch(
                mailing_id,
                NotificationKind.NEW_MESSAGE,
                live,
                now=now,
                key=notice_key,
            )
        failed: dict[int, str] = {}
        if gone or unusable:  # else none failed: no pass over the page
            failed = {page.pos + i: gone[cid] for i, cid in enumerate(take) if cid in gone}
            failed.update(
                {page.pos + i: "invalid_id" for i, cid in enumerate(take) if cid in unusable}
            )
        moved = advance_page(
            page, taken=len(take), failed=failed, at=now, batch=batch.id if batch else None
        )
        try:
            async with svc.records.transaction(firm_id) as tx:
                if plain:
                    await tx.insert_variants(template, _COPY_VARIES, plain)
                if with_files:
                    await tx.insert(with_files)
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
                        RecipientState.FAILED
                        if cid in gone or cid in unusable
                        else RecipientState.DELIVERED,
                        copy_ids.get(cid),
                        now,
                    )
                    for cid in take
                ]
            )
        return len(take)

    async def _release(self, page: RecipientPage) -> None:
        """Give a claimed page back (its lease cleared), best effort: if it
        fails, the lease expires as usual."""
        try:
            async with self._svc.records.transaction(page.meta.firm_id) as tx:
                await tx.update(
                    [
                        attrs.evolve(
                            page, meta=attrs.evolve(page.meta, lease_owner=None, lease_until=None)
                        )
                    ]
                )
        except Exception:
            log.warning("mailing %s: page %s not released", page.mailing_id, page.id, exc_info=True)

    async def _fail_mailing(self, page: RecipientPage, error: IntegrityError, now: datetime) -> int:
        """The staged text does not open: mark the mailing failed with a reason
        and fail every recipient not yet reached, with an audit record, in one
        transaction. Nothing is forgotten (staging key and staged files stay for
        inspection). Returns how many of the page's recipients failed."""
        svc = self._svc
        firm_id, mailing_id = page.meta.firm_id, page.mailing_id
        reason = STAGED_TEXT_DAMAGED
        failed: list[tuple[str, ...]] = []
        try:
            async with svc.records.transaction(firm_id) as tx:
                cur = await tx.get(MailingRecord, mailing_id)
                if cur.status not in _LIVE:
                    return 0  # cancelled or finished meanwhile: not ours to fail
                await tx.update(
                    [
                        attrs.evolve(
                            cur,
                            status=MailingState.FAILED,
                            failure=reason,
                            failed_at=now,
                            meta=attrs.evolve(cur.meta, lease_owner=None, lease_until=None),
                        )
                    ]
                )
                while True:
                    queued = await tx.list(
                        RecipientPage, parent=mailing_id, status=PageState.QUEUED.value, limit=200
                    )
                    if not queued:
                        break
                    await tx.update([fail_page(p, reason, at=now) for p in queued])
                    failed.extend(p.clients[p.pos :] for p in queued)
                await audit(
                    tx,
                    subject=f"mailing:{mailing_id}",
                    operation="mailing.failed",
                    actor="system",
                    at=now,
                    reason=reason,
                    error=error.message,
                    recipients_failed=sum(len(c) for c in failed),
                )
        except ConflictError:
            return 0  # another worker (or a cancel) changed it meanwhile: the next round sees it
        self.forget(firm_id, mailing_id)
        log.error(
            "mailing %s failed: its staged text does not open (%s); %d recipients not"
            " delivered, the staged content and its key are kept",
            mailing_id,
            error.message,
            sum(len(c) for c in failed),
        )
        if svc.has_hooks:
            await svc.publish(
                [
                    DeliveryEvent(firm_id, mailing_id, cid, RecipientState.FAILED, None, now)
                    for clients in failed
                    for cid in clients
                ]
            )
        return page.remaining

    async def _fail_page(self, page: RecipientPage, reason: str | None, now: datetime) -> int:
        """A queued page of a failed mailing: its recipients fail with the
        mailing's reason."""
        try:
            async with self._svc.records.transaction(page.meta.firm_id) as tx:
                await tx.update([fail_page(page, reason or STAGED_TEXT_DAMAGED, at=now)])
        except ConflictError:
            return 0
        return page.remaining

    async def _notice_key(self, firm_id: str) -> NoticeKey | None:
        """The firm's notice key for this step's fan-out batch, fetched before
        its transaction. A key that does not open is logged and the batch is
        written without a MAC: the copies are delivered, the batch is never
        expanded as it is (left leased while the key does not open, failed
        with reason ``integrity`` once it does)."""
        try:
            return await self._svc.notice_keys.get(firm_id)
        except ConfigurationError:
            raise
        except IntegrityError as exc:
            log.error("firm %s: notice key does not open (%s); batch left unMACed", firm_id, exc)
            return None

    async def _fail_integrity(
        self, page: RecipientPage, now: datetime, reason: str = "page_integrity"
    ) -> int:
        """A page that is not as its mailing froze it (its MAC fails: edited
        client ids or send time, or moved), or whose staged attachments do not
        open (``staged_integrity``): none of it is delivered; its recipients
        not yet reached are failed with ``reason`` (in the status, the ledger
        and the log) and the rest goes on. Returns how many."""
        svc = self._svc
        log.error(
            "mailing %s: recipient page %s failed its integrity check (%s); not delivered",
            page.mailing_id,
            page.id,
            reason,
        )
        n = page.remaining
        failed = {page.pos + i: reason for i in range(n)}
        try:
            async with svc.records.transaction(page.meta.firm_id) as tx:
                await tx.update([advance_page(page, taken=n, failed=failed, at=now, batch=None)])
        except ConflictError:
            return 0
        return n

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
        except IntegrityError:  # the mailing record does not decode: left alone, as it is
            log.error("mailing %s: the mailing record does not decode; not completed", mailing_id)
            return
        await svc.release_staging(firm_id, mailing_id)


def _copy_plaintexts(
    template: MessageRecord,
    text: bytes,
    clients: Sequence[str],
    copies: Copies,
    bodies: Mapping[str, bytes] | None = None,
) -> list[bytes]:
    """Each copy's sealed plaintext: its bound metadata, then its body (``text``,
    or the client's rendered body of a personalised mailing). Without
    attachments every copy of the batch binds the same metadata (its client
    and id are in the associated data), so the header is encoded once."""
    base = bound_meta(template)
    if not copies.stored:
        if bodies is None:
            plain = bound.pack(base, text)
            return [plain] * len(clients)
        head = bound.prefix(base)
        return [head + bodies[c] for c in clients]
    none: tuple[StoredAttachment, ...] = ()
    return [
        bound.pack(
            {**base, "attachments": [a.bound() for a in copies.stored.get(c, none)]},
            text if bodies is None else bodies[c],
        )
        for c in clients
    ]


async def fanout(app: ClientComm, limit: int) -> int:
    """Deliver due mailing copies, page by page (see module docs)."""
    return await app.mailings.fanout.step(limit=limit)


STEPS = (Step("mailing.fanout", fanout, "deliver due mailing copies, page by page"),)
