"""The per-recipient delivery ledger of a mailing, and its CSV/JSONL exports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

import attrs

from clientcomm.actors import StaffActor
from clientcomm.directory.models import Staff
from clientcomm.errors import NotFoundError
from clientcomm.mailing.models import LedgerEntry, MailingProgress, RecipientState
from clientcomm.mailing.records import MAILING_KIND, MailingRecord, RecipientPage
from clientcomm.mailing.rules import copy_message_id, recipient_states
from clientcomm.notifications.fanout import FanoutBatch, FanoutStatus
from clientcomm.notifications.records import NotifyJob

if TYPE_CHECKING:
    from clientcomm.mailing.service import MailingService

__all__ = ["Ledger", "Reach"]


@attrs.frozen
class Reach:
    """Which clients of one mailing a staff member may see, for one action.

    ``full``: every client of the mailing (recipients and skipped ones);
    ``visible(client_id)`` answers for one client.
    """

    mailing: MailingRecord
    full: bool
    visible: Callable[[str], bool]


class Ledger:
    """Reads a mailing's pages, fan-out batches and notification jobs into
    :class:`LedgerEntry` rows (see :meth:`MailingService.ledger`), and the
    progress of the part of a mailing a staff member may see.

    Every report is scoped to the clients the actor may see: a mailing of which
    she sees no client answers as a missing one (``NotFoundError("mailing",
    id)``), one of which she sees some lists and counts only those."""

    def __init__(self, service: MailingService) -> None:
        self._svc = service

    async def reach(self, staff: Staff, firm_id: str, mailing_id: str, action: str) -> Reach:
        """The part of the mailing ``staff`` may do ``action`` on.

        Raises:
            NotFoundError: unknown mailing, or one without a client in reach
                (the same answer).
        """
        svc = self._svc
        mailing = await svc.records.find(MailingRecord, firm_id, mailing_id)
        if mailing is None:
            raise NotFoundError(MAILING_KIND, mailing_id)

        allows = svc.access.allows

        def visible(client_id: str) -> bool:
            return allows(staff, action, client_id)

        seen = [visible(c) for c, _ in mailing.skipped]
        some, every = any(seen), all(seen)
        counted = 0
        async for page in svc.records.iterate(RecipientPage, firm_id, parent=mailing_id, batch=20):
            counted += len(page.clients)
            seen = [allows(staff, action, c) for c in page.clients]  # every client asked
            some = some or any(seen)
            every = every and all(seen)
            if some and not every:
                break  # both known: no need to read further
        else:
            if every and counted != mailing.total:
                # a page that does not decode (skipped, logged) may hide any
                # client: only who reaches every client of the firm has it all
                clients = await svc.directory.list_clients(firm_id)
                every = all(visible(c.id) for c in clients)
        if not some:
            raise NotFoundError(MAILING_KIND, mailing_id)
        return Reach(mailing, every, visible)

    async def progress(self, firm_id: str, reach: Reach) -> MailingProgress:
        """Progress of the clients in ``reach`` (all of them: the mailing's)."""
        svc = self._svc
        if reach.full:
            return await svc.progress(firm_id, reach.mailing.id)
        mailing = await svc.records.get(MailingRecord, firm_id, reach.mailing.id)  # state now
        counts = dict.fromkeys(RecipientState, 0)
        sent = failed = pending = 0
        waiting: dict[str, int] = {}  # unexpanded fan-out batch -> visible clients
        async for page in svc.records.iterate(RecipientPage, firm_id, parent=mailing.id, batch=20):
            entries, unexpanded = await self._page(
                firm_id, mailing.id, page, mailing.copy_secret, reach.visible
            )
            for e in entries:
                counts[RecipientState(e.state)] += 1
                sent += e.notifications_sent
                failed += e.notifications_failed
                pending += e.notifications_pending
            waiting.update(unexpanded)
        reached = sum(counts.values())
        return MailingProgress(
            mailing_id=mailing.id,
            state=mailing.status,
            total=reached,
            delivered=counts[RecipientState.DELIVERED],
            pending=counts[RecipientState.QUEUED],
            failed=counts[RecipientState.FAILED],
            cancelled=counts[RecipientState.CANCELLED],
            skipped=sum(1 for c, _ in mailing.skipped if reach.visible(c)),
            notifications_sent=sent,
            notifications_pending=pending + sum(waiting.values()),
            notifications_failed=failed,
            notification_batches_pending=len(waiting),
            failure=mailing.failure,
        )

    async def entries(self, actor: StaffActor, mailing_id: str) -> AsyncIterator[LedgerEntry]:
        svc = self._svc
        staff = await svc.sender(actor, "mailing.view")
        reach = await self.reach(staff, actor.firm_id, mailing_id, "mailing.view")
        async for entry in self._rows(actor.firm_id, reach):
            yield entry

    async def _rows(self, firm_id: str, reach: Reach) -> AsyncIterator[LedgerEntry]:
        svc = self._svc
        mailing = reach.mailing
        visible = None if reach.full else reach.visible
        for client_id, reason in mailing.skipped:
            if visible is not None and not visible(client_id):
                continue
            yield LedgerEntry(
                mailing_id=mailing.id,
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
        async for page in svc.records.iterate(RecipientPage, firm_id, parent=mailing.id, batch=20):
            entries, _ = await self._page(firm_id, mailing.id, page, mailing.copy_secret, visible)
            for entry in entries:
                yield entry

    async def _page(
        self,
        firm_id: str,
        mailing_id: str,
        page: RecipientPage,
        secret: bytes,
        visible: Callable[[str], bool] | None = None,
    ) -> tuple[list[LedgerEntry], dict[str, int]]:
        """The page's rows (those ``visible``, if given), and its unexpanded
        fan-out batches with how many of those rows each still has to notify."""
        facts = [f for f in recipient_states(page) if visible is None or visible(f.client_id)]
        if not facts:
            return [], {}
        batch_ids = list(dict.fromkeys(f.batch for f in facts if f.batch))
        async with self._svc.records.transaction(firm_id) as tx:
            batches = await tx.get_many(FanoutBatch, batch_ids, decode_errors="skip")
            job_ids: dict[str, tuple[str, ...]] = {}
            lost_by_cause: dict[str, str] = {}  # cause -> why its batch failed
            for b in batches.values():
                job_ids.update(b.jobs)
                if b.status is FanoutStatus.FAILED:
                    lost_by_cause.update((c, b.reason or "failed") for c in b.cause_ids)
            found = await tx.get_many(
                NotifyJob, [j for ids in job_ids.values() for j in ids], decode_errors="skip"
            )
        unexpanded: dict[str, int] = {}
        out: list[LedgerEntry] = []
        for fact in facts:
            delivered = fact.state is RecipientState.DELIVERED
            mid = copy_message_id(mailing_id, fact.client_id, secret) if delivered else None
            jobs = [found[j] for j in job_ids.get(mid or "", ()) if j in found]
            lost = lost_by_cause.get(mid or "")
            batch = batches.get(fact.batch) if fact.batch else None
            if batch is not None and batch.status is FanoutStatus.PENDING:
                unexpanded[batch.id] = unexpanded.get(batch.id, 0) + 1
            out.append(
                LedgerEntry(
                    mailing_id=mailing_id,
                    client_id=fact.client_id,
                    state=fact.state.value,
                    message_id=mid,
                    delivered_at=fact.delivered_at.isoformat() if fact.delivered_at else None,
                    reason=fact.reason,
                    notifications_sent=sum(1 for j in jobs if j.status == "sent"),
                    notifications_failed=sum(1 for j in jobs if j.status == "failed")
                    + (lost is not None),
                    notifications_pending=sum(1 for j in jobs if j.status == "pending"),
                    notification_errors=tuple(
                        str(j.error.reason if j.error else None)
                        for j in jobs
                        if j.status == "failed"
                    )
                    + ((lost,) if lost is not None else ()),
                )
            )
        return out, unexpanded

    async def csv(self, actor: StaffActor, mailing_id: str) -> AsyncIterator[str]:
        svc = self._svc
        staff = await svc.sender(actor, "mailing.view")
        reach = await self.reach(staff, actor.firm_id, mailing_id, "mailing.view")  # first
        fields = [f.name for f in attrs.fields(LedgerEntry)]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        yield buf.getvalue()
        async for entry in self._rows(actor.firm_id, reach):
            buf.seek(0)
            buf.truncate()
            row = entry.to_dict()
            row["notification_errors"] = ";".join(entry.notification_errors)
            writer.writerow(row)
            yield buf.getvalue()

    async def jsonl(self, actor: StaffActor, mailing_id: str) -> AsyncIterator[str]:
        async for entry in self.entries(actor, mailing_id):
            yield json.dumps(entry.to_dict(), ensure_ascii=False) + "\n"
