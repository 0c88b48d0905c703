"""Value objects of the notification path: kinds, recipients, notifications.

A :class:`Notification` says *that* something is waiting, *from whom* (the
firm) and *where* (a link). It has no field for message text, comment text or
attachments, so none can leak into an e-mail.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from urllib.parse import urlsplit

import attrs

from clientcomm.errors import InvalidInputError
from clientcomm.mail.addresses import check_header_text, validate_address

__all__ = [
    "Notification",
    "NotificationEvent",
    "NotificationKind",
    "Recipient",
    "RecipientPlan",
    "RecipientRole",
    "SkipReason",
    "SkippedRecipient",
    "check_link",
]

_LANGUAGE = re.compile(r"^[A-Za-z]{2,8}([-_][A-Za-z0-9]{1,8})*\Z")
_MAX_ID = 200


class NotificationKind(enum.StrEnum):
    """What happened. Client-facing: ``new_message``, ``new_documents``,
    ``letters_released``; staff-facing: ``new_comment``, ``admin_alert``,
    ``letters_download``, ``conversation_waiting``, ``share_expiring``,
    ``client_message``, ``client_upload``."""

    NEW_MESSAGE = "new_message"  # seeds 000/001: new messages in the portal
    NEW_DOCUMENTS = "new_documents"  # seed 001: documents shared without a message
    LETTERS_RELEASED = "letters_released"  # seed 003: letters released to the portal
    NEW_COMMENT = "new_comment"  # seed 002: a client commented (office, assignee)
    ADMIN_ALERT = "admin_alert"  # seed 002: "notify administrators"
    LETTERS_DOWNLOAD = "letters_download"  # seed 003: PDF/A download link for staff
    CONVERSATION_WAITING = "conversation_waiting"  # a conversation waits on the firm too long
    SHARE_EXPIRING = "share_expiring"  # portal sharing: a share of the sharer expires soon
    CLIENT_MESSAGE = "client_message"  # seed 001: a client wrote in a portal channel (handler)
    CLIENT_UPLOAD = "client_upload"  # a client uploaded documents into its portal (handler)


class RecipientRole(enum.StrEnum):
    """Who a recipient is to the firm."""

    CONTACT = "contact"  # a client's contact (portal user)
    OFFICE = "office"  # the firm's office address
    STAFF = "staff"  # a staff member


class SkipReason(enum.StrEnum):
    """Why a would-be recipient gets no e-mail."""

    NO_ADDRESS = "no_address"
    INVALID_ADDRESS = "invalid_address"
    INVALID_NAME = "invalid_name"  # a name that cannot go into a header (line break, ...)


def _check_id(value: str, field: str) -> None:
    if not isinstance(value, str) or not value or len(value) > _MAX_ID:
        raise InvalidInputError(field, f"must be a non-empty string of at most {_MAX_ID}")
    check_header_text(value, field, max_length=_MAX_ID)


def _check_language(value: str) -> None:
    if not isinstance(value, str) or not _LANGUAGE.match(value):
        raise InvalidInputError("language", "must be a language tag like 'de' or 'en-GB'")


def _normalise_email(value: object) -> str:
    return validate_address(value).address


def check_link(value: object, field: str = "link") -> str:
    """Return ``value`` if it is an absolute http(s) URL with a host and no
    whitespace, quotes, angle brackets or control characters.

    Raises:
        InvalidInputError: anything else.
    """
    if not isinstance(value, str):
        raise InvalidInputError(field, "must be a string")
    check_header_text(value, field, max_length=2000)
    if any(c in value for c in ' \t"<>\\`'):
        raise InvalidInputError(field, "must not contain spaces, quotes or angle brackets")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInputError(field, "must be an absolute http(s) URL")
    return value


@attrs.frozen
class Recipient:
    """One person (or the office mailbox) to notify by e-mail.

    Attributes:
        ref: stable reference, e.g. ``"contact:c1"``, ``"staff:s1"``, ``"office"``.
        role: contact, office or staff.
        name: display name (may be empty); hidden from ``repr``.
        email: validated, normalised address; hidden from ``repr``.
        language: preferred language tag (``"de"``, ``"en"``, ``"en-GB"``).

    Raises:
        InvalidInputError: (on construction) invalid address or control
            characters in a field.
    """

    ref: str
    role: RecipientRole = attrs.field(converter=RecipientRole)
    name: str = attrs.field(repr=False)
    email: str = attrs.field(repr=False, converter=_normalise_email)
    language: str = "de"

    def __attrs_post_init__(self) -> None:
        _check_id(self.ref, "ref")
        check_header_text(self.name, "name", max_length=300)
        _check_language(self.language)


@attrs.frozen
class SkippedRecipient:
    """Someone the rules would notify but cannot (no or invalid address)."""

    ref: str
    role: RecipientRole = attrs.field(converter=RecipientRole)
    reason: SkipReason = attrs.field(converter=SkipReason)
    detail: str = ""


@attrs.frozen
class RecipientPlan:
    """The result of the "who is notified" rules.

    Attributes:
        recipients: e-mail recipients, deduplicated by address.
        skipped: would-be recipients without a usable address (reported, not raised).
        inapp_staff_ids: staff who also get an in-app notification record.
    """

    recipients: tuple[Recipient, ...] = ()
    skipped: tuple[SkippedRecipient, ...] = ()
    inapp_staff_ids: tuple[str, ...] = ()

    def __add__(self, other: RecipientPlan) -> RecipientPlan:
        """Merge two plans, keeping the first recipient per address and the first
        skip per ref."""
        seen = {r.email.casefold() for r in self.recipients}
        recipients = list(self.recipients)
        for r in other.recipients:
            if r.email.casefold() not in seen:
                seen.add(r.email.casefold())
                recipients.append(r)
        got = {r.ref for r in recipients}
        skipped = list(self.skipped)
        skipped_refs = {s.ref for s in skipped}
        for s in other.skipped:
            if s.ref not in skipped_refs and s.ref not in got:
                skipped_refs.add(s.ref)
                skipped.append(s)
        inapp = list(self.inapp_staff_ids)
        inapp += [i for i in other.inapp_staff_ids if i not in inapp]
        return RecipientPlan(tuple(recipients), tuple(skipped), tuple(inapp))


@attrs.frozen
class NotificationEvent:
    """What happened, without any content.

    Attributes:
        kind: what happened.
        firm_id, firm_name: the firm the notification comes from.
        event_id: the object notifications are grouped under (a mailing, a
            conversation, a letter batch); the jobs' ``parent``.
        cause_id: the specific cause (a comment, a message copy), so two
            comments in one conversation give two notifications; defaults to
            ``event_id``.
        client_id, client_name: the client concerned (staff notifications name
            the client; client notifications only use the id for the link).
        count: how many items are waiting (e.g. documents), if known.
        expires_at: until when they wait (a portal share's expiry), if they expire.

    Raises:
        InvalidInputError: (on construction) empty ids, control characters, a
            negative count.
    """

    kind: NotificationKind = attrs.field(converter=NotificationKind)
    firm_id: str
    firm_name: str
    event_id: str
    cause_id: str | None = None
    client_id: str | None = None
    client_name: str | None = None
    count: int | None = None
    expires_at: datetime | None = None

    def __attrs_post_init__(self) -> None:
        _check_id(self.firm_id, "firm_id")
        if self.expires_at is not None and (
            not isinstance(self.expires_at, datetime) or self.expires_at.tzinfo is None
        ):
            raise InvalidInputError("expires_at", "must be a timezone-aware datetime")
        _check_id(self.event_id, "event_id")
        if self.cause_id is not None:
            _check_id(self.cause_id, "cause_id")
        if self.client_id is not None:
            _check_id(self.client_id, "client_id")
        check_header_text(self.firm_name, "firm_name", max_length=300)
        if not self.firm_name.strip():
            raise InvalidInputError("firm_name", "must not be empty")
        if self.client_name is not None:
            check_header_text(self.client_name, "client_name", max_length=300)
        if self.count is not None and (
            isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 0
        ):
            raise InvalidInputError("count", "must be a non-negative integer")


@attrs.frozen
class Notification:
    """One e-mail notification to one recipient (becomes one outbox job).

    Raises:
        InvalidInputError: (on construction) an invalid link.
    """

    event: NotificationEvent
    recipient: Recipient
    link: str = attrs.field(repr=False)

    def __attrs_post_init__(self) -> None:
        check_link(self.link)

    @property
    def kind(self) -> NotificationKind:
        return self.event.kind

    @property
    def firm_id(self) -> str:
        return self.event.firm_id
