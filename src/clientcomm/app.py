"""The :class:`ClientComm` facade: wires the ports and exposes the services.

Backends are passed to the constructor (like httpx's transports); nothing is
global. For tests, :meth:`ClientComm.in_memory` wires in-memory backends.
"""

from __future__ import annotations

from datetime import timedelta

from clientcomm.attachments import DEFAULT_MAX_SIZE, AttachmentStore
from clientcomm.blobs.base import BlobStore
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.clock import Clock, SystemClock
from clientcomm.crypto.envelope import Sealer
from clientcomm.crypto.keys import KeyProvider
from clientcomm.crypto.memory import MemoryKeyProvider
from clientcomm.crypto.retention import RetentionRule
from clientcomm.directory.base import Directory
from clientcomm.directory.memory import MemoryDirectory
from clientcomm.mail.base import MailTransport
from clientcomm.mail.memory import MemoryTransport
from clientcomm.mailing import MailingService
from clientcomm.messages import MessageService
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.outbox import (
    MailSettings,
    NotificationComposer,
    RetryPolicy,
    deliver_due,
)
from clientcomm.rules.access import AccessPolicy
from clientcomm.rules.readstate import ReadPolicy
from clientcomm.storage.base import Store
from clientcomm.storage.memory import MemoryStore

__all__ = ["ClientComm"]


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
        clock: time source (``ManualClock`` in tests).
        access, read_policy, retention: pluggable rules.
        max_attachment_size: largest accepted attachment in bytes.

    Services: :attr:`messages` (client chats), :attr:`mailings` (mass mailing).
    Background work: :meth:`run_once` or :class:`clientcomm.worker.Worker`.
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
        mailing_batch: int = 500,
        lease: timedelta = timedelta(seconds=60),
    ) -> None:
        self.store = store
        self.directory = directory
        self.blobs = blobs
        self.transport = transport
        self.clock: Clock = clock or SystemClock()
        self.sealer = Sealer(keys, clock=self.clock, retention=retention)
        self.attachments = AttachmentStore(
            blobs, self.sealer, max_size=max_attachment_size, store=store, clock=self.clock
        )
        self.composer = NotificationComposer(mail)
        self.retry = retry or RetryPolicy()
        self.messages = MessageService(
            store=store,
            directory=directory,
            sealer=self.sealer,
            attachments=self.attachments,
            clock=self.clock,
            access=access,
            read_policy=read_policy,
        )
        self.mailings = MailingService(
            store=store,
            directory=directory,
            sealer=self.sealer,
            attachments=self.attachments,
            links=links,
            clock=self.clock,
            access=access,
            read_policy=read_policy,
            lease=lease,
            batch_size=mailing_batch,
        )

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

    async def run_once(self, *, limit: int = 500) -> int:
        """One round of background work: a mailing fan-out batch, due
        notifications, and the blobs of writers that died before committing
        (:meth:`AttachmentStore.sweep`). Returns how many items were processed
        (0: idle)."""
        done = await self.mailings.step(limit=limit)
        done += await self.attachments.sweep()
        done += await self.mailings.notify_step()
        report = await deliver_due(
            self.store,
            self.transport,
            self.composer,
            now=self.clock.now(),
            retry=self.retry,
            limit=max(100, limit // 5),
        )
        return done + report.claimed

    async def drain(self, *, max_rounds: int = 100_000) -> None:
        """Run background work until nothing is due (tests, scripts)."""
        for _ in range(max_rounds):
            if not await self.run_once():
                return

    async def aclose(self) -> None:
        """Close every backend this instance was given."""
        await self.transport.aclose()
        await self.blobs.aclose()
        await self.sealer.provider.aclose()
        await self.store.aclose()

    async def __aenter__(self) -> ClientComm:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
