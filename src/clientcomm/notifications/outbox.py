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

Each job is a :class:`~clientcomm.notifications.records.NotifyJob` (record kind
``notify.job``): ``parent`` is the event's id (the mailing, the conversation),
``status`` is ``pending``, ``sent`` or ``failed``, ``due_at`` carries the retry
backoff. ``tx.count_by_status(NotifyJob, parent=mailing_id)`` (on a
:class:`~clientcomm.records.RecordTx`) answers "how many notifications failed",
:func:`delivery_status` lists why. A stored job that does not decode (damaged
or edited ``data``) is marked ``failed`` with reason ``malformed`` when it is
claimed, alone: it never blocks the queue and is never sent.

What decides whom a job notifies and what it says (recipient address, names,
language, link, kind, event, cause, client) is covered by a MAC under the
firm's notice key (:func:`~clientcomm.notifications.records.job_mac`,
:mod:`clientcomm.notifications.keys`): :func:`write_jobs` (the one write path)
MACs each job, :func:`deliver_due` checks it before sending and
:func:`retry_failed` before requeuing (and MACs the rebuilt job). A job whose
fields were edited in the database is marked ``failed`` with reason
``integrity``, alone, and is never sent.

Delivery is at least once: a worker that crashes after the server accepted a
message but before recording it leaves the job leased; when the lease runs out
another worker sends it again with the same ``Message-ID`` (derived from the
job id), so the duplicate is recognisable downstream.

