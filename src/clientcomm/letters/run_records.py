"""The record kinds of a serial-letter run (seed 003), declared in the registry.

* ``letters.run`` - one run (firm-level): its whole state (property, units,
  selection, print options, what was released, the postal order and its
  letters' states) is one JSON document **sealed** for the run's key owner
  :func:`run_owner`; the indexed ``parent`` (property) and ``status`` (run
  state) are clear copies checked against it on every read.
* ``letters.doc`` - one document of a unit (sealed for the unit's client) or a
  general attachment of the run (sealed for the run's key owner): the bytes in
  the BlobStore under a wrapped stream key, the descriptor (run, unit, type,
  file name, pages, SHA-256, blob) sealed; the clear ``parent`` (run),
  ``key`` (unit) and ``status`` (role) are checked against it.
* ``letters.download`` - a PDF/A download of a run for a filter: requested
  (``pending``, leased by the ``letters.pdfa`` step), ``ready`` (the PDF/A
  sealed for the run's key owner) or ``failed`` with a reason. What decides
  who is mailed and which run and filter the file holds is sealed.

Key rotation and the re-wrap reach every sealed value through the
:class:`~clientcomm.records.SealedField` declarations; a unit's documents are
its client's data (``client``, ``client_column="ref"``), so the client data
export (an exporter is registered in :mod:`clientcomm.letters.runs`) and
erasure find them. Deleting a run forgets its key owner (crypto-shredding the
run state, attachments and downloads).
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from clientcomm.attachments.models import StoredAttachment
from clientcomm.records import REGISTRY, Kind, Meta, SealedField, meta_field

__all__ = [
    "DOC_KIND",
    "DOWNLOAD_KIND",
    "RUN_KIND",
    "DocRecord",
    "DocRole",
    "DownloadRecord",
    "DownloadStatus",
    "RunRecord",
    "RunState",
    "run_owner",
]

RUN_KIND = "letters.run"
DOC_KIND = "letters.doc"
DOWNLOAD_KIND = "letters.download"


def run_owner(run_id: str) -> str:
    """The key-provider owner whose key seals a run's state, attachments and
    downloads (like ``mailing:<id>`` for a mailing's staging)."""
    return f"letters-run:{run_id}"


class RunState(enum.StrEnum):
    """Where a run stands: documents are edited while ``draft``; ``released``
    once in the units' portals; ``deleted`` ("Serienbrief löschen")."""

    DRAFT = "draft"
    RELEASED = "released"
    DELETED = "deleted"


class DocRole(enum.StrEnum):
    DOCUMENT = "document"  # one unit's document
    ATTACHMENT = "attachment"  # a general attachment of the run


class DownloadStatus(enum.StrEnum):
    PENDING = "pending"
    READY = "ready"
    FAILED = "failed"


@attrs.frozen
class RunRecord:
    """One serial-letter run; ``sealed_state`` holds its state (module docs)."""

    id: str
    property_id: str
    state: RunState
    created_at: datetime
    sealed_state: bytes = attrs.field(repr=False)
    meta: Meta = meta_field()


@attrs.frozen
class DocRecord:
    """A unit's document or a general attachment (module docs)."""

    id: str
    run_id: str
    unit_id: str | None
    role: DocRole
    created_at: datetime
    sealed_info: bytes = attrs.field(repr=False)
    stored: tuple[StoredAttachment, ...] = ()
    meta: Meta = meta_field()


@attrs.frozen
class DownloadRecord:
    """A PDF/A download of a run for one filter (module docs)."""

    id: str
    run_id: str
    status: DownloadStatus
    created_at: datetime
    due_at: datetime | None
    sealed_request: bytes = attrs.field(repr=False)
    stored: tuple[StoredAttachment, ...] = ()
    error: str | None = None
    meta: Meta = meta_field()


RUN = REGISTRY.register(
    Kind(
        RUN_KIND,
        RunRecord,
        "one serial-letter run: its state sealed for the run's key owner",
        columns={
            "id": "id",
            "parent": "property_id",
            "status": "state",
            "created_at": "created_at",
            "body": "sealed_state",
        },
        meanings={
            "parent": "the property (client group) the run is for",
            "status": "draft / released / deleted",
            "body": "the run's state (units, selection, options, release, order), sealed",
        },
        status=RunState,
        sealed=(SealedField("sealed_state"),),
        owner=lambda r: run_owner(r.id),
        capability="letters",
        integrity={
            "id": "aad: the sealed state's context names the run (moving it fails to open)",
            "sealed_state": "sealed: units, selection, options, release, postal order",
            "property_id": "bound: checked against the sealed state on every read",
            "state": "bound: checked against the sealed state on every read",
            "created_at": "bound: checked against the sealed state on every read",
        },
    )
)

DOC = REGISTRY.register(
    Kind(
        DOC_KIND,
        DocRecord,
        "a unit's document of a serial-letter run (sealed for the unit) or a general attachment",
        columns={
            "id": "id",
            "parent": "run_id",
            "ref": "unit_id",
            "status": "role",
            "created_at": "created_at",
            "body": "sealed_info",
        },
        meanings={
            "parent": "the run",
            "ref": "the unit (client) whose document it is; empty for an attachment",
            "status": "document / attachment",
            "body": "run, unit, role, type, file name, pages, SHA-256, blob: sealed",
        },
        status=DocRole,
        sealed=(
            SealedField("sealed_info"),
            SealedField("stored[].stream_key", "stream_key", blob="blob_id"),
        ),
        owner=lambda d: d.unit_id if d.unit_id is not None else run_owner(d.run_id),
        client=lambda d: d.unit_id,
        client_column="ref",
        capability="letters",
        integrity={
            "id": "aad: the sealed descriptor's context names the record",
            "sealed_info": "sealed: run, unit, role, type, file name, pages, SHA-256, blob",
            "run_id": "bound: checked against the sealed descriptor",
            "unit_id": "aad: the descriptor is sealed for the unit's key (another fails to open)",
            "role": "bound: checked against the sealed descriptor",
            "created_at": "bound: checked against the sealed descriptor",
            "stored": "bound: the blob id is checked against the sealed descriptor; the stream"
            " key is a wrapped key bound to its blob",
        },
    )
)

DOWNLOAD = REGISTRY.register(
    Kind(
        DOWNLOAD_KIND,
        DownloadRecord,
        "a PDF/A download of a serial-letter run for one filter (leased by letters.pdfa)",
        columns={
            "id": "id",
            "parent": "run_id",
            "status": "status",
            "due_at": "due_at",
            "created_at": "created_at",
            "body": "sealed_request",
        },
        meanings={
            "parent": "the run",
            "status": "pending / ready / failed",
            "due_at": "when the step may try (again)",
            "body": "requester, filter, selected letters, recipients: sealed",
        },
        status=DownloadStatus,
        sealed=(
            SealedField("sealed_request"),
            SealedField("stored[].stream_key", "stream_key", blob="blob_id"),
        ),
        owner=lambda d: run_owner(d.run_id),
        capability="letters",
        integrity={
            "id": "aad: the sealed request's context names the record",
            "sealed_request": "sealed: requester, filter and its digest, recipients",
            "run_id": "bound: checked against the sealed request",
            "status": "unbound: the queue state; a ready file is opened only through a"
            " verified link whose run and filter are checked against the sealed request",
            "due_at": "unbound: when the step tries; decides neither recipients nor content",
            "created_at": "unbound: shown nowhere",
            "stored": "key: the PDF/A's stream key, wrapped for the run's key owner and"
            " bound to its blob",
            "error": "unbound: the reason a production failed (shown to staff only)",
        },
    )
)
