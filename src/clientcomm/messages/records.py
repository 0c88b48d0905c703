"""Record kinds of client chats: one record per message copy, one read cursor
per reader and chat."""

from __future__ import annotations

from datetime import datetime

import attrs

from clientcomm.attachments.models import StoredAttachment
from clientcomm.records import REGISTRY, Kind, Meta, SealedField, meta_field, unbound
from clientcomm.rules.readstate import Author, UnreadFor
from clientcomm.storage.base import EPOCH

__all__ = ["MESSAGE_KIND", "READ_KIND", "MessageRecord", "ReadCursor"]

MESSAGE_KIND = "message"
READ_KIND = "chat.read"


@attrs.frozen
class MessageRecord:
    """One stored message of a client's chat (a single message or a mailing copy).

    ``sealed_text`` is the text sealed for the client; ``unread_for`` says for
    which side it starts unread (see :mod:`clientcomm.rules.readstate`).
    """

    id: str
    client_id: str
    unread_for: UnreadFor
    sealed_text: bytes = attrs.field(repr=False)
    sent_at: datetime
    author: Author
    author_id: str
    attachments: tuple[StoredAttachment, ...] = ()
    mailing_id: str | None = None
    meta: Meta = meta_field()


@attrs.frozen
class ReadCursor:
    """How far one reader (``"client"`` or ``"staff:<id>"``) has read a chat:
    the ``seq`` of the newest message seen. Written only when it reads.

    ``opened`` maps the messages the reader opened alone past its cursor to
    their ``seq`` (their first opening is audited once; dropped as the cursor
    passes them)."""

    id: str
    client_id: str
    seq: int = 0
    created_at: datetime = EPOCH
    opened: dict[str, int] = attrs.field(factory=dict)
    meta: Meta = meta_field()

    @staticmethod
    def id_for(client_id: str, reader: str) -> str:
        return f"{client_id}|{reader}"


MESSAGE = REGISTRY.register(
    Kind(
        MESSAGE_KIND,
        MessageRecord,
        "one message of a client's chat (single message or mailing copy)",
        columns={
            "id": "id",
            "parent": "client_id",
            "status": "unread_for",
            "body": "sealed_text",
            "created_at": "sent_at",
        },
        meanings={
            "parent": "the client (its chat)",
            "status": "side it starts unread for (to_client / to_staff)",
            "body": "the text (and its subject, if any), sealed for the client",
        },
        status=UnreadFor,
        sealed=(
            SealedField("sealed_text"),
            SealedField("attachments[].stream_key", "stream_key", blob="blob_id"),
        ),
        owner=lambda m: m.client_id,
        client=lambda m: m.client_id,
        client_column="parent",
        capability="messages",
        integrity={
            "id": "aad: in the associated data of the text (a moved text fails to open)",
            "client_id": "aad: in the associated data of the text, whose key is the client's",
            "sealed_text": "sealed: the text, after the bound metadata",
            "unread_for": "bound: checked when shown (unread counts count the indexed column)",
            "sent_at": "bound: checked; the shown time is the sealed one",
            "author": "bound: checked; a staff message cannot pass for the client's",
            "author_id": "bound: checked",
            "attachments": "bound: descriptors (id, file name, size, media type, blob, mode)"
            " are sealed, only id, blob, mode and stream key stay in clear and are checked;"
            " the stream key is a wrapped key bound to its blob",
            "mailing_id": "bound: checked (staff-only information)",
        },
    )
)

READ_CURSOR = REGISTRY.register(
    Kind(
        READ_KIND,
        ReadCursor,
        "how far one reader has read one client's chat",
        columns={"id": "id", "parent": "client_id", "created_at": "created_at"},
        meanings={"id": "client id | reader", "parent": "the client (its chat)"},
        client=lambda c: c.client_id,
        client_column="parent",
        capability="messages",
        integrity=unbound(
            "a read cursor moves unread flags and counts only",
            "id",
            "client_id",
            "seq",
            "created_at",
            "opened",
        ),
    )
)
