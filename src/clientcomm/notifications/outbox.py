"""The notification outbox: durable jobs, delivered at least once.

Flow:

1. The service that causes a notification (a mailing's fan-out, a new comment,
   a letter release) builds a :class:`NotificationBatch` with
   :func:`prepare` and writes it with :func:`enqueue` **inside its own
   transaction**, so the jobs exist exactly when the event does.
2. A worker calls :func:`deliver_due` (or loops with :func:`run_worker`): it
   leases due jobs with :meth:`Store.claim`, renders and sends them
   concurrently through a :class:`~clientcomm.mail.base.MailTransport`,
   and records the outcome in one transaction per firm.

Each job is a :class:`~clientcomm.storage.base.Record` of kind ``notify.job``:
``parent`` is the event's id (the mailing, the conversation), ``status`` is
``pending``, ``sent`` or ``failed``, ``due_at`` carries the retry backoff.
``tx.count_by_status("notify.job", parent=mailing_id)`` answers "how many
notifications failed", :func:`delivery_status` lists why.

Delivery is at least once: a worker that crashes after the server accepted a
message but before recording it leaves the job leased; when the lease runs out
another worker sends it again with the same ``Message-ID`` (derived from the
job id), so the duplicate is recognisable downstream.

Temporary failures (connection errors, TLS/auth trouble, SMTP 4xx) are retried
with exponential backoff and jitter up to ``RetryPolicy.max_attempts``;
permanent ones (SMTP 5xx, an invalid address) stop at once. Both are recorded
on the job (``data["error"]``: ``reason``, ``code``, ``detail``).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import os
import random
import socket
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from clientcomm.clock import Clock
from clientcomm.errors import (
    ClientCommError,
    ConfigurationError,
    ConflictError,
    DeliveryError,
    InvalidInputError,
    NotFoundError,
    PermanentDeliveryError,
)
from clientcomm.mail.addresses import check_header_text
from clientcomm.mail.base import MailTransport, OutgoingMail
from clientcomm.notifications.compose import Mailbox, _message_id, build_message, validate_domain
from clientcomm.notifications.inapp import inapp_records
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.models import (
    Notification,
    NotificationEvent,
    RecipientPlan,
    SkippedRecipient,
)
from clientcomm.notifications.templates import TemplateSet
from clientcomm.storage.base import Record, Store, Transaction

__all__ = [
    "JOB_KIND",
    "DeliveryFailure",
    "DeliveryReport",
    "DeliveryStatus",
    "JobStatus",
    "MailSettings",
    "NotificationBatch",
    "NotificationComposer",
    "RetryPolicy",
    "deliver_due",
    "delivery_status",
    "enqueue",
    "notification_jobs",
    "prepare",
    "retry_failed",
    "run_worker",
]

log = logging.getLogger("clientcomm.notifications")

JOB_KIND = "notify.job"
_DETAIL_MAX = 300


class JobStatus(enum.StrEnum):
    """States of a notification job."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


# -- building jobs ------------------------------------------------------------


@attrs.frozen
class NotificationBatch:
    """Everything one event notifies: e-mails, reported skips, in-app records."""

    event: NotificationEvent
    notifications: tuple[Notification, ...] = ()
    skipped: tuple[SkippedRecipient, ...] = ()
    inapp_staff_ids: tuple[str, ...] = ()


def prepare(
    event: NotificationEvent, plan: RecipientPlan, links: LinkTemplates
) -> NotificationBatch:
    """Turn the rules' :class:`RecipientPlan` into notifications with links.

    Raises:
        ConfigurationError: no link template for the event's kind.
        InvalidInputError: the link template needs a field the event lacks.
    """
    link = links.link(event)
    return NotificationBatch(
        event=event,
        notifications=tuple(Notification(event, r, link) for r in plan.recipients),
        skipped=plan.skipped,
        inapp_staff_ids=plan.inapp_staff_ids,
    )


def _job_id(event: NotificationEvent, who: str) -> str:
    raw = f"{event.kind}\x00{event.event_id}\x00{event.cause_id or ''}\x00{who}"
    return "nj-" + hashlib.sha256(raw.encode()).hexdigest()[:40]


def _event_data(event: NotificationEvent) -> dict[str, Any]:
    return {
        "v": 1,
        "kind": event.kind.value,
        "event_id": event.event_id,
        "cause_id": event.cause_id,
        "firm_name": event.firm_name,
        "client_id": event.client_id,
        "client_name": event.client_name,
        "count": event.count,
        "attempts": 0,
    }


