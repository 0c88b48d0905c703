"""Mass-mailing throughput, bytes written and peak memory, beside the raw ceiling.

``python bench/mailing.py`` (run by ``make bench``) prints one JSON object per
figure on stdout; progress goes to stderr.

Our path: ``submit`` + ``step`` until every recipient is delivered (copy sealed
for the client, written with its notification job, recipient marked done in the
same transaction), on SQLite with the store's settings (WAL, synchronous=FULL,
16 KiB pages), keys from the LocalKeyProvider (already created, as for any
mailing after the first), attachments in a FileBlobStore.

Raw ceiling, measured in the same run: plain ``AESGCM.encrypt`` of the same bytes
per recipient plus one ``executemany`` insert of one row per recipient in one
transaction with the same database settings, and plain file writes (write +
fsync, as FileBlobStore does) for attachment blobs. No clientcomm code.

Scenarios: text only (2 KB) x 10,000; the same text personalised (salutation,
client name and one host field per client, rendered per copy) x 10,000, beside
the plain one (target: within 10 % of its ratio); 2 KB + 1 MB PDF per copy x 2,000; the same
with shared ciphertext x 10,000; text only x 100,000 (peak RSS, in a child
process) beside x 10,000; text only x 10,000 on PostgreSQL (when a server is
available: CLIENTCOMM_TEST_PG_URL, or one started with scripts/pg-cluster.sh).
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit, log, postgres_url
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clientcomm.actors import StaffActor
from clientcomm.app import ClientComm
from clientcomm.attachments import AttachmentInput, AttachmentMode
from clientcomm.blobs.filesystem import FileBlobStore
from clientcomm.crypto import LocalKeyProvider, MasterKey
from clientcomm.directory.memory import MemoryDirectory
from clientcomm.directory.models import Client, Contact, Firm, Role, Staff
from clientcomm.mail.memory import MemoryTransport
from clientcomm.mailing.personalise import ClientFields, StaticClientFields
from clientcomm.messages import READ_KIND
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.outbox import MailSettings
from clientcomm.rules.audience import Audience
from clientcomm.storage.base import Store
from clientcomm.storage.sqlite import SQLiteStore

TEXT = ("Sehr geehrte Mandantin, sehr geehrter Mandant, " * 50)[:2048]
_BODY = ("bitte beachten Sie die neuen Fristen für Ihre Unterlagen. " * 40)[:1900]
PERSONAL_TEXT = (
    "{{ salutation }},\n\n" + _BODY + "\n\nIhre Steuernummer: {{ steuernummer }}\n"
    "Mandat: {{ client_name }}"
)
PDF = b"%PDF-1.7\n" + os.urandom(1024 * 1024 - 16) + b"\n%%EOF\n"
ADMIN = StaffActor("f1", "admin")


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# -- raw ceiling --------------------------------------------------------------------
def raw_sqlite(db: Path, n: int, attachment: bytes | None, blob_dir: Path | None) -> float:
    """Recipients/s of the plainest correct code: encrypt per recipient, one
    executemany in one transaction, plain durable file writes for blobs."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA page_size=16384")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE copies (id INTEGER PRIMARY KEY, client TEXT, body BLOB)")
    text = TEXT.encode()
    start = time.perf_counter()
    aead = AESGCM(AESGCM.generate_key(256))
    rows = []
    for i in range(n):
        rows.append((f"c{i:06}", aead.encrypt(os.urandom(12), text, None)))
        if attachment is not None and blob_dir is not None:
            sealed = aead.encrypt(os.urandom(12), attachment, None)
            with open(blob_dir / f"b{i}", "wb") as fh:
                fh.write(sealed)
                fh.flush()
                os.fsync(fh.fileno())
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO copies (client, body) VALUES (?, ?)", rows)
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


# -- our path -------------------------------------------------------------------------
def personal_fields(n: int) -> StaticClientFields:
    """One host field per client (a tax number), as a host would supply it."""
    return StaticClientFields(
        {"f1": {f"c{i:06}": {"steuernummer": f"{i:02}/{i:03}/{i:05}"} for i in range(n)}},
        names={"f1": {"steuernummer"}},
    )


