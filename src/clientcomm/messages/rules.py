"""Pure rules of client chats: what a message text must be, where it is sealed."""

from __future__ import annotations

from collections.abc import Iterable

from clientcomm.crypto.context import SealContext
from clientcomm.messages.records import MESSAGE_KIND

__all__ = ["MAX_TEXT", "text_context", "text_contexts", "validate_text"]

MAX_TEXT = 100_000


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


def text_context(firm_id: str, client_id: str, message_id: str) -> SealContext:
    """Where a message text is sealed: its client, the message id, field ``text``."""
    return SealContext(firm_id, client_id, MESSAGE_KIND, message_id, "text")


def text_contexts(firm_id: str, pairs: Iterable[tuple[str, str]]) -> list[SealContext]:
    """:func:`text_context` for many ``(client_id, message_id)`` pairs."""
    return SealContext.many(firm_id, MESSAGE_KIND, "text", pairs)
