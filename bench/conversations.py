"""Conversations: the staff inbox at scale, and the cost of a client comment.

``python bench/conversations.py`` (run by ``make bench``; ``--quick`` for a
short run) prints one JSON object per figure on stdout (name, value, unit,
baseline, ratio, target); progress goes to stderr.

1. **Inbox**: a firm with 5,000 clients and 20 administrators holds 100,000
   conversations (``--quick``: 10,000), seeded with bulk inserts of real
   records (subjects sealed for their clients with the bound values, the list
   index entries, read marks), not through the service one by one. Measured:
   the first page of 50 "waiting on the firm, assigned to X" with X's unread
   counts (``list_for_staff(X, assignee_id=X, turn=FIRM, status=[open,
   needs_attention])``), median of repeated calls, against the same page over
   1,000 conversations. Every tenth conversation is X's and every other one of
   those waits on the firm, so the page is full at both sizes. Target: the
   time at 100,000 is at most 2x the time at 1,000.
2. **Client comment**: ``comment()`` by a client on an assigned conversation
   (its sealed comment, the conversation's new MAC, the index entries, two
   e-mail jobs: office and assignee, the assignee's in-app record, the audit
   record, in one transaction), against a raw baseline that seals the same
   text with plain AES-GCM and inserts the comment row and one outbox row per
   recipient (office, assignee e-mail, assignee in-app) in one transaction,
   with the same SQLite settings (WAL, synchronous=FULL, 16 KiB pages).
   Target: at least 0.3 of the baseline's rate.

   Two more lines put the figure in context. **The floor**
   (``client_comment_vs_floor``): the same writes in plain SQL on the store's
   own table (its schema, indexes and settings, rows copied from the ones the
   comments just wrote): read the conversation, update it, insert the sealed
   comment, move its two list-index entries, insert the two e-mail jobs, the
   in-app record and the audit record, in one transaction, without MACs,
   rules or validation; ``floor_vs_raw`` is what the one-table layout costs
   next to the raw baseline's two-index table. **PostgreSQL**
   (``pg_client_comment_vs_raw``): the comment on a PostgresStore against the
   raw baseline's table and rows over psycopg (``CLIENTCOMM_TEST_PG_URL``, or
   a throwaway cluster).

SQLite, keys from the LocalKeyProvider (created before timing), a
MemoryDirectory. The machine may be shared: figures are medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
from _common import emit, log, postgres_url
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.conversations.models import ConversationStatus, Turn
from clientcomm.conversations.records import (
    ConversationRecord,
    FeedEntry,
    InboxEntry,
    ReadMark,
)
from clientcomm.conversations.rules import (
    conversation_plaintext,
    index_status,
    subject_context,
    with_mac,
)
from clientcomm.crypto import LocalKeyProvider, MasterKey
from clientcomm.crypto.envelope import SealRequest
from clientcomm.directory.memory import MemoryDirectory
from clientcomm.directory.models import Client, Firm, Role, Staff
from clientcomm.mail.memory import MemoryTransport
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.outbox import MailSettings
from clientcomm.records import Records
from clientcomm.storage.base import Store
from clientcomm.storage.sqlite import SQLiteStore

S = ConversationStatus
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CLIENTS = 5_000
STAFF = 20
X = "s00"
COMMENT = ("Anbei die angeforderten Belege für das Jahr 2025, mit freundlichen Grüßen. " * 8)[:600]


async def make_app(db: Path | Store, clients: int) -> ClientComm:
    directory = MemoryDirectory()
    await directory.put_firm(Firm("f1", "Kanzlei Müller", office_email="office@mueller.example"))
    for i in range(clients):
        await directory.put_client(Client(f"c{i:05d}", "f1", f"Mandant {i}"))
    for s in range(STAFF):
        await directory.put_staff(
            Staff(f"s{s:02d}", "f1", f"Admin {s}", Role.ADMIN, email=f"s{s:02d}@mueller.example")
        )
    store = SQLiteStore(db) if isinstance(db, Path) else db
    await store.migrate()
    master = MasterKey.generate()
    return ClientComm(
        store=store,
        directory=directory,
        keys=LocalKeyProvider(store, master),
        blobs=MemoryBlobStore(),
        transport=MemoryTransport(),
        links=LinkTemplates(default="https://portal.example/{firm_id}/clients/{client_id}"),
        mail=MailSettings(sender="portal@portal.example", message_id_domain="portal.example"),
    )


def conversation(i: int, clients: int) -> ConversationRecord:
    """The i-th conversation: every tenth is X's, every other one of those
    waits on the firm; the rest spread over the other staff and states."""
    at = T0 + timedelta(seconds=i)
    if i % 10 == 0:
        assignee = X
        waiting = (i // 10) % 2 == 0
        status = (S.OPEN if (i // 20) % 2 == 0 else S.NEEDS_ATTENTION) if waiting else S.ANSWERED
        turn = Turn.FIRM if waiting else Turn.CLIENT
    else:
        assignee = f"s{1 + i % (STAFF - 1):02d}"
        status = list(S)[i % 3]
        turn = list(Turn)[(i // 3) % 2]
    client_comments = 1 + i % 4
    return ConversationRecord(
        id=f"k{i:07d}",
        client_id=f"c{i % clients:05d}",
        status=status,
        assignee_id=assignee,
        sealed_subject=b"",
        created_at=at,
        created_by="staff:s01",
        notify_admins=False,
        turn=turn,
        turn_since=at,
        last_activity_at=at,
        status_changed_at=at,
        status_changed_by="staff:s01",
        comments=client_comments + 1,
        client_comments=client_comments,
        staff_comments=1,
    )


async def seed(app: ClientComm, n: int, clients: int) -> None:
    """Bulk-insert ``n`` sealed conversations with their index entries (in
    activity order) and X's read marks on half of X's conversations."""
    records = Records(app.store)
    key = await app.notice_keys.get("f1")
    batch = 5_000
    for start in range(0, n, batch):
        rows = [conversation(i, clients) for i in range(start, min(n, start + batch))]
        sealed = await app.sealer.seal_many(
            [
                SealRequest(
                    subject_context("f1", c.client_id, c.id),
                    conversation_plaintext(c, f"Unterlagen {c.id}"),
                )
                for c in rows
            ]
        )
        rows = [
            with_mac(key, attrs.evolve(c, sealed_subject=s))
            for c, s in zip(rows, sealed, strict=True)
        ]
        async with records.transaction("f1") as tx:
            await tx.insert(rows)
            await tx.insert(
                [
                    InboxEntry(
                        c.id, c.client_id, c.assignee_id or "-", index_status(c.status, c.turn)
                    )
                    for c in rows
                ]
            )
            await tx.insert(
                [FeedEntry(c.id, c.client_id, "*", index_status(c.status, c.turn)) for c in rows]
            )
            await tx.insert(
                [
                    ReadMark(ReadMark.id_for(c.id, f"staff:{X}"), c.id, c.client_id, 1, T0)
                    for idx, c in enumerate(rows)
                    if c.assignee_id == X and idx % 40 == 0
                ]
            )
        log(f"  seeded {min(n, start + batch):,} of {n:,}")


async def inbox_time(n: int, clients: int, repeats: int, tmp: Path) -> float:
    app = await make_app(tmp / f"inbox-{n}.db", clients)
    try:
        await seed(app, n, clients)
        x = StaffActor("f1", X)
        waiting = [S.OPEN, S.NEEDS_ATTENTION]
        page = await app.conversations.list_for_staff(
            x, assignee_id=X, turn=Turn.FIRM, status=waiting, limit=50
        )
        assert len(page) == 50 and not page.unreadable, (len(page), page.unreadable)
        assert all(c.turn is Turn.FIRM and c.assignee_id == X for c in page)
        assert any(c.unread for c in page)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            await app.conversations.list_for_staff(
                x, assignee_id=X, turn=Turn.FIRM, status=waiting, limit=50
            )
            times.append(time.perf_counter() - t)
        return statistics.median(times)
    finally:
        await app.aclose()


async def comment_rate(app: ClientComm, n: int) -> tuple[float, list[str]]:
    """Client comments per second on ``n`` conversations (one each), and
    the conversation ids."""
    admin = StaffActor("f1", "s01")
    ids = []
    for i in range(n):
        ids.append(
            await app.conversations.create(
                admin, f"c{i % 200:05d}", f"Belege {i}", "Bitte senden", assignee_id=X
            )
        )
    await app.conversations.comment(
        ClientActor("f1", "c00000"), ids[0], COMMENT
    )  # warm: keys, notice key
    t = time.perf_counter()
    for i, cid in enumerate(ids[1:], 1):
        await app.conversations.comment(ClientActor("f1", f"c{i % 200:05d}"), cid, COMMENT)
    elapsed = time.perf_counter() - t
    async with app.store.transaction("f1") as tx:
        jobs = await tx.count("notify.job")
    assert jobs >= 2 * n, jobs  # office and assignee per comment (plus the staff messages)
    return (n - 1) / elapsed, ids


_COLS = (
    "firm_id, kind, id, parent, key, status, due_at, data, body, lease_owner, lease_until,"
    " created_at, ref"
)


def floor_rate(db: Path, ids: list[str]) -> float:
    """The writes of one client comment in plain SQL on the store's own table
    (the database the comments were just written to), one transaction per
    comment: rows copied from the newest ones of each kind, with the
    conversation's own ids and a fresh AES-GCM seal of the text."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA synchronous=FULL")

    def newest(kind: str, k: int) -> list[tuple[object, ...]]:
        sql = f"SELECT {_COLS} FROM records WHERE kind=? ORDER BY seq DESC LIMIT ?"
        return conn.execute(sql, (kind, k)).fetchall()

    last = ids[-1]
    [last_client] = conn.execute(
        "SELECT parent FROM records WHERE kind='conversation' AND id=?", (last,)
    ).fetchone()
    templates = [
        *newest("conversation.comment", 1),
        *newest("notify.job", 2),
        *newest("notify.inapp", 1),
        *newest("audit.pending", 1),
    ]
    index = {
        (kind, cid): row
        for kind in ("conversation.inbox", "conversation.feed")
        for row in conn.execute(f"SELECT {_COLS} FROM records WHERE kind=?", (kind,))
        for cid in [row[2]]
    }
    clients = dict(
        conn.execute("SELECT id, parent FROM records WHERE kind='conversation'").fetchall()
    )
    insert = f"INSERT INTO records ({_COLS}) VALUES ({','.join('?' * 13)})"
    aes = AESGCM(AESGCM.generate_key(bit_length=256))
    text = COMMENT.encode()
    targets = ids[1:]
    t = time.perf_counter()
    for i, cid in enumerate(targets):
        client = clients[cid]
        swap = {last: cid, last_client: client}
        rows = [
            (
                *(swap.get(v, v) if isinstance(v, str) else v for v in r[:2]),
                f"floor-{i}-{n}",
                *(swap.get(v, v) if isinstance(v, str) else v for v in r[3:]),
            )
            for n, r in enumerate(templates)
        ]
        body = aes.encrypt(os.urandom(12), text, f"f1|{client}|comment|{rows[0][2]}".encode())
        rows[0] = (*rows[0][:8], body, *rows[0][9:])
        conn.execute("BEGIN IMMEDIATE")
        data, sealed, version = conn.execute(
            "SELECT data, body, version FROM records WHERE firm_id='f1' AND kind='conversation'"
            " AND id=?",
            (cid,),
        ).fetchone()
        conn.execute(
            "UPDATE records SET status='open', data=?, body=?, version=version+1"
            " WHERE firm_id='f1' AND kind='conversation' AND id=? AND version=?",
            (data, sealed, cid, version),
        )
        conn.execute(insert, rows[0])
        moved = [index[("conversation.inbox", cid)], index[("conversation.feed", cid)]]
        conn.executemany(
            "DELETE FROM records WHERE firm_id=? AND kind=? AND id=?",
            [(r[0], r[1], r[2]) for r in moved],
        )
        conn.executemany(insert, [*moved, *rows[1:]])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    conn.close()
    return len(targets) / elapsed


