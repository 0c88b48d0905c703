"""The audit path: every state change appends its :class:`AuditEntry` through
:func:`append`, in the caller's transaction (a failed operation writes none)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from clientcomm.audit.records import AUDIT_KIND, AuditEntry
from clientcomm.ids import new_id
from clientcomm.records import RecordTx

__all__ = ["AUDIT_KIND", "AuditEntry", "append"]


async def append(
    tx: RecordTx,
    *,
    subject: str,
    operation: str,
    actor: str,
    at: datetime,
    **details: Any,
) -> AuditEntry:
    """Append one audit record in ``tx`` (the transaction of the change itself)."""
    entry = AuditEntry(new_id(), subject, operation, actor, at, details)
    await tx.insert([entry])
    return entry
