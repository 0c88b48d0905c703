"""Attachments of messages: validation, sealing into the BlobStore (per copy or
shared), crash-safe blob reservations and their sweep.

* :mod:`~clientcomm.attachments.models` - public values;
* :mod:`~clientcomm.attachments.records` - record kinds (``blob.ref``, ``blob.intent``);
* :mod:`~clientcomm.attachments.rules` - file name, media type and content rules (pure);
* :mod:`~clientcomm.attachments.service` - :class:`AttachmentStore`;
* :mod:`~clientcomm.attachments.steps` - the ``attachments.sweep`` background step.
"""

from __future__ import annotations

from clientcomm.attachments.models import (
    AttachmentInfo,
    AttachmentInput,
    AttachmentMode,
    AttachmentScanner,
    StagedAttachment,
    StoredAttachment,
)
from clientcomm.attachments.records import BLOB_INTENT_KIND, BLOB_REF_KIND, BlobIntent, BlobRef
from clientcomm.attachments.service import (
    DEFAULT_MAX_SIZE,
    AttachmentStore,
    BlobReservation,
    Copies,
)

__all__ = [
    "BLOB_INTENT_KIND",
    "BLOB_REF_KIND",
    "DEFAULT_MAX_SIZE",
    "AttachmentInfo",
    "AttachmentInput",
    "AttachmentMode",
    "AttachmentScanner",
    "AttachmentStore",
    "BlobIntent",
    "BlobRef",
    "BlobReservation",
    "Copies",
    "StagedAttachment",
    "StoredAttachment",
]
