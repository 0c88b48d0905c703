"""Pure rules of mass mailing: copy ids, how recipients are paged, how a page's
cursor moves, and what the ledger says of each recipient."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import attrs

from clientcomm.errors import IntegrityError
from clientcomm.mailing.models import RecipientState
from clientcomm.mailing.records import MailingRecord, PageSegment, PageState, RecipientPage
from clientcomm.messages.rules import decode_body, encode_body
from clientcomm.records import bound

__all__ = [
    "advance_page",
    "authenticated_mailing",
    "cancel_page",
    "copy_message_id",
    "copy_message_ids",
    "decode_staged",
    "encode_staged",
    "fail_page",
    "mailing_meta",
    "new_pages",
    "page_mac",
    "page_mac_ok",
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


def copy_message_ids(
    mailing_id: str, client_ids: Sequence[str], secret: bytes = b""
) -> list[tuple[str, str]]:
    """``(client_id, copy_message_id(mailing_id, client_id, secret))`` for each
    client, in order: the same ids, with the MAC's common prefix (domain and
    mailing id) hashed once per batch and copied for each client."""
    if not secret:
        return [(c, copy_message_id(mailing_id, c)) for c in client_ids]
    base = hashlib.blake2b(
        f"clientcomm.mailing-copy\x00{mailing_id}\x00".encode(), key=secret, digest_size=16
    )
    out: list[tuple[str, str]] = []
    append = out.append
    fork = base.copy
    for client_id in client_ids:
        mac = fork()
        mac.update(client_id.encode())
        append((client_id, mac.hexdigest()))
    return out


def page_mac(
    key: bytes, page_id: str, mailing_id: str, clients: Sequence[str], due_at: datetime | None
) -> bytes:
    """The MAC binding a recipient page's frozen part (its id, mailing, client
    ids and send time) under the mailing's page key (held only in the
    mailing's sealed value): a keyed BLAKE2b, one C call per page.

    A client id added to, removed from, reordered in or moved between pages,
    a page moved to another mailing or its send time changed no longer match.
    """
    message = "\x00".join(
        ("clientcomm.mailing-page", page_id, mailing_id, bound.stamp(due_at) or "", *clients)
    )
    return hashlib.blake2b(
        message.encode("utf-8", "surrogatepass"), key=key, digest_size=16
    ).digest()


def page_mac_ok(key: bytes | None, page: RecipientPage) -> bool:
    """Whether ``page`` is as its mailing froze it. ``key`` is ``None`` only for
    mailings submitted before 0.2 (no page key; their pages are read as before)."""
    if key is None:
        return True
    expected = page_mac(key, page.id, page.mailing_id, page.clients, page.due_at)
    return hmac.compare_digest(expected, page.mac)


def new_pages(
    mailing_id: str,
    client_ids: Sequence[str],
    *,
    size: int,
    due_at: datetime | None,
    now: datetime,
    first_index: int = 0,
    key: bytes | None = None,
) -> Iterator[RecipientPage]:
    """The frozen recipient list as pages of up to ``size`` clients, each with
    its :func:`page_mac` under ``key`` (the mailing's page key)."""
    for start in range(0, len(client_ids), size):
        page_id = RecipientPage.id_for(mailing_id, first_index + start // size)
        clients = tuple(client_ids[start : start + size])
        yield RecipientPage(
            id=page_id,
            mailing_id=mailing_id,
            status=PageState.QUEUED,
            clients=clients,
            created_at=now,
            due_at=due_at,
            mac=page_mac(key, page_id, mailing_id, clients, due_at) if key else b"",
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


def mailing_meta(m: MailingRecord, page_key: bytes) -> dict[str, Any]:
    """What a mailing's sealed value authenticates besides its text: what its
    copies carry and how they are made (sender, attachments' descriptors, mode,
    notices, send time, copy secret) and the page key its recipient pages are
    MACed with (:func:`page_mac`, held nowhere else)."""
    return {
        "sender": m.sender,
        "notify": m.notify,
        "mode": m.mode.value,
        "scheduled_at": bound.stamp(m.scheduled_at),
        "copy_secret": base64.b64encode(m.copy_secret).decode("ascii"),
        "page_key": base64.b64encode(page_key).decode("ascii"),
        "attachments": [a.bound() for a in m.attachments],
    }


def authenticated_mailing(
    m: MailingRecord, plain: bytes
) -> tuple[MailingRecord, bytes, bytes | None]:
    """``(mailing, text, page key)`` as the mailing's opened sealed value says:
    the clear values the fan-out trusts are checked against it, and the staged
    attachments' descriptors come from it. A mailing submitted before 0.2 (no
    bound metadata) is returned as stored, with no page key.

    Raises:
        IntegrityError: a stored value differs from the sealed one (edited).
    """
    meta, text = bound.unpack(plain, what=f"mailing {m.id}")
    if meta is None:
        return m, text, None
    what = f"mailing {m.id}"
    check = bound.check_equal
    check(what, "sender", m.sender, meta.get("sender"), id=m.id)
    check(what, "notify", m.notify, meta.get("notify"), id=m.id)
    check(what, "mode", m.mode.value, meta.get("mode"), id=m.id)
    check(what, "scheduled_at", bound.stamp(m.scheduled_at), meta.get("scheduled_at"), id=m.id)
    try:
        secret = base64.b64decode(meta["copy_secret"], validate=True)
        page_key = base64.b64decode(meta["page_key"], validate=True)
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise IntegrityError(f"{what}: sealed keys are malformed", id=m.id) from None
    check(what, "copy_secret", m.copy_secret, secret, id=m.id)
    sealed = meta.get("attachments")
    if not isinstance(sealed, list) or len(sealed) != len(m.attachments):
        raise IntegrityError(f"{what}: attachments do not match the sealed ones", id=m.id)
    attachments = tuple(a.authenticated(b) for a, b in zip(m.attachments, sealed, strict=True))
    return attrs.evolve(m, attachments=attachments), text, page_key
