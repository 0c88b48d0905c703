"""Announcements (seed 004) through ``app.announcements``, on every Store backend."""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from clientcomm import (
    ConflictError,
    InvalidInputError,
    ManualClock,
    NotFoundError,
    PermissionDeniedError,
    directory_for,
)
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.announcements import (
    ANNOUNCEMENT_KIND,
    RECEIPT_KIND,
    USER_KIND,
    AnnouncementService,
    AnnouncementState,
    ClientUser,
)
from clientcomm.app import ClientComm
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.crypto import LocalKeyProvider, MasterKey
from clientcomm.mail.memory import MemoryTransport
from clientcomm.rules.audience import Audience
from clientcomm.storage.base import Store
from clientcomm.testing.counting import CountingStore
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import LINKS, MAIL, make_app, seed

ADMIN = StaffActor("f1", "admin")
MANAGER = StaffActor("f1", "manager")
ANNA = ClientActor("f1", "c1", "k1")
BERND = ClientActor("f1", "c2", "k2")
CARLA = ClientActor("f1", "c3", "k3")
TEXT = "Ab **1. Juni** gelten neue Öffnungszeiten.\n\nMo–Do 8–17 Uhr, Fr 8–13 Uhr."


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path) as application:
            yield application


def clock_of(app: ClientComm) -> ManualClock:
    assert isinstance(app.clock, ManualClock)
    return app.clock


async def count(store: Store, kind: str, firm: str = "f1") -> int:
    async with store.transaction(firm) as tx:
        return await tx.count(kind)


async def audit_ops(app: ClientComm) -> list[str]:
    await app.run_step("audit.chain")
    page = await app.audit.query("f1", limit=1000)
    return [e.operation for e in page.entries]


# -- staff: create, edit, delete, lists -----------------------------------------------
async def test_create_edit_delete_and_the_archive(app: ClientComm) -> None:
    clock = clock_of(app)  # 1 June 2026, 09:00 UTC
    first = await app.announcements.create(
        ADMIN, "Neue Öffnungszeiten", TEXT, remove_after=date(2026, 6, 30)
    )
    assert first.revision == 1 and first.state is AnnouncementState.PUBLISHED
    assert first.removes_at == datetime(2026, 6, 30, 22, 0, tzinfo=UTC)  # end of day, CEST
    assert first.remove_after == date(2026, 6, 30) and first.time_zone == "Europe/Berlin"
    assert first.html.startswith("<p>Ab <strong>1. Juni</strong>")
    later = await app.announcements.create(
        MANAGER,
        "Betriebsferien",
        "Vom 1. bis 15. August.",
        publish_at=clock.now() + timedelta(days=2),
    )
    assert later.state is AnnouncementState.SCHEDULED
    assert [a.id for a in await app.announcements.list_current(ADMIN)] == [later.id, first.id]

    edited = await app.announcements.edit(
        ADMIN, first.id, "Neue Öffnungszeiten ab Juni", TEXT, remove_after=date(2026, 7, 31)
    )
    assert edited.revision == 2 and edited.publish_at == first.publish_at
    assert edited.removes_at == datetime(2026, 7, 31, 22, 0, tzinfo=UTC)
    same_text = await app.announcements.edit(
        ADMIN, first.id, "Neue Öffnungszeiten ab Juni", TEXT, remove_after=date(2026, 7, 15)
    )
    assert same_text.revision == 2  # only the removal day changed: no new revision

    assert await app.announcements.delete(ADMIN, later.id) is True
    assert await app.announcements.delete(ADMIN, later.id) is False
    with pytest.raises(ConflictError):
        await app.announcements.edit(ADMIN, later.id, "x", "y")
    assert [a.id for a in await app.announcements.list_current(ADMIN)] == [first.id]
    clock.advance(timedelta(days=60))
    archive = await app.announcements.archive(ADMIN)
    assert [(a.id, a.state) for a in archive] == [
        (first.id, AnnouncementState.REMOVED),
        (later.id, AnnouncementState.DELETED),
    ]
    assert (await app.announcements.get(ADMIN, later.id)).deleted_at is not None
    ops = await audit_ops(app)
    assert ops.count("announcement.created") == 2
    assert ops.count("announcement.edited") == 2
    assert ops.count("announcement.deleted") == 1  # the second delete changed nothing


