"""Who is notified: pure rules over the Directory's value objects.

These functions take facts (contacts, staff, the firm) and return a
:class:`~clientcomm.notifications.models.RecipientPlan`; they do no I/O and never
raise for missing or broken addresses: such people are reported in
``plan.skipped`` with the reason, so a caller can show "3 contacts have no
e-mail address" instead of failing a mailing.

Rules (seeds 000-003):

* clients are notified through their contacts **with portal access**
  (``registered``) - new messages, new documents, released letters;
* a client's new comment goes to the firm's **office address**, to the
  **assigned administrator** (e-mail and an in-app record) and, when
  "notify administrators" is chosen, to **all administrators**;
* a serial-letter download link goes to the requester, or, with manager
  approval switched on, to the staff holding the letter-approval permission.

Each address receives one mail per event, however many roles lead to it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

import attrs

from clientcomm.directory.models import Contact, Firm, Role, Staff, StaffPermission
from clientcomm.errors import InvalidInputError
from clientcomm.mail.addresses import check_header_text, validate_address
from clientcomm.notifications.models import (
    Recipient,
    RecipientPlan,
    RecipientRole,
    SkippedRecipient,
    SkipReason,
)
from clientcomm.rules.access import reaches

__all__ = [
    "NoticeKey",
    "admin_recipients",
    "client_contact_recipients",
    "comment_recipients",
    "letter_download_recipients",
    "notice_mac",
    "office_recipient",
    "staff_recipient",
]


# -- the notice MAC (hardening item 10.2) ----------------------------------------------

_NONE = b"\xff\xff\xff\xff"  # no length prefix is this large: ``None`` differs from ""


def notice_mac(key: bytes, label: str, parts: Iterable[str | None]) -> bytes:
    """A keyed BLAKE2b (16 bytes, one C call) over ``label`` and ``parts`` under
    a firm's notice key. Each part is length-prefixed (``None`` has its own
    marker), so no value can shift into its neighbour, whatever characters a
    stored name holds."""
    out = bytearray(b"clientcomm.")
    out += label.encode()
    for part in parts:
        if part is None:
            out += _NONE
            continue
        raw = part.encode("utf-8", "surrogatepass")
        out += len(raw).to_bytes(4, "big")
        out += raw
    return hashlib.blake2b(bytes(out), key=key, digest_size=16).digest()


@attrs.frozen
class NoticeKey:
    """A firm's notice MAC key as a reader has it.

    ``secret`` is ``None`` while the firm has no notice key yet: every record
    of the firm was then written before 0.2 and carries no MAC (a record with a
    MAC is refused). Once the key exists, every record needs a MAC that
    matches (see :class:`~clientcomm.notifications.keys.NoticeKeys`).
    """

    secret: bytes | None = attrs.field(repr=False)

    def ok(self, stored: bytes, expected: bytes | None) -> bool:
        """Whether a record's ``stored`` MAC is as it must be; ``expected`` is
        the MAC of its fields under :attr:`secret` (``None`` without a secret)."""
        if self.secret is None or expected is None:
            return not stored
        return bool(stored) and hmac.compare_digest(stored, expected)


def _recipient(
    ref: str, role: RecipientRole, name: str, email: str | None, language: str
) -> Recipient | SkippedRecipient:
    if email is None or not email.strip():
        return SkippedRecipient(ref=ref, role=role, reason=SkipReason.NO_ADDRESS)
    try:
        address = validate_address(email.strip())
    except InvalidInputError as exc:
        return SkippedRecipient(
            ref=ref, role=role, reason=SkipReason.INVALID_ADDRESS, detail=exc.message
        )
    try:
        check_header_text(name, "name", max_length=300)
    except InvalidInputError as exc:  # a line break, a control character, a lone surrogate
        return SkippedRecipient(
            ref=ref, role=role, reason=SkipReason.INVALID_NAME, detail=exc.message
        )
    try:
        return Recipient(ref=ref, role=role, name=name, email=address.address, language=language)
    except InvalidInputError as exc:  # a bad language tag
        return SkippedRecipient(
            ref=ref, role=role, reason=SkipReason.INVALID_ADDRESS, detail=exc.message
        )


def _plan(
    items: Iterable[Recipient | SkippedRecipient], inapp: Iterable[str] = ()
) -> RecipientPlan:
    recipients: list[Recipient] = []
    skipped: list[SkippedRecipient] = []
    seen: set[str] = set()
    for item in items:
        if isinstance(item, Recipient):
            key = item.email.casefold()
            if key not in seen:
                seen.add(key)
                recipients.append(item)
        else:
            skipped.append(item)
    return RecipientPlan(tuple(recipients), tuple(skipped), tuple(dict.fromkeys(inapp)))


def client_contact_recipients(
    contacts: Iterable[Contact], *, client_id: str | None = None
) -> RecipientPlan:
    """Contacts to notify about something waiting in a client's portal.

    Only contacts with portal access (``registered``) are notified, ordered by
    contact id; ``client_id`` restricts to one client's contacts. Registered
    contacts without a (valid) address are skipped and reported.
    """
    chosen = sorted(
        (c for c in contacts if c.registered and (client_id is None or c.client_id == client_id)),
        key=lambda c: (c.client_id, c.id),
    )
    return _plan(
        _recipient(f"contact:{c.id}", RecipientRole.CONTACT, c.name, c.email, c.language)
        for c in chosen
    )


def office_recipient(firm: Firm) -> RecipientPlan:
    """The firm's office address (seed 002: every new client comment).
    A firm without one is reported as skipped."""
    return _plan(
        [_recipient("office", RecipientRole.OFFICE, firm.name, firm.office_email, firm.language)]
    )


def staff_recipient(staff: Staff, *, inapp: bool = False) -> RecipientPlan:
    """One staff member (e.g. a conversation's assignee). Inactive staff get
    nothing; with ``inapp`` an active one also gets an in-app record, even
    without an e-mail address."""
    if not staff.active:
        return RecipientPlan()
    item = _recipient(
        f"staff:{staff.id}", RecipientRole.STAFF, staff.name, staff.email, staff.language
    )
    return _plan([item], [staff.id] if inapp else [])


def admin_recipients(staff: Iterable[Staff]) -> RecipientPlan:
    """All active administrators, ordered by id ("notify administrators")."""
    admins = sorted((s for s in staff if s.active and s.role == Role.ADMIN), key=lambda s: s.id)
    return _plan(
        _recipient(f"staff:{s.id}", RecipientRole.STAFF, s.name, s.email, s.language)
        for s in admins
    )


def comment_recipients(
    firm: Firm,
    staff: Iterable[Staff],
    *,
    client_id: str,
    assignee_id: str | None,
    notify_admins: bool = False,
) -> RecipientPlan:
    """Who hears about a client's new comment in a conversation (seed 002).

    The office address always; the assigned administrator (by e-mail and
    in-app) if set, active and allowed to see ``client_id``; all active
    administrators as well when ``notify_admins``. An address reached through
    several roles gets one mail. An assignee id that names no staff member is
    ignored (the conversation outlived them).
    """
    staff = list(staff)
    plan = office_recipient(firm)
    if assignee_id is not None:
        assignee = next((s for s in staff if s.id == assignee_id), None)
        if assignee is not None and reaches(assignee, client_id):
            plan = plan + staff_recipient(assignee, inapp=True)
    if notify_admins:
        plan = plan + admin_recipients(staff)
    return plan


def letter_download_recipients(
    staff: Iterable[Staff], *, requester_id: str, approval_required: bool
) -> RecipientPlan:
    """Who receives the serial-letter download link (seed 003).

    Without manager approval the requester does; with it, only active staff
    holding the ``letter_approval`` permission do (ordered by id).
    """
    staff = list(staff)
    if approval_required:
        chosen = sorted(
            (s for s in staff if s.active and StaffPermission.LETTER_APPROVAL in s.permissions),
            key=lambda s: s.id,
        )
    else:
        chosen = [s for s in staff if s.id == requester_id and s.active]
    return _plan(
        _recipient(f"staff:{s.id}", RecipientRole.STAFF, s.name, s.email, s.language)
        for s in chosen
    )
