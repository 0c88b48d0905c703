"""The record kinds of the audit trail.

* ``audit.pending``: what :func:`clientcomm.audit.append` writes, in the
  transaction of the change (one small insert, never a conflict).
* ``audit``: the chained trail. The ``audit.chain`` step moves pending entries
  here, giving each the next position of its firm's chain, the hash of the
  entry before it and its own hash (see :mod:`clientcomm.audit.chain`). These
  rows are written once and never updated.
* ``audit.head``: one per firm, the chain's last position and hash (the
  chaining step updates it under optimistic concurrency, so two chainers
  never extend one chain at once).
* ``audit.by_actor``: an index row per chained entry, so a query by actor
  needs no scan.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import attrs

from clientcomm.errors import IntegrityError
from clientcomm.records import REGISTRY, Kind, Meta, meta_field
from clientcomm.storage.base import Record

__all__ = [
    "ACTOR_INDEX_KIND",
    "AUDIT_KIND",
    "HEAD_KIND",
    "PENDING_KIND",
    "ActorIndex",
    "AuditEntry",
    "AuditHead",
    "PendingAudit",
    "position_key",
]

AUDIT_KIND = "audit"
PENDING_KIND = "audit.pending"
HEAD_KIND = "audit.head"
ACTOR_INDEX_KIND = "audit.by_actor"

HEAD_ID = "head"
HASH_SIZE = 32


def position_key(position: int) -> str:
    """The ``key`` column of the chained entry at ``position`` (zero-padded, so
    the key order is the chain order; unique per firm)."""
    return f"{position:012d}"


@attrs.frozen
class AuditEntry:
    """One audit record of the chained trail: who did what to which object,
    when, for which client. Never content (no message text, no file names,
    no document bytes).

    Attributes:
        id: the entry's id (the same as while it was pending).
        subject: the object, ``"<kind>:<id>"`` (e.g. ``"mailing:1f3a..."``).
        operation: what happened (a declared operation, see
            ``docs/compliance.md``), e.g. ``"mailing.submitted"``.
        actor: the staff id, ``"client:<id>"`` or ``"system"``.
        at: when.
        details: log-safe facts (counts, ids, states) under declared keys.
        client: the client it concerns, if one.
        clients: the clients a batch entry concerns (``mailing.delivered``).
        objects: further objects it names (``"<kind>:<id>"``).
        position: its place in the firm's chain (1, 2, ...).
        hash: its SHA-256 link hash (hex).
        prev: the hash of the entry before it (hex; 64 zeros for the first).
    """

    id: str
    subject: str
    operation: str
    actor: str
    at: datetime
    details: dict[str, Any] = attrs.field(factory=dict)
    client: str | None = None
    clients: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()
    position: int = 0
    hash: str = ""
    prev: str = ""
    meta: Meta = meta_field()


@attrs.frozen
class PendingAudit:
    """An audit entry appended but not yet chained (same facts as
    :class:`AuditEntry`, no position or hash yet)."""

    id: str
    subject: str
    operation: str
    actor: str
    at: datetime
    details: dict[str, Any] = attrs.field(factory=dict)
    client: str | None = None
    clients: tuple[str, ...] = ()
    objects: tuple[str, ...] = ()
    status: str = "pending"
    meta: Meta = meta_field()


@attrs.frozen
class AuditHead:
    """A firm's chain head: the last chained position and its hash (hex)."""

    id: str
    position: int
    hash: str
    updated_at: datetime
    meta: Meta = meta_field()


@attrs.frozen
class ActorIndex:
    """Index row: the chained entry ``id`` was written by ``actor``."""

    id: str
    actor: str
    at: datetime
    meta: Meta = meta_field()


def payload_of(entry: AuditEntry | PendingAudit) -> bytes:
    """The canonical encoding of the facts that have no column (hashed)."""
    return canonical_json(
        {
            "actor": entry.actor,
            "clients": list(entry.clients),
            "details": entry.details,
            "objects": list(entry.objects),
        }
    )


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: the same bytes for the same value."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def _parse_body(record: Record) -> tuple[bytes, bytes, dict[str, Any]]:
    body = record.body or b""
    try:
        payload = json.loads(body[2 * HASH_SIZE :])
        if len(body) < 2 * HASH_SIZE or not isinstance(payload, dict):
            raise ValueError("short body")
    except ValueError:
        raise IntegrityError(
            f"audit record {record.id!r} does not decode", kind=AUDIT_KIND, id=record.id
        ) from None
    return body[:HASH_SIZE], body[HASH_SIZE : 2 * HASH_SIZE], payload