@pytest.mark.parametrize("staff_id", ["clerk", "restricted", "assistant", "gone", "nobody"])
async def test_only_admins_and_managers_manage(app: ClientComm, staff_id: str) -> None:
    with pytest.raises(PermissionDeniedError):
        await app.announcements.create(StaffActor("f1", staff_id), "Titel", TEXT)
    with pytest.raises(PermissionDeniedError):
        await app.announcements.list_current(StaffActor("f1", staff_id))
    with pytest.raises(PermissionDeniedError):  # a client's actor on a staff method
        await app.announcements.create(ANNA, "Titel", TEXT)  # type: ignore[arg-type]
    with pytest.raises(PermissionDeniedError):  # a staff actor on a client method
        await app.announcements.page_view(ADMIN)  # type: ignore[arg-type]
    assert await count(app.store, ANNOUNCEMENT_KIND) == 0


NAIVE = datetime(2026, 6, 2, 9, 0)  # naive on purpose


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "   "}, "title"),
        ({"title": "zwei\nZeilen"}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"description": ""}, "description"),
        ({"description": "x" * 20_001}, "description"),
        ({"description": "a\x00b"}, "description"),
        ({"publish_at": NAIVE}, "publish_at"),
        ({"publish_at": "2026-06-02"}, "publish_at"),
        ({"publish_at": datetime(1970, 1, 1, tzinfo=UTC)}, "publish_at"),
        ({"publish_at": datetime(2199, 1, 1, tzinfo=UTC)}, "publish_at"),
        ({"remove_after": date(2026, 5, 31)}, "remove_after"),  # in the past
        ({"remove_after": datetime(2026, 6, 30, tzinfo=UTC)}, "remove_after"),
        ({"remove_after": date(9999, 12, 31)}, "remove_after"),
        (
            {"publish_at": datetime(2026, 6, 10, tzinfo=UTC), "remove_after": date(2026, 6, 5)},
            "remove_after",
        ),
        ({"audience": Audience.groups("g1", "nope")}, "audience.group_ids"),
        ({"audience": "everyone"}, "audience"),
    ],
)
async def test_bad_input_names_the_field_and_writes_nothing(
    app: ClientComm, kwargs: dict[str, object], field: str
) -> None:
    args: dict[str, object] = {"title": "Titel", "description": TEXT, **kwargs}
    with pytest.raises(InvalidInputError) as info:
        await app.announcements.create(ADMIN, **args)  # type: ignore[arg-type]
    assert info.value.field == field
    good = await app.announcements.create(ADMIN, "Titel", TEXT)
    with pytest.raises(InvalidInputError) as edit_info:
        await app.announcements.edit(ADMIN, good.id, **args)  # type: ignore[arg-type]
    assert edit_info.value.field == field
    assert (await app.announcements.get(ADMIN, good.id)).revision == 1
    assert await count(app.store, ANNOUNCEMENT_KIND) == 1
    assert "announcement.edited" not in await audit_ops(app)


async def test_audience_picked_clients_and_empty(app: ClientComm) -> None:
    with pytest.raises(InvalidInputError) as info:
        await app.announcements.create(ADMIN, "Titel", TEXT, audience=Audience())
    assert info.value.field == "audience"
    for missing in ("c-none", "x1"):  # unknown; another firm's client
        with pytest.raises(NotFoundError) as gone:
            await app.announcements.create(ADMIN, "Titel", TEXT, audience=Audience.clients(missing))
        assert (gone.value.kind, gone.value.id) == ("client", missing)
    assert await count(app.store, ANNOUNCEMENT_KIND) == 0
    picked = await app.announcements.create(
        ADMIN, "Nur Anna und GmbHs", TEXT, audience=Audience.clients("c1") | Audience.groups("g2")
    )
    assert picked.audience == Audience.clients("c1") | Audience.groups("g2")
    for actor, sees in ((ANNA, True), (BERND, True), (ClientActor("f1", "c4"), False)):
        assert bool((await app.announcements.page_view(actor)).listed) is sees
    report = await app.announcements.read_report(ADMIN, picked.id)
    assert report.not_read == (ClientUser("c1", "k1"), ClientUser("c2", "k2"))


