"""Who may do what: the seeds' role rules as pure, pluggable functions.

The default :class:`RoleAccessPolicy` implements seed 000 (mass mailing):

* administrators and managers may send mailings to all clients of the firm;
* clerks with unrestricted access may send to all clients they have access to;
* clerks with restricted access, assistants and inactive staff may not use
  mailing at all.

A host with other rules passes its own :class:`AccessPolicy`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

from clientcomm.directory.base import Directory
from clientcomm.directory.models import Role, Staff
from clientcomm.errors import NotFoundError, PermissionDeniedError

__all__ = [
    "AccessPolicy",
    "RoleAccessPolicy",
    "require_client_access",
    "require_mailing",
    "resolve_staff",
]


@runtime_checkable
class AccessPolicy(Protocol):
    """Pure decisions about a staff member (no I/O)."""

    def may_access_client(self, staff: Staff, client_id: str) -> bool:
        """May ``staff`` see and write to this client's chat?"""
        ...

    def may_send_mailing(self, staff: Staff) -> bool:
        """May ``staff`` use mass mailing at all?"""
        ...


class RoleAccessPolicy:
    """The seeds' rules (see module docs)."""

    def may_access_client(self, staff: Staff, client_id: str) -> bool:
        return staff.can_access(client_id)

    def may_send_mailing(self, staff: Staff) -> bool:
        if not staff.active:
            return False
        if staff.role in (Role.ADMIN, Role.MANAGER):
            return True
        return staff.role is Role.CLERK and staff.unrestricted


async def resolve_staff(directory: Directory, firm_id: str, staff_id: str, *, action: str) -> Staff:
    """The acting staff member, read from the Directory.

    Raises:
        PermissionDeniedError: unknown or inactive staff member (an unknown
            actor is a permission problem, not a missing object).
    """
    try:
        staff = await directory.get_staff(firm_id, staff_id)
    except NotFoundError:
        raise PermissionDeniedError("unknown staff member", actor=staff_id, action=action) from None
    if not staff.active:
        raise PermissionDeniedError("inactive staff member", actor=staff_id, action=action)
    return staff


def require_mailing(policy: AccessPolicy, staff: Staff) -> None:
    """Raises PermissionDeniedError if ``staff`` may not send mailings."""
    if not policy.may_send_mailing(staff):
        raise PermissionDeniedError(
            f"{staff.role.value} {staff.id!r} may not send mailings"
            + ("" if staff.unrestricted else " (restricted client access)"),
            actor=staff.id,
            action="mailing.send",
        )


def require_client_access(
    policy: AccessPolicy, staff: Staff, client_ids: Iterable[str], *, action: str
) -> None:
    """Raises PermissionDeniedError naming every client outside ``staff``'s access.

    Admins and managers reach every client of the firm (seed 000), whatever
    their individual client list says.
    """
    full = staff.active and staff.role in (Role.ADMIN, Role.MANAGER)
    offending = [] if full else [c for c in client_ids if not policy.may_access_client(staff, c)]
    if offending:
        raise PermissionDeniedError(
            f"{len(offending)} client(s) are outside the access of {staff.id!r}",
            actor=staff.id,
            action=action,
            offending_ids=offending,
        )
