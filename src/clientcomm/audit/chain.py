"""The hash chain: linking pending entries, and verifying a firm's chain.

Each chained entry at position ``n`` holds

    hash_n = SHA-256(hash_(n-1) || header_n || 0x1e || payload_n)

with ``hash_0`` 32 zero bytes, ``header_n`` the UTF-8 of firm, position, id,
subject, client, operation and time (integer microseconds) joined by 0x1f,
and ``payload_n`` the canonical JSON of actor, clients, objects and details.
Every column a query filters on is in the header, so editing any of them
breaks the entry's hash. The stored row's ``key`` is the position
(zero-padded, unique per firm) and its ``body`` is ``hash_n || hash_(n-1) ||
payload_n``: verification hashes bytes as stored and decodes no JSON.

Chaining (the ``audit.chain`` step, or :meth:`AuditTrail.chain`) runs under
the firm's head record: it reads the head, links the pending entries in
``seq`` order, inserts them as chained rows, deletes the pending ones and
updates the head, all in one transaction. Two chainers of one firm conflict
on the head's version (and on the unique position keys) and one rolls back,
so the chain never forks; an entry whose transaction commits late (on
PostgreSQL ``seq`` order is not commit order) is simply linked by a later
round, at a later position.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
from array import array
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime
from typing import Any

import attrs

from clientcomm.audit.records import (
    HASH_SIZE,
    HEAD_ID,
    ActorIndex,
    AuditEntry,
    AuditHead,
    PendingAudit,
    payload_of,
    position_key,
)
from clientcomm.records import Records
from clientcomm.storage._codec import to_micros
from clientcomm.storage.base import Record

__all__ = [
    "GENESIS",
    "ChainFault",
    "Checkpoint",
    "Fault",
    "Verification",
    "chain_firm",
    "header_bytes",
    "link_hash",
    "row_of",
    "verify_rows",
]

GENESIS = bytes(HASH_SIZE)
_SEP = "\x1f"
_PAYLOAD_SEP = b"\x1e"
_sha256 = hashlib.sha256


def header_bytes(
    firm_id: str,
    position: int | str,
    entry_id: str,
    subject: str,
    client: str | None,
    operation: str,
    at_micros: int,
) -> bytes:
    """The header of an entry (see module docs)."""
    key = position if isinstance(position, str) else position_key(position)
    return _SEP.join(
        (firm_id, key, entry_id, subject, client or "", operation, str(at_micros))
    ).encode()


def link_hash(prev: bytes, header: bytes, payload: bytes) -> bytes:
    """``SHA-256(prev || header || 0x1e || payload)``."""
    return _sha256(b"".join((prev, header, _PAYLOAD_SEP, payload))).digest()


# -- chaining ------------------------------------------------------------------------------
async def chain_firm(records: Records, firm_id: str, *, limit: int, now: datetime) -> int:
    """Link up to ``limit`` pending entries of ``firm_id`` onto its chain, in
    one transaction; returns how many (0: none pending).

    Raises:
        ConflictError: another chainer extended the chain meanwhile (nothing
            was written; run again).
    """
    async with records.transaction(firm_id) as tx:
        head = await tx.find(AuditHead, HEAD_ID)
        pending = await tx.list(PendingAudit, status="pending", limit=limit)
        if not pending:
            return 0
        position, prev = (head.position, bytes.fromhex(head.hash)) if head else (0, GENESIS)
        chained: list[AuditEntry] = []
        index: list[ActorIndex] = []
        for p in pending:
            position += 1
            link = link_hash(
                prev,
                header_bytes(
                    firm_id, position, p.id, p.subject, p.client, p.operation, _micros(p.at)
                ),
                payload_of(p),
            )
            chained.append(
                AuditEntry(
                    id=p.id,
                    subject=p.subject,
                    operation=p.operation,
                    actor=p.actor,
                    at=p.at,
                    details=p.details,
                    client=p.client,
                    clients=p.clients,
                    objects=p.objects,
                    position=position,
                    hash=link.hex(),
                    prev=prev.hex(),
                )
            )
            index.append(ActorIndex(p.id, p.actor, p.at))
            prev = link
        await tx.insert(chained)
        await tx.insert(index)
        await tx.delete(PendingAudit, [p.id for p in pending])
        if head is None:
            await tx.insert([AuditHead(HEAD_ID, position, prev.hex(), now)])
        else:
            await tx.update(
                [attrs.evolve(head, position=position, hash=prev.hex(), updated_at=now)]
            )
    return len(pending)


def _micros(at: datetime) -> int:
    micros = to_micros(at)
    assert micros is not None
    return micros


# -- verification ----------------------------------------------------------------------------
class Fault(enum.StrEnum):
    """What verification found first (see :class:`ChainFault`)."""

    EDITED = "edited"
    """The entry at ``position`` does not match its hash (a field was changed)."""
    REMOVED = "removed"
    """No entry at ``position`` (later ones are there)."""
    INSERTED = "inserted"
    """The entry at ``position`` does not belong to the chain there (a forged or
    copied record, or one without a position)."""
    REORDERED = "reordered"
    """The entry at ``position`` is stored after a later one."""
    TRUNCATED = "truncated"
    """The chain ends before ``position``, which the head or the checkpoint names."""
    REWRITTEN = "rewritten"
    """The entry at the checkpoint's position has another hash than the checkpoint."""