async def test_another_firms_id_answers_like_a_missing_one(app: ClientComm) -> None:
    mine = await app.announcements.create(ADMIN, "Titel", TEXT)
    other = StaffActor("f2", "admin2")
    answers = []
    for announcement_id in (mine.id, "a-none"):
        for call in (
            app.announcements.get(other, announcement_id),
            app.announcements.edit(other, announcement_id, "Titel", TEXT),
            app.announcements.delete(other, announcement_id),
            app.announcements.read_report(other, announcement_id),
            app.announcements.read_more(ClientActor("f2", "x1"), announcement_id),
            app.announcements.close(ClientActor("f2", "x1"), announcement_id),
        ):
            with pytest.raises(NotFoundError) as info:
                await call
            assert info.value.field if hasattr(info.value, "field") else True
            answers.append((info.value.kind, str(info.value).replace(announcement_id, "<id>")))
    assert answers[:6] == answers[6:]
    assert (await app.announcements.get(ADMIN, mine.id)).revision == 1


# -- client users: the seed's rules -----------------------------------------------------
async def test_banner_close_read_more_login_and_edit(app: ClientComm) -> None:
    clock = clock_of(app)
    a = await app.announcements.create(ADMIN, "Neue Öffnungszeiten", TEXT)
    clock.advance(timedelta(minutes=1))
    b = await app.announcements.create(ADMIN, "Belege bis 31. Mai", "Bitte *rechtzeitig*.")
    view = await app.announcements.page_view(ANNA)
    assert [x.id for x in view.banners] == [b.id, a.id]  # newest first
    assert [x.id for x in view.listed] == [b.id, a.id]
    assert (
        view.banners[1].teaser_html
        == "<p>Ab <strong>1. Juni</strong> gelten neue Öffnungszeiten.</p>\n"
    )
    assert all(x.unread for x in view.listed)

    assert await app.announcements.close(ANNA, a.id) is True
    assert await app.announcements.close(ANNA, a.id) is False  # nothing changes
    view = await app.announcements.page_view(ANNA)
    assert [x.id for x in view.banners] == [b.id]
    assert [x.id for x in view.listed] == [b.id, a.id]  # always on the home page
    other = await app.announcements.page_view(BERND)  # each user has their own state
    assert [x.id for x in other.banners] == [b.id, a.id]

    full = await app.announcements.read_more(ANNA, b.id)
    assert full.html == "<p>Bitte <em>rechtzeitig</em>.</p>\n" and full.revision == 1
    view = await app.announcements.page_view(ANNA)
    assert view.banners == ()
    assert [(x.id, x.unread) for x in view.listed] == [(b.id, False), (a.id, True)]

    assert await app.announcements.login(ANNA) == 2  # both banners come back
    view = await app.announcements.page_view(ANNA)
    assert [x.id for x in view.banners] == [b.id, a.id]
    assert await app.announcements.login(ANNA) == 0  # nothing dismissed since: no write

    await app.announcements.read_more(ANNA, b.id)
    await app.announcements.edit(ADMIN, b.id, "Belege bis 15. Juni", "Neue *Frist*.")
    view = await app.announcements.page_view(ANNA)
    assert [x.id for x in view.banners] == [a.id]  # dismissed in this login: not yet
    assert [(x.id, x.revision, x.unread) for x in view.listed] == [(b.id, 2, True), (a.id, 1, True)]
    await app.announcements.login(ANNA)
    view = await app.announcements.page_view(ANNA)  # the revision is shown at the next login
    assert (view.banners[0].id, view.banners[0].revision, view.banners[0].title) == (
        b.id,
        2,
        "Belege bis 15. Juni",
    )

    assert (await app.announcements.read_more(ANNA, b.id)).html == "<p>Neue <em>Frist</em>.</p>\n"

    await app.announcements.delete(ADMIN, a.id)
    assert [x.id for x in (await app.announcements.page_view(ANNA)).listed] == [b.id]
    with pytest.raises(NotFoundError):
        await app.announcements.close(ANNA, a.id)
    ops = await audit_ops(app)
    assert ops.count("announcement.dismissed") == 2  # close a; read b again after the login
    assert ops.count("announcement.read") == 2  # b's revisions 1 and 2, once each
    assert ops.count("announcement.login") == 2


