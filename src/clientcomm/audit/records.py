"""The record kind of the audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import attrs

from clientcomm.records import REGISTRY, Kind, Meta, meta_field

__all__ = ["AUDIT_KIND", "AuditEntry"]

AUDIT_KIND = "audit"


@attrs.frozen
class AuditEntry:
    """One audit record: who did what to which object, when. Never content
    (no message text, no file names, no document bytes).

    Attributes:
        subject: the object, as ``"<kind>:<id>"`` (e.g. ``"mailing:1f3a..."``).
        operation: what happened (see the operations table in
            ``docs/architecture.md``), e.g. ``"mailing.submitted"``.
        actor: the staff id, ``"client:<id>"`` or ``"system"``.
        at: when.
        details: log-safe facts (counts, ids, states).
    """

    id: str
    subject: str
    operation: str
    actor: str
    at: datetime
    details: dict[str, Any] = attrs.field(factory=dict)
    meta: Meta = meta_field()


AUDIT = REGISTRY.register(
    Kind(
        AUDIT_KIND,
        AuditEntry,
        "one audit record: actor, operation, object, time (no content)",
        columns={"id": "id", "parent": "subject", "status": "operation", "created_at": "at"},
        meanings={"parent": "the object, '<kind>:<id>'", "status": "the operation"},
        integrity={"*": "unbound: no content, decides no delivery (not tamper-evident)"},
        capability="audit",
    )
)
