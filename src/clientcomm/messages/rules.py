"""Pure rules of client chats: what a message text and subject must be, how
they are sealed together (the body) and where."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from clientcomm.crypto.context import SealContext
from clientcomm.messages.records import MESSAGE_KIND

__all__ = [
    "MAX_SUBJECT",
    "MAX_TEXT",
    "decode_body",
    "encode_body",
    "text_context",
    "text_contexts",
    "validate_subject",
    "validate_text",
]

MAX_TEXT = 100_000
MAX_SUBJECT = 200

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
    return SealContext(firm_id, client_id, MESSAGE_KIND, message_id, "text")


def text_contexts(firm_id: str, pairs: Iterable[tuple[str, str]]) -> list[SealContext]:
    """:func:`text_context` for many ``(client_id, message_id)`` pairs."""
    return SealContext.many(firm_id, MESSAGE_KIND, "text", pairs)