async def test_schedule_and_removal_day_in_the_firms_zone(app: ClientComm) -> None:
    clock = clock_of(app)
    clock.set(datetime(2026, 3, 27, 8, 0, tzinfo=UTC))  # before the spring change
    soon = await app.announcements.create(
        ADMIN, "Später", TEXT, publish_at=datetime(2026, 3, 28, 6, 0, tzinfo=UTC)
    )
    ends = await app.announcements.create(
        ADMIN, "Bis Sonntag", TEXT, remove_after=date(2026, 3, 29)
    )
    assert ends.removes_at == datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # midnight CEST
    assert [x.id for x in (await app.announcements.page_view(ANNA)).listed] == [ends.id]
    with pytest.raises(NotFoundError):  # not published yet: as missing
        await app.announcements.read_more(ANNA, soon.id)
    clock.set(datetime(2026, 3, 28, 6, 0, tzinfo=UTC))
    assert [x.id for x in (await app.announcements.page_view(ANNA)).listed] == [soon.id, ends.id]
    clock.set(datetime(2026, 3, 29, 21, 59, 59, tzinfo=UTC))
    assert len((await app.announcements.page_view(ANNA)).listed) == 2
    clock.set(datetime(2026, 3, 29, 22, 0, tzinfo=UTC))
    assert [x.id for x in (await app.announcements.page_view(ANNA)).listed] == [soon.id]
    assert [a.id for a in await app.announcements.archive(ADMIN)] == [ends.id]
    with pytest.warns(DeprecationWarning):  # the Directory's Firm.time_zone replaces it
        app.announcements.set_time_zone("f1", "America/New_York")
    ny = await app.announcements.create(ADMIN, "NY", TEXT, remove_after=date(2026, 4, 1))
    assert (
        ny.removes_at == datetime(2026, 4, 2, 4, 0, tzinfo=UTC)
        and ny.time_zone == "America/New_York"
    )
    with pytest.raises(InvalidInputError) as info, pytest.warns(DeprecationWarning):
        app.announcements.set_time_zone("f1", "Europe/Atlantis")
    assert info.value.field == "time_zone"


async def test_audience_groups_and_out_of_reach_ids(app: ClientComm) -> None:
    to_all = await app.announcements.create(ADMIN, "Alle", TEXT)
    gmbhs = await app.announcements.create(ADMIN, "GmbHs", TEXT, audience=Audience.groups("g2"))
    assert [x.id for x in (await app.announcements.page_view(BERND)).listed] == [
        gmbhs.id,
        to_all.id,
    ]
    assert [x.id for x in (await app.announcements.page_view(ANNA)).listed] == [to_all.id]
    answers = []
    for announcement_id in (gmbhs.id, "a-none"):
        for call in (app.announcements.close, app.announcements.read_more):
            with pytest.raises(NotFoundError) as info:
                await call(ANNA, announcement_id)
            answers.append(str(info.value).replace(announcement_id, "<id>"))
    assert answers[:2] == answers[2:]
    assert await count(app.store, USER_KIND) == 0


