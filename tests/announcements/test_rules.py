"""The visibility rules of announcements (seed 004), pure: table-driven cases
and hypothesis sequences of login, page view, close, read more, edit,
schedule and removal, across the daylight-saving changes of Europe/Berlin."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clientcomm.announcements.rules import (
    Decision,
    Notice,
    UserFacts,
    check_aware,
    check_removal,
    decide,
    dismiss,
    end_of_day,
    firm_zone,
    log_in,
    returning,
)
from clientcomm.errors import InvalidInputError

BERLIN = ZoneInfo("Europe/Berlin")
T0 = datetime(2026, 3, 27, 8, 0, tzinfo=UTC)  # two days before the spring change


# -- dates --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("day", "utc", "hours"),
    [
        (date(2026, 3, 28), datetime(2026, 3, 28, 23, 0, tzinfo=UTC), 24),  # CET
        (date(2026, 3, 29), datetime(2026, 3, 29, 22, 0, tzinfo=UTC), 23),  # spring change
        (date(2026, 5, 31), datetime(2026, 5, 31, 22, 0, tzinfo=UTC), 24),  # CEST
        (date(2026, 10, 25), datetime(2026, 10, 25, 23, 0, tzinfo=UTC), 25),  # autumn change
        (date(2026, 12, 31), datetime(2026, 12, 31, 23, 0, tzinfo=UTC), 24),
    ],
)
def test_end_of_day_in_berlin(day: date, utc: datetime, hours: int) -> None:
    end = end_of_day(day, BERLIN)
    assert end == utc and end.tzinfo is UTC
    start = end_of_day(day - timedelta(days=1), BERLIN)
    assert end - start == timedelta(hours=hours)
    # one microsecond before the end it is still that day there, at the end the next
    assert (end - timedelta(microseconds=1)).astimezone(BERLIN).date() == day
    assert end.astimezone(BERLIN).date() == day + timedelta(days=1)


def test_other_zones_and_unknown_zone() -> None:
    assert end_of_day(date(2026, 5, 31), ZoneInfo("America/New_York")) == datetime(
        2026, 6, 1, 4, 0, tzinfo=UTC
    )
    with pytest.raises(InvalidInputError) as info:
        firm_zone("Mars/Olympus")
    assert info.value.field == "time_zone"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (datetime(2026, 4, 1, 9, 0), "timezone-aware"),  # naive on purpose
        ("2026-04-01T09:00:00+00:00", "must be a datetime"),
        (datetime(1999, 12, 31, tzinfo=UTC), "between"),
        (datetime(2046, 1, 1, tzinfo=UTC), "between"),
        (datetime(9999, 12, 31, 23, 0, tzinfo=UTC), "between"),
    ],
)
def test_bad_publish_times(value: object, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as info:
        check_aware(value, "publish_at", T0)
    assert info.value.field == "publish_at"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (datetime(2026, 4, 1, tzinfo=UTC), "must be a date"),  # a datetime is no day
        ("2026-04-01", "must be a date"),
        (date(1999, 1, 1), "between"),
        (date(2999, 1, 1), "between"),
        (date(2026, 3, 30), "before the announcement is published"),  # publish 1 April
        (date(2026, 3, 26), "before the announcement is published"),
    ],
)
def test_bad_removal_days(value: object, message: str) -> None:
    publish = datetime(2026, 4, 1, 9, 0, tzinfo=UTC)
    with pytest.raises(InvalidInputError, match=message) as info:
        check_removal(value, BERLIN, publish_at=publish, now=T0)
    assert info.value.field == "remove_after"


def test_removal_in_the_past_and_on_the_publish_day() -> None:
    with pytest.raises(InvalidInputError, match="past"):
        check_removal(
            date(2026, 3, 26), BERLIN, publish_at=datetime(2020, 1, 1, tzinfo=UTC), now=T0
        )
    # removing after the day it is published is fine: it is shown until that evening
    same = check_removal(date(2026, 3, 27), BERLIN, publish_at=T0, now=T0)
    assert same == datetime(2026, 3, 27, 23, 0, tzinfo=UTC)
    assert check_removal(None, BERLIN, publish_at=T0, now=T0) is None


# -- a tiny driver over the pure functions -------------------------------------------------
@attrs.define
class Portal:
    """Announcements, one user and the time, changed only by the rules' functions."""

    notices: dict[str, Notice] = attrs.field(factory=dict)
    user: UserFacts = attrs.field(factory=UserFacts)
    now: datetime = T0

    def add(
        self,
        id: str,
        *,
        at: timedelta = timedelta(0),
        groups: frozenset[str] = frozenset(),
        remove_after: date | None = None,
    ) -> None:
        publish = self.now + at
        remove = None if remove_after is None else end_of_day(remove_after, BERLIN)
        self.notices[id] = Notice(id, 1, publish, remove, everyone=not groups, group_ids=groups)

    def view(self) -> Decision:
        return decide(self.notices.values(), self.user, self.now)

    def login(self) -> None:
        self.user = log_in(self.user)

    def close(self, id: str) -> None:
        self.user = dismiss(self.user, self.notices[id], read=False)

    def read(self, id: str) -> None:
        self.user = dismiss(self.user, self.notices[id], read=True)

    def edit(self, id: str) -> None:
        n = self.notices[id]
        self.notices[id] = attrs.evolve(n, revision=n.revision + 1)

    def delete(self, id: str) -> None:
        self.notices[id] = attrs.evolve(self.notices[id], deleted=True)

    def wait(self, delta: timedelta) -> None:
        self.now += delta