async def build(
    store: Store, n: int, blob_dir: Path, staff: int = 1, fields: ClientFields | None = None
) -> ClientComm:
    directory = MemoryDirectory()
    await directory.put_firm(Firm("f1", "Kanzlei Benchmark", office_email="office@bench.example"))
    await directory.put_staff(Staff("admin", "f1", "Ada Admin", Role.ADMIN))
    for s in range(1, staff):
        await directory.put_staff(Staff(f"s{s:03}", "f1", f"Staff {s}", Role.CLERK))
    for i in range(n):
        cid = f"c{i:06}"
        await directory.put_client(Client(cid, "f1", f"Mandant {i}"))
        await directory.put_contact(
            Contact(
                f"k{i:06}", "f1", cid, f"Kontakt {i}", email=f"k{i}@bench.example", registered=True
            )
        )
    keys = LocalKeyProvider(store, MasterKey.generate())
    app = ClientComm(
        store=store,
        directory=directory,
        keys=keys,
        blobs=FileBlobStore(blob_dir),
        transport=MemoryTransport(),
        links=LinkTemplates(default="https://portal.example/{firm_id}/clients/{client_id}"),
        mail=MailSettings(sender="portal@portal.example", message_id_domain="portal.example"),
        fields=fields,
    )
    # keys exist already, as for every mailing after a client's first
    ids = [f"c{i:06}" for i in range(n)]
    for i in range(0, n, 1000):
        await keys.wrap_many("f1", [(c, bytes(32)) for c in ids[i : i + 1000]])
    return app


async def run_ours(
    app: ClientComm, attachments: list[AttachmentInput], mode: AttachmentMode, text: str = TEXT
) -> tuple[float, int]:
    start = time.perf_counter()
    receipt = await app.mailings.submit(
        ADMIN, Audience.everyone(), text, attachments=attachments, attachment_mode=mode
    )
    while await app.mailings.step(limit=1000):
        pass
    elapsed = time.perf_counter() - start
    status = await app.mailings.status(ADMIN, receipt.id)
    assert status.delivered == receipt.total, status
    return receipt.total / elapsed, receipt.total


def db_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


async def scenario_sqlite(
    tmp: Path,
    name: str,
    n: int,
    attachment: bytes | None,
    mode: AttachmentMode,
    staff: int = 1,
    personal: bool = False,
) -> dict[str, float]:
    work = tmp / name
    work.mkdir()
    raw_blobs = work / "raw-blobs"
    raw_blobs.mkdir()
    raw = raw_sqlite(work / "raw.db", n, attachment, raw_blobs if attachment else None)
    raw_bytes = db_bytes(work / "raw.db") + tree_bytes(raw_blobs)
    shutil.rmtree(raw_blobs)
    db = work / "ours.db"
    async with SQLiteStore(db) as store:
        fields = personal_fields(n) if personal else None
        app = await build(store, n, work / "blobs", staff=staff, fields=fields)
        before = db_bytes(db)
        atts = (
            [AttachmentInput.from_bytes("Rundschreiben.pdf", attachment, "application/pdf")]
            if attachment
            else []
        )
        rate, total = await run_ours(app, atts, mode, PERSONAL_TEXT if personal else TEXT)
        async with store.transaction("f1") as tx:
            read_rows = await tx.count(READ_KIND)
    written = db_bytes(db) - before + tree_bytes(work / "blobs")
    log(f"{name}: ours {rate:,.0f}/s, raw {raw:,.0f}/s, {written / 1e6:.1f} MB written")
    return {
        "rate": rate,
        "raw": raw,
        "bytes": written,
        "raw_bytes": raw_bytes,
        "total": total,
        "read_rows": read_rows,
    }


async def rss_run(n: int) -> tuple[float, float]:
    """Our path only (no raw baseline in this process): returns (peak RSS MB,
    RSS MB after the host's in-memory directory and keys were set up)."""
    with tempfile.TemporaryDirectory() as tmp:
        async with SQLiteStore(Path(tmp) / "rss.db") as store:
            app = await build(store, n, Path(tmp) / "blobs")
            fixture = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            await run_ours(app, [], AttachmentMode.PER_COPY)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, fixture


