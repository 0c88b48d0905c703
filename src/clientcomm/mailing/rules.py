"""Pure rules of mass mailing: copy ids, how recipients are paged, how a page's
cursor moves, and what the ledger says of each recipient."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from datetime import datetime

import attrs

from clientcomm.mailing.models import RecipientState
from clientcomm.mailing.records import PageSegment, PageState, RecipientPage
from clientcomm.messages.rules import decode_body, encode_body

__all__ = [
    "advance_page",
    "cancel_page",
    "copy_message_id",
    "decode_staged",
    "encode_staged",
    "fail_page",
    "new_pages",
    "recipient_states",
]

#: A staged mailing whose text and subject are templates starts with these bytes.
TEMPLATE_MARK = b"\x00T"


def encode_staged(text: str, subject: str | None = None, *, template: bool = False) -> bytes:
    """The plaintext of a mailing's staged content (sealed for its staging key).

    Not a template: exactly the body every copy gets
    (:func:`~clientcomm.messages.rules.encode_body`; a mailing without subject
    stages its UTF-8 text as before). A template: ``0x00 "T" subject 0x00 text``
    with the sources (an empty subject: none), parsed again when a worker loads
    the mailing. Neither part contains NUL, so the mark is inside the sealed,
    authenticated value, never beside it.
    """
    if not template:
        return encode_body(text, subject)
    return TEMPLATE_MARK + (subject or "").encode() + b"\x00" + text.encode()


def decode_staged(body: bytes) -> tuple[str | None, str, bool]:
    """``(subject, text, is_template)`` of opened staged content.

    Raises:
        UnicodeDecodeError / ValueError: not content :func:`encode_staged` wrote.
    """
    if not body.startswith(TEMPLATE_MARK):
        subject, text = decode_body(body)
        return subject, text, False
    head, sep, rest = body[len(TEMPLATE_MARK) :].partition(b"\x00")
    if not sep:
        raise ValueError("staged template content has no text")
    return (head.decode() or None), rest.decode(), True


def copy_message_id(mailing_id: str, client_id: str, secret: bytes = b"") -> str:
    """The id of ``client_id``'s copy of a mailing.

    Derived from the mailing and the client, so the store's unique id is the
    last guard of exactly-once delivery (a second copy cannot be inserted) and
    the ledger needs not store it. It is opaque: 32 hex digits like any message
    id, revealing neither the mailing nor the other recipients.

    ``secret`` is the mailing's random copy secret (``MailingRecord.copy_secret``):
    the id is a keyed BLAKE2b MAC under it (one C call per copy), so knowing a
    mailing id and a client id is not enough to test whether that client
    received the mailing. Mailings
    submitted before 0.2 have no secret and keep their SHA-256 ids.
    """
    message = f"clientcomm.mailing-copy\x00{mailing_id}\x00{client_id}".encode()
    if secret:
        return hashlib.blake2b(message, key=secret, digest_size=16).hexdigest()
    return hashlib.sha256(message).hexdigest()[:32]


def new_pages(
    mailing_id: str,
    client_ids: Sequence[str],
    *,
    size: int,
    due_at: datetime | None,
    now: datetime,
    first_index: int = 0,
) -> Iterator[RecipientPage]:
    """The frozen recipient list as pages of up to ``size`` clients."""
    for start in range(0, len(client_ids), size):
        yield RecipientPage(
            id=RecipientPage.id_for(mailing_id, first_index + start // size),
            mailing_id=mailing_id,
            status=PageState.QUEUED,
            clients=tuple(client_ids[start : start + size]),
            created_at=now,
            due_at=due_at,
        )


def cancel_page(page: RecipientPage) -> RecipientPage:
    """The page with every recipient not yet reached cancelled (lease released)."""
    return attrs.evolve(
        page,
        status=PageState.CANCELLED,
        cancelled=page.cancelled + page.remaining,
        meta=attrs.evolve(page.meta, lease_owner=None, lease_until=None),
    )


def advance_page(
    page: RecipientPage,
    *,
    taken: int,
    failed: dict[int, str],
    at: datetime,
    batch: str | None,
) -> RecipientPage:
    """The page after delivering its next ``taken`` recipients, of which the
    positions in ``failed`` failed (with their reasons). The lease is released
    (another worker may go on with the page); the update is still checked
    against the claimed version, which is what makes the step exactly-once."""
    new_pos = page.pos + taken
    reasons = {**page.reasons, **{str(i): r for i, r in failed.items()}}
    return attrs.evolve(
        page,
        status=PageState.DONE if new_pos >= len(page.clients) else PageState.QUEUED,
        pos=new_pos,
        delivered=page.delivered + taken - len(failed),
        failed=page.failed + len(failed),
        reasons=reasons,
        segments=(*page.segments, PageSegment(new_pos, at, batch)),
        meta=attrs.evolve(page.meta, lease_owner=None, lease_until=None),
    )


def fail_page(page: RecipientPage, reason: str, *, at: datetime) -> RecipientPage:
    """The page with every recipient not yet reached failed for ``reason`` (its
    mailing failed), lease released; the ledger shows each as failed with it."""
    remaining = page.remaining
    return advance_page(
        page,
        taken=remaining,
        failed={page.pos + i: reason for i in range(remaining)},
        at=at,
        batch=None,
    )


@attrs.frozen
class RecipientFact:
    """What a page says of one recipient (for the ledger)."""

    client_id: str
    state: RecipientState
    reason: str | None
    delivered_at: datetime | None
    batch: str | None


def recipient_states(page: RecipientPage) -> Iterator[RecipientFact]:
    """Each recipient of ``page`` in order, with its state, reason, delivery
    time and notification batch."""
    seg = 0
    segments = page.segments
    cancelled = page.status is PageState.CANCELLED
    for i, cid in enumerate(page.clients):
        while seg < len(segments) and i >= segments[seg].end:
            seg += 1
        reached = i < page.pos
        reason = page.reasons.get(str(i)) if reached else None
        segment = segments[seg] if reached and seg < len(segments) else None
        if reason is not None:
            yield RecipientFact(cid, RecipientState.FAILED, reason, None, None)
        elif reached:
            yield RecipientFact(
                cid,
                RecipientState.DELIVERED,
                None,
                segment.at if segment else None,
                segment.batch if segment else None,
            )
        elif cancelled:
            yield RecipientFact(cid, RecipientState.CANCELLED, "cancelled", None, None)
        else:
            yield RecipientFact(cid, RecipientState.QUEUED, None, None, None)