async def test_read_confirmation_per_revision(app: ClientComm) -> None:
    a = await app.announcements.create(ADMIN, "Alle", TEXT)
    report = await app.announcements.read_report(ADMIN, a.id)
    # the portal users: registered contacts of active clients (k3 is not registered)
    assert report.read == () and report.not_read == (ClientUser("c1", "k1"), ClientUser("c2", "k2"))
    await app.announcements.read_more(ANNA, a.id)
    await app.announcements.close(BERND, a.id)  # closing is no read confirmation
    report = await app.announcements.read_report(ADMIN, a.id)
    assert [e.user for e in report.read] == [ClientUser("c1", "k1")]
    assert report.not_read == (ClientUser("c2", "k2"),)
    await app.announcements.edit(ADMIN, a.id, "Alle (korrigiert)", TEXT)
    current = await app.announcements.read_report(ADMIN, a.id)
    assert current.revision == 2 and current.read == () and len(current.not_read) == 2
    old = await app.announcements.read_report(ADMIN, a.id, revision=1)
    assert [e.user for e in old.read] == [ClientUser("c1", "k1")]
    for bad in (0, 3, True):
        with pytest.raises(InvalidInputError) as info:
            await app.announcements.read_report(ADMIN, a.id, revision=bad)
        assert info.value.field == "revision"
    # an unrestricted clerk may see the confirmation; restricted staff may not
    assert (await app.announcements.read_report(StaffActor("f1", "clerk"), a.id)).revision == 2
    with pytest.raises(PermissionDeniedError):
        await app.announcements.read_report(StaffActor("f1", "restricted"), a.id)


async def test_no_rows_before_anyone_interacts(app: ClientComm) -> None:
    a = await app.announcements.create(ADMIN, "Alle", TEXT)
    for actor in (ANNA, BERND, CARLA, ClientActor("f1", "c4")):
        await app.announcements.login(actor)
        await app.announcements.page_view(actor)
        await app.announcements.login(actor)
    assert await count(app.store, USER_KIND) == 0
    assert await count(app.store, RECEIPT_KIND) == 0
    await app.announcements.close(ANNA, a.id)
    assert await count(app.store, USER_KIND) == 1


async def test_a_damaged_announcement_fails_alone(app: ClientComm) -> None:
    good = await app.announcements.create(ADMIN, "Gut", TEXT)
    bad = await app.announcements.create(ADMIN, "Kaputt", TEXT)
    async with app.store.transaction("f1") as tx:
        record = await tx.get(ANNOUNCEMENT_KIND, bad.id)
        await tx.update([record.evolve(data={**record.data, "revision": "not a number"})])
    fresh = AnnouncementService(store=app.store, directory=app.directory, clock=app.clock)
    assert [x.id for x in (await fresh.page_view(ANNA)).listed] == [good.id]
    assert [a.id for a in await fresh.list_current(ADMIN)] == [good.id]


# -- the cost of a page view: one indexed read ------------------------------------------
@pytest.mark.parametrize("backend", STORE_BACKENDS)
async def test_a_page_view_is_one_store_read(backend: str, tmp_path: Path) -> None:
    async for inner in open_backend(backend, tmp_path):
        directory = directory_for(inner)
        await seed(directory)
        store = CountingStore(inner)
        clock = ManualClock(datetime(2026, 6, 1, 9, 0, tzinfo=UTC))
        app = ClientComm(
            store=store,
            directory=directory,
            keys=LocalKeyProvider(inner, MasterKey.generate(), clock=clock),
            blobs=MemoryBlobStore(),
            transport=MemoryTransport(),
            links=LINKS,
            mail=MAIL,
            clock=clock,
        )
        ids = []
        for n in range(20):
            clock.advance(timedelta(seconds=1))
            ids.append((await app.announcements.create(ADMIN, f"Nr. {n}", TEXT)).id)
        await app.announcements.close(ANNA, ids[3])
        await app.announcements.page_view(BERND)  # warms the firm's list
        for actor in (ANNA, BERND, CARLA):
            store.reset()
            view = await app.announcements.page_view(actor)
            assert len(view.listed) == 20
            assert store.reads() == 1 and store.calls["find"] == 1, store.calls
            assert store.writes() == 0 and store.calls["transaction"] == 1
        store.reset()
        await app.announcements.edit(ADMIN, ids[0], "Neu", TEXT)  # drops the cached list
        store.reset()
        await app.announcements.page_view(ANNA)
        assert store.calls["list"] == 1 and store.calls["find"] == 1  # reloaded once
        store.reset()
        await app.announcements.page_view(ANNA)
        assert store.reads() == 1


