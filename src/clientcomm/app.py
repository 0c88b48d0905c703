"""The :class:`ClientComm` facade: wires the ports and exposes the services.

Backends are passed to the constructor (like httpx's transports); nothing is
global. For tests, :meth:`ClientComm.in_memory` wires in-memory backends.

Background work is the app's :class:`~clientcomm.steps.StepRegistry`: every
capability contributes the steps of its ``steps`` module, and
:meth:`ClientComm.run_once`, :meth:`ClientComm.drain`,
:class:`~clientcomm.worker.Worker` and a host's task queue
(:meth:`ClientComm.run_step`) all run those same steps.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from clientcomm.announcements import AnnouncementService
from clientcomm.attachments import DEFAULT_MAX_SIZE, AttachmentScanner, AttachmentStore
from clientcomm.attachments.steps import STEPS as ATTACHMENT_STEPS
from clientcomm.audit import AuditTrail
from clientcomm.audit import append as audit
from clientcomm.audit.steps import STEPS as AUDIT_STEPS
from clientcomm.blobs.base import BlobStore
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.clock import Clock, SystemClock
from clientcomm.compliance import ComplianceService
from clientcomm.compliance.steps import STEPS as COMPLIANCE_STEPS
from clientcomm.conversations import ConversationService, ConversationSettings
from clientcomm.conversations.steps import STEPS as CONVERSATION_STEPS
from clientcomm.crypto.envelope import Sealer
from clientcomm.crypto.keys import KeyProvider
from clientcomm.crypto.memory import MemoryKeyProvider
from clientcomm.crypto.retention import RetentionRule
from clientcomm.directory.base import Directory
from clientcomm.directory.memory import MemoryDirectory
from clientcomm.errors import ConfigurationError, InvalidInputError
from clientcomm.ids import worker_id
from clientcomm.letters.run_steps import STEPS as LETTER_RUN_STEPS
from clientcomm.mail.base import MailTransport
from clientcomm.mail.memory import MemoryTransport
from clientcomm.mailing import MailingService
from clientcomm.mailing.personalise import ClientFields
from clientcomm.mailing.steps import STEPS as MAILING_STEPS
from clientcomm.messages import MessageService
from clientcomm.notifications.keys import NoticeKeys
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.outbox import (
    MailSettings,
    NotificationComposer,
    RetryPolicy,
    retry_failed,
)
from clientcomm.notifications.steps import STEPS as NOTIFICATION_STEPS
from clientcomm.notifications.templates import TemplateSet
from clientcomm.postal.base import PostalProvider
from clientcomm.records import Records
from clientcomm.records.rewrap import STEPS as KEY_STEPS
from clientcomm.records.rewrap import RewrapJob, rewrap_job
from clientcomm.records.tx import check_lease
from clientcomm.rules.access import AccessPolicy, as_policy
from clientcomm.rules.readstate import ReadPolicy
from clientcomm.sharing import SharingService
from clientcomm.sharing.steps import STEPS as SHARING_STEPS
from clientcomm.steps import Step, StepRegistry
from clientcomm.storage.base import Store
from clientcomm.storage.memory import MemoryStore

__all__ = ["BUILTIN_STEPS", "ClientComm"]

#: clientcomm's own background steps, in the order :meth:`ClientComm.run_once` runs them.
BUILTIN_STEPS: tuple[Step, ...] = (
    *MAILING_STEPS,
    *ATTACHMENT_STEPS,
    *SHARING_STEPS,
    *LETTER_RUN_STEPS,
    *NOTIFICATION_STEPS,
    *KEY_STEPS,
    *COMPLIANCE_STEPS,
    *CONVERSATION_STEPS,
    *AUDIT_STEPS,
)


class ClientComm:
    """Everything clientcomm offers, over the backends you pass.

    Args:
        store: clientcomm's own state (memory, SQLite, PostgreSQL, yours).
        directory: the host's client master data.
        keys: per-client keys (``LocalKeyProvider`` in production).
        blobs: where sealed attachment bytes go.
        transport: how notification e-mails leave (``SMTPTransport``).
        links: link templates for notification e-mails.
        mail: sender address and Message-ID domain for notifications.
        templates: the notification templates (a :class:`TemplateSet` over the
            host's directory); default: the bundled German and English ones.
        clock: time source (``ManualClock`` in tests).
        access: the access rules (default: :data:`~clientcomm.rules.access.DEFAULT_RULES`).
        read_policy: when a message counts as read.
        retention: how long sealed records must be kept.
        max_attachment_size: largest accepted attachment in bytes.
        scanner: the host's check of every attachment before it is stored (a
            virus scanner: ``async (filename, content_type, chunks) -> None``,
            raising to refuse; see :class:`~clientcomm.attachments.AttachmentScanner`).

        fields: the host's own placeholder values per client for personalised
            mailings (:class:`~clientcomm.mailing.personalise.ClientFields`;
            workers need the same one as the submitting process).
        steps: extra background steps of the host's own (run after ours).
        conversations: the host's settings for conversations (default
            assignee, reopening, escalation; see
            :class:`~clientcomm.conversations.ConversationSettings`).
        max_document_size: largest document accepted by portal sharing and
            client uploads, in bytes (default 1 GiB).
        share_reminder_before: how long before a share's expiry its sharer is
            reminded (``None``: never; default 3 days).
        postal: the postal provider serial-letter runs order through
            (:class:`~clientcomm.postal.PostalProvider`, e.g.
            :class:`~clientcomm.postal.FileDropProvider`); default none: the
            dispatch button shows "feature unavailable" and
            ``letter_runs.order`` raises ``ConfigurationError``. Kept as
            ``app.letter_runs.provider`` (which may still be set later).

    Services: :attr:`messages` (client chats), :attr:`mailings` (mass mailing),
    :attr:`shares` (the client portal's documents, folders, channels, uploads),
    :attr:`announcements` (firm announcements in the client portal),
    :attr:`conversations` (seed 002: status, comments, notifications),
    :attr:`audit` (the tamper-evident audit trail: query, export, verify),
    :attr:`compliance` (retention policies, erasure, the client data export).
    :attr:`notice_keys` holds the firms' notice MAC keys
    (:class:`~clientcomm.notifications.keys.NoticeKeys`): pass
    ``await app.notice_keys.get(firm_id)`` as ``key`` to
    :func:`~clientcomm.notifications.outbox.enqueue` and
    :func:`~clientcomm.notifications.inapp.list_inapp`.
    Background work: :attr:`steps`, run by :meth:`run_once`, :meth:`run_step`
    or :class:`clientcomm.worker.Worker`.
    """

    def __init__(
        self,
        *,
        store: Store,
        directory: Directory,
        keys: KeyProvider,
        blobs: BlobStore,
        transport: MailTransport,
        links: LinkTemplates,
        mail: MailSettings,
        clock: Clock | None = None,
        access: AccessPolicy | None = None,
        read_policy: ReadPolicy | None = None,
        retention: RetentionRule | None = None,
        retry: RetryPolicy | None = None,
        max_attachment_size: int = DEFAULT_MAX_SIZE,
        scanner: AttachmentScanner | None = None,
        mailing_batch: int = 500,
        lease: timedelta = timedelta(seconds=60),
        steps: Iterable[Step] = (),
        templates: TemplateSet | None = None,
        fields: ClientFields | None = None,
        conversations: ConversationSettings | None = None,
        max_document_size: int | None = None,
        share_reminder_before: timedelta | None = timedelta(days=3),
        postal: PostalProvider | None = None,
    ) -> None:
        if postal is not None and not isinstance(postal, PostalProvider):
            raise ConfigurationError(
                f"postal must be a PostalProvider, not {type(postal).__name__}"
            )
        self.store = store
        self.directory = directory
        self.blobs = blobs
        self.transport = transport
        self.links = links
        self.lease = check_lease(lease)
        self.access = as_policy(access)
        self.worker_id = worker_id()
        self.clock: Clock = clock or SystemClock()
        self.sealer = Sealer(keys, clock=self.clock, retention=retention)
        self.notice_keys = NoticeKeys(store, self.sealer, clock=self.clock)
        self.attachments = AttachmentStore(
            blobs,
            self.sealer,
            max_size=max_attachment_size,
            store=store,
            clock=self.clock,
            scanner=scanner,
        )
        self.composer = NotificationComposer(mail, templates)
        self.retry = retry or RetryPolicy()
        self.messages = MessageService(
            store=store,
            directory=directory,
            sealer=self.sealer,
            attachments=self.attachments,
            clock=self.clock,
            access=self.access,
            read_policy=read_policy,
        )
        self.mailings = MailingService(
            store=store,
            directory=directory,
            sealer=self.sealer,
            attachments=self.attachments,
            links=links,
            clock=self.clock,
            access=self.access,
            read_policy=read_policy,
            lease=lease,
            batch_size=mailing_batch,
            fields=fields,
            notice_keys=self.notice_keys,
        )
        self.messages.keep_blobs_while(self.mailings.shared_blobs_in_use)
        # portal sharing (seed 001): documents, folders, channels, uploads
        self.shares = SharingService(
            store=store,
            directory=directory,
            sealer=self.sealer,
            attachments=self.attachments,
            clock=self.clock,
            access=self.access,
            links=links,
            notice_keys=self.notice_keys,
            read_policy=read_policy,
            reminder_before=share_reminder_before,
            **({} if max_document_size is None else {"max_document_size": max_document_size}),
        )
        # announcements (seed 004): "remove after" days in the firm's zone
        self.announcements = AnnouncementService(
            store=store, directory=directory, clock=self.clock, access=self.access
        )
        # conversations (seed 002): status, comments, notifications
        self.conversations = ConversationService(
            store=store,
            directory=directory,
            sealer=self.sealer,
            attachments=self.attachments,
            links=links,
            notice_keys=self.notice_keys,
            clock=self.clock,
            access=self.access,
            settings=conversations,
        )
        self.audit = AuditTrail(store, clock=self.clock)
        self.compliance = ComplianceService(self)
        from clientcomm.letters.runs import LetterRuns  # serial-letter runs (seed 003)

        self.letter_runs = LetterRuns(
            store=store,
            directory=directory,
            sealer=self.sealer,
            attachments=self.attachments,
            notice_keys=self.notice_keys,
            links=links,
            clock=self.clock,
            access=self.access,
            sharing=self.shares,
            provider=postal,
        )
        self.steps = StepRegistry((*BUILTIN_STEPS, *steps))

    @classmethod
    def in_memory(
        cls,
        *,
        clock: Clock | None = None,
        directory: Directory | None = None,
        links: LinkTemplates | None = None,
        **kwargs: object,
    ) -> ClientComm:
        """Everything in memory, for tests: MemoryStore, MemoryDirectory,
        MemoryKeyProvider, MemoryBlobStore and MemoryTransport (inspect
        ``app.transport.sent``)."""
        return cls(
            store=MemoryStore(),
            directory=directory or MemoryDirectory(),
            keys=MemoryKeyProvider(),
            blobs=MemoryBlobStore(),
            transport=MemoryTransport(),
            links=links
            or LinkTemplates(default="https://portal.example/{firm_id}/clients/{client_id}"),
            mail=MailSettings(sender="portal@portal.example", message_id_domain="portal.example"),
            clock=clock,
            **kwargs,  # type: ignore[arg-type]
        )

    # -- keys ------------------------------------------------------------------------
    async def rotate_client_key(
        self, firm_id: str, client_id: str, *, actor: str = "system"
    ) -> RewrapJob:
        """Rotate ``client_id``'s key to a new version and queue the re-wrap of
        every value sealed for it (the ``keys.rewrap`` step, resumable, in
        batches; :meth:`drain` or a worker runs it). Returns the queued job.
        Audited as ``keys.rotated`` in the transaction that queues the job
        (the key provider rotates first: if that transaction fails, rotate
        again).

        Raises:
            KeyDestroyedError: the client was forgotten.
            StorageError: the backend failed.
        """
        await self.sealer.rotate_client_key(firm_id, client_id)
        return await self._queue_rewrap(firm_id, client_id, actor, rotated=True)

    async def queue_rewrap(
        self, firm_id: str, client_id: str | None = None, *, actor: str = "system"
    ) -> RewrapJob:
        """Queue a re-wrap of one client's sealed values (``None``: every owner
        of the firm, mailing staging included), e.g. after a key provider's
        own rotation. Returns the job; its counts fill in as it runs. Audited
        as ``keys.rewrap_queued``."""
        return await self._queue_rewrap(firm_id, client_id, actor, rotated=False)

    async def _queue_rewrap(
        self, firm_id: str, client_id: str | None, actor: str, *, rotated: bool
    ) -> RewrapJob:
        records = Records(self.store)
        now = self.clock.now()
        job = rewrap_job(client_id, now=now)
        async with records.transaction(firm_id) as tx:
            if rotated and client_id is not None:
                await audit(
                    tx,
                    subject=f"client:{client_id}",
                    operation="keys.rotated",
                    actor=actor,
                    at=now,
                    client=client_id,
                    objects=(f"key.rewrap:{job.id}",),
                )
            else:
                await audit(
                    tx,
                    subject=f"key.rewrap:{job.id}",
                    operation="keys.rewrap_queued",
                    actor=actor,
                    at=now,
                    client=client_id,
                )
            job = await tx.insert_one(job)
        return job

    async def forget_client(
        self, firm_id: str, client_id: str, *, actor: str = "system", override: bool = False
    ) -> bool:
        """Crypto-shred a client (:meth:`Sealer.forget_client`: the retention
        rule is asked first) and audit it as ``client.forgotten``. Returns
        whether keys existed. Idempotent: if writing the audit record fails
        after the keys were destroyed, call it again (it records the retry).

        Raises:
            RetentionError: records must still be kept (nothing destroyed or written).
            StorageError: a backend failed.
        """
        existed = await self.sealer.forget_client(firm_id, client_id, override=override)
        async with Records(self.store).transaction(firm_id) as tx:
            await audit(
                tx,
                subject=f"client:{client_id}",
                operation="client.forgotten",
                actor=actor,
                at=self.clock.now(),
                client=client_id,
                keys_existed=existed,
                override=override,
            )
        return existed

    async def rewrap_status(self, firm_id: str, job_id: str) -> RewrapJob:
        """A re-wrap job as it stands.

        Raises:
            NotFoundError: unknown job.
        """
        return await Records(self.store).get(RewrapJob, firm_id, job_id)

    # -- notifications -------------------------------------------------------------
    async def retry_notifications(self, firm_id: str, job_ids: Iterable[str]) -> int:
        """Send failed notification jobs again, each rebuilt from the Directory
        as it is now (:func:`~clientcomm.notifications.outbox.retry_failed` with
        this app's Directory and links): a contact skipped for lack of an
        address that has one now is mailed at it; one that still has none stays
        failed, as does a job that does not match its MAC (edited in the
        database). Returns how many jobs were requeued (the
        ``notifications.deliver`` step sends them).

        Raises:
            ConflictError: a job changed concurrently (nothing was requeued).
            StorageError: the backend failed.
        """
        key = await self.notice_keys.get(firm_id, create=False)
        async with Records(self.store).transaction(firm_id) as tx:
            return await retry_failed(
                tx,
                job_ids,
                now=self.clock.now(),
                directory=self.directory,
                links=self.links,
                key=key,
            )

    async def run_step(self, name: str, *, limit: int = 500) -> int:
        """Run one registered background step once (what a host's task queue
        calls, e.g. ``await app.run_step("mailing.fanout")``). Returns how many
        items it finished; 0 means nothing was due.

        Raises:
            InvalidInputError: unknown step name, or ``limit`` not positive.
            StorageError: the backend failed (the step's transaction rolled back;
                run it again).
        """
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise InvalidInputError("limit", "must be a positive integer", value=limit)
        return await self.steps.get(name).run(self, limit)

    async def run_once(self, *, limit: int = 500) -> int:
        """One round of background work: every registered step once, in order
        (``app.steps.names``). Returns how many items were processed (0: idle)."""
        done = 0
        for step in self.steps:
            done += await self.run_step(step.name, limit=limit)
        return done

    async def drain(self, *, max_rounds: int = 100_000) -> None:
        """Run background work until nothing is due (tests, scripts)."""
        for _ in range(max_rounds):
            if not await self.run_once():
                return

    async def aclose(self) -> None:
        """Close every backend this instance was given."""
        await self.letter_runs.aclose()
        await self.transport.aclose()
        await self.blobs.aclose()
        await self.sealer.provider.aclose()
        await self.store.aclose()

    async def __aenter__(self) -> ClientComm:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