def notification_jobs(
    batch: NotificationBatch | Iterable[Notification], *, now: datetime
) -> list[Record]:
    """Build (not insert) the outbox records for ``batch``: one ``pending`` job per
    notification, due at ``now``, and one ``failed`` record per skipped
    recipient (reason ``no_address``/``invalid_address``) so the event's status
    reports them. Ids are derived from (kind, event, cause, recipient), so
    building twice gives the same ids.

    Raises:
        InvalidInputError: a naive ``now``.
    """
    if now.tzinfo is None:
        raise InvalidInputError("now", "must be timezone-aware")
    if isinstance(batch, NotificationBatch):
        notifications: Iterable[Notification] = batch.notifications
        skipped = [(batch.event, s) for s in batch.skipped]
    else:
        notifications, skipped = batch, []
    records: list[Record] = []
    for n in notifications:
        data = _event_data(n.event)
        data["link"] = n.link
        data["to"] = {
            "ref": n.recipient.ref,
            "role": n.recipient.role.value,
            "name": n.recipient.name,
            "email": n.recipient.email,
            "language": n.recipient.language,
        }
        records.append(
            Record(
                kind=JOB_KIND,
                id=_job_id(n.event, n.recipient.email.casefold()),
                firm_id=n.event.firm_id,
                parent=n.event.event_id,
                status=JobStatus.PENDING.value,
                due_at=now,
                data=data,
                created_at=now,
            )
        )
    for event, skip in skipped:
        data = _event_data(event)
        data["to"] = {"ref": skip.ref, "role": skip.role.value}
        data["error"] = {"reason": skip.reason.value, "code": None, "detail": skip.detail}
        records.append(
            Record(
                kind=JOB_KIND,
                id=_job_id(event, "skip:" + skip.ref),
                firm_id=event.firm_id,
                parent=event.event_id,
                status=JobStatus.FAILED.value,
                data=data,
                created_at=now,
            )
        )
    return records


async def enqueue(
    tx: Transaction, batch: NotificationBatch | Iterable[Notification], *, now: datetime
) -> list[Record]:
    """Write ``batch``'s jobs (and in-app records) in the caller's transaction.

    Idempotent: records whose id already exists are left alone, so a fan-out
    step that runs twice does not notify twice. Returns the records inserted.

    Raises:
        InvalidInputError: a notification of another firm than ``tx``'s, a naive ``now``.
        ConflictError: a concurrent writer inserted the same job (at commit).
    """
    records = notification_jobs(batch, now=now)
    extra: list[Record] = []
    if isinstance(batch, NotificationBatch) and batch.inapp_staff_ids:
        extra = inapp_records(batch.event, batch.inapp_staff_ids, now=now)
    inserted: list[Record] = []
    for kind, group in ((JOB_KIND, records), ("notify.inapp", extra)):
        if not group:
            continue
        for record in group:
            if record.firm_id != tx.firm_id:
                raise InvalidInputError(
                    "firm_id", "notification belongs to another firm", value=record.firm_id
                )
        existing = await tx.get_many(kind, [r.id for r in group])
        new = [r for r in group if r.id not in existing]
        if new:
            inserted.extend(await tx.insert(new))
    return inserted


# -- rendering ----------------------------------------------------------------


@attrs.frozen
class MailSettings:
    """How notification mails are addressed.

    Attributes:
        sender: the From and envelope-sender address (e.g. ``portal@host.example``).
        message_id_domain: right-hand side of every ``Message-ID``; keep it
            stable, it makes resends recognisable.
        sender_name: display name in From; ``None`` uses the firm's name.
        reply_to: optional Reply-To address.

    Raises:
        InvalidInputError: (on construction) an invalid address, domain or name.
    """

    sender: str
    message_id_domain: str
    sender_name: str | None = None
    reply_to: str | None = None

    def __attrs_post_init__(self) -> None:
        Mailbox.parse(self.sender, self.sender_name, field="sender")
        validate_domain(self.message_id_domain)
        if self.reply_to is not None:
            Mailbox.parse(self.reply_to, field="reply_to")