async def test_another_process_sees_changes_within_the_cache_period(app: ClientComm) -> None:
    other = AnnouncementService(
        store=app.store, directory=app.directory, clock=app.clock, cache_ttl=0.05
    )
    assert (await other.page_view(ANNA)).listed == ()
    a = await app.announcements.create(ADMIN, "Neu", TEXT)
    await asyncio.sleep(0.1)
    assert [x.id for x in (await other.page_view(ANNA)).listed] == [a.id]
    uncached = AnnouncementService(
        store=app.store, directory=app.directory, clock=app.clock, cache_ttl=0
    )
    await app.announcements.delete(ADMIN, a.id)
    assert (await uncached.page_view(ANNA)).listed == ()
    with pytest.raises(InvalidInputError):
        AnnouncementService(store=app.store, directory=app.directory, cache_ttl=-1)


# -- compliance: the client's state is in its export and goes with its erasure ----------
async def test_export_and_erasure_reach_the_users_state(app: ClientComm) -> None:
    a = await app.announcements.create(ADMIN, "Alle", TEXT)
    await app.announcements.read_more(ANNA, a.id)
    await app.announcements.close(BERND, a.id)
    data = b"".join([c async for c in app.compliance.export("f1", "c1", actor="admin")])
    zf = zipfile.ZipFile(io.BytesIO(data))
    [state] = [json.loads(x) for x in zf.read(f"records/{USER_KIND}.jsonl").splitlines()]
    assert state["client_id"] == "c1" and state["contact_id"] == "k1"
    [receipt] = [json.loads(x) for x in zf.read(f"records/{RECEIPT_KIND}.jsonl").splitlines()]
    assert receipt["announcement_id"] == a.id and receipt["revision"] == 1
    assert b'"client_id": "c2"' not in zf.read(f"records/{USER_KIND}.jsonl")
    audit_lines = zf.read("audit.jsonl").decode()
    assert "announcement.read" in audit_lines
    await app.compliance.erase("f1", "c1", override=True)
    await app.drain()
    assert await count(app.store, USER_KIND) == 1  # Bernd's stays
    assert await count(app.store, RECEIPT_KIND) == 0
    report = await app.announcements.read_report(ADMIN, a.id)
    assert report.read == ()


async def test_concurrent_first_interactions_of_one_user_both_count(app: ClientComm) -> None:
    a = await app.announcements.create(ADMIN, "Eins", TEXT)
    b = await app.announcements.create(ADMIN, "Zwei", TEXT)
    await asyncio.gather(
        app.announcements.close(ANNA, a.id), app.announcements.read_more(ANNA, b.id)
    )
    view = await app.announcements.page_view(ANNA)
    assert view.banners == ()
    assert [(x.id, x.unread) for x in view.listed] == [(b.id, False), (a.id, True)]
    assert await count(app.store, USER_KIND) == 1


async def test_a_login_in_a_process_with_a_stale_list_keeps_read_marks(app: ClientComm) -> None:
    other = AnnouncementService(
        store=app.store, directory=app.directory, clock=app.clock, cache_ttl=3600
    )
    assert (await other.page_view(ANNA)).listed == ()  # caches an empty list
    a = await app.announcements.create(ADMIN, "Neu", TEXT)
    await app.announcements.read_more(ANNA, a.id)
    assert await other.login(ANNA) == 1
    [shown] = (await app.announcements.page_view(ANNA)).banners
    assert shown.id == a.id and not shown.unread  # back as a banner, still read


async def test_concurrent_login_and_close(app: ClientComm) -> None:
    a = await app.announcements.create(ADMIN, "Eins", TEXT)
    b = await app.announcements.create(ADMIN, "Zwei", TEXT)
    await app.announcements.close(ANNA, a.id)
    returned, closed = await asyncio.gather(
        app.announcements.login(ANNA), app.announcements.close(ANNA, b.id)
    )
    assert returned == 1 and closed is True
    view = await app.announcements.page_view(ANNA)
    # b's close counts for this login or the one before, a is back either way
    assert a.id in [x.id for x in view.banners]
