"""clientcomm's own evidence sources: the stored copy, its e-mail notices, and
the client's first opening.

* ``messages``: ``copy.stored``, at the message's ``sent_at`` as its sealed
  value authenticates it, citing the audit entry that recorded it
  (``message.sent``, or the ``mailing.delivered`` entry of the copy's batch).
* ``notifications``: per e-mail notice of the copy, ``notice.accepted`` (when
  the transport returned the server's acceptance, and the server's reply),
  ``notice.failed`` (reason, SMTP code, detail; ``no_address`` for a contact
  without a usable address) or ``notice.pending``; ``notice.none`` when the
  copy's batch had nobody to notify. A mailing copy's notices are found through the fan-out
  batch that names the copy (``FanoutBatch.jobs``, cause = the copy's id); a
  single message's through the jobs whose event is the message.
* ``reads``: ``message.opened``, the first ``message.read`` audit entry that
  names the message (written when the client's read cursor passes it, or the
  client opens it alone).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from clientcomm.audit import AuditEntry
from clientcomm.errors import IntegrityError
from clientcomm.evidence.models import EvidenceContext, Fact, register_evidence_source
from clientcomm.notifications.fanout import FANOUT, FANOUT_KIND, FanoutStatus
from clientcomm.notifications.records import JOB_KIND, NOTIFY_JOB, JobStatus, NotifyJob
from clientcomm.rules.readstate import UnreadFor

__all__ = ["copy_stored", "first_opened", "notices"]

log = logging.getLogger("clientcomm.evidence")

_CHUNK = 200


def _audit_ref(entry: AuditEntry | None) -> dict[str, Any] | None:
    if entry is None:
        return None
    return {"id": entry.id, "position": entry.position, "hash": entry.hash}


@register_evidence_source(
    "messages",
    {
        "copy.stored": "the copy was stored in the client's chat (time authenticated by its"
        " sealed value; `details.audit`: the audit entry that recorded it)",
    },
)
async def copy_stored(ctx: EvidenceContext) -> Iterable[Fact]:
    m = ctx.message
    if m.mailing_id is None:
        page = await ctx.audit.query(
            ctx.firm_id, subject=f"message:{m.id}", operation="message.sent", limit=1
        )
    else:
        page = await ctx.audit.query(
            ctx.firm_id,
            client=m.client_id,
            subject=f"mailing:{m.mailing_id}",
            operation="mailing.delivered",
            created_from=m.sent_at,
            limit=1,
        )
    entry = page.entries[0] if page.entries else None
    return [
        Fact(
            "copy.stored",
            m.sent_at,
            f"message:{m.id}",
            {
                "author": m.author.value,
                "author_id": m.author_id,
                "mailing_id": m.mailing_id,
                "attachment_count": len(m.attachments),
                "audit": _audit_ref(entry),
            },
        )
    ]


def _smtp_code(reply: str | None) -> int | None:
    head = (reply or "").split(" ", 1)[0]
    return int(head) if len(head) == 3 and head.isdigit() else None


def _job_fact(job: NotifyJob) -> Fact:
    source = f"notify.job:{job.id}"
    who = {
        "job_id": job.id,
        "recipient": job.to.ref,
        "role": job.to.role.value,
        "to": job.to.email,
        "attempts": job.attempts,
    }
    if job.status is JobStatus.SENT:
        return Fact(
            "notice.accepted",
            job.accepted_at or job.sent_at,
            source,
            {
                **who,
                "sent_at": job.sent_at,
                "smtp_code": _smtp_code(job.response),
                "smtp_reply": job.response,
                "message_id": job.message_id,
            },
        )
    if job.status is JobStatus.FAILED:
        error = job.error
        return Fact(
            "notice.failed",
            job.failed_at,
            source,
            {
                **who,
                "reason": error.reason if error else "unknown",
                "code": error.code if error else None,
                "detail": error.detail if error else "",
            },
        )
    last = job.last_error
    return Fact(
        "notice.pending",
        None,
        source,
        {
            **who,
            "due_at": job.due_at,
            "last_error": last.reason if last else None,
        },
    )


async def _batch_jobs(ctx: EvidenceContext, event_id: str) -> tuple[list[Fact], list[str]]:
    """The fan-out batch of ``event_id`` naming the message: facts for a batch
    not expanded (pending, failed) and the job ids of an expanded one."""
    m = ctx.message
    after = 0
    while True:
        async with ctx.records.transaction(ctx.firm_id) as tx:
            raw = await tx.raw.list(FANOUT_KIND, parent=event_id, after_seq=after, limit=_CHUNK)
        for record in raw:
            try:
                batch = FANOUT.decode(record)
            except IntegrityError:
                ctx.problem(f"notify.fanout {record.id}: does not decode")
                continue
            if m.id not in batch.cause_ids:
                continue
            source = f"notify.fanout:{batch.id}"
            if dict(batch.items).get(m.client_id) != m.id:
                ctx.problem(f"notify.fanout {batch.id}: names the copy for another client")
                return [], []
            if batch.status is FanoutStatus.PENDING:
                return [Fact("notice.pending", None, source, {"stage": "fanout"})], []
            if batch.status is FanoutStatus.FAILED:
                reason = batch.reason or "failed"
                return [Fact("notice.failed", None, source, {"reason": reason})], []
            jobs = list(batch.jobs.get(m.id, ()))
            if not jobs:  # no contact with portal access: nobody to notify
                return [Fact("notice.none", None, source, {"stage": "fanout"})], []
            return [], jobs
        if len(raw) < _CHUNK:
            return [], []
        after = raw[-1].seq


@register_evidence_source(
    "notifications",
    {
        "notice.accepted": "the SMTP server accepted an e-mail notice (`smtp_code`,"
        " `smtp_reply`, `message_id`, `to`)",
        "notice.failed": "an e-mail notice failed for good (`reason`, e.g. `no_address`;"
        " `code`, `detail`)",
        "notice.pending": "an e-mail notice is not sent yet (`due_at`, `last_error`)",
        "notice.none": "no e-mail notice was due (the client has no contact with portal access)",
    },
)
async def notices(ctx: EvidenceContext) -> Iterable[Fact]:
    m = ctx.message
    facts, job_ids = await _batch_jobs(ctx, m.mailing_id or m.id)
    async with ctx.records.transaction(ctx.firm_id) as tx:
        named = await tx.raw.get_many(JOB_KIND, job_ids) if job_ids else {}
        direct: Sequence[Any] = await tx.raw.list(JOB_KIND, parent=m.id, limit=1000)
    records = [named[j] for j in job_ids if j in named]
    for j in job_ids:
        if j not in named:
            ctx.problem(f"notify.job {j}: named by its fan-out batch, missing")
    records += [r for r in direct if r.id not in named]
    for record in records:
        try:
            job = NOTIFY_JOB.decode(record)
        except IntegrityError:
            ctx.problem(f"notify.job {record.id}: does not decode")
            continue
        if job.client_id not in (None, m.client_id) or job.cause_id not in (None, m.id):
            continue  # a notice of this event about something else
        facts.append(_job_fact(job))
    return facts


@register_evidence_source(
    "reads",
    {
        "message.opened": "the client first opened it (its read cursor passed it, or it"
        " opened it alone; `details.audit`: the `message.read` entry)",
    },
)
async def first_opened(ctx: EvidenceContext) -> Iterable[Fact]:
    m = ctx.message
    if m.unread_for is not UnreadFor.CLIENT:
        return []  # the client's own message: nothing for it to open
    wanted = f"message:{m.id}"
    cursor: str | None = None
    while True:
        page = await ctx.audit.query(
            ctx.firm_id,
            client=m.client_id,
            operation="message.read",
            created_from=m.sent_at,
            limit=100,
            cursor=cursor,
        )
        for entry in page.entries:
            if wanted in entry.objects:
                contact = next((o for o in entry.objects if o.startswith("contact:")), None)
                return [
                    Fact(
                        "message.opened",
                        entry.at,
                        f"audit:{entry.position}",
                        {
                            "actor": entry.actor,
                            "contact": contact.removeprefix("contact:") if contact else None,
                            "via": entry.details.get("via"),
                            "audit": _audit_ref(entry),
                        },
                    )
                ]
        if page.cursor is None:
            return []
        cursor = page.cursor
