"""The audit trail of a Store: chain, verify, anchor, query and export.

:class:`AuditTrail` is what the host uses (``app.audit``). Its methods take a
firm id: reading the trail is the host's administrative function, authorise
it before you call (clientcomm's staff actions do not cover it).
"""

from __future__ import annotations

import heapq
import json
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs

from clientcomm.audit.chain import (
    GENESIS,
    ChainFault,
    Checkpoint,
    Fault,
    Row,
    Verification,
    chain_firm,
    header_bytes,
    link_hash,
    row_of,
    verify_rows,
)
from clientcomm.audit.operations import OPERATIONS
from clientcomm.audit.records import (
    AUDIT,
    AUDIT_KIND,
    HEAD_ID,
    ActorIndex,
    AuditEntry,
    AuditHead,
    PendingAudit,
    canonical_json,
    position_key,
)
from clientcomm.clock import Clock, SystemClock
from clientcomm.errors import ConflictError, IntegrityError, InvalidInputError
from clientcomm.ids import worker_id
from clientcomm.records import Records
from clientcomm.storage._codec import to_micros
from clientcomm.storage.base import Store

__all__ = ["AuditPage", "AuditTrail", "verify_export"]

_MAX_LIMIT = 1000

log = logging.getLogger("clientcomm.audit")


@attrs.frozen
class AuditPage:
    """One page of a query: entries in trail order, and the cursor of the next
    page (None: this was the last)."""

    entries: tuple[AuditEntry, ...]
    cursor: str | None


def entry_line(firm_id: str, e: AuditEntry) -> str:
    """One exported JSON line: the entry with its verification data."""
    return json.dumps(
        {
            "firm_id": firm_id,
            "position": e.position,
            "id": e.id,
            "at": e.at.isoformat(),
            "operation": e.operation,
            "subject": e.subject,
            "actor": e.actor,
            "client": e.client,
            "clients": list(e.clients),
            "objects": list(e.objects),
            "details": e.details,
            "prev": e.prev,
            "hash": e.hash,
        },
        ensure_ascii=False,
        sort_keys=True,
    )


def verify_export(lines: Iterable[str]) -> ChainFault | None:
    """Check exported lines offline: each entry against its own hash, and each
    against the one before it where the positions are consecutive (an export
    of the whole chain is then checked link by link). Returns the first fault,
    or None."""
    last: tuple[int, str] | None = None
    for line in lines:
        if not line.strip():
            continue
        row = json.loads(line)
        position = int(row["position"])
        payload = canonical_json(
            {
                "actor": row["actor"],
                "clients": row["clients"],
                "details": row["details"],
                "objects": row["objects"],
            }
        )
        micros = to_micros(datetime.fromisoformat(row["at"]))
        assert micros is not None
        header = header_bytes(
            row["firm_id"],
            position,
            row["id"],
            row["subject"],
            row["client"],
            row["operation"],
            micros,
        )
        if link_hash(bytes.fromhex(row["prev"]), header, payload).hex() != row["hash"]:
            return ChainFault(Fault.EDITED, position, row["id"], "the line does not match its hash")
        if last is not None and position == last[0] + 1 and row["prev"] != last[1]:
            return ChainFault(
                Fault.INSERTED, position, row["id"], "the line does not link to the one before it"
            )
        if position == 1 and row["prev"] != GENESIS.hex():
            return ChainFault(Fault.EDITED, 1, row["id"], "the first entry must link to zero")
        last = (position, row["hash"])
    return None


