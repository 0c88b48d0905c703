"""Record kinds of announcements: the announcement (firm-wide), a client
user's interaction state (one row per user, written only once the user
interacts), and read receipts (one per user and revision read)."""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from clientcomm.records import REGISTRY, Kind, Meta, meta_field, unbound

__all__ = [
    "ANNOUNCEMENT_KIND",
    "RECEIPT_KIND",
    "USER_KIND",
    "AnnouncementRecord",
    "AnnouncementStatus",
    "Interaction",
    "ReadReceipt",
    "UserState",
    "user_key",
]

ANNOUNCEMENT_KIND = "announcement"
USER_KIND = "announcement.user"
RECEIPT_KIND = "announcement.read"


class AnnouncementStatus(enum.StrEnum):
    ACTIVE = "active"  # scheduled, published or past its removal day (by time)
    DELETED = "deleted"


@attrs.frozen
class AnnouncementRecord:
    """One stored announcement (the current revision)."""

    id: str
    status: AnnouncementStatus
    revision: int
    title: str
    description: str
    publish_at: datetime
    remove_at: datetime | None
    remove_after: str | None  # ISO date, as staff entered it
    time_zone: str
    everyone: bool
    group_ids: tuple[str, ...]
    client_ids: tuple[str, ...]
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    deleted_at: datetime | None = None
    meta: Meta = meta_field()


@attrs.frozen
class Interaction:
    """A user's state for one announcement (as
    :class:`~clientcomm.announcements.rules.Dismissal`)."""

    announcement_id: str
    dismissed_login: int | None = None
    read_revision: int = 0


@attrs.frozen
class UserState:
    """A client user's announcement state: one row per user, all announcements."""

    id: str
    client_id: str
    contact_id: str | None
    logins: int
    interactions: tuple[Interaction, ...]
    created_at: datetime
    meta: Meta = meta_field()


@attrs.frozen
class ReadReceipt:
    """A user opened "read more" on one revision (written once, the first time)."""

    id: str
    parent: str  # "<announcement id>@<revision>"
    client_id: str
    contact_id: str | None
    announcement_id: str
    revision: int
    read_at: datetime
    meta: Meta = meta_field()


def user_key(client_id: str, contact_id: str | None) -> str:
    """The id of a client user's state row."""
    return f"{client_id}|{contact_id or ''}"


_FIRM_WIDE = (
    "a firm-wide notice written by staff, the same text for every client of its"
    " audience and holding no client's data, so there is no client key to seal or"
    " bind it under; a database edit could change what the portal shows (titles and"
    " text are sanitised when rendered, never trusted as HTML)"
)

ANNOUNCEMENT = REGISTRY.register(
    Kind(
        ANNOUNCEMENT_KIND,
        AnnouncementRecord,
        "a firm announcement for the client portal (current revision)",
        columns={"id": "id", "status": "status", "created_at": "created_at"},
        meanings={"status": "active or deleted (published/removed follow from the times)"},
        status=AnnouncementStatus,
        capability="announcements",
        integrity=unbound(
            _FIRM_WIDE,
            "id",
            "status",
            "revision",
            "title",
            "description",
            "publish_at",
            "remove_at",
            "remove_after",
            "time_zone",
            "everyone",
            "group_ids",
            "client_ids",
            "created_at",
            "created_by",
            "updated_at",
            "updated_by",
            "deleted_at",
        ),
    )
)

USER_STATE = REGISTRY.register(
    Kind(
        USER_KIND,
        UserState,
        "one client user's banner and read state for every announcement",
        columns={"id": "id", "parent": "client_id", "created_at": "created_at"},
        meanings={"id": "client id | contact id", "parent": "the client"},
        client=lambda s: s.client_id,
        client_column="parent",
        capability="announcements",
        integrity=unbound(
            "banner state: decides only whether a firm-wide notice's banner shows again"
            " before the next login and whether it is marked unread",
            "id",
            "client_id",
            "contact_id",
            "logins",
            "interactions",
            "created_at",
        ),
    )
)

RECEIPT = REGISTRY.register(
    Kind(
        RECEIPT_KIND,
        ReadReceipt,
        "a client user opened an announcement revision (read confirmation)",
        columns={"id": "id", "parent": "parent", "ref": "client_id", "created_at": "read_at"},
        meanings={"parent": "announcement id @ revision", "ref": "the client"},
        client=lambda r: r.client_id,
        client_column="ref",
        capability="announcements",
        integrity=unbound(
            "read confirmation shown to staff; decides neither who receives nor what is"
            " shown (the audit trail's hash-chained announcement.read entry is the evidence)",
            "id",
            "parent",
            "client_id",
            "contact_id",
            "announcement_id",
            "revision",
            "read_at",
        ),
    )
)