Temporary failures (connection errors, TLS/auth trouble, SMTP 4xx) are retried
with exponential backoff and jitter up to ``RetryPolicy.max_attempts``;
permanent ones (SMTP 5xx, an invalid address) stop at once. Both are recorded
on the job (``job.error``, a :class:`~clientcomm.notifications.records.JobError`:
``reason``, ``code``, ``detail``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs

from clientcomm.clock import Clock
from clientcomm.directory.base import Directory
from clientcomm.errors import (
    ClientCommError,
    ConfigurationError,
    ConflictError,
    DeliveryError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    PermanentDeliveryError,
    StorageError,
)
from clientcomm.ids import worker_id
from clientcomm.mail.addresses import check_header_text
from clientcomm.mail.base import MailTransport, OutgoingMail
from clientcomm.notifications.compose import Mailbox, _message_id, build_message, validate_domain
from clientcomm.notifications.inapp import inapp_records
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.models import (
    Notification,
    NotificationEvent,
    Recipient,
    RecipientPlan,
    SkippedRecipient,
)
from clientcomm.notifications.records import (
    INAPP_KIND,
    JOB_KIND,
    NOTIFY_JOB,
    InAppRecord,
    JobError,
    JobRecipient,
    JobStatus,
    NotifyJob,
    inapp_mac,
    job_mac,
)
from clientcomm.notifications.rules import (
    NoticeKey,
    client_contact_recipients,
    office_recipient,
    staff_recipient,
)
from clientcomm.notifications.templates import TemplateSet
from clientcomm.records import Meta, Records, RecordTx
from clientcomm.rules.access import reaches
from clientcomm.storage.base import Record, Store

if TYPE_CHECKING:
    from clientcomm.notifications.keys import NoticeKeys

__all__ = [
    "JOB_KIND",
    "DeliveryFailure",
    "DeliveryReport",
    "DeliveryStatus",
    "JobError",
    "JobRecipient",
    "JobStatus",
    "MailSettings",
    "NotificationBatch",
    "NotificationComposer",
    "NotifyJob",
    "RetryPolicy",
    "default_owner",
    "deliver_due",
    "delivery_status",
    "enqueue",
    "job_ok",
    "notification_jobs",
    "prepare",
    "retry_failed",
    "run_worker",
    "write_jobs",
]

log = logging.getLogger("clientcomm.notifications")

_DETAIL_MAX = 300


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


def _event_job(
    event: NotificationEvent, job_id: str, to: JobRecipient, now: datetime, **extra: Any
) -> NotifyJob:
    return NotifyJob(
        id=job_id,
        event_id=event.event_id,
        kind=event.kind,
        firm_name=event.firm_name,
        to=to,
        created_at=now,
        cause_id=event.cause_id,
        client_id=event.client_id,
        client_name=event.client_name,
        count=event.count,
        expires_at=event.expires_at,
        meta=Meta(firm_id=event.firm_id),
        **extra,
    )


def _split(
    batch: NotificationBatch | Iterable[Notification],
) -> tuple[list[Notification], list[tuple[NotificationEvent, SkippedRecipient]]]:
    if isinstance(batch, NotificationBatch):
        return list(batch.notifications), [(batch.event, s) for s in batch.skipped]
    return list(batch), []


def notification_jobs(
    batch: NotificationBatch | Iterable[Notification], *, now: datetime
) -> list[NotifyJob]:
    """Build (not insert) the outbox jobs for ``batch``: one ``pending`` job per
    notification, due at ``now``, and one ``failed`` job per skipped recipient
    (reason ``no_address``/``invalid_address``) so the event's status reports
    them. Ids are derived from (kind, event, cause, recipient), so building
    twice gives the same ids. Each job's ``meta.firm_id`` is its event's firm
    (inserting it into another firm's transaction is refused).

    Raises:
        InvalidInputError: a naive ``now``.
    """
    if now.tzinfo is None:
        raise InvalidInputError("now", "must be timezone-aware")
    notifications, skipped = _split(batch)
    jobs: list[NotifyJob] = []
    for n in notifications:
        r = n.recipient
        jobs.append(
            _event_job(
                n.event,
                _job_id(n.event, r.email.casefold()),
                JobRecipient(r.ref, r.role, r.name, r.email, r.language),
                now,
                due_at=now,
                link=n.link,
            )
        )
    for event, skip in skipped:
        jobs.append(
            _event_job(
                event,
                _job_id(event, "skip:" + skip.ref),
                JobRecipient(skip.ref, skip.role),
                now,
                status=JobStatus.FAILED,
                error=JobError(skip.reason.value, None, skip.detail),
            )
        )
    return jobs


async def enqueue(
    tx: RecordTx,
    batch: NotificationBatch | Iterable[Notification],
    *,
    now: datetime,
    key: NoticeKey | None = None,
    fresh: bool = False,
) -> list[NotifyJob]:
    """Write ``batch``'s jobs (and in-app records) in the caller's transaction.

    Idempotent: jobs and in-app records whose id already exists are left alone,
    so a fan-out step that runs twice does not notify twice. Returns the jobs
    inserted (the in-app records are written, not returned).

    ``fresh``: the batch's cause id was made for this very change (a new
    comment's id), so none of its ids can exist yet and the existence reads
    are skipped; should one exist after all, the unique id refuses the
    transaction at commit (``ConflictError``) instead of leaving it alone.

    ``key`` is the firm's notice key, fetched *before* the transaction
    (``await app.notice_keys.get(firm_id)``): every job and in-app record is
    MACed under it. Without it they carry no MAC, and once the firm has a
    notice key they are refused (failed, reason ``integrity``; left out of
    listings).

    Raises:
        InvalidInputError: a notification of another firm than ``tx``'s, a naive ``now``.
        ConflictError: a concurrent writer inserted the same job (at commit).
    """
    if not isinstance(batch, NotificationBatch):
        batch = list(batch)  # an iterable is read once
    events = (
        [batch.event, *(n.event for n in batch.notifications)]
        if isinstance(batch, NotificationBatch)
        else [n.event for n in batch]
    )
    for event in events:
        if event.firm_id != tx.firm_id:
            raise InvalidInputError(
                "firm_id", "notification belongs to another firm", value=event.firm_id
            )
    jobs = notification_jobs(batch, now=now)
    inapp: list[InAppRecord] = []
    if isinstance(batch, NotificationBatch) and batch.inapp_staff_ids:
        inapp = inapp_records(batch.event, batch.inapp_staff_ids, now=now)
    return await write_jobs(tx, jobs, inapp, key=key, fresh=fresh)


def job_ok(key: NoticeKey, job: NotifyJob) -> bool:
    """Whether ``job`` is as it was written (its MAC under ``key``)."""
    return key.ok(job.mac, job_mac(key.secret, job) if key.secret else None)


def _maced(key: NoticeKey | None, job: NotifyJob) -> NotifyJob:
    if key is None or key.secret is None:
        return job
    return attrs.evolve(job, mac=job_mac(key.secret, job))


async def write_jobs(
    tx: RecordTx,
    jobs: Sequence[NotifyJob],
    inapp: Sequence[InAppRecord] = (),
    *,
    key: NoticeKey | None = None,
    fresh: bool = False,
) -> list[NotifyJob]:
    """The one write path into the outbox (used by :func:`enqueue` and by the
    fan-out expansion): insert the jobs and in-app records whose ids do not
    exist yet, in the caller's transaction, each MACed under ``key`` (the
    firm's notice key; see :func:`enqueue`). Returns the jobs inserted.
    ``fresh`` skips the existence reads (see :func:`enqueue`).

    Raises:
        InvalidInputError: a job of another firm than ``tx``'s.
    """
    for job in jobs:
        if job.meta.firm_id and job.meta.firm_id != tx.firm_id:
            raise InvalidInputError(
                "firm_id", "notification belongs to another firm", value=job.meta.firm_id
            )
    if key is not None and key.secret is not None:
        secret = key.secret
        jobs = [attrs.evolve(j, mac=job_mac(secret, j)) for j in jobs]
        inapp = [attrs.evolve(r, mac=inapp_mac(secret, r)) for r in inapp]
    inserted: list[NotifyJob] = list(jobs)
    if jobs and not fresh:
        existing = await tx.raw.get_many(JOB_KIND, [j.id for j in jobs])
        inserted = [j for j in jobs if j.id not in existing]
    if inserted:
        await tx.insert(inserted)
    if inapp and not fresh:
        existing = await tx.raw.get_many(INAPP_KIND, [r.id for r in inapp])
        inapp = [r for r in inapp if r.id not in existing]
    if inapp:
        await tx.insert(inapp)
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

    def message_id(self, job: NotifyJob) -> str:
        """The stable Message-ID of ``job`` (from its firm, ``job.meta.firm_id``,
        and its id)."""
        return _message_id(job.meta.firm_id, job.id, self._domain)

    def compose(self, job: NotifyJob) -> OutgoingMail:
        """Render and build the message for one job.

        Raises:
            InvalidInputError: the job is unsafe or cannot be sent (an invalid
                address, control characters in a name, no address or link):
                the job can never be sent.
            ConfigurationError: a template failed to render.
        """
        to = job.to
        if to.email is None or job.link is None:
            raise InvalidInputError("job", "notification job has no address or link", value=job.id)
        recipient = Mailbox.parse(to.email, to.name or "", field="to")
        rendered = self.templates.render(
            job.kind,
            to.language,
            firm_name=job.firm_name,
            recipient_name=recipient.name or "",
            link=job.link,
            client_name=job.client_name,
            count=job.count,
            expires_at=job.expires_at,
        )
        sender_name = self.settings.sender_name or job.firm_name
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
        failed: permanent failures (or attempts exhausted) recorded, and claimed
            jobs that do not decode (marked failed, reason ``malformed``).
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
    job: NotifyJob
    status: JobStatus
    error: JobError | None = None
    response: str | None = None
    message_id: str | None = None
    accepted_at: datetime | None = None


def _job_error(exc: ClientCommError, reason: str) -> JobError:
    ctx = exc.context
    code = ctx.get("code")
    return JobError(
        reason=str(ctx.get("reason") or reason),
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        detail=str(ctx.get("detail") or exc.message)[:_DETAIL_MAX],
    )


def default_owner() -> str:
    """A worker id unique to this process and call: ``host:pid:random``
    (:func:`clientcomm.ids.worker_id`)."""
    return worker_id()


async def _attempt(
    job: NotifyJob,
    composer: NotificationComposer,
    transport: MailTransport,
    clock: Clock | None = None,
) -> _Outcome:
    try:
        mail = composer.compose(job)
    except InvalidInputError as exc:
        return _Outcome(job, JobStatus.FAILED, _job_error(exc, "invalid"))
    except ConfigurationError as exc:
        log.error("notification job %s: template failed: %s", job.id, exc)
        return _Outcome(job, JobStatus.PENDING, _job_error(exc, "template"))
    except Exception as exc:  # e.g. UnicodeEncodeError: a value no encoder can write
        # A job that cannot be rendered fails alone, for good: raising here
        # would abort the batch after its other mails were sent but before
        # they were recorded, and they would be sent again after every lease.
        log.error("notification job %s: cannot be rendered: %s", job.id, type(exc).__name__)
        return _Outcome(job, JobStatus.FAILED, JobError("unrenderable", None, type(exc).__name__))
    try:
        result = await transport.send(mail)
    except PermanentDeliveryError as exc:
        return _Outcome(
            job, JobStatus.FAILED, _job_error(exc, "permanent"), message_id=mail.message_id
        )
    except DeliveryError as exc:
        return _Outcome(
            job, JobStatus.PENDING, _job_error(exc, "temporary"), message_id=mail.message_id
        )
    except InvalidInputError as exc:
        return _Outcome(
            job, JobStatus.FAILED, _job_error(exc, "invalid"), message_id=mail.message_id
        )
    except Exception as exc:  # a transport bug must not kill the batch
        log.exception("notification job %s: transport raised unexpectedly", job.id)
        return _Outcome(
            job,
            JobStatus.PENDING,
            JobError("error", None, type(exc).__name__),
            message_id=mail.message_id,
        )
    return _Outcome(
        job,
        JobStatus.SENT,
        response=result.response[:_DETAIL_MAX],
        message_id=mail.message_id,
        accepted_at=clock.now() if clock is not None else None,
    )


def _record_outcome(
    outcome: _Outcome, *, now: datetime, retry: RetryPolicy, rng: random.Random | None
) -> tuple[NotifyJob, str]:
    job = outcome.job
    attempts = job.attempts + 1
    common: dict[str, Any] = {
        "attempts": attempts,
        "message_id": outcome.message_id if outcome.message_id is not None else job.message_id,
        "meta": attrs.evolve(job.meta, lease_owner=None, lease_until=None),
    }
    if outcome.status is JobStatus.SENT:
        updated = attrs.evolve(
            job,
            status=JobStatus.SENT,
            due_at=None,
            sent_at=now,
            response=outcome.response,
            accepted_at=outcome.accepted_at,
            last_error=None,
            **common,
        )
        return updated, "sent"
    if outcome.status is JobStatus.FAILED:
        updated = attrs.evolve(
            job,
            status=JobStatus.FAILED,
            due_at=None,
            error=outcome.error,
            failed_at=now,
            **common,
        )
        return updated, "failed"
    last = outcome.error
    if attempts >= retry.max_attempts:
        error = JobError(
            reason="max_attempts",
            code=last.code if last else None,
            detail=(
                f"gave up after {attempts} attempts; last: "
                f"{last.reason if last else None}: {last.detail if last else None}"
            )[:_DETAIL_MAX],
        )
        updated = attrs.evolve(
            job,
            status=JobStatus.FAILED,
            due_at=None,
            last_error=last,
            error=error,
            failed_at=now,
            **common,
        )
        return updated, "failed"
    due = now + retry.delay(attempts, rng)
    updated = attrs.evolve(job, status=JobStatus.PENDING, due_at=due, last_error=last, **common)
    return updated, "retried"


def _malformed(record: Record, now: datetime) -> Record:
    """A claimed job that does not decode, marked failed (raw: its data is
    kept, with the reason added) and released."""
    data = dict(record.data)
    data["error"] = {
        "reason": "malformed",
        "code": None,
        "detail": "the stored job does not decode",
    }
    data["failed_at"] = now.isoformat()
    return record.evolve(
        status=JobStatus.FAILED.value,
        due_at=None,
        data=data,
        lease_owner=None,
        lease_until=None,
    )


async def _fail_malformed(store: Store, records: Sequence[Record], now: datetime) -> dict[str, int]:
    counts = {"failed": 0, "lost": 0}
    for record in records:  # one transaction each: every one fails alone
        try:
            async with store.transaction(record.firm_id) as tx:
                await tx.update([_malformed(record, now)])
        except (ConflictError, NotFoundError, InvalidInputError):
            counts["lost"] += 1
            log.warning("notification job %s: malformed, not recorded", record.id)
        else:
            counts["failed"] += 1
            log.error("notification job %s (%s): malformed, failed", record.id, record.parent)
    return counts


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
    keys: NoticeKeys | None = None,
    clock: Clock | None = None,
) -> DeliveryReport:
    """One delivery step: claim up to ``limit`` due jobs, send them concurrently,
    record the outcomes. A plain async function: run it from any task queue.

    With ``clock``, a sent job also records when the transport returned the
    server's acceptance (``accepted_at``, for proof of delivery).

    The transport bounds concurrency (e.g. the SMTP pool size); ``lease`` must
    comfortably exceed the time one batch takes to send.

    With ``keys`` (the app's :class:`~clientcomm.notifications.keys.NoticeKeys`)
    each job's MAC is checked before it is sent (the firm's key is fetched
    once per call): a job that does not match is marked failed, reason
    ``integrity``, and not sent; a firm whose key cannot be opened leaves its
    jobs leased (logged, retried after the lease). Without ``keys`` nothing
    is checked (as before 0.2).

    Raises:
        StorageError: the store failed (outcomes not recorded are retried after
            the lease expires, with the same Message-ID).
        InvalidInputError: bad ``limit``/``owner``/naive ``now``.
    """
    retry = retry or RetryPolicy()
    owner = owner or default_owner()
    records = Records(store)
    jobs, damaged = await records.claim(
        NotifyJob,
        status=JobStatus.PENDING.value,
        owner=owner,
        now=now,
        lease=lease,
        limit=limit,
        firm_id=firm_id,
    )
    if not jobs and not damaged:
        return DeliveryReport()
    counts = {"sent": 0, "retried": 0, "failed": 0, "lost": 0}
    if damaged:
        for key, value in (await _fail_malformed(store, damaged, now)).items():
            counts[key] += value
    refused: list[_Outcome] = []
    if keys is not None and jobs:
        jobs, refused = await _checked(keys, jobs)
    outcomes = await asyncio.gather(*(_attempt(job, composer, transport, clock) for job in jobs))
    outcomes = [*refused, *outcomes]
    by_firm: dict[str, list[tuple[NotifyJob, str]]] = defaultdict(list)
    for outcome in outcomes:
        if outcome.status is not JobStatus.SENT and outcome.error is not None:
            log.warning(
                "notification job %s (%s) %s: %s %s",
                outcome.job.id,
                outcome.job.event_id,
                "failed" if outcome.status is JobStatus.FAILED else "will retry",
                outcome.error.reason,
                outcome.error.code,
            )
        by_firm[outcome.job.meta.firm_id].append(
            _record_outcome(outcome, now=now, retry=retry, rng=rng)
        )
    # Record every outcome that can be recorded, whatever fails beside it: an
    # outcome left unrecorded is a mail sent again after the lease.
    storage_error: StorageError | None = None
    for firm, updates in by_firm.items():
        try:
            async with records.transaction(firm) as tx:
                await tx.update([job for job, _ in updates])
        except Exception:
            # Some lease was lost, or one job cannot be written: record the
            # others one by one.
            for job, result in updates:
                try:
                    async with records.transaction(firm) as tx:
                        await tx.update([job])
                except (ConflictError, NotFoundError):
                    counts["lost"] += 1
                    log.warning("notification job %s: lease lost, outcome not recorded", job.id)
                except Exception as exc:
                    counts["lost"] += 1
                    log.error(
                        "notification job %s: outcome %s not recorded: %s",
                        job.id,
                        result,
                        type(exc).__name__,
                    )
                    if isinstance(exc, StorageError) and storage_error is None:
                        storage_error = exc
                else:
                    counts[result] += 1
        else:
            for _, result in updates:
                counts[result] += 1
    if storage_error is not None:
        raise storage_error
    return DeliveryReport(claimed=len(jobs) + len(refused) + len(damaged), **counts)


