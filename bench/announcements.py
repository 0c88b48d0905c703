"""The cost of a portal page view with announcements, by number of client users.

``python bench/announcements.py`` (run by ``make bench``; ``--quick`` for a short
check) prints one JSON object per figure on stdout; progress goes to stderr.

Scenario, on SQLite (the store's settings: WAL, synchronous=FULL), once with
100 client users and once with 10,000: the firm has 20 live announcements for
every client; 20 % of the users have interacted (2,000 of 10,000: each opened
"read more" on one announcement and closed another, which writes their state
row and a read receipt); then page views of users picked at random (half
interacted, half not), timed, and each one's store calls counted (the Store is
wrapped in :class:`clientcomm.testing.counting.CountingStore`). The firm's
announcement list is cached per process (``cache_ttl``), so the figures are the
steady state; a cache refresh adds one list read.

Figures: ``announcements_page_view_reads`` (store reads per page view: target 1),
``announcements_page_view_10k_ratio`` (time per page view at 10,000 users over
the time at 100: target <= 1.5), ``announcements_rows_before_login`` (state and
receipt rows written for a published announcement before anyone logs in, and
after every user logged in and viewed a page without interacting: target 0).
The Directory is the in-memory one (a page view only asks it for the client's
groups when an announcement is for client groups; here all are for everyone).
"""

from __future__ import annotations

import asyncio
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import emit, log

from clientcomm import (
    ClientActor,
    ClientComm,
    Firm,
    ManualClock,
    MemoryDirectory,
    Role,
    Staff,
    StaffActor,
)
from clientcomm.announcements import RECEIPT_KIND, USER_KIND
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.crypto.memory import MemoryKeyProvider
from clientcomm.mail.memory import MemoryTransport
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.outbox import MailSettings
from clientcomm.storage.sqlite import SQLiteStore
from clientcomm.testing.counting import CountingStore

ADMIN = StaffActor("f1", "admin")
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
TEXT = (
    "Ab **1. Juni** gelten neue Öffnungszeiten: Mo–Do 8–17 Uhr, Fr 8–13 Uhr.\n\n"
    "Bitte reichen Sie Ihre Belege bis zum 31. Mai ein. [Details](https://kanzlei.example/)"
)


async def rows(store: CountingStore, kind: str) -> int:
    async with store.inner.transaction("f1") as tx:
        return await tx.count(kind)


async def scenario(users: int, views: int, tmp: Path) -> dict[str, float]:
    directory = MemoryDirectory()
    await directory.put_firm(Firm("f1", "Kanzlei"))
    await directory.put_staff(Staff("admin", "f1", "Ada", Role.ADMIN))
    clock = ManualClock(T0)
    store = CountingStore(SQLiteStore(tmp / f"store-{users}.db"))
    app = ClientComm(
        store=store,
        directory=directory,
        keys=MemoryKeyProvider(),
        blobs=MemoryBlobStore(),
        transport=MemoryTransport(),
        links=LinkTemplates(default="https://portal.example/{firm_id}/clients/{client_id}"),
        mail=MailSettings(sender="portal@portal.example", message_id_domain="portal.example"),
        clock=clock,
    )
    ids = []
    for n in range(20):
        clock.advance(timedelta(seconds=1))
        ids.append((await app.announcements.create(ADMIN, f"Ankündigung {n}", TEXT)).id)
    before = await rows(store, USER_KIND) + await rows(store, RECEIPT_KIND)
    actors = [ClientActor("f1", f"c{i:05d}", f"k{i:05d}") for i in range(users)]
    interacted = actors[: users // 5]
    started = time.perf_counter()
    for i, actor in enumerate(interacted):
        await app.announcements.read_more(actor, ids[i % 20])
        await app.announcements.close(actor, ids[(i + 7) % 20])
    log(f"{users} users: {len(interacted)} interacted in {time.perf_counter() - started:.1f}s")
    await app.announcements.page_view(actors[0])  # the firm's list is cached from here on
    rng = random.Random(users)
    picked = [rng.choice(interacted) if k % 2 else rng.choice(actors) for k in range(views)]
    reads: list[int] = []
    elapsed = 0.0
    for actor in picked:
        store.reset()
        t = time.perf_counter()
        view = await app.announcements.page_view(actor)
        elapsed += time.perf_counter() - t
        reads.append(store.reads())
        assert len(view.listed) == 20
    # every user who never interacted logs in and views a page: still no rows
    quiet = actors[users // 5 :][:2000]
    for actor in quiet:
        await app.announcements.login(actor)
        await app.announcements.page_view(actor)
    state_rows = await rows(store, USER_KIND)
    await app.aclose()
    return {
        "per_view_us": elapsed / views * 1e6,
        "reads_max": max(reads),
        "reads_mean": sum(reads) / len(reads),
        "rows_before": before,
        "rows_after_quiet": state_rows - len(interacted),
        "state_rows": state_rows,
    }


async def main(quick: bool) -> None:
    big = 1_000 if quick else 10_000
    views = 500 if quick else 3_000
    with tempfile.TemporaryDirectory() as tmp:
        small = await scenario(100, views, Path(tmp))
        large = await scenario(big, views, Path(tmp))
    emit(
        "announcements_page_view_reads",
        large["reads_max"],
        "store reads per page view (max)",
        target=1,
        mean=round(large["reads_mean"], 3),
        users=big,
        interacted=big // 5,
        live=20,
    )
    emit(
        f"announcements_page_view_{big // 1000}k_ratio",
        large["per_view_us"],
        "µs per page view",
        baseline=small["per_view_us"],
        target=1.5,
        users=big,
        baseline_users=100,
    )
    emit(
        "announcements_rows_before_login",
        large["rows_before"],
        "state and receipt rows",
        target=0,
        after_logins_without_interaction=large["rows_after_quiet"],
        state_rows=large["state_rows"],
    )


if __name__ == "__main__":
    asyncio.run(main("--quick" in sys.argv[1:]))
