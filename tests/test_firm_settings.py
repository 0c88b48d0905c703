"""Firm settings in the Directory (``Firm.time_zone``, ``Firm.letter_approval``):
every bundled Directory keeps them, bad values are refused, migration 5 gives
existing firms the defaults, and announcements mean "remove after" days in the
zone the Directory names."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import attrs
import pytest

from clientcomm import Firm, InvalidInputError, ManualClock, NotFoundError
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.directory.base import WritableDirectory
from clientcomm.directory.sql import SqlDirectory
from clientcomm.storage.migrations import load_migrations
from clientcomm.storage.sqlite import SQLiteStore
from tests.conformance.conftest import STORE_BACKENDS, any_directory, open_backend
from tests.conftest import pg_admin_url
from tests.mailing_support import make_app

__all__ = ["any_directory"]

ADMIN = StaffActor("f1", "admin")
ANNA = ClientActor("f1", "c1", "k1")


# -- the Directory keeps the settings ------------------------------------------------------
async def test_firm_settings_round_trip(any_directory: WritableDirectory) -> None:
    d = any_directory
    await d.put_firm(Firm("f1", "Kanzlei"))
    plain = await d.get_firm("f1")
    assert (plain.time_zone, plain.letter_approval) == ("Europe/Berlin", False)
    changed = Firm("f1", "Kanzlei", time_zone="America/New_York", letter_approval=True)
    await d.put_firm(changed)
    assert await d.get_firm("f1") == changed


@pytest.mark.parametrize("zone", ["Europe/Atlantis", "", "../../etc/passwd", "UTC\x00", 7])
def test_an_unknown_zone_is_refused_naming_the_field(zone: object) -> None:
    with pytest.raises(InvalidInputError) as err:
        Firm("f1", "Kanzlei", time_zone=zone)  # type: ignore[arg-type]
    assert err.value.field == "time_zone"


def test_approval_must_be_a_bool() -> None:
    with pytest.raises(InvalidInputError) as err:
        Firm("f1", "Kanzlei", letter_approval="yes")  # type: ignore[arg-type]
    assert err.value.field == "letter_approval"
    assert Firm("f1", "Kanzlei", time_zone="Asia/Tokyo").time_zone == "Asia/Tokyo"


async def test_a_refused_firm_writes_nothing(any_directory: WritableDirectory) -> None:
    with pytest.raises(InvalidInputError):
        await any_directory.put_firm(Firm("f1", "Kanzlei", time_zone="Mars/Olympus"))
    with pytest.raises(NotFoundError):
        await any_directory.get_firm("f1")


# -- migration 5 -----------------------------------------------------------------------------
async def test_sqlite_migration_gives_existing_firms_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "v4.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at INTEGER NOT NULL)"
    )
    for m in load_migrations("sqlite")[:4]:
        conn.executescript(m.sql)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (m.version, m.name))
    conn.execute("INSERT INTO dir_firms (id, name, language) VALUES ('f1', 'Kanzlei', 'en')")
    conn.commit()
    conn.close()
    async with SQLiteStore(path) as store:
        assert await store.migrate() == len(load_migrations("sqlite")) >= 5
        firm = await SqlDirectory(store).get_firm("f1")
        assert firm == Firm("f1", "Kanzlei", language="en")
        assert (firm.time_zone, firm.letter_approval) == ("Europe/Berlin", False)


@pytest.mark.postgres
async def test_postgres_migration_gives_existing_firms_the_defaults() -> None:
    from clientcomm.testing.postgres import isolated_store

    async with isolated_store(pg_admin_url()) as store:
        write = store.sql_write
        # back to schema 4: without the columns, then migrate again
        await write(
            [
                ("ALTER TABLE dir_firms DROP COLUMN time_zone", [()]),
                ("ALTER TABLE dir_firms DROP COLUMN letter_approval", [()]),
                ("DELETE FROM schema_migrations WHERE version >= 5", [()]),
                ("INSERT INTO dir_firms (id, name) VALUES (?, ?)", [("f1", "Kanzlei")]),
            ]
        )
        assert await store.migrate() == len(load_migrations("postgres")) >= 5
        firm = await SqlDirectory(store).get_firm("f1")
        assert (firm.time_zone, firm.letter_approval) == ("Europe/Berlin", False)


# -- announcements read the zone from the Directory ---------------------------------------------
@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path) as application:
            yield application


async def set_zone(app: ClientComm, zone: str) -> None:
    d = app.directory
    assert isinstance(d, WritableDirectory)
    await d.put_firm(attrs.evolve(await d.get_firm("f1"), time_zone=zone))


async def listed(app: ClientComm) -> list[str]:
    return [x.id for x in (await app.announcements.page_view(ANNA)).listed]


async def test_removal_day_in_the_zone_the_directory_names_across_dst(app: ClientComm) -> None:
    clock = app.clock
    assert isinstance(clock, ManualClock)
    clock.set(datetime(2026, 3, 6, 12, 0, tzinfo=UTC))
    berlin = await app.announcements.create(ADMIN, "Berlin", "x", remove_after=date(2026, 3, 7))
    assert berlin.time_zone == "Europe/Berlin"
    assert berlin.removes_at == datetime(2026, 3, 7, 23, 0, tzinfo=UTC)  # midnight CET
    await set_zone(app, "America/New_York")  # the host changes the firm's setting
    # New York changes to summer time on 8 March 2026 (Berlin only on 29 March)
    before = await app.announcements.create(ADMIN, "Sa", "x", remove_after=date(2026, 3, 7))
    after = await app.announcements.create(ADMIN, "So", "x", remove_after=date(2026, 3, 8))
    assert before.time_zone == after.time_zone == "America/New_York"
    assert before.removes_at == datetime(2026, 3, 8, 5, 0, tzinfo=UTC)  # midnight EST
    assert after.removes_at == datetime(2026, 3, 9, 4, 0, tzinfo=UTC)  # midnight EDT
    # the earlier announcement keeps the zone it was made in
    assert (await app.announcements.get(ADMIN, berlin.id)).time_zone == "Europe/Berlin"
    clock.set(datetime(2026, 3, 7, 23, 0, tzinfo=UTC))
    assert sorted(await listed(app)) == sorted([before.id, after.id])
    clock.set(datetime(2026, 3, 8, 4, 59, 59, tzinfo=UTC))
    assert sorted(await listed(app)) == sorted([before.id, after.id])
    clock.set(datetime(2026, 3, 8, 5, 0, tzinfo=UTC))
    assert await listed(app) == [after.id]
    clock.set(datetime(2026, 3, 9, 3, 59, 59, tzinfo=UTC))
    assert await listed(app) == [after.id]
    clock.set(datetime(2026, 3, 9, 4, 0, tzinfo=UTC))
    assert await listed(app) == []
    # an edit computes the new day in the firm's zone now, and stores that zone
    await set_zone(app, "Asia/Tokyo")
    clock.set(datetime(2026, 3, 9, 4, 0, tzinfo=UTC))
    edited = await app.announcements.edit(
        ADMIN, after.id, "So", "x", remove_after=date(2026, 3, 10)
    )
    assert edited.time_zone == "Asia/Tokyo"
    assert edited.removes_at == datetime(2026, 3, 10, 15, 0, tzinfo=UTC)


async def test_a_deprecated_override_still_wins_over_the_directory(app: ClientComm) -> None:
    await set_zone(app, "Asia/Tokyo")
    with pytest.warns(DeprecationWarning):
        app.announcements.set_time_zone("f1", "America/New_York")
    assert await app.announcements.zone_of("f1") == "America/New_York"
    clock = app.clock
    assert isinstance(clock, ManualClock)
    clock.set(datetime(2026, 3, 6, 12, 0, tzinfo=UTC))
    made = await app.announcements.create(ADMIN, "NY", "x", remove_after=date(2026, 3, 8))
    assert made.removes_at == datetime(2026, 3, 9, 4, 0, tzinfo=UTC)
