"""Announcement visibility and dates (seed 004), as pure functions.

What a client user sees is decided by :func:`decide` from three facts only:

* the firm's announcements as stored (:class:`Notice`: revision, publish
  instant, removal instant, audience, deleted or not);
* the client user's state (:class:`UserFacts`: the client's groups, how many
  logins were reported since the user first interacted, and per announcement
  the login at which the banner was last dismissed and the last revision
  read);
* ``now``.

The rules (the table in ``docs/announcements.md``):

1. An announcement is *published* from ``publish_at`` (inclusive) until
   ``remove_at`` (exclusive), unless deleted; only published announcements
   whose audience includes the client exist for its users.
2. A published announcement is always *listed* (the home page).
3. Its *banner* shows on every page until the user closes it or opens
   "read more" (both *dismiss* it); a dismissal holds for the rest of that
   login: the banner shows again from the user's next login.
4. An edit of title or description makes a new *revision*: it shows again at
   the next login (rule 3 already brings every banner back at a login, so a
   dismissal of the old revision never hides the new one past that login),
   and it counts as unread until "read more" is opened on it.
5. Several announcements are ordered newest first (publish instant, then the
   order they were created in),
   each with its own state.

Dates: a "remove after" date is a calendar day in the firm's time zone; the
announcement disappears at the end of that day there (:func:`end_of_day`),
which :mod:`zoneinfo` converts to UTC across daylight-saving changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from clientcomm.errors import InvalidInputError

__all__ = [
    "EARLIEST",
    "MAX_AHEAD",
    "Decision",
    "Dismissal",
    "Notice",
    "UserFacts",
    "check_aware",
    "check_removal",
    "decide",
    "dismiss",
    "end_of_day",
    "firm_zone",
    "in_audience",
    "is_published",
    "log_in",
    "returning",
]

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
"""No announcement is published or removed before this instant (bad input)."""
MAX_AHEAD = timedelta(days=366 * 10)
"""How far ahead of now a publish or removal instant may lie (10 years)."""


@attrs.frozen
class Notice:
    """What the rules need of one stored announcement."""

    id: str
    revision: int
    publish_at: datetime
    remove_at: datetime | None = None
    everyone: bool = True
    group_ids: frozenset[str] = frozenset()
    client_ids: frozenset[str] = frozenset()
    deleted: bool = False
    order: int = 0  # the store's insertion order: newer first among equal publish times


@attrs.frozen
class Dismissal:
    """A user's interaction with one announcement: ``dismissed_login`` is the
    value of :attr:`UserFacts.logins` when the banner was last closed or read
    (``None``: never dismissed); ``read_revision`` the last revision opened
    with "read more" (0: none)."""

    dismissed_login: int | None = None
    read_revision: int = 0


@attrs.frozen
class UserFacts:
    """A client user's state: its client and the client's groups, the logins
    reported since the state was first stored, the dismissals by announcement id."""

    client_id: str = ""
    group_ids: frozenset[str] = frozenset()
    logins: int = 0
    dismissals: Mapping[str, Dismissal] = attrs.field(factory=dict)


@attrs.frozen
class Decision:
    """What a page shows: ``listed`` (the home page) and ``banners`` (every
    page), newest first; ``unread``: listed ids whose current revision the user
    has not opened with "read more"."""

    listed: tuple[str, ...]
    banners: tuple[str, ...]
    unread: frozenset[str]


def is_published(notice: Notice, now: datetime) -> bool:
    """Rule 1 without the audience."""
    if notice.deleted or now < notice.publish_at:
        return False
    return notice.remove_at is None or now < notice.remove_at


def in_audience(notice: Notice, client_id: str, group_ids: frozenset[str]) -> bool:
    """Every client, or the picked clients and the members of the chosen groups."""
    return (
        notice.everyone
        or client_id in notice.client_ids
        or not notice.group_ids.isdisjoint(group_ids)
    )


def _banner(notice: Notice, user: UserFacts) -> bool:
    seen = user.dismissals.get(notice.id)
    return seen is None or seen.dismissed_login != user.logins


def decide(notices: Iterable[Notice], user: UserFacts, now: datetime) -> Decision:
    """Rules 1 to 5 (see module docs) for one client user at ``now``."""
    shown = sorted(
        (
            n
            for n in notices
            if is_published(n, now) and in_audience(n, user.client_id, user.group_ids)
        ),
        key=lambda n: (n.publish_at, n.order, n.id),
        reverse=True,
    )
    unread = frozenset(
        n.id
        for n in shown
        if (seen := user.dismissals.get(n.id)) is None or seen.read_revision != n.revision
    )
    return Decision(
        listed=tuple(n.id for n in shown),
        banners=tuple(n.id for n in shown if _banner(n, user)),
        unread=unread,
    )


def dismiss(user: UserFacts, notice: Notice, *, read: bool) -> UserFacts:
    """The user's state after closing ``notice``'s banner (``read``: after
    opening "read more" on its current revision)."""
    old = user.dismissals.get(notice.id, Dismissal())
    new = Dismissal(user.logins, notice.revision if read else old.read_revision)
    return attrs.evolve(user, dismissals={**user.dismissals, notice.id: new})


def returning(user: UserFacts) -> int:
    """How many dismissed banners a login brings back."""
    return sum(1 for d in user.dismissals.values() if d.dismissed_login == user.logins)


def log_in(user: UserFacts, keep: Iterable[str] | None = None) -> UserFacts:
    """The user's state after a login: every dismissal belongs to an earlier
    login now; ``keep`` (if given) drops the dismissals of other announcements
    (deleted ones)."""
    kept = user.dismissals
    if keep is not None:
        wanted = set(keep)
        kept = {k: v for k, v in kept.items() if k in wanted}
    return attrs.evolve(user, logins=user.logins + 1, dismissals=kept)


# -- dates ----------------------------------------------------------------------------
def firm_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``.

    Raises:
        InvalidInputError: an unknown zone (``field="time_zone"``).
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidInputError("time_zone", "is not a known IANA time zone", value=name) from None


def end_of_day(day: date, zone: ZoneInfo) -> datetime:
    """The instant (UTC) at which ``day`` ends in ``zone``: the start of the
    next day there (23 or 25 hours after the day began on a DST change)."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)