class NotificationComposer:
    """Renders a job with the templates and builds its message (no I/O).

    Templates are compiled once when the :class:`TemplateSet` is built; the
    message is written directly as bytes (:mod:`clientcomm.notifications.compose`).
    """

    def __init__(self, settings: MailSettings, templates: TemplateSet | None = None) -> None:
        self.settings = settings
        self.templates = templates if templates is not None else TemplateSet()
        self._sender_address = Mailbox.parse(settings.sender, field="sender").address
        self._reply_to = (
            None
            if settings.reply_to is None
            else Mailbox.parse(settings.reply_to, field="reply_to")
        )
        self._domain = validate_domain(settings.message_id_domain)

    def __repr__(self) -> str:
        return f"NotificationComposer({self.settings!r}, {self.templates!r})"

    def message_id(self, job: Record) -> str:
        """The stable Message-ID of ``job``."""
        return _message_id(job.firm_id, job.id, self._domain)

    def compose(self, job: Record) -> OutgoingMail:
        """Render and build the message for one job.

        Raises:
            InvalidInputError: the job's data is malformed or unsafe (an invalid
                address, control characters in a name): the job can never be sent.
            ConfigurationError: a template failed to render.
        """
        data: Mapping[str, Any] = job.data
        try:
            to = data["to"]
            firm_name = str(data["firm_name"])
            recipient = Mailbox.parse(str(to["email"]), str(to.get("name") or ""), field="to")
            rendered = self.templates.render(
                data["kind"],
                to.get("language"),
                firm_name=firm_name,
                recipient_name=recipient.name or "",
                link=str(data["link"]),
                client_name=data.get("client_name"),
                count=data.get("count"),
            )
        except (KeyError, TypeError, AttributeError):
            raise InvalidInputError("job", "malformed notification job", value=job.id) from None
        sender_name = self.settings.sender_name or firm_name
        check_header_text(sender_name, "sender.name", max_length=300)
        return build_message(
            sender=Mailbox(sender_name, self._sender_address),
            to=recipient,
            reply_to=self._reply_to,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            message_id=self.message_id(job),
            date=job.created_at,
            language=rendered.language,
        )


# -- retry policy ----------------------------------------------------------------


@attrs.frozen
class RetryPolicy:
    """Exponential backoff with jitter for temporary failures.

    The n-th retry waits ``min(max_delay, initial_delay * factor ** (n - 1))``
    seconds, reduced by a random fraction of up to ``jitter`` (0.5: "equal
    jitter", between half and all of it). After ``max_attempts`` attempts the job
    fails with reason ``max_attempts``.

    Raises:
        InvalidInputError: (on construction) non-positive values or jitter
            outside 0..1.
    """

    max_attempts: int = 8
    initial_delay: float = 30.0
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.5

    def __attrs_post_init__(self) -> None:
        if self.max_attempts < 1:
            raise InvalidInputError("max_attempts", "must be at least 1")
        if self.initial_delay < 0 or self.max_delay < self.initial_delay or self.factor < 1:
            raise InvalidInputError("retry", "need 0 <= initial_delay <= max_delay, factor >= 1")
        if not 0.0 <= self.jitter <= 1.0:
            raise InvalidInputError("jitter", "must be between 0 and 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """Wait before retry number ``attempt`` (1 = the first retry)."""
        base = min(self.max_delay, self.initial_delay * self.factor ** max(0, attempt - 1))
        fraction = (rng or random).random()
        return timedelta(seconds=base * (1.0 - self.jitter * fraction))


# -- delivery -------------------------------------------------------------------


@attrs.frozen
class DeliveryReport:
    """What one :func:`deliver_due` call (or a worker run) did.

    Attributes:
        claimed: jobs leased.
        sent: delivered and recorded as sent.
        retried: temporary failures rescheduled.
        failed: permanent failures (or attempts exhausted) recorded.
        lost: outcomes not recorded because the lease was lost meanwhile (another
            worker now owns the job; it may be sent again, same Message-ID).
    """

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    lost: int = 0

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            *(
                getattr(self, f) + getattr(other, f)
                for f in ("claimed", "sent", "retried", "failed", "lost")
            )
        )


@attrs.frozen
class _Outcome:
    job: Record
    status: JobStatus
    error: dict[str, Any] | None = None
    response: str | None = None
    message_id: str | None = None


def _error_dict(exc: ClientCommError, reason: str) -> dict[str, Any]:
    ctx = exc.context
    return {
        "reason": str(ctx.get("reason") or reason),
        "code": ctx.get("code") if isinstance(ctx.get("code"), int) else None,
        "detail": str(ctx.get("detail") or exc.message)[:_DETAIL_MAX],
    }


def default_owner() -> str:
    """A worker id unique to this process: ``host:pid:random``."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def _attempt(
    job: Record, composer: NotificationComposer, transport: MailTransport
) -> _Outcome:
    try:
        mail = composer.compose(job)
    except InvalidInputError as exc:
        return _Outcome(job, JobStatus.FAILED, _error_dict(exc, "invalid"))
    except ConfigurationError as exc:
        log.error("notification job %s: template failed: %s", job.id, exc)
        return _Outcome(job, JobStatus.PENDING, _error_dict(exc, "template"))
    try:
        result = await transport.send(mail)
    except PermanentDeliveryError as exc:
        return _Outcome(
            job, JobStatus.FAILED, _error_dict(exc, "permanent"), message_id=mail.message_id
        )
    except DeliveryError as exc:
        return _Outcome(
            job, JobStatus.PENDING, _error_dict(exc, "temporary"), message_id=mail.message_id
        )
    except InvalidInputError as exc:
        return _Outcome(
            job, JobStatus.FAILED, _error_dict(exc, "invalid"), message_id=mail.message_id
        )
    except Exception as exc:  # a transport bug must not kill the batch
        log.exception("notification job %s: transport raised unexpectedly", job.id)
        return _Outcome(
            job,
            JobStatus.PENDING,
            {"reason": "error", "code": None, "detail": type(exc).__name__},
            message_id=mail.message_id,
        )
    return _Outcome(
        job, JobStatus.SENT, response=result.response[:_DETAIL_MAX], message_id=mail.message_id
    )


