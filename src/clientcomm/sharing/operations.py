"""The audit operations of portal sharing (listed in ``docs/compliance.md``)."""

from __future__ import annotations

from clientcomm.audit import declare

__all__: list[str] = []

declare(
    "portal.place_created",
    "portal.place",
    "a portal folder or channel was created for a client in a case file",
    "`SharingService.create_folder`, `create_channel`",
    ("case_id", "place"),
)
declare(
    "share.created",
    "share",
    "a document was shared into a client's portal (folder, or channel with a message)",
    "`SharingService.share`, `share_with_message`",
    ("case_id", "location", "with_message", "expires_at", "size", "notified"),
)
declare(
    "share.uploaded",
    "share",
    "a client uploaded a document into a folder of its portal",
    "`SharingService.upload`",
    ("case_id", "location", "size"),
)
declare(
    "share.ended",
    "share",
    "a share was ended by staff (the client can neither list nor download it)",
    "`SharingService.end`",
    ("by_sharer",),
)
declare(
    "share.expired",
    "share",
    "a share reached its expiry and was ended",
    "`sharing.timers` step",
)
declare(
    "share.reminded",
    "share",
    "the sharer was reminded that a share expires soon",
    "`sharing.timers` step",
)
declare(
    "share.downloaded",
    "share",
    "the client downloaded a shared document (also the first/last download log)",
    "`SharingService.download`",
    ("first",),
)
declare(
    "portal.message_sent",
    "portal.message",
    "a message was written to a portal channel (by staff or by the client)",
    "`SharingService.post`, `share_with_message`",
    ("author", "channel_id", "share_count", "reply"),
)