# (name, script, expected banners, expected listed, expected unread); the script
# is a list of (event, argument); "a" was published first, then "b".
CASES: list[tuple[str, list[tuple[str, str]], str, str, str]] = [
    ("new: banner on every page", [("view", ""), ("view", "")], "ba", "ba", "ab"),
    ("closed: no banner, still listed", [("close", "a")], "b", "ba", "ab"),
    ("closed twice: same", [("close", "a"), ("close", "a")], "b", "ba", "ab"),
    ("read more: no banner, read", [("read", "a")], "b", "ba", "b"),
    ("closed: back at the next login", [("close", "a"), ("login", "")], "ba", "ba", "ab"),
    ("read: back at the next login, still read", [("read", "a"), ("login", "")], "ba", "ba", "b"),
    ("each its own state", [("close", "a"), ("read", "b")], "", "ba", "a"),
    (
        "edit after read: unread, no banner until login",
        [("read", "a"), ("edit", "a")],
        "b",
        "ba",
        "ab",
    ),
    (
        "edit after read, then login: banner again",
        [("read", "a"), ("edit", "a"), ("login", "")],
        "ba",
        "ba",
        "ab",
    ),
    ("edit, read the new revision", [("read", "a"), ("edit", "a"), ("read", "a")], "b", "ba", "b"),
    (
        "close does not confirm a read",
        [("close", "a"), ("edit", "a"), ("close", "a")],
        "b",
        "ba",
        "ab",
    ),
    ("deleted: gone at once", [("delete", "a")], "b", "b", "b"),
    ("logins without interaction change nothing", [("login", ""), ("login", "")], "ba", "ba", "ab"),
]


@pytest.mark.parametrize(
    ("name", "script", "banners", "listed", "unread"), CASES, ids=[c[0] for c in CASES]
)
def test_rules_table(
    name: str, script: list[tuple[str, str]], banners: str, listed: str, unread: str
) -> None:
    portal = Portal()
    portal.add("a", at=timedelta(hours=-2))
    portal.add("b", at=timedelta(hours=-1))
    for event, arg in script:
        if event == "view":
            portal.view()
        elif event == "login":
            portal.login()
        else:
            getattr(portal, event)(arg)
    decision = portal.view()
    assert "".join(decision.banners) == banners
    assert "".join(decision.listed) == listed
    assert "".join(sorted(decision.unread)) == unread


def test_schedule_and_removal_across_the_spring_change() -> None:
    portal = Portal()  # Friday 27 March 2026, 09:00 in Berlin
    portal.add("s", at=timedelta(hours=20))  # Saturday 05:00 Berlin (CET)
    portal.add("r", remove_after=date(2026, 3, 29))  # ends Sunday 24:00 CEST = 22:00 UTC
    assert portal.view().listed == ("r",)
    portal.wait(timedelta(hours=20) - timedelta(microseconds=1))
    assert portal.view().listed == ("r",)
    portal.wait(timedelta(microseconds=1))
    assert portal.view().listed == ("s", "r")  # newest first
    portal.now = datetime(2026, 3, 29, 21, 59, 59, tzinfo=UTC)  # 23:59:59 CEST
    assert portal.view().listed == ("s", "r")
    portal.now = datetime(2026, 3, 29, 22, 0, tzinfo=UTC)  # midnight in Berlin
    assert portal.view().listed == ("s",)


def test_audience_groups() -> None:
    portal = Portal()
    portal.add("all")
    portal.add("g1", groups=frozenset({"g1"}))
    assert portal.view().listed == ("all",)
    portal.user = attrs.evolve(portal.user, group_ids=frozenset({"g1", "g2"}))
    assert set(portal.view().listed) == {"all", "g1"}


def test_returning_counts_dismissals_of_this_login() -> None:
    portal = Portal()
    portal.add("a")
    portal.add("b")
    assert returning(portal.user) == 0
    portal.close("a")
    portal.read("b")
    assert returning(portal.user) == 2
    portal.login()
    assert returning(portal.user) == 0
    assert log_in(portal.user, keep=["a"]).dismissals.keys() == {"a"}


