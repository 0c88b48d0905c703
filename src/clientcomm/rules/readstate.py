"""Read state of client chats, as a pluggable pure policy.

Representation (no row per staff member per client): every message carries one
status saying for which side it is unread when new — ``"to_client"`` or
``"to_staff"`` — and each reader has at most one cursor per chat (the ``seq`` of
the newest message it has seen), written only when it opens the chat.

* A staff-written message (a single message or a mailing copy) is read for every
  staff member with access to the client the moment it is written, so it raises
  no internal notification; the client sees it unread until it opens it.
* A client's reply is unread for staff (every staff member with access) until
  they open the chat.

Unread counts are then one indexed ``count`` per chat and reader. For 10,000
clients x 50 staff this costs 10,000 message rows and zero read-state rows at
send time (see ``bench/mailing.py``).
"""

from __future__ import annotations

import enum
from typing import Protocol, runtime_checkable

__all__ = ["Author", "DefaultReadPolicy", "ReadPolicy", "UnreadFor"]


class Author(enum.StrEnum):
    STAFF = "staff"
    CLIENT = "client"


class UnreadFor(enum.StrEnum):
    CLIENT = "to_client"
    STAFF = "to_staff"


@runtime_checkable
class ReadPolicy(Protocol):
    """Decides for which side a new message starts unread (pure)."""

    def unread_for(self, author: Author, *, via_mailing: bool) -> UnreadFor: ...


class DefaultReadPolicy:
    """Seed 000: staff messages and mailing copies start unread for the client
    only; client messages start unread for staff."""

    def unread_for(self, author: Author, *, via_mailing: bool) -> UnreadFor:
        return UnreadFor.CLIENT if author is Author.STAFF else UnreadFor.STAFF