def _record_outcome(
    outcome: _Outcome, *, now: datetime, retry: RetryPolicy, rng: random.Random | None
) -> tuple[Record, str]:
    job = outcome.job
    data = dict(job.data)
    attempts = int(data.get("attempts", 0)) + 1
    data["attempts"] = attempts
    if outcome.message_id is not None:
        data["message_id"] = outcome.message_id
    common: dict[str, Any] = {"lease_owner": None, "lease_until": None}
    if outcome.status is JobStatus.SENT:
        data["sent_at"] = now.isoformat()
        data["response"] = outcome.response
        data.pop("last_error", None)
        return job.evolve(status="sent", due_at=None, data=data, **common), "sent"
    if outcome.status is JobStatus.FAILED:
        data["error"] = outcome.error
        data["failed_at"] = now.isoformat()
        return job.evolve(status="failed", due_at=None, data=data, **common), "failed"
    data["last_error"] = outcome.error
    if attempts >= retry.max_attempts:
        error = dict(outcome.error or {})
        error["reason"] = "max_attempts"
        error["detail"] = (
            f"gave up after {attempts} attempts; last: "
            f"{(outcome.error or {}).get('reason')}: {(outcome.error or {}).get('detail')}"
        )[:_DETAIL_MAX]
        data["error"] = error
        data["failed_at"] = now.isoformat()
        return job.evolve(status="failed", due_at=None, data=data, **common), "failed"
    due = now + retry.delay(attempts, rng)
    return job.evolve(status="pending", due_at=due, data=data, **common), "retried"


