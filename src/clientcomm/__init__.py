"""clientcomm: client-portal communication for practice-management software.

The public API is listed in ``__all__`` (kept sorted; a test checks it).
"""

from __future__ import annotations

from clientcomm.clock import Clock, ManualClock, SystemClock
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
    InvalidInputError,
    KeyDestroyedError,
    NotFoundError,
    PermanentDeliveryError,
    PermissionDeniedError,
    RetentionError,
    StorageError,
    TemporaryDeliveryError,
)
from clientcomm.storage.base import Record, Store, Transaction
from clientcomm.storage.memory import MemoryStore
from clientcomm.storage.sqlite import SQLiteStore
from clientcomm.storage.url import open_store

__version__ = "0.1.0.dev0"

__all__ = [
    "CaseFile",
    "Client",
    "ClientCommError",
    "ClientGroup",
    "Clock",
    "ConfigurationError",
    "ConflictError",
    "Contact",
    "ContactPreference",
    "DeliveryError",
    "Directory",
    "Firm",
    "IntegrityError",
    "InvalidInputError",
    "KeyDestroyedError",
    "ManualClock",
    "MemoryDirectory",
    "MemoryStore",
    "NotFoundError",
    "PermanentDeliveryError",
    "PermissionDeniedError",
    "PostalAddress",
    "Record",
    "RetentionError",
    "Role",
    "SQLiteStore",
    "SqlDirectory",
    "Staff",
    "StaffPermission",
    "StorageError",
    "Store",
    "SystemClock",
    "TemporaryDeliveryError",
    "Transaction",
    "WritableDirectory",
    "__version__",
    "directory_for",
    "open_store",
]
