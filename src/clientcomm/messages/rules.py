"""Pure rules of client chats: what a message text and subject must be, how
they are sealed together (the body) and where, and which of a message's
metadata the sealed value authenticates."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Any

import attrs

from clientcomm.crypto.context import SealContext
from clientcomm.errors import IntegrityError
from clientcomm.messages.records import MESSAGE_KIND, MessageRecord
from clientcomm.records import bound

__all__ = [
    "MAX_SUBJECT",
    "MAX_TEXT",
    "TEXT_FIELD",
    "authenticated",
    "bound_meta",
    "decode_body",
    "encode_body",
    "sealed_plaintext",
    "text_context",
    "text_contexts",
    "validate_subject",
    "validate_text",
]

MAX_TEXT = 100_000
MAX_SUBJECT = 200

#: The field a message text is sealed for (its kind: ``MESSAGE_KIND``, its id: the message id).
TEXT_FIELD = "text"

#: A body with a subject starts with these bytes; a text never does (no NUL).
SUBJECT_MARK = b"\x00S"


def validate_text(text: object, field: str = "text") -> str:
    """A message text: a non-empty string of at most 100,000 characters, no NUL
    and no lone surrogate (text every backend stores and every cipher seals).

    Raises:
        InvalidInputError: otherwise.
    """
    from clientcomm.errors import InvalidInputError
    from clientcomm.rules.text import check_storable

    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(field, "must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise InvalidInputError(field, f"must be at most {MAX_TEXT} characters", value=len(text))
    return check_storable(text, field)  # no NUL, no lone surrogate


def validate_subject(subject: object, field: str = "subject") -> str | None:
    """A message subject: ``None`` (or an empty/blank string: no subject), or one
    line of at most 200 characters without control characters, line or
    paragraph separators, or lone surrogates. Returns the subject or ``None``.

    Raises:
        InvalidInputError: otherwise (the subject's value is never echoed).
    """
    from clientcomm.errors import InvalidInputError

    if subject is None:
        return None
    if not isinstance(subject, str):
        raise InvalidInputError(field, "must be a string or None", value=type(subject).__name__)
    if not subject.strip():
        return None
    if len(subject) > MAX_SUBJECT:
        raise InvalidInputError(
            field, f"must be at most {MAX_SUBJECT} characters", value=len(subject)
        )
    for ch in subject:
        category = unicodedata.category(ch)
        if category in ("Cc", "Zl", "Zp"):
            raise InvalidInputError(
                field, "must be one line without control characters", value=f"U+{ord(ch):04X}"
            )
        if category == "Cs":
            raise InvalidInputError(
                field, "must not contain lone surrogates", value=f"U+{ord(ch):04X}"
            )
    return subject


def encode_body(text: str, subject: str | None = None) -> bytes:
    """The plaintext sealed for a message: its UTF-8 text, or with a subject
    ``0x00 "S" subject 0x00 text``. Neither contains NUL (see the validators),
    so the body is self-describing and the subject is as authenticated as the
    text. A message without a subject is sealed exactly as before subjects."""
    if subject is None:
        return text.encode()
    return SUBJECT_MARK + subject.encode() + b"\x00" + text.encode()


def decode_body(body: bytes) -> tuple[str | None, str]:
    """``(subject, text)`` of an opened message body (see :func:`encode_body`).

    Raises:
        UnicodeDecodeError / ValueError: not a body :func:`encode_body` wrote.
    """
    if not body.startswith(SUBJECT_MARK):
        return None, body.decode()
    subject, sep, text = body[len(SUBJECT_MARK) :].partition(b"\x00")
    if not sep:
        raise ValueError("a message body with a subject has no text")
    return subject.decode(), text.decode()


def text_context(firm_id: str, client_id: str, message_id: str) -> SealContext:
    """Where a message text is sealed: its client, the message id, field ``text``."""
    return SealContext(firm_id, client_id, MESSAGE_KIND, message_id, TEXT_FIELD)


def text_contexts(firm_id: str, pairs: Iterable[tuple[str, str]]) -> list[SealContext]:
    """:func:`text_context` for many ``(client_id, message_id)`` pairs."""
    return SealContext.many(firm_id, MESSAGE_KIND, TEXT_FIELD, pairs)


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


def sealed_plaintext(m: MessageRecord, body: bytes) -> bytes:
    """The plaintext sealed for ``m``: its bound metadata, then its body
    (:func:`encode_body`: the text, with its subject if it has one)."""
    return bound.pack(bound_meta(m), body)


def authenticated(m: MessageRecord, plain: bytes) -> tuple[MessageRecord, str | None, str]:
    """The message as its sealed value says, its subject and its text, from the opened
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
        subject, text = decode_body(content)
    except ValueError:  # UnicodeDecodeError included
        raise IntegrityError(f"message {m.id}: text does not decode", id=m.id) from None
    if meta is None:
        return m, subject, text
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
    return attrs.evolve(m, attachments=attachments), subject, text