async def deliver_due(
    store: Store,
    transport: MailTransport,
    composer: NotificationComposer,
    *,
    now: datetime,
    owner: str | None = None,
    lease: timedelta = timedelta(minutes=5),
    limit: int = 100,
    retry: RetryPolicy | None = None,
    firm_id: str | None = None,
    rng: random.Random | None = None,
) -> DeliveryReport:
    """One delivery step: claim up to ``limit`` due jobs, send them concurrently,
    record the outcomes. A plain async function: run it from any task queue.

    The transport bounds concurrency (e.g. the SMTP pool size); ``lease`` must
    comfortably exceed the time one batch takes to send.

    Raises:
        StorageError: the store failed (outcomes not recorded are retried after
            the lease expires, with the same Message-ID).
        InvalidInputError: bad ``limit``/``owner``/naive ``now``.
    """
    retry = retry or RetryPolicy()
    owner = owner or default_owner()
    jobs = await store.claim(
        JOB_KIND,
        status=JobStatus.PENDING.value,
        owner=owner,
        now=now,
        lease=lease,
        limit=limit,
        firm_id=firm_id,
    )
    if not jobs:
        return DeliveryReport()
    outcomes = await asyncio.gather(*(_attempt(job, composer, transport) for job in jobs))
    by_firm: dict[str, list[tuple[Record, str]]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.status is not JobStatus.SENT and outcome.error is not None:
            log.warning(
                "notification job %s (%s) %s: %s %s",
                outcome.job.id,
                outcome.job.parent,
                "failed" if outcome.status is JobStatus.FAILED else "will retry",
                outcome.error.get("reason"),
                outcome.error.get("code"),
            )
        by_firm[outcome.job.firm_id].append(_record_outcome(outcome, now=now, retry=retry, rng=rng))
    counts = {"sent": 0, "retried": 0, "failed": 0, "lost": 0}
    for firm, updates in by_firm.items():
        try:
            async with store.transaction(firm) as tx:
                await tx.update([record for record, _ in updates])
        except (ConflictError, NotFoundError):
            # Some lease was lost: record the others one by one.
            for record, result in updates:
                try:
                    async with store.transaction(firm) as tx:
                        await tx.update([record])
                except (ConflictError, NotFoundError):
                    counts["lost"] += 1
                    log.warning("notification job %s: lease lost, outcome not recorded", record.id)
                else:
                    counts[result] += 1
        else:
            for _, result in updates:
                counts[result] += 1
    return DeliveryReport(claimed=len(jobs), **counts)


async def run_worker(
    store: Store,
    transport: MailTransport,
    composer: NotificationComposer,
    *,
    clock: Clock,
    owner: str | None = None,
    lease: timedelta = timedelta(minutes=5),
    batch: int = 100,
    retry: RetryPolicy | None = None,
    idle_interval: float = 1.0,
    stop_when_idle: bool = False,
    rng: random.Random | None = None,
) -> DeliveryReport:
    """Call :func:`deliver_due` in a loop until cancelled, sleeping
    ``idle_interval`` seconds (on ``clock``) whenever nothing was due. With
    ``stop_when_idle`` it returns the summed report as soon as nothing is due
    (jobs waiting for a later retry stay pending). A storage error is logged and
    retried after ``idle_interval``.

    Raises:
        asyncio.CancelledError: when cancelled (the usual way to stop it).
    """
    from clientcomm.errors import StorageError

    owner = owner or default_owner()
    total = DeliveryReport()
    while True:
        try:
            report = await deliver_due(
                store,
                transport,
                composer,
                now=clock.now(),
                owner=owner,
                lease=lease,
                limit=batch,
                retry=retry,
                rng=rng,
            )
        except StorageError:
            log.exception("notification worker: storage error; retrying")
            report = DeliveryReport()
            if stop_when_idle:
                raise
        total = total + report
        if report.claimed == 0:
            if stop_when_idle:
                return total
            await clock.sleep(idle_interval)


# -- status ---------------------------------------------------------------------


@attrs.frozen
class DeliveryFailure:
    """One failed notification of an event."""

    job_id: str
    recipient_ref: str
    reason: str
    code: int | None
    detail: str
    attempts: int
    recipient_email: str | None = attrs.field(default=None, repr=False)


@attrs.frozen
class DeliveryStatus:
    """Notification progress of one event (a mailing, a conversation)."""

    pending: int
    sent: int
    failed: int
    failures: tuple[DeliveryFailure, ...]

    @property
    def total(self) -> int:
        return self.pending + self.sent + self.failed

    def reasons(self) -> Mapping[str, int]:
        """Failures per reason (``no_address``, ``recipient_refused``, ...)."""
        out: dict[str, int] = defaultdict(int)
        for failure in self.failures:
            out[failure.reason] += 1
        return dict(out)


async def delivery_status(
    tx: Transaction, event_id: str, *, failures_limit: int = 1000
) -> DeliveryStatus:
    """Counts per status for ``event_id``'s notifications, and the first
    ``failures_limit`` failures with their reasons."""
    counts = await tx.count_by_status(JOB_KIND, parent=event_id)
    failed_records: Sequence[Record] = ()
    if counts.get("failed"):
        failed_records = await tx.list(
            JOB_KIND, parent=event_id, status="failed", limit=failures_limit
        )
    failures = []
    for record in failed_records:
        error = record.data.get("error") or {}
        to = record.data.get("to") or {}
        failures.append(
            DeliveryFailure(
                job_id=record.id,
                recipient_ref=str(to.get("ref", "")),
                reason=str(error.get("reason", "unknown")),
                code=error.get("code"),
                detail=str(error.get("detail", "")),
                attempts=int(record.data.get("attempts", 0)),
                recipient_email=to.get("email"),
            )
        )
    return DeliveryStatus(
        pending=counts.get("pending", 0),
        sent=counts.get("sent", 0),
        failed=counts.get("failed", 0),
        failures=tuple(failures),
    )


async def retry_failed(tx: Transaction, job_ids: Iterable[str], *, now: datetime) -> int:
    """Put failed jobs back to ``pending`` (e.g. after fixing the mail relay);
    attempts start over. Jobs that are not failed, or were skipped for lack of
    an address, are left alone. Returns how many were requeued.

    Raises:
        ConflictError: a job changed concurrently.
    """
    found = await tx.get_many(JOB_KIND, list(job_ids))
    requeue = []
    for record in found.values():
        if record.status != "failed" or "email" not in (record.data.get("to") or {}):
            continue
        data = dict(record.data)
        data["attempts"] = 0
        data["previous_error"] = data.pop("error", None)
        requeue.append(record.evolve(status="pending", due_at=now, data=data))
    if requeue:
        await tx.update(requeue)
    return len(requeue)
