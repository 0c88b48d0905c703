"""clientcomm: client-portal communication for practice-management software.

The public API is listed in ``__all__`` (kept sorted; a test checks it).
"""

from __future__ import annotations

from clientcomm.actors import Actor, ClientActor, StaffActor
from clientcomm.announcements import (
    Announcement,
    AnnouncementService,
    AnnouncementState,
    AnnouncementText,
)
from clientcomm.app import ClientComm
from clientcomm.attachments import (
    AttachmentInfo,
    AttachmentInput,
    AttachmentMode,
    AttachmentScanner,
)
from clientcomm.audit import AuditEntry, AuditTrail, Checkpoint, Verification
from clientcomm.blobs import BlobStore, FileBlobStore, MemoryBlobStore
from clientcomm.clock import Clock, ManualClock, SystemClock
from clientcomm.compliance import ComplianceService, ErasureJob, RetentionPolicy, Tombstone
from clientcomm.conversations import (
    ClientConversation,
    Comment,
    ConversationPage,
    ConversationService,
    ConversationSettings,
    ConversationStatus,
    EscalationPolicy,
    IllegalTransitionError,
    StaffConversation,
    Turn,
)
from clientcomm.crypto import (
    RETAIN_INDEFINITELY,
    KeyProvider,
    LocalKeyProvider,
    MasterKey,
    MemoryKeyProvider,
    OpenRequest,
    RetentionRule,
    SealContext,
    Sealer,
    SealRequest,
    SealReservation,
    generate_master_key,
    lawyer_retention,
    load_master_key,
    rewrap_records,
    statutory_retention,
    tax_adviser_retention,
)
from clientcomm.directory.base import Directory, WritableDirectory
from clientcomm.directory.memory import MemoryDirectory
from clientcomm.directory.models import (
    CaseFile,
    Client,
    ClientGroup,
    Contact,
    ContactPreference,
    Firm,
    PostalAddress,
    Role,
    Staff,
    StaffPermission,
)
from clientcomm.directory.sql import SqlDirectory, directory_for
from clientcomm.errors import (
    ClientCommError,
    ConfigurationError,
    ConflictError,
    DeliveryError,
    IntegrityError,
    InvalidDocumentError,
    InvalidInputError,
    KeyDestroyedError,
    NotFoundError,
    PermanentDeliveryError,
    PermissionDeniedError,
    RetentionError,
    StorageError,
    TemporaryDeliveryError,
)
from clientcomm.evidence import DeliveryEvidence
from clientcomm.letters.pdfa import PdfaConverter, PdfaError
from clientcomm.letters.run_models import PageRange
from clientcomm.letters.runs import LetterRuns
from clientcomm.letters.tokens import LinkTokenError
from clientcomm.mail import MailTransport, MemoryTransport, SMTPConfig, SMTPTransport, TLSMode
from clientcomm.mailing import (
    ClientFields,
    DeliveryEvent,
    LedgerEntry,
    MailingPreview,
    MailingProgress,
    MailingReceipt,
    MailingService,
    MailingState,
    PreviewCopy,
    RecipientState,
    StaticClientFields,
)
from clientcomm.messages import ChatMessage, ClientMessage, MessageList, MessageService
from clientcomm.notifications import (
    DeliveryReport,
    LinkTemplates,
    MailSettings,
    NotificationEvent,
    NotificationKind,
    RetryPolicy,
    deliver_due,
    delivery_status,
)
from clientcomm.records import Kind, Meta, Records, RecordTx, Registry, SealedField
from clientcomm.rules.access import DEFAULT_RULES, AccessPolicy, RoleAccessPolicy
from clientcomm.rules.audience import Audience, ResolvedAudience, resolve_audience
from clientcomm.rules.readstate import Author, DefaultReadPolicy, ReadPolicy, UnreadFor
from clientcomm.sharing import (
    PortalDocument,
    SharedDocument,
    ShareMarker,
    ShareReceipt,
    SharingService,
)
from clientcomm.steps import Step, StepRegistry
from clientcomm.storage.base import Record, Store, Transaction
from clientcomm.storage.memory import MemoryStore
from clientcomm.storage.sqlite import SQLiteStore
from clientcomm.storage.url import open_store
from clientcomm.worker import Worker

__version__ = "0.1.0.dev0"

