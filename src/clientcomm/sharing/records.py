"""Record kinds of portal sharing.

* ``portal.place``: a folder or channel of one client in one case file
  (``parent`` the client, ``ref`` the case file, ``status`` folder/channel);
  its name is sealed for the client.
* ``share``: one document in one client's portal (``parent`` the client,
  ``ref`` the folder or channel, ``status`` active/ended): listing a folder is
  an indexed query on ``ref``, whatever else the store holds. Its descriptor
  (file name, size, type) and every clear value a reader trusts are bound into
  its sealed value; its bytes are a blob sealed for the client.
* ``portal.message``: one message of a channel (``parent`` the client,
  ``ref`` the channel, ``status`` the side it starts unread for).
* ``share.timer``: a share's expiry or reminder, claimed when due.
* ``share.download``: the GDPR-minimal download log of one share (first and
  last download by the client; no addresses, no count).

Staff read state per channel reuses the chats' ``chat.read`` cursor
(:class:`~clientcomm.messages.records.ReadCursor`, id ``channel | reader``).
"""

from __future__ import annotations

import enum
from datetime import datetime

import attrs

from clientcomm.attachments.models import StoredAttachment
from clientcomm.records import REGISTRY, Kind, Meta, SealedField, meta_field, unbound
from clientcomm.rules.readstate import Author, UnreadFor
from clientcomm.sharing.models import PlaceKind, ShareOrigin
from clientcomm.storage.base import EPOCH

__all__ = [
    "DOWNLOAD_KIND",
    "MESSAGE_KIND",
    "PLACE_KIND",
    "SHARE_KIND",
    "TIMER_KIND",
    "DownloadLog",
    "PlaceRecord",
    "PortalMessageRecord",
    "ShareRecord",
    "ShareStatus",
    "ShareTimer",
    "TimerStatus",
    "TimerWhat",
]

PLACE_KIND = "portal.place"
SHARE_KIND = "share"
MESSAGE_KIND = "portal.message"
TIMER_KIND = "share.timer"
DOWNLOAD_KIND = "share.download"


class ShareStatus(enum.StrEnum):
    ACTIVE = "active"
    ENDED = "ended"


class TimerStatus(enum.StrEnum):
    DUE = "due"


class TimerWhat(enum.StrEnum):
    REMIND = "remind"
    EXPIRE = "expire"


@attrs.frozen
class PlaceRecord:
    """A folder or channel; ``sealed`` holds its name (and binds the rest)."""

    id: str
    client_id: str
    case_id: str
    kind: PlaceKind
    created_at: datetime
    created_by: str
    sealed: bytes = attrs.field(repr=False)
    meta: Meta = meta_field()


@attrs.frozen
class ShareRecord:
    """One document in one client's portal (see module docs)."""

    id: str
    client_id: str
    location_id: str
    status: ShareStatus
    shared_at: datetime
    sealed: bytes = attrs.field(repr=False)
    case_id: str
    origin: ShareOrigin
    shared_by: str
    attachments: tuple[StoredAttachment, ...]
    document_id: str | None = None
    message_id: str | None = None
    expires_at: datetime | None = None
    ended_at: datetime | None = None
    ended_by: str | None = None
    meta: Meta = meta_field()


@attrs.frozen
class PortalMessageRecord:
    """One message of a channel; ``sealed_text`` holds its text (and binds the rest)."""

    id: str
    client_id: str
    channel_id: str
    unread_for: UnreadFor
    sent_at: datetime
    sealed_text: bytes = attrs.field(repr=False)
    author: Author
    author_id: str
    reply_to: str | None = None
    share_ids: tuple[str, ...] = ()
    meta: Meta = meta_field()


@attrs.frozen
class ShareTimer:
    """A share's expiry (or the reminder before it), due at ``due_at``."""

    id: str
    share_id: str
    client_id: str
    what: TimerWhat
    due_at: datetime
    status: TimerStatus = TimerStatus.DUE
    meta: Meta = meta_field()

    @staticmethod
    def id_for(share_id: str, what: TimerWhat) -> str:
        return f"{share_id}:{what.value}"


@attrs.frozen
class DownloadLog:
    """When the client first and last downloaded one shared document."""

    id: str  # the share's id
    client_id: str
    first_at: datetime = EPOCH
    last_at: datetime = EPOCH
    meta: Meta = meta_field()


_BOUND = "bound: checked against the sealed value when shown"

