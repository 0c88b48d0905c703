"""Portal sharing (seed 001): documents with and without a message into a
client's portal folders and channels, messages, ending a share, expiry and
reminders, the download log, client uploads.

* :mod:`~clientcomm.sharing.models` - public values;
* :mod:`~clientcomm.sharing.records` - record kinds (``portal.place``, ``share``,
  ``portal.message``, ``share.timer``, ``share.download``);
* :mod:`~clientcomm.sharing.rules` - who may share, to which client, who may end (pure);
* :mod:`~clientcomm.sharing.service` - :class:`SharingService` (``app.shares``);
* :mod:`~clientcomm.sharing.steps` - the ``sharing.timers`` background step;
* :mod:`~clientcomm.sharing.operations` - its audit operations.

See ``docs/portal.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clientcomm.compliance.export import register_exporter
from clientcomm.crypto.envelope import Sealer
from clientcomm.messages.rules import decode_body
from clientcomm.records import bound
from clientcomm.sharing import operations as _operations  # noqa: F401  (declares them)
from clientcomm.sharing import rules as _rules
from clientcomm.sharing.models import (
    Channel,
    DocumentContent,
    Folder,
    PlaceKind,
    PortalDocument,
    PortalMessage,
    SharedDocument,
    ShareMarker,
    ShareOrigin,
    ShareReceipt,
)
from clientcomm.sharing.records import (
    DOWNLOAD_KIND,
    MESSAGE_KIND,
    PLACE_KIND,
    SHARE_KIND,
    TIMER_KIND,
    PlaceRecord,
    PortalMessageRecord,
    ShareRecord,
)
from clientcomm.sharing.service import DEFAULT_MAX_DOCUMENT_SIZE, SharingService

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = [
    "DEFAULT_MAX_DOCUMENT_SIZE",
    "DOWNLOAD_KIND",
    "MESSAGE_KIND",
    "PLACE_KIND",
    "SHARE_KIND",
    "TIMER_KIND",
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
    "SharingService",
]


def _sealer(app: ClientComm) -> Sealer:
    return app.sealer


async def _export_place(app: ClientComm, firm_id: str, value: Any) -> dict[str, Any]:
    assert isinstance(value, PlaceRecord)
    plain = await _sealer(app).open(_rules.place_context(firm_id, value), value.sealed)
    return {
        "id": value.id,
        "case_id": value.case_id,
        "place": value.kind.value,
        "name": _rules.place_authenticated(value, plain),
        "created_at": value.created_at.isoformat(),
    }


async def _export_share(app: ClientComm, firm_id: str, value: Any) -> dict[str, Any]:
    assert isinstance(value, ShareRecord)
    plain = await _sealer(app).open(_rules.share_context(firm_id, value), value.sealed)
    r = _rules.share_authenticated(value, plain)
    info = r.attachments[0].info
    return {
        "id": r.id,
        "case_id": r.case_id,
        "location_id": r.location_id,
        "origin": r.origin.value,
        "filename": info.filename,
        "size": info.size,
        "content_type": info.content_type,
        "shared_at": r.shared_at.isoformat(),
        "expires_at": bound.stamp(r.expires_at),
        "ended_at": bound.stamp(r.ended_at),
        "message_id": r.message_id,
    }


async def _export_message(app: ClientComm, firm_id: str, value: Any) -> dict[str, Any]:
    assert isinstance(value, PortalMessageRecord)
    plain = await _sealer(app).open(_rules.message_context(firm_id, value), value.sealed_text)
    _, text = decode_body(_rules.message_authenticated(value, plain))
    return {
        "id": value.id,
        "channel_id": value.channel_id,
        "author": value.author.value,
        "sent_at": value.sent_at.isoformat(),
        "reply_to": value.reply_to,
        "text": text,
        "share_ids": list(value.share_ids),
    }


register_exporter(PLACE_KIND, _export_place)
register_exporter(SHARE_KIND, _export_share)
register_exporter(MESSAGE_KIND, _export_message)
