"""Record kinds of retention and erasure: a firm's policy, a client's host-set
retention date, the resumable erasure job and the tombstone it leaves."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from clientcomm.records import REGISTRY, Kind, Meta, meta_field
from clientcomm.storage.base import EPOCH

__all__ = [
    "ERASURE_KIND",
    "POLICY_KIND",
    "RETENTION_KIND",
    "TOMBSTONE_KIND",
    "ClientRetention",
    "ErasureJob",
    "ErasureStatus",
    "FirmRetention",
    "PolicyStatus",
    "Tombstone",
]

POLICY_KIND = "retention.policy"
RETENTION_KIND = "retention.client"
ERASURE_KIND = "client.erasure"
TOMBSTONE_KIND = "client.tombstone"
POLICY_ID = "policy"


class PolicyStatus(enum.StrEnum):
    ACTIVE = "active"


class ErasureStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"


@attrs.frozen
class FirmRetention:
    """A firm's retention policy as stored, with its sweep schedule: the
    ``clients.erase`` step claims it when ``due_at`` has come, erases every
    client whose retention ended, and sets the next sweep."""

    id: str
    years: int | None
    created_at: datetime
    set_by: str
    status: PolicyStatus = PolicyStatus.ACTIVE
    due_at: datetime | None = None
    last_sweep: datetime | None = None
    meta: Meta = meta_field()


@attrs.frozen
class ClientRetention:
    """A retention date the host set for one client (replaces the policy's
    period for it)."""

    id: str
    client_id: str
    keep_until: datetime
    set_by: str
    created_at: datetime = EPOCH
    meta: Meta = meta_field()


@attrs.frozen
class ErasureJob:
    """The erasure of one client (id = client id): its keys are destroyed when
    it is queued; the ``clients.erase`` step then deletes its records (every
    client kind of the registry, cursor ``kind``/``after_seq``) and blobs in
    resumable batches, and finally writes the tombstone.

    ``pending_blobs`` are blob ids whose records are already deleted in a
    committed batch and whose bytes are deleted next (idempotently), so a
    crash between the two loses no blob.
    """

    id: str
    client_id: str
    created_at: datetime
    actor: str
    reason: str
    override: bool
    retain_until: datetime | None
    status: ErasureStatus = ErasureStatus.PENDING
    kind: str | None = None
    after_seq: int = 0
    records: int = 0
    blobs: int = 0
    shared_kept: int = 0
    undecodable: int = 0
    pending_blobs: tuple[str, ...] = ()
    finished_at: datetime | None = None
    meta: Meta = meta_field()


@attrs.frozen
class Tombstone:
    """What is left of an erased client besides its audit records: that it was
    erased, when, by whom and under which rule (no content)."""

    id: str
    client_id: str
    erased_at: datetime
    erased_by: str
    reason: str
    override: bool
    retain_until: datetime | None
    records: int
    blobs: int
    meta: Meta = meta_field()


_BOOK = "unbound: erasure bookkeeping (holds no content; decides nothing anyone reads)"

POLICY = REGISTRY.register(
    Kind(
        POLICY_KIND,
        FirmRetention,
        "a firm's retention policy and its erasure sweep schedule",
        columns={"id": "id", "status": "status", "due_at": "due_at", "created_at": "created_at"},
        meanings={"id": "always 'policy'", "due_at": "the next retention sweep"},
        status=PolicyStatus,
        integrity={
            "*": "unbound: OPEN - an edit can make a client due early; the sealer's"
            " retention rule (the statutory floor) is checked again before any key goes"
        },
        capability="compliance",
    )
)

CLIENT_RETENTION = REGISTRY.register(
    Kind(
        RETENTION_KIND,
        ClientRetention,
        "a retention date the host set for one client",
        columns={"id": "id", "parent": "client_id", "created_at": "created_at"},
        meanings={"id": "the client id", "parent": "the client"},
        client=lambda r: r.client_id,
        client_column="parent",
        integrity={
            "*": "unbound: OPEN - an edit can make a client due early; the sealer's"
            " retention rule (the statutory floor) is checked again before any key goes"
        },
        capability="compliance",
    )
)

ERASURE = REGISTRY.register(
    Kind(
        ERASURE_KIND,
        ErasureJob,
        "a resumable erasure of one client's records and blobs (keys already destroyed)",
        columns={"id": "id", "status": "status", "created_at": "created_at"},
        meanings={"id": "the client id", "status": "pending until every client kind was walked"},
        status=ErasureStatus,
        integrity={"*": _BOOK},
        capability="compliance",
    )
)

TOMBSTONE = REGISTRY.register(
    Kind(
        TOMBSTONE_KIND,
        Tombstone,
        "what is left of an erased client: when, by whom, under which rule (no content)",
        columns={"id": "id", "created_at": "erased_at"},
        meanings={"id": "the client id"},
        integrity={"*": "unbound: a record of the erasure (the audit trail holds the chained one)"},
        capability="compliance",
    )
)
