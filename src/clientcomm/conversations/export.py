"""The client data export opens conversations and comments
(:func:`clientcomm.compliance.export.register_exporter`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clientcomm.compliance.export import register_exporter
from clientcomm.conversations.records import (
    COMMENT_KIND,
    CONVERSATION_KIND,
    CommentRecord,
    ConversationRecord,
)
from clientcomm.conversations.rules import (
    authenticated_comment,
    authenticated_conversation,
    check_conversation,
    comment_context,
    subject_context,
)
from clientcomm.crypto.envelope import OpenRequest

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__: list[str] = []


async def _conversation(app: ClientComm, firm_id: str, value: Any) -> dict[str, Any]:
    assert isinstance(value, ConversationRecord)
    check_conversation(await app.notice_keys.get(firm_id), value)
    [plain] = await app.sealer.open_many(
        [OpenRequest(subject_context(firm_id, value.client_id, value.id), value.sealed_subject)]
    )
    subject = authenticated_conversation(value, plain)
    return {
        "id": value.id,
        "subject": subject,
        "status": value.status.value,
        "created_at": value.created_at.isoformat(),
        "created_by": value.created_by,
        "turn": value.turn.value,
        "last_activity_at": value.last_activity_at.isoformat(),
        "comments": value.comments,
    }


async def _comment(app: ClientComm, firm_id: str, value: Any) -> dict[str, Any]:
    assert isinstance(value, CommentRecord)
    [plain] = await app.sealer.open_many(
        [OpenRequest(comment_context(firm_id, value.client_id, value.id), value.sealed_text)]
    )
    opened, text = authenticated_comment(value, plain)
    return {
        "id": opened.id,
        "conversation_id": opened.conversation_id,
        "number": opened.number,
        "author": opened.author.value,
        "author_id": opened.author_id,
        "created_at": opened.created_at.isoformat(),
        "text": text,
        "attachments": [a.info.to_dict() for a in opened.attachments],
    }


register_exporter(CONVERSATION_KIND, _conversation)
register_exporter(COMMENT_KIND, _comment)
