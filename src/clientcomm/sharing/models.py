"""Public values of portal sharing (seed 001): what a host passes in and what
staff and clients see of folders, channels, shared documents and messages."""

from __future__ import annotations

import enum
import os
from collections.abc import AsyncIterable, Iterable
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import attrs

__all__ = [
    "Channel",
    "DocumentContent",
    "Folder",
    "PlaceKind",
    "PortalDocument",
    "PortalMessage",
    "ShareMarker",
    "ShareOrigin",
    "ShareReceipt",
    "SharedDocument",
]

DocumentContent = bytes | AsyncIterable[bytes] | Iterable[bytes] | IO[bytes] | Path
"""A document's bytes as the host hands them over: bytes, a (sync or async)
iterable of bytes chunks, a binary file object (read in 1 MiB pieces) or a path.
A stream is read exactly once."""


class PlaceKind(enum.StrEnum):
    """Where shared documents and messages live in a client's portal."""

    FOLDER = "folder"  # the "Dokumente" tab: documents shared without a message
    CHANNEL = "channel"  # the "Nachrichten" tab: messages (with documents)


class ShareOrigin(enum.StrEnum):
    FIRM = "firm"  # shared by staff
    CLIENT = "client"  # uploaded by the client


@attrs.frozen
class PortalDocument:
    """One document to share or upload.

    Attributes:
        filename: a plain file name (no path parts, no control characters, at
            most 255 characters).
        content: its bytes (see :data:`DocumentContent`); hidden from repr.
        content_type: its media type (checked against the content where the
            type is known).
        document_id: the host's own id of the document (what
            :meth:`~clientcomm.sharing.SharingService.visibility` answers for);
            ``None`` for a client's upload.
    """

    filename: str
    content: DocumentContent = attrs.field(repr=False)
    content_type: str = "application/octet-stream"
    document_id: str | None = None

    @classmethod
    def from_path(
        cls,
        path: str | os.PathLike[str],
        *,
        document_id: str | None = None,
        filename: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> PortalDocument:
        p = Path(path)
        return cls(filename or p.name, p, content_type, document_id)


@attrs.frozen
class Folder:
    """A portal folder of one client in one case file (documents tab)."""

    id: str
    client_id: str
    case_id: str
    name: str
    created_at: datetime
    created_by: str


@attrs.frozen
class Channel:
    """A message channel of one client in one case file (messages tab)."""

    id: str
    client_id: str
    case_id: str
    name: str
    created_at: datetime
    created_by: str


@attrs.frozen
class SharedDocument:
    """A document in a client's portal, as the caller may see it.

    ``document_id``, ``first_downloaded_at`` and ``last_downloaded_at`` (the
    GDPR-minimal download log: no addresses, no count) are shown to staff only;
    a client sees ``None``. ``folder_id`` is set for documents shared without a
    message and uploads, ``channel_id`` and ``message_id`` for documents shared
    with a message.
    """

    id: str
    client_id: str
    case_id: str
    filename: str
    size: int
    content_type: str
    origin: ShareOrigin
    shared_by: str
    shared_at: datetime
    folder_id: str | None = None
    channel_id: str | None = None
    message_id: str | None = None
    document_id: str | None = None
    expires_at: datetime | None = None
    ended_at: datetime | None = None
    ended_by: str | None = None
    first_downloaded_at: datetime | None = None
    last_downloaded_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.ended_at is None


@attrs.frozen
class ShareMarker:
    """The "shared" marker of one host document (seed 001: "welche Dateien über
    das Mandanten-Portal geteilt wurden"): to whom, where, by whom, when."""

    share_id: str
    document_id: str
    client_id: str
    shared_by: str
    shared_at: datetime
    folder_id: str | None
    channel_id: str | None
    message_id: str | None
    expires_at: datetime | None
    ended_at: datetime | None

    @property
    def active(self) -> bool:
        return self.ended_at is None


@attrs.frozen
class ShareReceipt:
    """What a sharing call returns (the notices are background work)."""

    case_id: str
    client_id: str
    share_ids: tuple[str, ...]
    folder_id: str | None = None
    channel_id: str | None = None
    message_id: str | None = None
    expires_at: datetime | None = None


@attrs.frozen
class PortalMessage:
    """One message of a portal channel (from the firm or from the client)."""

    id: str
    channel_id: str
    client_id: str
    author: str  # "staff" or "client"
    author_id: str
    text: str = attrs.field(repr=False)
    sent_at: datetime
    reply_to: str | None = None
    share_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)
