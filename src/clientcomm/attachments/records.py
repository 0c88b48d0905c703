"""Record kinds of attachments: shared-blob references and blob reservations."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from clientcomm.records import REGISTRY, Kind, Meta, meta_field
from clientcomm.storage.base import EPOCH

__all__ = ["BLOB_INTENT_KIND", "BLOB_REF_KIND", "BlobIntent", "BlobRef", "IntentStatus"]

BLOB_REF_KIND = "blob.ref"
BLOB_INTENT_KIND = "blob.intent"


@attrs.frozen
class BlobRef:
    """One message copy's reference to a shared (sealed-once) blob; the blob is
    deleted when its last reference goes."""

    id: str
    blob_id: str
    client_id: str
    message_id: str
    created_at: datetime = EPOCH
    meta: Meta = meta_field()

    @staticmethod
    def id_for(blob_id: str, message_id: str) -> str:
        return f"{blob_id}:{message_id}"


class IntentStatus(enum.StrEnum):
    OPEN = "open"


@attrs.frozen
class BlobIntent:
    """Blob ids reserved (committed) before their bytes are written; settled
    (deleted) by the transaction that commits the records referencing them,
    swept with the blobs when the writer died.

    ``key_owner`` names a key-provider owner the writer created for what it
    writes (a mailing's staging key, ``mailing:<id>``) and ``holder`` the
    record (``(kind, id)``) whose commit settles the reservation: a swept
    reservation's key is forgotten unless that record exists.
    """

    id: str
    blobs: tuple[str, ...]
    due_at: datetime
    created_at: datetime
    status: IntentStatus = IntentStatus.OPEN
    key_owner: str | None = None
    holder: tuple[str, str] | None = None
    meta: Meta = meta_field()


BLOB_REF = REGISTRY.register(
    Kind(
        BLOB_REF_KIND,
        BlobRef,
        "a message copy's reference to a shared attachment blob",
        columns={"id": "id", "parent": "blob_id", "created_at": "created_at"},
        meanings={"id": "blob id : message id", "parent": "the shared blob's id"},
        client=lambda r: r.client_id,
        integrity={
            "*": "unbound: lifetime bookkeeping of a shared blob: decides when its bytes"
            " go, never who opens them (a copy opens its blob by its own bound descriptor)"
        },
        capability="attachments",
    )
)

BLOB_INTENT = REGISTRY.register(
    Kind(
        BLOB_INTENT_KIND,
        BlobIntent,
        "blob ids reserved before their bytes are written (crash safety)",
        columns={
            "id": "id",
            "status": "status",
            "due_at": "due_at",
            "created_at": "created_at",
        },
        meanings={"due_at": "when an unsettled reservation is swept"},
        status=IntentStatus,
        integrity={"*": "unbound: crash-safety bookkeeping (which blobs and keys to sweep)"},
        capability="attachments",
    )
)
