"""Metadata bound into a sealed value (hardening item 10.2).

A record's columns and ``data`` are not authenticated: anyone who can edit the
database can change them. What decides who receives something and what the
client and staff are shown is therefore *also* put inside the record's sealed
value, ahead of the content, as a small JSON header; the envelope's AEAD then
authenticates it (and hides it: an attachment's file name is no longer stored
in plaintext). Readers take these values from the opened plaintext and check
the clear copies kept for querying against them; a difference is an
:class:`~clientcomm.errors.IntegrityError` for that record alone.

Plaintext layout::

    0x00 "cc.bound.1" 0x00  JSON object (ASCII, no NUL)  0x00  content

The leading NUL tells it apart from the plaintext of records written before
0.2 (a message or mailing text, which never contains NUL): such a plaintext is
read as the content alone, with the record's clear metadata as before.

:func:`prefix` builds everything before the content once, so a mailing's
fan-out pays one concatenation per copy (and one small JSON encoding per copy
only when the copies' metadata differ, i.e. with attachments).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from clientcomm.errors import IntegrityError

__all__ = ["MAGIC", "check_equal", "pack", "prefix", "stamp", "unpack"]

MAGIC = b"\x00cc.bound.1\x00"
_SEP = b"\x00"


def prefix(meta: Mapping[str, Any]) -> bytes:
    """Everything of a bound plaintext before its content."""
    return MAGIC + json.dumps(meta, separators=(",", ":"), ensure_ascii=True).encode() + _SEP


def pack(meta: Mapping[str, Any], content: bytes) -> bytes:
    """The plaintext binding ``meta`` to ``content``."""
    return prefix(meta) + content


def unpack(plain: bytes, *, what: str = "sealed value") -> tuple[dict[str, Any] | None, bytes]:
    """``(meta, content)`` of an opened plaintext; ``meta`` is ``None`` for a
    plaintext of the layout before 0.2 (no header).

    Raises:
        IntegrityError: a header that does not parse (it was authenticated, so
            this is a writer's bug or a foreign value, never shown).
    """
    if not plain.startswith(MAGIC):
        return None, plain
    end = plain.find(_SEP, len(MAGIC))
    try:
        if end < 0:
            raise ValueError("no end of header")
        meta = json.loads(plain[len(MAGIC) : end])
        if not isinstance(meta, dict):
            raise ValueError("header is not an object")
    except ValueError:
        raise IntegrityError(f"{what}: bound metadata does not parse") from None
    return meta, plain[end + 1 :]


def stamp(at: datetime | None) -> str | None:
    """A time as bound (ISO 8601, microseconds)."""
    return None if at is None else at.astimezone(UTC).isoformat(timespec="microseconds")


def check_equal(what: str, field: str, stored: Any, bound: Any, **context: Any) -> None:
    """Raise :class:`IntegrityError` unless the stored (clear) value equals the
    bound (authenticated) one."""
    if stored != bound:
        raise IntegrityError(
            f"{what}: stored {field} does not match its sealed value (edited?)",
            field=field,
            **context,
        )