def raw_rate(n: int, tmp: Path) -> float:
    """Plain AES-GCM of the text and one transaction per comment inserting the
    comment row and one outbox row per recipient (office, assignee e-mail,
    assignee in-app), with the store's SQLite settings."""
    conn = sqlite3.connect(tmp / "raw.db", isolation_level=None)
    conn.execute("PRAGMA page_size=16384")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE records (firm_id TEXT, kind TEXT, id TEXT, parent TEXT, ref TEXT,"
        " status TEXT, data TEXT, body BLOB, created_at TEXT, seq INTEGER PRIMARY KEY,"
        " UNIQUE (firm_id, kind, id))"
    )
    conn.execute("CREATE INDEX records_parent ON records (firm_id, kind, parent, seq)")
    aes = AESGCM(AESGCM.generate_key(bit_length=256))
    text = COMMENT.encode()
    now = T0.isoformat()
    t = time.perf_counter()
    for i in range(n):
        body = aes.encrypt(os.urandom(12), text, f"f1|c|conversation.comment|m{i}|text".encode())
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO records (firm_id, kind, id, parent, ref, data, body, created_at)"
            " VALUES ('f1', 'conversation.comment', ?, ?, 'c1', ?, ?, ?)",
            (f"m{i}", f"k{i}", json.dumps({"author": "client", "number": 2}), body, now),
        )
        conn.executemany(
            "INSERT INTO records (firm_id, kind, id, parent, status, data, created_at)"
            " VALUES ('f1', 'notify.job', ?, ?, 'pending', ?, ?)",
            [
                (f"j{i}-{r}", f"k{i}", json.dumps({"to": r, "kind": "new_comment"}), now)
                for r in ("office", "assignee", "inapp")
            ],
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t
    conn.close()
    return n / elapsed


async def raw_pg_rate(url: str, n: int) -> float:
    """The raw baseline over psycopg: the same table (and indexes) and rows as
    :func:`raw_rate`, one transaction per comment."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("DROP TABLE IF EXISTS bench_raw_comments")
        await conn.execute(
            "CREATE TABLE bench_raw_comments (seq bigserial PRIMARY KEY, firm_id text,"
            " kind text, id text, parent text, ref text, status text, data jsonb, body bytea,"
            " created_at timestamptz, UNIQUE (firm_id, kind, id))"
        )
        await conn.execute(
            "CREATE INDEX bench_raw_comments_parent ON bench_raw_comments"
            " (firm_id, kind, parent, seq)"
        )
        aes = AESGCM(AESGCM.generate_key(bit_length=256))
        text = COMMENT.encode()
        t = time.perf_counter()
        for i in range(n):
            body = aes.encrypt(
                os.urandom(12), text, f"f1|c|conversation.comment|m{i}|text".encode()
            )
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO bench_raw_comments (firm_id, kind, id, parent, ref, data, body,"
                    " created_at) VALUES ('f1', 'conversation.comment', %s, %s, 'c1', %s, %s, %s)",
                    (f"m{i}", f"k{i}", json.dumps({"author": "client", "number": 2}), body, T0),
                )
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO bench_raw_comments (firm_id, kind, id, parent, status, data,"
                        " created_at) VALUES ('f1', 'notify.job', %s, %s, 'pending', %s, %s)",
                        [
                            (f"j{i}-{r}", f"k{i}", json.dumps({"to": r, "kind": "new_comment"}), T0)
                            for r in ("office", "assignee", "inapp")
                        ],
                    )
        elapsed = time.perf_counter() - t
        await conn.execute("DROP TABLE bench_raw_comments")
    return n / elapsed


async def pg_comment_figure(comments: int) -> None:
    from clientcomm.testing.postgres import isolated_store

    async with postgres_url() as url:
        if url is None:
            return
        async with isolated_store(url) as store:
            app = await make_app(store, 200)
            try:
                ours, _ = await comment_rate(app, comments)
            finally:
                await app.aclose()
        raw = await raw_pg_rate(url, comments)
    emit(
        "conversations.pg_client_comment_vs_raw",
        ours,
        "comments/s",
        baseline=raw,
        target=0.3,
        target_is="ratio >= target",
        comments=comments,
        digits=6,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 conversations, 50 comments")
    args = parser.parse_args()
    big = 10_000 if args.quick else 100_000
    comments = 50 if args.quick else 300
    repeats = 10 if args.quick else 30
    with tempfile.TemporaryDirectory(prefix="cc-bench-conv-") as d:
        tmp = Path(d)
        log("inbox over 1,000 conversations")
        small_t = await inbox_time(1_000, CLIENTS, repeats, tmp)
        log(f"inbox over {big:,} conversations of {CLIENTS:,} clients")
        big_t = await inbox_time(big, CLIENTS, repeats, tmp)
        emit(
            f"conversations.inbox_page_{big // 1000}k_vs_1k",
            big_t * 1000,
            "ms",
            baseline=small_t * 1000,
            target=2.0,
            target_is="ratio <= target",
            conversations=big,
            page=50,
            digits=6,
        )
        log(f"client comments x {comments}")
        db = tmp / "comments.db"
        app = await make_app(db, 200)
        try:
            ours, ids = await comment_rate(app, comments)
        finally:
            await app.aclose()
        raw = raw_rate(comments, tmp)
        floor = floor_rate(db, ids)
        emit(
            "conversations.client_comment_vs_raw",
            ours,
            "comments/s",
            baseline=raw,
            target=0.3,
            target_is="ratio >= target",
            comments=comments,
            digits=6,
        )
        emit(
            "conversations.client_comment_vs_floor",
            ours,
            "comments/s",
            baseline=floor,
            comments=comments,
            digits=6,
        )
        emit(
            "conversations.floor_vs_raw",
            floor,
            "comments/s",
            baseline=raw,
            comments=comments,
            digits=6,
        )
    log(f"client comments x {comments} on PostgreSQL")
    await pg_comment_figure(comments)


if __name__ == "__main__":
    asyncio.run(main())
