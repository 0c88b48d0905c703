"""Pure rules of client chats: what a message text must be, where it is
sealed, and which of its metadata the sealed value authenticates."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from clientcomm.crypto.context import SealContext
from clientcomm.errors import IntegrityError
from clientcomm.messages.records import MESSAGE_KIND, MessageRecord
from clientcomm.records import bound

__all__ = [
    "MAX_TEXT",
    "authenticated",
    "bound_meta",
    "sealed_plaintext",
    "text_context",
    "text_contexts",
    "validate_text",
]

MAX_TEXT = 100_000


def validate_text(text: object, field: str = "text") -> str:
    """A message text: a non-empty string of at most 100,000 characters, no NUL.

    Raises:
        InvalidInputError: otherwise.
    """
    from clientcomm.errors import InvalidInputError

    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(field, "must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise InvalidInputError(field, f"must be at most {MAX_TEXT} characters", value=len(text))
    if "\x00" in text:
        raise InvalidInputError(field, "must not contain NUL characters")
    return text


def text_context(firm_id: str, client_id: str, message_id: str) -> SealContext:
    """Where a message text is sealed: its client, the message id, field ``text``."""
    return SealContext(firm_id, client_id, MESSAGE_KIND, message_id, "text")


def text_contexts(firm_id: str, pairs: Iterable[tuple[str, str]]) -> list[SealContext]:
    """:func:`text_context` for many ``(client_id, message_id)`` pairs."""
    return SealContext.many(firm_id, MESSAGE_KIND, "text", pairs)


def bound_meta(m: MessageRecord) -> dict[str, Any]:
    """What a message's sealed value authenticates besides its text (its client
    and id are in the associated data): author, sent time, the side it starts
    unread for, its mailing and its attachments' descriptors (file name, size,
    media type, blob, mode). See :mod:`clientcomm.records.bound`."""
    return {
        "author": m.author.value,
        "author_id": m.author_id,
        "sent_at": bound.stamp(m.sent_at),
        "unread_for": m.unread_for.value,
        "mailing_id": m.mailing_id,
        "attachments": [a.bound() for a in m.attachments],
    }


def sealed_plaintext(m: MessageRecord, text: bytes) -> bytes:
    """The plaintext sealed for ``m``: its bound metadata, then the text."""
    return bound.pack(bound_meta(m), text)


def authenticated(m: MessageRecord, plain: bytes) -> tuple[MessageRecord, str]:
    """The message as its sealed value says, and its text, from the opened
    plaintext: every clear value a reader trusts is checked against the
    sealed one, and the attachments' descriptors come from it.

    A plaintext of the layout before 0.2 (no bound metadata) gives the stored
    record as it is (its metadata were not authenticated then).

    Raises:
        IntegrityError: a stored value differs from the sealed one (edited), or
            the plaintext does not decode.
    """
    meta, content = bound.unpack(plain, what=f"message {m.id}")
    try:
        text = content.decode()
    except UnicodeDecodeError:
        raise IntegrityError(f"message {m.id}: text does not decode", id=m.id) from None
    if meta is None:
        return m, text
    what = f"message {m.id}"
    check = bound.check_equal
    check(what, "author", m.author.value, meta.get("author"), id=m.id)
    check(what, "author_id", m.author_id, meta.get("author_id"), id=m.id)
    check(what, "sent_at", bound.stamp(m.sent_at), meta.get("sent_at"), id=m.id)
    check(what, "unread_for", m.unread_for.value, meta.get("unread_for"), id=m.id)
    check(what, "mailing_id", m.mailing_id, meta.get("mailing_id"), id=m.id)
    sealed = meta.get("attachments")
    if not isinstance(sealed, list) or len(sealed) != len(m.attachments):
        raise IntegrityError(f"{what}: attachments do not match the sealed ones", id=m.id)
    attachments = tuple(a.authenticated(b) for a, b in zip(m.attachments, sealed, strict=True))
    return attrs.evolve(m, attachments=attachments), text