__all__ = [
    "DEFAULT_RULES",
    "RETAIN_INDEFINITELY",
    "AccessPolicy",
    "Actor",
    "Announcement",
    "AnnouncementService",
    "AnnouncementState",
    "AnnouncementText",
    "AttachmentInfo",
    "AttachmentInput",
    "AttachmentMode",
    "AttachmentScanner",
    "Audience",
    "AuditEntry",
    "AuditTrail",
    "Author",
    "BlobStore",
    "CaseFile",
    "ChatMessage",
    "Checkpoint",
    "Client",
    "ClientActor",
    "ClientComm",
    "ClientCommError",
    "ClientConversation",
    "ClientFields",
    "ClientGroup",
    "ClientMessage",
    "Clock",
    "Comment",
    "ComplianceService",
    "ConfigurationError",
    "ConflictError",
    "Contact",
    "ContactPreference",
    "ConversationPage",
    "ConversationService",
    "ConversationSettings",
    "ConversationStatus",
    "DefaultReadPolicy",
    "DeliveryError",
    "DeliveryEvent",
    "DeliveryEvidence",
    "DeliveryReport",
    "Directory",
    "ErasureJob",
    "EscalationPolicy",
    "FileBlobStore",
    "Firm",
    "IllegalTransitionError",
    "IntegrityError",
    "InvalidDocumentError",
    "InvalidInputError",
    "KeyDestroyedError",
    "KeyProvider",
    "Kind",
    "LedgerEntry",
    "LetterRuns",
    "LinkTemplates",
    "LinkTokenError",
    "LocalKeyProvider",
    "MailSettings",
    "MailTransport",
    "MailingPreview",
    "MailingProgress",
    "MailingReceipt",
    "MailingService",
    "MailingState",
    "ManualClock",
    "MasterKey",
    "MemoryBlobStore",
    "MemoryDirectory",
    "MemoryKeyProvider",
    "MemoryStore",
    "MemoryTransport",
    "MessageList",
    "MessageService",
    "Meta",
    "NotFoundError",
    "NotificationEvent",
    "NotificationKind",
    "OpenRequest",
    "PageRange",
    "PdfaConverter",
    "PdfaError",
    "PermanentDeliveryError",
    "PermissionDeniedError",
    "PortalDocument",
    "PostalAddress",
    "PreviewCopy",
    "ReadPolicy",
    "RecipientState",
    "Record",
    "RecordTx",
    "Records",
    "Registry",
    "ResolvedAudience",
    "RetentionError",
    "RetentionPolicy",
    "RetentionRule",
    "RetryPolicy",
    "Role",
    "RoleAccessPolicy",
    "SMTPConfig",
    "SMTPTransport",
    "SQLiteStore",
    "SealContext",
    "SealRequest",
    "SealReservation",
    "SealedField",
    "Sealer",
    "ShareMarker",
    "ShareReceipt",
    "SharedDocument",
    "SharingService",
    "SqlDirectory",
    "Staff",
    "StaffActor",
    "StaffConversation",
    "StaffPermission",
    "StaticClientFields",
    "Step",
    "StepRegistry",
    "StorageError",
    "Store",
    "SystemClock",
    "TLSMode",
    "TemporaryDeliveryError",
    "Tombstone",
    "Transaction",
    "Turn",
    "UnreadFor",
    "Verification",
    "Worker",
    "WritableDirectory",
    "__version__",
    "deliver_due",
    "delivery_status",
    "directory_for",
    "generate_master_key",
    "lawyer_retention",
    "load_master_key",
    "open_store",
    "resolve_audience",
    "rewrap_records",
    "statutory_retention",
    "tax_adviser_retention",
]


def __getattr__(name: str) -> object:
    # PostgresStore needs the optional extra clientcomm[postgres], so it is not
    # in __all__ (a star-import works without the extra) and is imported lazily.
    if name == "PostgresStore":
        try:
            from clientcomm.storage.postgres import PostgresStore
        except ImportError as exc:
            raise ImportError(
                "clientcomm.PostgresStore needs the optional extra: "
                "pip install 'clientcomm[postgres]'"
                f" ({exc})",
                name="clientcomm.storage.postgres",
            ) from exc
        return PostgresStore
    raise AttributeError(f"module 'clientcomm' has no attribute {name!r}")
