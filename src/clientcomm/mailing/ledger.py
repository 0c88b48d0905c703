"""The per-recipient delivery ledger of a mailing, and its CSV/JSONL exports."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import attrs

from clientcomm.actors import StaffActor
from clientcomm.mailing.models import LedgerEntry, RecipientState
from clientcomm.mailing.records import MailingRecord, RecipientPage
from clientcomm.mailing.rules import copy_message_id, recipient_states
from clientcomm.notifications.fanout import FanoutBatch, FanoutStatus
from clientcomm.notifications.records import NotifyJob

if TYPE_CHECKING:
    from clientcomm.mailing.service import MailingService

__all__ = ["Ledger"]


class Ledger:
    """Reads a mailing's pages, fan-out batches and notification jobs into
    :class:`LedgerEntry` rows (see :meth:`MailingService.ledger`)."""

    def __init__(self, service: MailingService) -> None:
        self._svc = service

    async def entries(self, actor: StaffActor, mailing_id: str) -> AsyncIterator[LedgerEntry]:
        svc = self._svc
        await svc.sender(actor, "mailing.view")
        firm_id = actor.firm_id
        mailing = await svc.records.get(MailingRecord, firm_id, mailing_id)
        for client_id, reason in mailing.skipped:
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
        async for page in svc.records.iterate(RecipientPage, firm_id, parent=mailing_id, batch=20):
            for entry in await self._page(firm_id, mailing_id, page, mailing.copy_secret):
                yield entry

    async def _page(
        self, firm_id: str, mailing_id: str, page: RecipientPage, secret: bytes
    ) -> list[LedgerEntry]:
        batch_ids = [s.batch for s in page.segments if s.batch]
        async with self._svc.records.transaction(firm_id) as tx:
            batches = await tx.get_many(FanoutBatch, batch_ids, decode_errors="skip")
            job_ids: dict[str, tuple[str, ...]] = {}
            unexpanded: dict[str, str] = {}  # cause -> why its batch failed
            for b in batches.values():
                job_ids.update(b.jobs)
                if b.status is FanoutStatus.FAILED:
                    unexpanded.update((c, b.reason or "failed") for c in b.cause_ids)
            found = await tx.get_many(
                NotifyJob, [j for ids in job_ids.values() for j in ids], decode_errors="skip"
            )
        out: list[LedgerEntry] = []
        for fact in recipient_states(page):
            delivered = fact.state is RecipientState.DELIVERED
            mid = copy_message_id(mailing_id, fact.client_id, secret) if delivered else None
            jobs = [found[j] for j in job_ids.get(mid or "", ()) if j in found]
            lost = unexpanded.get(mid or "")
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
        return out

    async def csv(self, actor: StaffActor, mailing_id: str) -> AsyncIterator[str]:
        svc = self._svc
        await svc.sender(actor, "mailing.view")
        await svc.records.get(MailingRecord, actor.firm_id, mailing_id)  # NotFound first
        fields = [f.name for f in attrs.fields(LedgerEntry)]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        yield buf.getvalue()
        async for entry in self.entries(actor, mailing_id):
            buf.seek(0)
            buf.truncate()
            row = entry.to_dict()
            row["notification_errors"] = ";".join(entry.notification_errors)
            writer.writerow(row)
            yield buf.getvalue()

    async def jsonl(self, actor: StaffActor, mailing_id: str) -> AsyncIterator[str]:
        async for entry in self.entries(actor, mailing_id):
            yield json.dumps(entry.to_dict(), ensure_ascii=False) + "\n"
