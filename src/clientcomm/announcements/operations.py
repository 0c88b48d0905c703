"""The audit operations of announcements (listed in ``docs/compliance.md``)."""

from __future__ import annotations

from clientcomm.audit.operations import declare

__all__ = ["OPERATION_NAMES"]

OPERATION_NAMES = (
    "announcement.created",
    "announcement.edited",
    "announcement.deleted",
    "announcement.dismissed",
    "announcement.read",
    "announcement.login",
)

declare(
    "announcement.created",
    "announcement",
    "staff published or scheduled a firm announcement",
    "`AnnouncementService.create`",
    ("revision", "publish_at", "remove_at", "audience"),
)
declare(
    "announcement.edited",
    "announcement",
    "staff edited an announcement (a new revision when title or text changed)",
    "`AnnouncementService.edit`",
    ("revision", "changed", "publish_at", "remove_at", "audience"),
)
declare(
    "announcement.deleted",
    "announcement",
    "staff deleted an announcement (it stays in the staff archive)",
    "`AnnouncementService.delete`",
    ("revision",),
)
declare(
    "announcement.dismissed",
    "announcement",
    "a client user closed an announcement's banner (or re-opened a revision it had read)",
    "`AnnouncementService.close`, `read_more`",
    ("revision", "via"),
)
declare(
    "announcement.read",
    "announcement",
    "a client user opened a revision with read more for the first time (read confirmation)",
    "`AnnouncementService.read_more`",
    ("revision",),
)
declare(
    "announcement.login",
    "client",
    "a client user's login brought back the banners it had dismissed",
    "`AnnouncementService.login`",
    ("returned",),
)
