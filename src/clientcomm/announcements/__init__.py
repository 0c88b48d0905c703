"""Firm announcements for the client portal (seed 004).

Staff publish, edit and delete announcements (:class:`AnnouncementService`,
``app.announcements``); the host reports its client users' logins, page views,
closes and "read more"; :mod:`~clientcomm.announcements.rules` decides, as
pure functions, what each page shows. See ``docs/announcements.md``.
"""

from __future__ import annotations

from clientcomm.announcements import operations as _operations  # noqa: F401  (declares)
from clientcomm.announcements.models import (
    Announcement,
    AnnouncementState,
    AnnouncementText,
    ClientUser,
    PortalAnnouncement,
    PortalAnnouncements,
    ReadEntry,
    ReadReport,
)
from clientcomm.announcements.records import (
    ANNOUNCEMENT_KIND,
    RECEIPT_KIND,
    USER_KIND,
)
from clientcomm.announcements.render import render_markdown
from clientcomm.announcements.service import DEFAULT_TIME_ZONE, AnnouncementService

__all__ = [
    "ANNOUNCEMENT_KIND",
    "DEFAULT_TIME_ZONE",
    "RECEIPT_KIND",
    "USER_KIND",
    "Announcement",
    "AnnouncementService",
    "AnnouncementState",
    "AnnouncementText",
    "ClientUser",
    "PortalAnnouncement",
    "PortalAnnouncements",
    "ReadEntry",
    "ReadReport",
    "render_markdown",
]