@attrs.frozen(eq=False)
class _ChainKind(Kind[AuditEntry]):
    """The chained kind: ``key`` holds the position, ``body`` the link hash,
    the previous hash and the canonical payload (what verification reads
    without decoding JSON)."""

    in_body = ("prev", "actor", "clients", "objects", "details")
    """The attributes kept in the body beside the hash (for ``docs/records.md``)."""

    def _make_encoder(self) -> Callable[[AuditEntry, str | None], Record]:
        def encode(value: AuditEntry, firm_id: str | None = None) -> Record:
            body = bytes.fromhex(value.hash) + bytes.fromhex(value.prev) + payload_of(value)
            return Record(
                kind=AUDIT_KIND,
                id=value.id,
                firm_id=value.meta.firm_id or firm_id or "",
                parent=value.subject,
                ref=value.client,
                status=value.operation,
                key=position_key(value.position),
                created_at=value.at,
                body=body,
                seq=value.meta.seq,
                version=value.meta.version,
            )

        return encode

    def decode(self, record: Record) -> AuditEntry:
        if record.kind != AUDIT_KIND:
            raise IntegrityError(
                f"record {record.id!r} is a {record.kind}, not an audit entry",
                kind=record.kind,
                id=record.id,
            )
        link, prev, payload = _parse_body(record)
        try:
            return AuditEntry(
                id=record.id,
                subject=cast(str, record.parent),
                operation=cast(str, record.status),
                actor=str(payload["actor"]),
                at=record.created_at,
                details=dict(payload["details"]),
                client=record.ref,
                clients=tuple(str(c) for c in payload["clients"]),
                objects=tuple(str(o) for o in payload["objects"]),
                position=int(record.key or "0"),
                hash=link.hex(),
                prev=prev.hex(),
                meta=Meta(record.firm_id, record.seq, record.version),
            )
        except (KeyError, TypeError, ValueError):
            raise IntegrityError(
                f"audit record {record.id!r} does not decode", kind=AUDIT_KIND, id=record.id
            ) from None


AUDIT = REGISTRY.register(
    _ChainKind(
        AUDIT_KIND,
        AuditEntry,
        "one chained audit record: actor, operation, object, client, time (no content)",
        columns={
            "id": "id",
            "parent": "subject",
            "ref": "client",
            "status": "operation",
            "key": "position",
            "created_at": "at",
            "body": "hash",
        },
        meanings={
            "parent": "the object, '<kind>:<id>'",
            "ref": "the client it concerns (none for firm-level and batch entries)",
            "status": "the operation",
            "key": "its position in the firm's chain, zero-padded (unique)",
            "body": (
                "link hash, then `prev`, then canonical JSON of"
                " `actor`, `clients`, `objects`, `details`"
            ),
        },
        integrity={"*": "chain: every field is hashed into the firm's chain (verify, checkpoints)"},
        capability="audit",
    )
)

PENDING = REGISTRY.register(
    Kind(
        PENDING_KIND,
        PendingAudit,
        "an audit record appended in its change's transaction, not yet chained",
        columns={"id": "id", "status": "status", "created_at": "at"},
        meanings={"status": "always 'pending' (claimed by the audit.chain step)"},
        integrity={
            "*": "unbound: not chained yet (chained within a worker round; verify counts them)"
        },
        capability="audit",
    )
)

HEAD = REGISTRY.register(
    Kind(
        HEAD_KIND,
        AuditHead,
        "a firm's audit chain head: last position and hash",
        columns={"id": "id"},
        meanings={"id": "always 'head'"},
        integrity={"*": "chain: checked against the chain's last entry and the host's checkpoints"},
        capability="audit",
    )
)

ACTOR_INDEX = REGISTRY.register(
    Kind(
        ACTOR_INDEX_KIND,
        ActorIndex,
        "index of chained audit records by actor",
        columns={"id": "id", "parent": "actor", "created_at": "at"},
        meanings={"id": "the audit record's id", "parent": "the actor"},
        integrity={"*": "unbound: an index only; query results are the chained entries"},
        capability="audit",
    )
)
