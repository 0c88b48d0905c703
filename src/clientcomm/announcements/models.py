"""Public values of announcements (seed 004): what staff and client users see."""

from __future__ import annotations

import enum
from datetime import date, datetime

import attrs

from clientcomm.rules.audience import Audience

__all__ = [
    "Announcement",
    "AnnouncementState",
    "AnnouncementText",
    "ClientUser",
    "PortalAnnouncement",
    "PortalAnnouncements",
    "ReadEntry",
    "ReadReport",
]


class AnnouncementState(enum.StrEnum):
    """Where an announcement stands for staff at a given time."""

    SCHEDULED = "scheduled"  # publish time not reached yet
    PUBLISHED = "published"  # shown to its audience
    REMOVED = "removed"  # its "remove after" day has ended (archive)
    DELETED = "deleted"  # deleted by staff (archive)


@attrs.frozen
class Announcement:
    """An announcement as staff see it.

    Attributes:
        revision: 1, plus one for every edit of title or description.
        description: the Markdown source; ``html``: it rendered and sanitised.
        publish_at: when it is (was) published, UTC.
        remove_after: the "remove after" day in the firm's time zone, or None.
        removes_at: the end of that day there, UTC (when it disappears).
        time_zone: the firm's zone the day is meant in.
        audience: every client (``Audience.everyone()``), client groups,
            picked clients, or a union of them.
        state: at the time it was read.
    """

    id: str
    revision: int
    title: str
    description: str
    html: str
    publish_at: datetime
    remove_after: date | None
    removes_at: datetime | None
    time_zone: str
    audience: Audience
    state: AnnouncementState
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    deleted_at: datetime | None = None


@attrs.frozen
class PortalAnnouncement:
    """One announcement on a client's portal page. ``title`` is plain text
    (escape it like any text); ``teaser_html`` (its first paragraph) is
    sanitised HTML. ``unread``: the user has not opened "read more" on this
    revision."""

    id: str
    revision: int
    title: str
    teaser_html: str
    published_at: datetime
    unread: bool


@attrs.frozen
class PortalAnnouncements:
    """What one portal page view shows: ``banners`` (on every page) and
    ``listed`` (the home page), each newest first."""

    banners: tuple[PortalAnnouncement, ...]
    listed: tuple[PortalAnnouncement, ...]


@attrs.frozen
class AnnouncementText:
    """The full text "read more" opens: ``html`` is sanitised HTML."""

    id: str
    revision: int
    title: str
    html: str
    published_at: datetime


@attrs.frozen
class ClientUser:
    """A portal user of a client: a registered contact, or the client itself
    (``contact_id`` None) when the host's portal users are not contacts."""

    client_id: str
    contact_id: str | None = None


@attrs.frozen
class ReadEntry:
    """A user who opened "read more" on the revision, and when (first time)."""

    user: ClientUser
    read_at: datetime


@attrs.frozen
class ReadReport:
    """Read confirmation of one revision: who has read it and which of the
    audience's portal users (the Directory's registered contacts of its active
    clients) have not. A reader who is no registered contact any more is still
    listed in ``read``."""

    announcement_id: str
    revision: int
    read: tuple[ReadEntry, ...]
    not_read: tuple[ClientUser, ...]