@attrs.frozen
class ChainFault:
    """The first problem of a chain: what, at which position (1-based), the
    stored entry's id where there is one, and a log-safe explanation."""

    fault: Fault
    position: int
    entry_id: str | None
    detail: str


@attrs.frozen
class Checkpoint:
    """An anchor the host keeps elsewhere (e.g. printed in its own log, or
    sent to a notary): a firm's chain position and the hash there (hex)."""

    firm_id: str
    position: int
    hash: str
    at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "firm_id": self.firm_id,
            "position": self.position,
            "hash": self.hash,
            "at": self.at.isoformat(),
        }


@attrs.frozen
class Verification:
    """The result of :meth:`AuditTrail.verify`.

    Attributes:
        firm_id: the firm whose chain was walked.
        ok: no fault found.
        checked: how many chained entries verified (positions 1..checked).
        position, hash: the last verified position and its hash (hex), what a
            new :class:`Checkpoint` would hold.
        fault: the first problem, or None.
        pending: entries appended but not chained yet (not covered).
    """

    firm_id: str
    ok: bool
    checked: int
    position: int
    hash: str
    fault: ChainFault | None = None
    pending: int = 0


Row = tuple[int, str, str | None, str | None, str | None, str | None, int, bytes | None, Any]
"""A chained row as verification reads it: seq, id, key, parent (subject),
ref (client), status (operation), created_at (microseconds), body, and
``data`` (which must be empty: ``"{}"`` as stored, or ``{}``)."""


def row_of(record: Record) -> Row:
    """A :data:`Row` from a Store record (the generic path)."""
    return (
        record.seq,
        record.id,
        record.key,
        record.parent,
        record.ref,
        record.status,
        _micros(record.created_at),
        record.body,
        dict(record.data),
    )


def _verifies(firm_id: str, row: Row, position: int) -> bool:
    _seq, rid, _key, subject, client, operation, at, body, data = row
    clean = data == "{}" or data == {}
    if body is None or len(body) < 2 * HASH_SIZE or subject is None or operation is None:
        return False
    header = header_bytes(firm_id, position, rid, subject, client, operation, at)
    return (
        clean
        and link_hash(body[HASH_SIZE : 2 * HASH_SIZE], header, body[2 * HASH_SIZE :])
        == (body[:HASH_SIZE])
    )


