"""Value objects the host's Directory hands to clientcomm (frozen attrs classes)."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from clientcomm.errors import InvalidInputError

__all__ = [
    "CaseFile",
    "Client",
    "ClientGroup",
    "Contact",
    "ContactPreference",
    "Firm",
    "PostalAddress",
    "Role",
    "Staff",
    "StaffPermission",
]


class Role(enum.StrEnum):
    """Staff roles of the seeds (Administrator, Manager, Sachbearbeiter, Assistenz)."""

    ADMIN = "admin"
    MANAGER = "manager"
    CLERK = "clerk"
    ASSISTANT = "assistant"


class StaffPermission(enum.StrEnum):
    """Permissions a host grants to staff, beyond the role."""

    CLIENT_PORTAL = "client_portal"  # "Berechtigung Mandantenportal" (seed 001)
    LETTER_APPROVAL = "letter_approval"  # "Manager Freigabe" for PDF/A downloads (seed 003)


class ContactPreference(enum.StrEnum):
    """How a registered contact wants to receive letters (seed 003)."""

    ONLINE = "online"
    LETTER = "letter"


def _freeze(value: Iterable[str] | str) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset((value,))
    return frozenset(value)


def _permissions(value: Iterable[object]) -> frozenset[StaffPermission]:
    return frozenset(StaffPermission(str(p)) for p in value)


def _bool_flag(instance: object, attribute: attrs.Attribute[bool], value: object) -> None:
    if not isinstance(value, bool):
        raise InvalidInputError(attribute.name, "must be True or False", value=repr(value))


def _no_list_if_unrestricted(
    instance: Staff, attribute: attrs.Attribute[frozenset[str]], value: frozenset[str]
) -> None:
    # Fail closed: a client list says "restricted"; unrestricted=True says the
    # opposite. Neither is guessed; the host must say which it means.
    if instance.unrestricted and value:
        raise InvalidInputError(
            "client_ids",
            "an unrestricted staff member has no client list "
            "(pass unrestricted=False with client_ids, or unrestricted=True alone)",
            value=len(value),
        )


def _time_zone(instance: object, attribute: attrs.Attribute[str], value: object) -> None:
    try:
        ZoneInfo(value)  # type: ignore[arg-type]
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise InvalidInputError(
            attribute.name, "is not a known IANA time zone", value=repr(value)
        ) from None


@attrs.frozen
class Firm:
    """A firm (Kanzlei) using the portal. ``office_email`` receives comment
    notifications (seed 002); ``language`` is the default for its templates.

    Firm settings the capabilities read (the host's Directory is their source
    of truth):

    - ``time_zone``: the IANA zone the firm's calendar days are meant in
      (announcements' "remove after" day, seed 004); default Europe/Berlin.
    - ``letter_approval``: "Manager Freigabe" (seed 003): when True, PDF/A
      download links of serial-letter runs go only to staff holding
      :attr:`StaffPermission.LETTER_APPROVAL`; default off.

    Raises:
        InvalidInputError: an unknown time zone (``field="time_zone"``), or
            ``letter_approval`` not a bool.
    """

    id: str
    name: str
    office_email: str | None = None
    language: str = "de"
    time_zone: str = attrs.field(default="Europe/Berlin", validator=_time_zone)
    letter_approval: bool = attrs.field(default=False, validator=_bool_flag)


@attrs.frozen
class ClientGroup:
    """A client group (Mandatsgruppe) configured in the firm settings."""

    id: str
    firm_id: str
    name: str


@attrs.frozen
class Client:
    """A client (Mandant/Mandat). Only active clients receive mailings."""

    id: str
    firm_id: str
    name: str
    active: bool = True
    group_ids: frozenset[str] = attrs.field(default=frozenset(), converter=_freeze)


@attrs.frozen
class PostalAddress:
    """A postal address; ``country`` is an ISO 3166-1 alpha-2 code."""

    name: str
    street: str
    postal_code: str
    city: str
    country: str = "DE"
    extra: str | None = None


@attrs.frozen
class Contact:
    """A person of a client who may use the portal or receive letters."""

    id: str
    firm_id: str
    client_id: str
    name: str
    email: str | None = None
    registered: bool = False  # registered in the client portal
    preference: ContactPreference = ContactPreference.ONLINE
    address: PostalAddress | None = None
    language: str = "de"


@attrs.frozen
class Staff:
    """A staff member of the firm.

    Access is restricted unless the host says otherwise: by default a staff
    member reaches only the clients in ``client_ids`` (none, if it is empty).
    ``unrestricted=True`` gives access to every client of the firm; it cannot be
    combined with a client list (contradictory; refused). Administrators and
    managers reach every client through their role in the default
    :class:`~clientcomm.rules.access.RoleAccessPolicy`, whatever these flags say.

    Raises:
        InvalidInputError: ``unrestricted=True`` together with ``client_ids``
            (``field="client_ids"``), or ``unrestricted`` not a bool.
    """

    id: str
    firm_id: str
    name: str
    role: Role
    email: str | None = None
    unrestricted: bool = attrs.field(default=False, validator=_bool_flag)
    client_ids: frozenset[str] = attrs.field(
        default=frozenset(), converter=_freeze, validator=_no_list_if_unrestricted
    )
    permissions: frozenset[StaffPermission] = attrs.field(
        default=frozenset(), converter=_permissions
    )
    active: bool = True
    language: str = "de"

    def can_access(self, client_id: str) -> bool:
        """True if this staff member may see ``client_id`` (pure)."""
        return self.active and (self.unrestricted or client_id in self.client_ids)


@attrs.frozen
class CaseFile:
    """A case file (Akte) of a client, with its handler and assistants (seed 001).

    ``client_id`` is the file's primary client; ``client_ids`` names further
    clients of the same file (seed 001: "sofern es mehrere Mandanten mit
    Zugriff auf das Mandanten-Portal gibt"); :attr:`clients` is all of them.
    """

    id: str
    firm_id: str
    client_id: str
    title: str
    handler_id: str | None = None
    assistant_ids: frozenset[str] = attrs.field(default=frozenset(), converter=_freeze)
    client_ids: frozenset[str] = attrs.field(default=frozenset(), converter=_freeze)

    @property
    def clients(self) -> tuple[str, ...]:
        """Every client of the file: the primary one first, then the others by id."""
        return (self.client_id, *sorted(self.client_ids - {self.client_id}))

    def has_client(self, client_id: str) -> bool:
        return client_id == self.client_id or client_id in self.client_ids