class AuditTrail:
    """Chain, verify, anchor, query and export a Store's audit trail.

    Args:
        store: the Store the services append to.
        clock: time source (for the head's ``updated_at`` and checkpoints).
        lease: how long the chaining step holds the pending entries it found.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        lease: timedelta = timedelta(seconds=10),
    ) -> None:
        self.store = store
        self.records = Records(store)
        self.clock: Clock = clock or SystemClock()
        self.lease = lease
        self._owner = worker_id("audit")

    # -- chaining --------------------------------------------------------------------------
    async def chain(self, firm_id: str, *, limit: int = 10_000) -> int:
        """Link ``firm_id``'s pending entries now (what the ``audit.chain`` step
        does in the background), up to ``limit``; returns how many. Retries
        when another chainer got there first.

        Raises:
            InvalidInputError: ``limit`` is not positive.
        """
        _check_limit(limit, 1_000_000)
        done = 0
        conflicts = 0
        while done < limit:
            try:
                n = await chain_firm(
                    self.records, firm_id, limit=min(1000, limit - done), now=self.clock.now()
                )
            except ConflictError:
                conflicts += 1
                if conflicts > 50:
                    raise
                continue
            if n == 0:
                break
            done += n
        return done

    async def step(self, *, limit: int = 1000) -> int:
        """The ``audit.chain`` step: find firms with pending entries (any firm)
        and chain up to ``limit`` entries; returns how many (0: idle). A firm
        another worker is chaining right now is left to it."""
        _check_limit(limit, 1_000_000)
        found, _ = await self.records.claim(
            PendingAudit,
            status="pending",
            owner=self._owner,
            now=self.clock.now(),
            lease=self.lease,
            limit=limit,
        )
        firms = list(dict.fromkeys(p.meta.firm_id for p in found))
        done = 0
        for firm_id in firms:
            while done < limit:
                try:
                    n = await chain_firm(
                        self.records,
                        firm_id,
                        limit=min(1000, limit - done),
                        now=self.clock.now(),
                    )
                except ConflictError:
                    break  # another chainer has this firm
                if n == 0:
                    break
                done += n
        return done

    async def pending(self, firm_id: str) -> int:
        """How many entries are appended but not chained yet."""
        async with self.records.transaction(firm_id) as tx:
            return await tx.count(PendingAudit)

    # -- anchoring and verification ------------------------------------------------------
    async def checkpoint(self, firm_id: str) -> Checkpoint:
        """The chain's head now, to keep elsewhere and pass to :meth:`verify`
        later (verify first if you anchor a chain you did not watch grow)."""
        async with self.records.transaction(firm_id) as tx:
            head = await tx.find(AuditHead, HEAD_ID)
        if head is None:
            return Checkpoint(firm_id, 0, GENESIS.hex(), self.clock.now())
        return Checkpoint(firm_id, head.position, head.hash, self.clock.now())

    async def verify(
        self,
        firm_id: str,
        *,
        checkpoint: Checkpoint | Iterable[Checkpoint] | None = None,
        batch: int = 20_000,
    ) -> Verification:
        """Walk ``firm_id``'s chain from position 1 to its head and report the
        first edited, removed, inserted or reordered entry by position; with
        ``checkpoint`` (one or several), also a chain cut below or rewritten
        at a checkpoint's position.

        Entries chained while it runs (after the head it read first) are not
        covered; pending entries are counted, not verified.

        Raises:
            InvalidInputError: a checkpoint of another firm; ``batch`` not positive.
        """
        _check_limit(batch, 100_000)
        anchors: list[Checkpoint] = []
        if isinstance(checkpoint, Checkpoint):
            anchors = [checkpoint]
        elif checkpoint is not None:
            anchors = list(checkpoint)
        for cp in anchors:
            if not isinstance(cp, Checkpoint) or cp.firm_id != firm_id:
                raise InvalidInputError("checkpoint", "must be a Checkpoint of this firm")
        async with self.records.transaction(firm_id) as tx:
            total = await tx.raw.count(AUDIT_KIND)
            head = await tx.find(AuditHead, HEAD_ID)
            pending = await tx.count(PendingAudit)
        head_pos = head.position if head else 0
        wanted = [(cp.position, bytes.fromhex(cp.hash)) for cp in anchors if cp.position > 0]
        checked, last, fault = await verify_rows(
            firm_id, self._rows(firm_id, head_pos, batch), anchors=wanted
        )
        if fault is None and checked < head_pos:
            fault = ChainFault(
                Fault.TRUNCATED,
                checked + 1,
                None,
                f"the chain ends at {checked}; its head says {head_pos}",
            )
        if fault is None:
            for cp in sorted(anchors, key=lambda c: c.position):
                if cp.position > checked:
                    fault = ChainFault(
                        Fault.TRUNCATED,
                        checked + 1,
                        None,
                        f"the chain ends at {checked}; a checkpoint names {cp.position}",
                    )
                    break
        if fault is None and head is not None and last.hex() != head.hash:
            fault = ChainFault(
                Fault.EDITED, checked, None, "the chain's last hash differs from its head"
            )
        if fault is None and total > checked:
            fault = await self._find_unkeyed(firm_id)
        ok = fault is None
        return Verification(firm_id, ok, checked, checked, last.hex(), fault, pending)

    async def _rows(self, firm_id: str, head_pos: int, batch: int) -> AsyncIterator[Sequence[Row]]:
        """The chained rows up to ``head_pos`` in position order, ``batch`` at a
        time. SQL backends are read with one narrow indexed query per batch
        (the ``key`` index); other Stores through :meth:`Store.iterate`."""
        if head_pos <= 0:
            return
        last = position_key(head_pos)
        reader = getattr(self.store, "sql_read", None)
        dialect = getattr(self.store, "dialect", None)
        if reader is not None and dialect in ("sqlite", "postgres"):
            sql = (  # sql_read takes ``?`` placeholders on both backends
                "SELECT seq, id, key, parent, ref, status, created_at, body, data FROM records"
                " WHERE firm_id=? AND kind=? AND key IS NOT NULL"
                " AND key > ? AND key <= ? ORDER BY key LIMIT ?"
            )
            after = ""
            while True:
                raw = await reader(sql, (firm_id, AUDIT_KIND, after, last, batch))
                if not raw:
                    return
                if dialect == "sqlite":
                    yield raw  # already a Row: created_at is stored as microseconds
                else:
                    yield [
                        (
                            r[0],
                            r[1],
                            r[2],
                            r[3],
                            r[4],
                            r[5],
                            to_micros(r[6]) or 0,
                            bytes(r[7]) if r[7] is not None else None,
                            r[8],
                        )
                        for r in raw
                    ]
                if len(raw) < batch:
                    return
                after = raw[-1][2]
            return
        rows = [
            row_of(r)
            async for r in self.store.iterate(firm_id, AUDIT_KIND, batch=batch)
            if r.key is not None and r.key <= last
        ]
        rows.sort(key=lambda r: r[2] or "")
        for i in range(0, len(rows), batch):
            yield rows[i : i + batch]

    async def _find_unkeyed(self, firm_id: str) -> ChainFault:
        keyed = 0
        async for r in self.store.iterate(firm_id, AUDIT_KIND):
            if r.key is None:
                return ChainFault(
                    Fault.INSERTED,
                    keyed + 1,
                    r.id,
                    "a record without a chain position is stored among the entries",
                )
            keyed += 1
        return ChainFault(
            Fault.INSERTED, keyed, None, "the chain holds more records than its head names"
        )

    # -- query and export ------------------------------------------------------------------
    async def query(
        self,
        firm_id: str,
        *,
        client: str | None = None,
        actor: str | None = None,
        operation: str | None = None,
        subject: str | None = None,
        created_from: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> AuditPage:
        """One page of chained entries matching every filter given, in trail
        order (chain entries first to last).

        ``client`` finds the entries about that client (indexed) and the batch
        entries naming it (``mailing.delivered``: their operation index is
        read, not the whole trail); ``actor`` and ``subject`` (the object)
        are indexed; ``created_from <= at < created_before``. Pass the page's
        ``cursor`` back for the next page.

        Raises:
            InvalidInputError: ``limit`` outside 1..1000, a bad cursor or range.
        """
        _check_limit(limit, _MAX_LIMIT)
        after = _parse_cursor(cursor)
        for name, value in (("created_from", created_from), ("created_before", created_before)):
            if value is not None and (not isinstance(value, datetime) or value.utcoffset() is None):
                raise InvalidInputError(name, "must be None or a timezone-aware datetime")
        rng: dict[str, Any] = {"created_from": created_from, "created_before": created_before}

        def keep(e: AuditEntry) -> bool:
            return (
                (client is None or e.client == client or client in e.clients)
                and (actor is None or e.actor == actor)
                and (operation is None or e.operation == operation)
                and (subject is None or e.subject == subject)
            )

        sources: list[AsyncIterator[tuple[int, AuditEntry]]] = []
        batch_ops = set(OPERATIONS.batch_names())
        if client is not None:
            if operation is None or operation not in batch_ops:
                sources.append(
                    self._entries(
                        firm_id, after, keep, ref=client, status=operation, parent=subject, **rng
                    )
                )
            for op in sorted(batch_ops):
                if operation is None or operation == op:
                    sources.append(
                        self._entries(firm_id, after, keep, status=op, parent=subject, **rng)
                    )
        elif subject is not None:
            sources.append(
                self._entries(firm_id, after, keep, parent=subject, status=operation, **rng)
            )
        elif operation is not None:
            sources.append(self._entries(firm_id, after, keep, status=operation, **rng))
        elif actor is not None:
            sources.append(self._by_actor(firm_id, after, keep, actor, rng))
        else:
            sources.append(self._entries(firm_id, after, keep, **rng))
        found: list[AuditEntry] = []
        last_seq = after
        heads: list[tuple[int, int, AuditEntry]] = []
        for i, src in enumerate(sources):
            first = await anext(src, None)
            if first is not None:
                heads.append((first[0], i, first[1]))
        heapq.heapify(heads)
        while heads and len(found) < limit:
            seq, i, entry = heapq.heappop(heads)
            if seq > last_seq:  # one entry can come from two sources: take it once
                found.append(entry)
                last_seq = seq
            nxt = await anext(sources[i], None)
            if nxt is not None:
                heapq.heappush(heads, (nxt[0], i, nxt[1]))
        more = bool(heads)
        for src in sources:
            await src.aclose()  # type: ignore[attr-defined]
        return AuditPage(tuple(found), str(last_seq) if more and found else None)

    async def _entries(
        self, firm_id: str, after: int, keep: Any, **filters: Any
    ) -> AsyncIterator[tuple[int, AuditEntry]]:
        chunk = 500
        filters = {k: v for k, v in filters.items() if v is not None}
        while True:
            async with self.store.transaction(firm_id) as tx:
                page = await tx.list(AUDIT_KIND, after_seq=after, limit=chunk, **filters)
            for record in page:
                try:
                    e = AUDIT.decode(record)
                except IntegrityError:
                    log.error("audit record %s does not decode; skipped", record.id)
                    continue
                if keep(e):
                    yield record.seq, e
            if len(page) < chunk:
                return
            after = page[-1].seq

    async def _by_actor(
        self, firm_id: str, after: int, keep: Any, actor: str, rng: dict[str, Any]
    ) -> AsyncIterator[tuple[int, AuditEntry]]:
        chunk = 500
        rng = {k: v for k, v in rng.items() if v is not None}
        while True:
            async with self.records.transaction(firm_id) as tx:
                index = await tx.list(ActorIndex, parent=actor, after_seq=after, limit=chunk, **rng)
                entries = await tx.get_many(AuditEntry, [i.id for i in index], decode_errors="skip")
            for i in index:
                e = entries.get(i.id)
                if e is not None and keep(e):
                    yield i.meta.seq, e
            if len(index) < chunk:
                return
            after = index[-1].meta.seq

    async def export_jsonl(
        self,
        firm_id: str,
        *,
        client: str | None = None,
        actor: str | None = None,
        operation: str | None = None,
        subject: str | None = None,
        created_from: datetime | None = None,
        created_before: datetime | None = None,
    ) -> AsyncIterator[str]:
        """The matching entries (all, without filters) as JSON lines with their
        verification data (``position``, ``hash``, ``prev``), streamed; check
        them offline with :func:`verify_export`. Each line ends with ``\\n``."""
        cursor: str | None = None
        while True:
            page = await self.query(
                firm_id,
                client=client,
                actor=actor,
                operation=operation,
                subject=subject,
                created_from=created_from,
                created_before=created_before,
                limit=_MAX_LIMIT,
                cursor=cursor,
            )
            for e in page.entries:
                yield entry_line(firm_id, e) + "\n"
            if page.cursor is None:
                return
            cursor = page.cursor


def _check_limit(value: object, top: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= top:
        raise InvalidInputError("limit", f"must be an integer from 1 to {top}", value=value)


def _parse_cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not isinstance(cursor, str) or not cursor.isdigit():
        raise InvalidInputError("cursor", "is not a cursor of this trail")
    return int(cursor)
