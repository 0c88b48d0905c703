"""Firm announcements in the client portal (seed 004).

An administrator publishes an announcement that is removed after 31 May (the
end of that day in Berlin), and schedules a second one. The host reports what
a client user does: the banner shows on every page until the user closes it
or opens "read more", comes back at the next login, and an edit makes a new
revision the user has not read yet. Staff see the read confirmation.

Run: ``python examples/announcements.py`` (everything in memory).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

from clientcomm import (
    Client,
    ClientActor,
    ClientComm,
    Contact,
    Firm,
    ManualClock,
    MemoryDirectory,
    Role,
    Staff,
    StaffActor,
)


async def main() -> None:
    directory = MemoryDirectory()
    await directory.put_firm(Firm("f1", "Kanzlei Müller"))
    await directory.put_staff(Staff("admin", "f1", "Ada Admin", Role.ADMIN))
    for n, name in ((1, "Anna Alt"), (2, "Bernd Bau")):
        await directory.put_client(Client(f"c{n}", "f1", name))
        await directory.put_contact(Contact(f"k{n}", "f1", f"c{n}", name, registered=True))
    clock = ManualClock(datetime(2026, 5, 20, 8, 0, tzinfo=UTC))
    app = ClientComm.in_memory(clock=clock, directory=directory)
    admin, anna = StaffActor("f1", "admin"), ClientActor("f1", "c1", "k1")

    hours = await app.announcements.create(
        admin,
        "Neue Öffnungszeiten",
        "Ab **1. Juni**: Mo–Do 8–17 Uhr.\n\n[Alle Zeiten](https://kanzlei.example/zeiten)",
        remove_after=date(2026, 5, 31),
    )
    print(f"published {hours.title!r}; removed at {hours.removes_at} (end of 31 May in Berlin)")
    holiday = await app.announcements.create(
        admin,
        "Betriebsferien",
        "Vom 3. bis 14. August geschlossen.",
        publish_at=clock.now() + timedelta(days=1),
    )
    print(f"scheduled {holiday.title!r} for {holiday.publish_at}")

    await app.announcements.login(anna)
    page = await app.announcements.page_view(anna)
    print("banners:", [b.title for b in page.banners], "| teaser:", page.banners[0].teaser_html)
    full = await app.announcements.read_more(anna, hours.id)
    print("read more:", full.html.strip().replace("\n", " "))
    page = await app.announcements.page_view(anna)
    assert page.banners == () and [x.title for x in page.listed] == ["Neue Öffnungszeiten"]
    print("after read more: no banner, still listed on the home page")

    clock.advance(timedelta(days=1))  # the holiday notice is published now
    await app.announcements.edit(
        admin,
        hours.id,
        "Neue Öffnungszeiten",
        "Ab **1. Juni**: Mo–Do 8–18 Uhr.",
        remove_after=date(2026, 5, 31),
    )
    await app.announcements.login(anna)  # the next login: the revised text is shown again
    page = await app.announcements.page_view(anna)
    print(
        "next login:",
        [(b.title, b.revision, "unread" if b.unread else "read") for b in page.banners],
    )
    assert [b.title for b in page.banners] == ["Betriebsferien", "Neue Öffnungszeiten"]

    report = await app.announcements.read_report(admin, hours.id, revision=1)
    print(
        "revision 1 read by:",
        [e.user.client_id for e in report.read],
        "| not yet:",
        [u.client_id for u in report.not_read],
    )

    clock.set(datetime(2026, 5, 31, 22, 0, tzinfo=UTC))  # midnight in Berlin
    page = await app.announcements.page_view(anna)
    assert [x.title for x in page.listed] == ["Betriebsferien"]
    print("archive:", [(a.title, a.state.value) for a in await app.announcements.archive(admin)])


if __name__ == "__main__":
    asyncio.run(main())
