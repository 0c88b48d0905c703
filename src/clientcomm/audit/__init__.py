"""The audit path: every state change appends one audit record through
:func:`append`, in the caller's transaction (a failed operation writes none).

An appended record is *pending*; the ``audit.chain`` background step (or
:meth:`AuditTrail.chain`) links it into its firm's hash chain, where
:meth:`AuditTrail.verify` can prove it unchanged. Operation names are declared
once in :data:`~clientcomm.audit.operations.OPERATIONS`; ``docs/compliance.md``
lists them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from clientcomm.audit.chain import ChainFault, Checkpoint, Fault, Verification
from clientcomm.audit.operations import OPERATIONS, Operation, declare
from clientcomm.audit.records import AUDIT_KIND, AuditEntry, PendingAudit, canonical_json
from clientcomm.audit.trail import AuditPage, AuditTrail, verify_export
from clientcomm.errors import InvalidInputError
from clientcomm.ids import new_id
from clientcomm.records import RecordTx

__all__ = [
    "AUDIT_KIND",
    "OPERATIONS",
    "AuditEntry",
    "AuditPage",
    "AuditTrail",
    "ChainFault",
    "Checkpoint",
    "Fault",
    "Operation",
    "PendingAudit",
    "Verification",
    "append",
    "declare",
    "verify_export",
]

_SUSPENDED: ContextVar[bool] = ContextVar("clientcomm_audit_suspended", default=False)
_BAD = ("\x1f", "\x1e", "\x00")


def _text(name: str, value: object, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value) or len(value) > 400:
        raise InvalidInputError(name, "must be a non-empty string of at most 400 characters")
    if any(c in value for c in _BAD):
        raise InvalidInputError(name, "must not contain control separators")
    return value


def _ids(name: str, values: Iterable[str]) -> tuple[str, ...]:
    out = tuple(values)
    for v in out:
        if not isinstance(v, str) or not v or len(v) > 400:
            raise InvalidInputError(name, "must hold non-empty strings of at most 400 characters")
    if any(c in "".join(out) for c in _BAD):
        raise InvalidInputError(name, "must not contain control separators")
    return out


async def append(
    tx: RecordTx,
    *,
    subject: str,
    operation: str,
    actor: str,
    at: datetime,
    client: str | None = None,
    clients: Iterable[str] = (),
    objects: Iterable[str] = (),
    **details: Any,
) -> PendingAudit | None:
    """Append one audit record in ``tx`` (the transaction of the change itself).

    Args:
        subject: the object, ``"<kind>:<id>"``; its kind is the operation's.
        operation: a declared operation (see ``docs/compliance.md``).
        actor: the staff id, ``"client:<id>"`` or ``"system"``.
        at: when (timezone-aware).
        client: the client it concerns (indexed: a query by client finds it).
        clients: the clients a batch operation concerns.
        objects: further objects it names, ``"<kind>:<id>"``.
        details: log-safe facts under the operation's declared keys (ids,
            counts, states; never content).

    Returns the pending record (None while the trail is suspended by
    :func:`clientcomm.testing.audit.suspended`, for benchmarks only).

    Raises:
        InvalidInputError: an undeclared operation or detail key, a subject of
            another kind, an empty or malformed text field, a naive ``at``,
            details that are not JSON values. Nothing is written.
    """
    op = OPERATIONS.get(operation)
    subject_ = _text("subject", subject)
    assert subject_ is not None
    if not subject_.startswith(op.subject + ":") or subject_ == op.subject + ":":
        raise InvalidInputError("subject", f"must be '{op.subject}:<id>' for {operation}")
    actor_ = _text("actor", actor)
    assert actor_ is not None
    client_ = _text("client", client, required=False)
    clients_ = _ids("clients", clients)
    objects_ = _ids("objects", objects)
    if clients_ and not op.batch:
        raise InvalidInputError("clients", f"{operation} concerns one client at most")
    unknown = sorted(set(details) - op.details)
    if unknown:
        raise InvalidInputError(f"details.{unknown[0]}", f"is not a declared detail of {operation}")
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise InvalidInputError("at", "must be a timezone-aware datetime")
    try:
        canonical_json(details)
    except (TypeError, ValueError):
        raise InvalidInputError(
            "details", "must be JSON values (str, numbers, lists, maps)"
        ) from None
    if _SUSPENDED.get():
        return None
    entry = PendingAudit(
        new_id(),
        subject_,
        operation,
        actor_,
        at,
        details,
        client=client_,
        clients=clients_,
        objects=objects_,
    )
    await tx.insert([entry])
    return entry


@contextmanager
def _suspend() -> Iterator[None]:
    token = _SUSPENDED.set(True)
    try:
        yield
    finally:
        _SUSPENDED.reset(token)