def check_aware(value: object, field: str, now: datetime) -> datetime:
    """``value`` in UTC if it is a timezone-aware datetime between
    :data:`EARLIEST` and ``now + MAX_AHEAD``.

    Raises:
        InvalidInputError: not a datetime, naive, or out of range (naming ``field``).
    """
    if not isinstance(value, datetime):
        raise InvalidInputError(field, f"must be a datetime, not {type(value).__name__}")
    if value.utcoffset() is None:
        raise InvalidInputError(field, "must be timezone-aware")
    try:
        at = value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidInputError(field, "is out of range") from None
    if at < EARLIEST or at > now + MAX_AHEAD:
        raise InvalidInputError(field, "must lie between 2000-01-01 and ten years from now")
    return at


def check_removal(
    value: object, zone: ZoneInfo, *, publish_at: datetime, now: datetime
) -> datetime | None:
    """The removal instant of a "remove after" date (``None``: never).

    Raises:
        InvalidInputError: (``field="remove_after"``) not a date (a datetime is
            refused: the field is a calendar day), out of range, or ending
            before the announcement is published or before now.
    """
    if value is None:
        return None
    if isinstance(value, datetime) or not isinstance(value, date):
        raise InvalidInputError("remove_after", "must be a date (a day in the firm's time zone)")
    if not EARLIEST.date() <= value <= (now + MAX_AHEAD).date():
        raise InvalidInputError(
            "remove_after", "must lie between 2000-01-01 and ten years from now"
        )
    remove_at = end_of_day(value, zone)
    if remove_at <= publish_at:
        raise InvalidInputError("remove_after", "must not end before the announcement is published")
    if remove_at <= now:
        raise InvalidInputError("remove_after", "lies in the past: it would never be shown")
    return remove_at