def child_rss(n: int) -> tuple[float, float]:
    """:func:`rss_run` in a fresh process, so peaks do not mix."""
    here = str(Path(__file__).parent)
    code = (
        f"import asyncio, sys; sys.path.insert(0, {here!r}); import mailing as m;"
        f"print(*asyncio.run(m.rss_run({n})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak, fixture = out.stdout.split()[-2:]
    return float(peak), float(fixture)


async def scenario_postgres(n: int) -> None:
    async with postgres_url() as url:
        if url is None:
            return
        import psycopg

        from clientcomm.testing.postgres import isolated_store

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("DROP TABLE IF EXISTS bench_raw")
            await conn.execute(
                "CREATE TABLE bench_raw (id bigserial primary key, client text, body bytea)"
            )
            text = TEXT.encode()
            start = time.perf_counter()
            aead = AESGCM(AESGCM.generate_key(256))
            rows = [(f"c{i:06}", aead.encrypt(os.urandom(12), text, None)) for i in range(n)]
            async with conn.transaction():
                cur = conn.cursor()
                async with cur.copy("COPY bench_raw (client, body) FROM STDIN") as copy:
                    for row in rows:
                        await copy.write_row(row)
            raw = n / (time.perf_counter() - start)
            await conn.execute("DROP TABLE bench_raw")
        async with isolated_store(url) as store:
            with tempfile.TemporaryDirectory() as tmp:
                app = await build(store, n, Path(tmp) / "blobs")
                rate, _ = await run_ours(app, [], AttachmentMode.PER_COPY)
        log(f"postgres text x{n}: ours {rate:,.0f}/s, raw COPY {raw:,.0f}/s")
        emit(f"pg_text_2kb_{n // 1000}k", rate, "recipients/s", raw, 0.25)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="clientcomm-bench-") as tmp_name:
        tmp = Path(tmp_name)
        text = await scenario_sqlite(
            tmp, "text10k", 10_000, None, AttachmentMode.PER_COPY, staff=50
        )
        emit(
            "mailing_text_2kb_10k",
            text["rate"],
            "recipients/s",
            text["raw"],
            0.25,
            bytes_written=int(text["bytes"]),
            raw_bytes=int(text["raw_bytes"]),
        )
        emit(
            "read_state_rows_10k_clients_50_staff",
            text["read_rows"],
            "rows",
            note="rows written for read state by a mailing to 10,000 clients with 50 staff",
        )
        personal = await scenario_sqlite(
            tmp, "personal10k", 10_000, None, AttachmentMode.PER_COPY, staff=50, personal=True
        )
        emit(
            "sqlite_personal_2kb_10k",
            personal["rate"],
            "recipients/s",
            personal["raw"],
            0.25,
            bytes_written=int(personal["bytes"]),
            raw_bytes=int(personal["raw_bytes"]),
        )
        emit(
            "mailing_personal_vs_plain_ratio_10k",
            (personal["rate"] / personal["raw"]) / (text["rate"] / text["raw"]),
            "fraction",
            target=0.9,
            note="the personalised fan-out's ratio to raw over the plain text's (issue 10, 17)",
        )
        pdf = await scenario_sqlite(tmp, "pdf2k", 2_000, PDF, AttachmentMode.PER_COPY)
        emit(
            "mailing_pdf_1mb_per_copy_2k",
            pdf["rate"],
            "recipients/s",
            pdf["raw"],
            0.5,
            bytes_written=int(pdf["bytes"]),
            raw_bytes=int(pdf["raw_bytes"]),
        )
        shared = await scenario_sqlite(tmp, "shared10k", 10_000, PDF, AttachmentMode.SHARED)
        per_copy_bytes_10k = pdf["bytes"] / pdf["total"] * shared["total"]
        emit(
            "mailing_pdf_shared_10k_bytes_vs_per_copy",
            shared["bytes"] / per_copy_bytes_10k,
            "fraction",
            target=0.02,
            bytes_written=int(shared["bytes"]),
            per_copy_bytes_estimate=int(per_copy_bytes_10k),
        )
        emit(
            "mailing_pdf_shared_10k_speedup_vs_per_copy",
            shared["rate"] / pdf["rate"],
            "x",
            target=10.0,
            recipients_per_s=round(shared["rate"], 1),
        )
    rss10, fixture10 = child_rss(10_000)
    rss100, fixture100 = child_rss(100_000)
    log(
        f"peak RSS: 10k {rss10:.0f} MB (fixture {fixture10:.0f}), "
        f"100k {rss100:.0f} MB (fixture {fixture100:.0f})"
    )
    emit(
        "mailing_text_100k_peak_rss",
        rss100,
        "MB",
        target=300.0,
        rss_10k_mb=round(rss10, 1),
        host_fixture_mb=round(fixture100, 1),
        note="includes the bench's in-memory host directory of 100k clients and contacts",
    )
    await scenario_postgres(10_000)


if __name__ == "__main__":
    asyncio.run(main())