async def verify_rows(
    firm_id: str,
    batches: AsyncIterator[Sequence[Row]],
    *,
    anchors: Iterable[tuple[int, bytes]] = (),
) -> tuple[int, bytes, ChainFault | None]:
    """Walk chained rows given in ``key`` (position) order; returns the last
    verified position, its hash and the first fault.

    ``anchors`` are
    ``(position, hash)`` pairs the chain must pass through (a checkpoint).
    """
    want = dict(anchors)
    expected = 1
    prev = GENESIS
    seqs = array("q")  # the walked entries' seqs, increasing (8 bytes each)
    sha = _sha256
    sep = _SEP
    psep = _PAYLOAD_SEP
    join = b"".join
    h2 = 2 * HASH_SIZE
    async for batch in batches:
        for row in batch:
            seq, rid, key, subject, client, operation, at, body, data = row
            ekey = position_key(expected)
            if key != ekey:
                fault = _explain_gap(firm_id, row, expected)
                return expected - 1, prev, fault
            # the hot loop: one join, one hash, two compares per entry
            if (
                body is not None
                and (data == "{}" or data == {})
                and subject is not None
                and operation is not None
                and body[HASH_SIZE:h2] == prev
                and sha(
                    join(
                        (
                            prev,
                            sep.join(
                                (firm_id, key, rid, subject, client or "", operation, str(at))
                            ).encode(),
                            psep,
                            body[h2:],
                        )
                    )
                ).digest()
                == body[:HASH_SIZE]
            ):
                if seqs and seq < seqs[-1]:
                    first = bisect.bisect_right(seqs, seq) + 1
                    return (
                        first - 1,
                        prev,
                        ChainFault(
                            Fault.REORDERED,
                            first,
                            None,
                            f"the entry at position {first} is stored after the one at "
                            f"position {expected}",
                        ),
                    )
                prev = body[:HASH_SIZE]
                seqs.append(seq)
                anchor = want.get(expected)
                if anchor is not None and anchor != prev:
                    return (
                        expected - 1,
                        prev,
                        ChainFault(
                            Fault.REWRITTEN,
                            expected,
                            rid,
                            "the entry's hash differs from the checkpoint's",
                        ),
                    )
                expected += 1
                continue
            return expected - 1, prev, _explain_bad(firm_id, row, expected, prev)
    return expected - 1, prev, None


def _explain_bad(firm_id: str, row: Row, position: int, prev: bytes) -> ChainFault:
    """The row at ``position`` does not verify there: edited, or displaced by an
    inserted one (it verifies one position earlier), or a foreign record whose
    own hash holds but which does not link to the entry before it."""
    rid, body = row[1], row[7]
    if position > 1 and _verifies(firm_id, row, position - 1):
        return ChainFault(
            Fault.INSERTED,
            position - 1,
            None,
            f"an entry was inserted before the one now at position {position}",
        )
    if (
        _verifies(firm_id, row, position)
        and body is not None
        and body[HASH_SIZE : 2 * HASH_SIZE] != prev
    ):
        return ChainFault(
            Fault.INSERTED, position, rid, "the entry does not link to the entry before it"
        )
    return ChainFault(Fault.EDITED, position, rid, "the entry does not match its hash")


def _explain_gap(firm_id: str, row: Row, expected: int) -> ChainFault:
    """The next stored key is not the expected position."""
    key = row[2]
    try:
        found = int(key or "")
    except ValueError:
        found = -1
    if found > expected:
        # positions expected..found-1 are missing; the entry at found may also
        # have been displaced (renumbered) by a removal
        if _verifies(firm_id, row, expected):
            return ChainFault(Fault.EDITED, expected, row[1], "the entry's position was changed")
        return ChainFault(
            Fault.REMOVED,
            expected,
            None,
            f"no entry at position {expected} (the next one stored is at {found})",
        )
    return ChainFault(
        Fault.INSERTED, expected, row[1], f"a record with position key {key!r} is in the chain"
    )