# -- hypothesis: every sequence against an independent model ----------------------------
IDS = ("a", "b", "c")

events = st.one_of(
    st.tuples(st.just("login"), st.none()),
    st.tuples(st.just("view"), st.none()),
    st.tuples(st.just("close"), st.sampled_from(IDS)),
    st.tuples(st.just("read"), st.sampled_from(IDS)),
    st.tuples(st.just("edit"), st.sampled_from(IDS)),
    st.tuples(st.just("delete"), st.sampled_from(IDS)),
    st.tuples(st.just("schedule"), st.tuples(st.sampled_from(IDS), st.integers(-48, 72))),
    st.tuples(st.just("removal"), st.tuples(st.sampled_from(IDS), st.integers(-1, 4))),
    st.tuples(st.just("wait"), st.integers(1, 36 * 60)),  # minutes
    # to late evening (UTC) of one of the next days: where a Berlin day ends
    st.tuples(
        st.just("jump"),
        st.tuples(st.integers(0, 3), st.integers(20, 23), st.sampled_from([0, 30, 59])),
    ),
)


@attrs.define
class Model:
    """The seed's rules, written without the rules module: published while the
    Berlin date is not past the removal day; a banner until dismissed in this
    login; unread until the current revision was opened."""

    publish: dict[str, datetime]
    removal: dict[str, date | None]
    revision: dict[str, int]
    deleted: set[str] = attrs.field(factory=set)
    dismissed_now: set[str] = attrs.field(factory=set)
    read: dict[str, int] = attrs.field(factory=dict)

    def published(self, now: datetime) -> list[str]:
        local = now.astimezone(BERLIN).date()
        out = [
            i
            for i in IDS
            if i not in self.deleted
            and self.publish[i] <= now
            and ((day := self.removal[i]) is None or local <= day)
        ]
        return sorted(out, key=lambda i: (self.publish[i], i), reverse=True)


@settings(max_examples=500, deadline=None)
@given(
    start=st.sampled_from(
        [
            datetime(2026, 3, 28, 12, 0, tzinfo=UTC),  # before the spring change
            datetime(2026, 10, 24, 12, 0, tzinfo=UTC),  # before the autumn change
        ]
    ),
    script=st.lists(events, max_size=40),
)
def test_any_sequence_matches_the_model(start: datetime, script: list[tuple[str, object]]) -> None:
    portal = Portal(now=start)
    model = Model(publish={}, removal={}, revision={})
    for n, i in enumerate(IDS):
        portal.add(i, at=timedelta(minutes=-10 * (3 - n)))
        model.publish[i] = portal.notices[i].publish_at
        model.removal[i] = None
        model.revision[i] = 1
    for event, arg in script:
        shown = model.published(portal.now)
        if event == "login":
            portal.login()
            model.dismissed_now.clear()
        elif event in ("close", "read"):
            assert isinstance(arg, str)
            if arg not in shown:  # the service answers NotFound: nothing changes
                continue
            getattr(portal, event)(arg)
            model.dismissed_now.add(arg)
            if event == "read":
                model.read[arg] = model.revision[arg]
        elif event == "edit":
            assert isinstance(arg, str)
            if arg in model.deleted:
                continue
            portal.edit(arg)
            model.revision[arg] += 1
        elif event == "delete":
            assert isinstance(arg, str)
            portal.delete(arg)
            model.deleted.add(arg)
        elif event == "schedule":
            assert isinstance(arg, tuple)
            i, hours = arg
            at = portal.now + timedelta(hours=hours)
            portal.notices[i] = attrs.evolve(portal.notices[i], publish_at=at)
            model.publish[i] = at
        elif event == "removal":
            assert isinstance(arg, tuple)
            i, days = arg
            day = portal.now.astimezone(BERLIN).date() + timedelta(days=days)
            portal.notices[i] = attrs.evolve(portal.notices[i], remove_at=end_of_day(day, BERLIN))
            model.removal[i] = day
        elif event == "wait":
            assert isinstance(arg, int)
            portal.wait(timedelta(minutes=arg))
        elif event == "jump":
            assert isinstance(arg, tuple)
            days, hour, minute = arg
            target = datetime.combine(
                start.date() + timedelta(days=days), time(hour, minute), tzinfo=UTC
            )
            if target > portal.now:
                portal.now = target
        decision = portal.view()
        expected = model.published(portal.now)
        assert list(decision.listed) == expected
        assert list(decision.banners) == [i for i in expected if i not in model.dismissed_now]
        assert decision.unread == {i for i in expected if model.read.get(i) != model.revision[i]}
