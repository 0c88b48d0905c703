"""The audit trail's cost, beside what it is measured against in the same run.

``python bench/audit.py`` (run by ``make bench``) prints one JSON object per
figure on stdout; progress goes to stderr. ``AUDIT_BENCH_RECIPIENTS`` and
``AUDIT_BENCH_CHAIN`` shrink the runs for a quick check.

1. ``audit_fanout_10k_ratio``: a mailing to 10,000 clients on SQLite (the
   set-up of ``bench/mailing.py``: 2 KB text, LocalKeyProvider, WAL,
   synchronous=FULL), submit until every copy is delivered, once with the trail
   and once without it (every ``append`` suspended by
   :func:`clientcomm.testing.audit.suspended`: the same code, the audit writes
   left out). With the trail the time includes chaining what the mailing
   appended (the ``audit.chain`` step run until idle). Each is run twice,
   alternating, and the faster run of each counts. Target: with/without >= 0.9.
2. ``audit_verify_1m_ratio``: verifying a firm's chain of 1,000,000 entries on
   SQLite (``AuditTrail.verify``) beside a raw baseline in the same run: plain
   ``sqlite3`` reading the same rows in the same order and SHA-256-hashing each
   row's columns. Target: >= 0.5 of the baseline's rows/s. The chain is written
   with the chainer's own functions in large transactions (the rows are the
   bytes ``audit.chain`` writes; appending a million entries one by one would
   only make the set-up slow).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mailing as mb
from clientcomm.audit import AuditTrail
from clientcomm.audit.chain import GENESIS, header_bytes, link_hash
from clientcomm.audit.records import (
    HEAD_ID,
    AuditEntry,
    AuditHead,
    PendingAudit,
    payload_of,
)
from clientcomm.records import Records
from clientcomm.storage._codec import to_micros
from clientcomm.storage.sqlite import SQLiteStore
from clientcomm.testing.audit import suspended

RECIPIENTS = int(os.environ.get("AUDIT_BENCH_RECIPIENTS", "10000"))
CHAIN = int(os.environ.get("AUDIT_BENCH_CHAIN", "1000000"))


# -- 1. the fan-out with and without the trail ------------------------------------------
async def fanout_once(tmp: Path, name: str, n: int, trail: bool) -> float:
    work = tmp / name
    work.mkdir()
    async with SQLiteStore(work / "ours.db") as store:
        app = await mb.build(store, n, work / "blobs")
        if trail:
            rate, total = await _run(app)
        else:
            with suspended():
                rate, total = await _run(app, chain=False)
        assert total == n
        if trail:
            assert await app.audit.pending("f1") == 0
            assert (await app.audit.verify("f1")).ok
    return rate


async def _run(app: mb.ClientComm, *, chain: bool = True) -> tuple[float, int]:
    start = time.perf_counter()
    receipt = await app.mailings.submit(mb.ADMIN, mb.Audience.everyone(), mb.TEXT)
    while await app.mailings.step(limit=1000):
        pass
    if chain:
        while await app.audit.step(limit=1000):
            pass
    elapsed = time.perf_counter() - start
    status = await app.mailings.status(mb.ADMIN, receipt.id)
    assert status.delivered == receipt.total, status
    return receipt.total / elapsed, receipt.total


async def fanout(tmp: Path) -> None:
    with_trail: list[float] = []
    without: list[float] = []
    for round_ in range(2):
        without.append(await fanout_once(tmp, f"off{round_}", RECIPIENTS, trail=False))
        with_trail.append(await fanout_once(tmp, f"on{round_}", RECIPIENTS, trail=True))
        mb.log(f"fan-out x{RECIPIENTS}: without {without[-1]:,.0f}/s, with {with_trail[-1]:,.0f}/s")
    mb.emit(
        f"audit_fanout_{RECIPIENTS // 1000}k_ratio",
        max(with_trail),
        "recipients/s",
        max(without),
        0.9,
        note="with the trail (appends + chaining) vs the same run with every append suspended",
    )


# -- 2. verifying a chain of a million entries --------------------------------------------
async def write_chain(store: SQLiteStore, n: int) -> None:
    records = Records(store)
    prev = GENESIS
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    position = 0
    step = 20_000
    for first in range(0, n, step):
        batch: list[AuditEntry] = []
        for i in range(first, min(n, first + step)):
            position += 1
            p = PendingAudit(
                f"e{i:09d}",
                f"message:m{i:09d}",
                "message.sent",
                f"staff{i % 40}",
                t0 + timedelta(seconds=i),
                {"author": "staff", "attachment_count": i % 3},
                client=f"c{i % 5000:05d}",
            )
            micros = to_micros(p.at)
            assert micros is not None
            header = header_bytes("f1", position, p.id, p.subject, p.client, p.operation, micros)
            link = link_hash(prev, header, payload_of(p))
            batch.append(
                AuditEntry(
                    p.id,
                    p.subject,
                    p.operation,
                    p.actor,
                    p.at,
                    p.details,
                    client=p.client,
                    position=position,
                    hash=link.hex(),
                    prev=prev.hex(),
                )
            )
            prev = link
        async with records.transaction("f1") as tx:
            await tx.insert(batch)
    async with records.transaction("f1") as tx:
        await tx.insert([AuditHead(HEAD_ID, position, prev.hex(), t0)])


def raw_verify(db: Path) -> float:
    """Rows/s of plain sqlite3: the same rows, in the same (key) order, each
    row's columns SHA-256-hashed. No clientcomm code, no chain logic."""
    conn = sqlite3.connect(db)
    sha = hashlib.sha256
    start = time.perf_counter()
    n = 0
    for _seq, rid, key, parent, ref, status, created, body, _data in conn.execute(
        "SELECT seq, id, key, parent, ref, status, created_at, body, data FROM records"
        " WHERE firm_id=? AND kind=? AND key IS NOT NULL ORDER BY key",
        ("f1", "audit"),
    ):
        sha(
            b"".join(
                (body, "\x1f".join((rid, key, parent, ref or "", status, str(created))).encode())
            )
        ).digest()
        n += 1
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


async def verify(tmp: Path) -> None:
    db = tmp / "chain.db"
    async with SQLiteStore(db, synchronous="NORMAL") as store:
        t = time.perf_counter()
        await write_chain(store, CHAIN)
        mb.log(f"chain of {CHAIN:,} written in {time.perf_counter() - t:.1f} s")
        trail = AuditTrail(store)
        ours: list[float] = []
        raw: list[float] = []
        for _ in range(2):
            raw.append(raw_verify(db))
            start = time.perf_counter()
            result = await trail.verify("f1")
            ours.append(CHAIN / (time.perf_counter() - start))
            assert result.ok and result.checked == CHAIN, result
            mb.log(f"verify x{CHAIN:,}: ours {ours[-1]:,.0f}/s, raw {raw[-1]:,.0f}/s")
    mb.emit(
        f"audit_verify_{CHAIN // 1000}k_ratio",
        max(ours),
        "entries/s",
        max(raw),
        0.5,
        note="AuditTrail.verify vs plain sqlite3 reading the same rows and SHA-256-hashing each",
    )


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="clientcomm-bench-audit-") as tmp_name:
        tmp = Path(tmp_name)
        await fanout(tmp)
        await verify(tmp)


if __name__ == "__main__":
    asyncio.run(main())