_INTEGRITY = JobError(
    "integrity", None, "the stored notice does not match its MAC (edited in the database?)"
)


async def _checked(
    keys: NoticeKeys, jobs: Sequence[NotifyJob]
) -> tuple[list[NotifyJob], list[_Outcome]]:
    """The jobs whose MAC matches, and a failed outcome (reason ``integrity``)
    for each that does not; the jobs of a firm whose key cannot be opened are
    left out (they stay leased). One key look-up per firm."""
    firm_keys: dict[str, NoticeKey | None] = {}
    for firm in dict.fromkeys(j.meta.firm_id for j in jobs):
        try:
            firm_keys[firm] = await keys.get(firm, create=False)
        except ConfigurationError:
            raise
        except (IntegrityError, InvalidInputError) as exc:
            log.error("notification jobs of firm %s left: notice key: %s", firm, exc)
            firm_keys[firm] = None
    good: list[NotifyJob] = []
    refused: list[_Outcome] = []
    for job in jobs:
        key = firm_keys[job.meta.firm_id]
        if key is None:
            continue
        if job_ok(key, job):
            good.append(job)
        else:
            log.error(
                "notification job %s (%s): does not match its MAC (edited?); failed, not sent",
                job.id,
                job.event_id,
            )
            refused.append(_Outcome(job, JobStatus.FAILED, _INTEGRITY))
    return good, refused


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

    Deprecated: run the ``notifications.deliver`` step instead, through
    :class:`clientcomm.Worker` or ``ClientComm.run_step("notifications.deliver")``.

    Raises:
        asyncio.CancelledError: when cancelled (the usual way to stop it).
    """
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
                clock=clock,
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


def _failure(job: NotifyJob) -> DeliveryFailure:
    error = job.error
    return DeliveryFailure(
        job_id=job.id,
        recipient_ref=job.to.ref,
        reason=error.reason if error else "unknown",
        code=error.code if error else None,
        detail=error.detail if error else "",
        attempts=job.attempts,
        recipient_email=job.to.email,
    )


def _raw_failure(record: Record) -> DeliveryFailure:
    """A failed job that does not decode, read as far as it goes."""
    data = record.data
    error = data.get("error")
    error = error if isinstance(error, Mapping) else {}
    to = data.get("to")
    to = to if isinstance(to, Mapping) else {}
    code = error.get("code")
    attempts = data.get("attempts")
    email = to.get("email")
    return DeliveryFailure(
        job_id=record.id,
        recipient_ref=str(to.get("ref", "")),
        reason=str(error.get("reason") or "malformed"),
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        detail=str(error.get("detail", ""))[:_DETAIL_MAX],
        attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0,
        recipient_email=email if isinstance(email, str) else None,
    )


async def delivery_status(
    tx: RecordTx, event_id: str, *, failures_limit: int = 1000
) -> DeliveryStatus:
    """Counts per status for ``event_id``'s notifications, and the first
    ``failures_limit`` failures with their reasons (a job that does not decode
    is listed with the reason stored on it, ``malformed``)."""
    counts = await tx.count_by_status(NotifyJob, parent=event_id)
    failed_records: Sequence[Record] = ()
    if counts.get(JobStatus.FAILED.value):
        failed_records = await tx.raw.list(
            JOB_KIND, parent=event_id, status=JobStatus.FAILED.value, limit=failures_limit
        )
    failures = []
    for record in failed_records:
        try:
            failures.append(_failure(NOTIFY_JOB.decode(record)))
        except IntegrityError:
            failures.append(_raw_failure(record))
    return DeliveryStatus(
        pending=counts.get(JobStatus.PENDING.value, 0),
        sent=counts.get(JobStatus.SENT.value, 0),
        failed=counts.get(JobStatus.FAILED.value, 0),
        failures=tuple(failures),
    )


def _requeued(job: NotifyJob, now: datetime) -> NotifyJob:
    return attrs.evolve(
        job,
        status=JobStatus.PENDING,
        due_at=now,
        attempts=0,
        previous_error=job.error,
        error=None,
    )


async def _current_recipient(directory: Directory, job: NotifyJob) -> Recipient | None:
    """The job's recipient as the Directory has it now (by ``job.to.ref``),
    through the same rules that chose it; ``None`` if it gets no e-mail now
    (gone, no portal access any more, inactive, still no usable address)."""
    firm_id = job.meta.firm_id
    ref = job.to.ref
    try:
        if ref.startswith("contact:") and job.client_id is not None:
            contact_id = ref.removeprefix("contact:")
            contacts = await directory.list_contacts(firm_id, [job.client_id])
            plan = client_contact_recipients(
                [c for c in contacts.get(job.client_id, ()) if c.id == contact_id]
            )
        elif ref.startswith("staff:"):
            staff = await directory.get_staff(firm_id, ref.removeprefix("staff:"))
            if job.client_id is not None and not reaches(staff, job.client_id):
                return None
            plan = staff_recipient(staff)
        elif ref == "office":
            plan = office_recipient(await directory.get_firm(firm_id))
        else:
            return None
    except NotFoundError:
        return None
    return plan.recipients[0] if plan.recipients else None


async def retry_failed(
    tx: RecordTx,
    job_ids: Iterable[str],
    *,
    now: datetime,
    directory: Directory | None = None,
    links: LinkTemplates | None = None,
    key: NoticeKey | None = None,
) -> int:
    """Put failed jobs back to ``pending`` (e.g. after fixing the mail relay or
    an address); attempts start over and the error is kept as
    ``previous_error``. Returns how many were requeued.

    With ``key`` (the firm's notice key, fetched before the transaction) a
    job is requeued only if its MAC matches (a job edited in the database, or
    one that failed for ``integrity``, stays failed; logged), and each
    requeued job gets a fresh MAC over what it is now.

    Without ``directory``, each job is sent again as it was built: jobs skipped
    for lack of a (valid) address (``no_address``, ``invalid_address``) are
    left alone. With ``directory`` and ``links``, each job's recipient
    (``job.to.ref``: a contact, a staff member, the office) is resolved again
    from the Directory through the same rules (a contact with portal access, an
    active staff member who may see the client, the firm's office address), and
    the job is rebuilt with the current name, address, language and, for a
    skipped recipient, its link: so a fixed address is used. A recipient that
    still gets no e-mail (no address, gone, no longer registered) stays failed,
    as does one whose current address already has its own job for the event
    (each address gets one mail per event). Jobs that are not failed or do not
    decode are left alone.

    Raises:
        InvalidInputError: ``directory`` without ``links`` or the reverse.
        ConflictError: a job changed concurrently.
    """
    if (directory is None) != (links is None):
        raise InvalidInputError("directory", "pass directory and links together")
    found = await tx.get_many(NotifyJob, list(job_ids), decode_errors="skip")
    failed = [job for job in found.values() if job.status is JobStatus.FAILED]
    if key is not None:
        for job in failed:
            if not job_ok(key, job):
                log.error("notification job %s: does not match its MAC; not requeued", job.id)
        failed = [job for job in failed if job_ok(key, job)]
    if directory is None or links is None:
        requeue = [_requeued(job, now) for job in failed if job.to.email is not None]
    else:
        rebuilt: list[tuple[NotifyJob, str]] = []
        for job in failed:
            recipient = await _current_recipient(directory, job)
            if recipient is None:
                continue
            event = NotificationEvent(
                kind=job.kind,
                firm_id=job.meta.firm_id,
                firm_name=job.firm_name,
                event_id=job.event_id,
                cause_id=job.cause_id,
                client_id=job.client_id,
                client_name=job.client_name,
                count=job.count,
                expires_at=job.expires_at,
            )
            to = JobRecipient(
                recipient.ref, recipient.role, recipient.name, recipient.email, recipient.language
            )
            link = job.link if job.link is not None else links.link(event)
            job = attrs.evolve(_requeued(job, now), to=to, link=link)
            rebuilt.append((job, _job_id(event, recipient.email.casefold())))
        own_ids = {own for _, own in rebuilt}
        existing = await tx.raw.get_many(JOB_KIND, list(own_ids)) if own_ids else {}
        requeue, taken = [], set()
        for job, own in rebuilt:
            if (own != job.id and own in existing) or own in taken:
                continue  # that address has its own job for the event already
            taken.add(own)
            requeue.append(job)
    if requeue:
        await tx.update([_maced(key, job) for job in requeue])
    return len(requeue)