PLACE = REGISTRY.register(
    Kind(
        PLACE_KIND,
        PlaceRecord,
        "a portal folder or channel of one client in one case file",
        columns={
            "id": "id",
            "parent": "client_id",
            "ref": "case_id",
            "status": "kind",
            "created_at": "created_at",
            "body": "sealed",
        },
        meanings={
            "parent": "the client",
            "ref": "the case file",
            "status": "folder or channel",
            "body": "the name, sealed for the client (binds case file, kind, creator)",
        },
        status=PlaceKind,
        sealed=(SealedField("sealed"),),
        owner=lambda r: r.client_id,
        client=lambda r: r.client_id,
        client_column="parent",
        capability="sharing",
        integrity={
            "id": "aad: in the associated data of the name",
            "client_id": "aad: in the associated data of the name, whose key is the client's",
            "sealed": "sealed: the name, after the bound metadata",
            "case_id": _BOUND,
            "kind": _BOUND,
            "created_at": _BOUND,
            "created_by": _BOUND,
        },
    )
)

SHARE = REGISTRY.register(
    Kind(
        SHARE_KIND,
        ShareRecord,
        "one document in one client's portal (shared by staff or uploaded by the client)",
        columns={
            "id": "id",
            "parent": "client_id",
            "ref": "location_id",
            "status": "status",
            "created_at": "shared_at",
            "body": "sealed",
        },
        meanings={
            "parent": "the client",
            "ref": "the folder or channel it is in",
            "status": "active or ended",
            "body": "its descriptor (file name, size, media type) and bound metadata,"
            " sealed for the client",
        },
        status=ShareStatus,
        sealed=(
            SealedField("sealed"),
            SealedField("attachments[].stream_key", "stream_key", blob="blob_id"),
        ),
        owner=lambda r: r.client_id,
        client=lambda r: r.client_id,
        client_column="parent",
        capability="sharing",
        integrity={
            "id": "aad: in the associated data of the descriptor",
            "client_id": "aad: in the associated data, whose key is the client's",
            "sealed": "sealed: descriptor and bound metadata",
            "attachments": "bound: id, blob and mode checked; the stream key is a wrapped"
            " key bound to its blob",
            "location_id": _BOUND,
            "status": _BOUND + " (an ended share stays ended)",
            "shared_at": _BOUND,
            "case_id": _BOUND,
            "origin": _BOUND,
            "shared_by": _BOUND,
            "document_id": _BOUND,
            "message_id": _BOUND,
            "expires_at": _BOUND,
            "ended_at": _BOUND,
            "ended_by": _BOUND,
        },
    )
)

PORTAL_MESSAGE = REGISTRY.register(
    Kind(
        MESSAGE_KIND,
        PortalMessageRecord,
        "one message of a portal channel",
        columns={
            "id": "id",
            "parent": "client_id",
            "ref": "channel_id",
            "status": "unread_for",
            "created_at": "sent_at",
            "body": "sealed_text",
        },
        meanings={
            "parent": "the client",
            "ref": "the channel",
            "status": "side it starts unread for (to_client / to_staff)",
            "body": "the text, sealed for the client",
        },
        status=UnreadFor,
        sealed=(SealedField("sealed_text"),),
        owner=lambda r: r.client_id,
        client=lambda r: r.client_id,
        client_column="parent",
        capability="sharing",
        integrity={
            "id": "aad: in the associated data of the text",
            "client_id": "aad: in the associated data, whose key is the client's",
            "sealed_text": "sealed: the text, after the bound metadata",
            "channel_id": _BOUND,
            "unread_for": "bound: checked when shown (unread counts count the indexed column)",
            "sent_at": _BOUND,
            "author": _BOUND,
            "author_id": _BOUND,
            "reply_to": _BOUND,
            "share_ids": _BOUND,
        },
    )
)

SHARE_TIMER = REGISTRY.register(
    Kind(
        TIMER_KIND,
        ShareTimer,
        "a share's expiry or the reminder before it",
        columns={"id": "id", "parent": "client_id", "status": "status", "due_at": "due_at"},
        meanings={"id": "share id : remind|expire", "parent": "the client"},
        status=TimerStatus,
        client=lambda r: r.client_id,
        client_column="parent",
        capability="sharing",
        integrity=unbound(
            "a timer only says when to look at its share: the expiry it acts on is read"
            " from the share's sealed value, and ending a share is audited",
            "id",
            "share_id",
            "client_id",
            "what",
            "due_at",
            "status",
        ),
    )
)

DOWNLOAD = REGISTRY.register(
    Kind(
        DOWNLOAD_KIND,
        DownloadLog,
        "the download log of one share: first and last download by the client",
        columns={"id": "id", "parent": "client_id", "created_at": "first_at"},
        meanings={"id": "the share's id", "parent": "the client"},
        client=lambda r: r.client_id,
        client_column="parent",
        capability="sharing",
        integrity=unbound(
            "shown to staff as information; decides nothing (each download is audited too)",
            "id",
            "client_id",
            "first_at",
            "last_at",
        ),
    )
)
