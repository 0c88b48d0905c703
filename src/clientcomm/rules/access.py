"""Who may do what, asked by action: "may staff member S do action A (on client C)?".

One question for every capability: the policy answers :meth:`AccessPolicy.allows`
for an action name (``"mailing.send"``, ``"chat.read"``, ...). A capability adds
its actions to the default rules (:data:`DEFAULT_RULES`, documented as a table
in ``docs/architecture.md``); it never adds a method to the Protocol, so a host's
own policy keeps working when clientcomm grows.

The default :class:`RoleAccessPolicy` holds the seeds' rules:

* inactive staff may do nothing;
* administrators and managers may do every known action on every client of the
  firm (seed 000: "Vollzugriff auf alle Mandanten"); this bypass lives inside
  the policy, so a host that replaces the policy replaces it too;
* ``mailing.*``: clerks with unrestricted access too; restricted clerks and
  assistants not at all (seed 000);
* ``chat.*`` and ``message.*``: staff with access to the client.

An unknown action is refused (fail closed). A host adapts the rules with
``RoleAccessPolicy(overrides={...})`` or passes its own :class:`AccessPolicy`.

How a refusal answers (no existence oracle):

* a refusal that depends only on the *actor* (wrong actor type, unknown or
  inactive staff, a role that may not do the action at all) is a
  :class:`~clientcomm.errors.PermissionDeniedError`, raised before any object is
  read, so it is the same for existing and missing ids;
* a refusal that depends on the *object* (a client, message, attachment or
  mailing outside the actor's reach) is the
  :class:`~clientcomm.errors.NotFoundError` a missing id gets, with the same
  kind, id and message (:func:`require_reach`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from clientcomm.actors import StaffActor, require_actor
from clientcomm.directory.base import Directory
from clientcomm.directory.models import Role, Staff, StaffPermission
from clientcomm.errors import NotFoundError, PermissionDeniedError

__all__ = [
    "ADMIN_ONLY_ACTIONS",
    "DEFAULT_RULES",
    "AccessPolicy",
    "RoleAccessPolicy",
    "Rule",
    "acting_staff",
    "client_access",
    "full_access",
    "reaches",
    "require",
    "require_client_access",
    "require_mailing",
    "require_reach",
    "resolve_staff",
]

Rule = Callable[[Staff, "str | None"], bool]
"""A default rule: ``rule(staff, client_id)`` (``client_id`` None: the action as
such, e.g. "may use mass mailing at all")."""


@runtime_checkable
class AccessPolicy(Protocol):
    """Pure decisions about a staff member (no I/O)."""

    def allows(self, staff: Staff, action: str, client_id: str | None = None) -> bool:
        """May ``staff`` do ``action`` (on ``client_id``, if given)?"""
        ...


def full_access(staff: Staff) -> bool:
    """Administrators and managers reach every client of the firm (seed 000)."""
    return staff.active and staff.role in (Role.ADMIN, Role.MANAGER)


def client_access(staff: Staff, client_id: str | None) -> bool:
    """The staff member's own client access (``client_id`` None: any client)."""
    return staff.active and (client_id is None or staff.can_access(client_id))


def reaches(staff: Staff, client_id: str) -> bool:
    """The default rules' reach of a client's data, for pure rules without a
    policy (whom to notify): administrators and managers reach every client of
    the firm, other staff their own client access (restricted unless the host
    says otherwise)."""
    return full_access(staff) or staff.can_access(client_id)


def _mailing(staff: Staff, client_id: str | None) -> bool:
    # Seed 000: unrestricted clerks may mail "all their clients"; restricted
    # clerks and assistants may not use mailing at all.
    if not (staff.active and staff.role is Role.CLERK and staff.unrestricted):
        return False
    return client_id is None or staff.can_access(client_id)


def _full_access_only(staff: Staff, client_id: str | None) -> bool:
    # Nobody below the full-access roles (administrators and managers pass
    # every known action): seed 004's announcements are made in the firm
    # settings; ending another staff member's share (seed 001).
    return False


def _unrestricted_clerk(staff: Staff, client_id: str | None) -> bool:
    if not (staff.active and staff.role is Role.CLERK and staff.unrestricted):
        return False
    return client_id is None or staff.can_access(client_id)


def _portal(staff: Staff, client_id: str | None) -> bool:
    # Seed 001: "Sie haben die Berechtigung Mandantenportal" and "Zugriff auf die
    # Akte" (the clients of the case file); handler or assistant is the case
    # file's part (clientcomm.sharing.rules.sharer_refusal).
    if not (staff.active and StaffPermission.CLIENT_PORTAL in staff.permissions):
        return False
    return client_id is None or staff.can_access(client_id)


def _clerk(staff: Staff, client_id: str | None) -> bool:
    return staff.role is Role.CLERK and client_access(staff, client_id)


def _admin(staff: Staff, client_id: str | None) -> bool:
    return staff.active and staff.role is Role.ADMIN


DEFAULT_RULES: Mapping[str, Rule] = {
    "mailing.send": _mailing,
    "mailing.view": _mailing,
    "mailing.cancel": _mailing,
    "chat.read": client_access,
    "chat.write": client_access,
    "message.delete": client_access,
    "message.evidence": client_access,
    "attachment.open": client_access,
    # announcements (seed 004)
    "announcement.manage": _full_access_only,
    "announcement.view_reads": _unrestricted_clerk,
    # conversations (seed 002): staff with access to the client
    "conversation.read": client_access,
    "conversation.write": client_access,
    "conversation.assign": client_access,
    "conversation.notify_admins": client_access,
    # sharing (seed 001): the client portal's documents, folders, channels, uploads
    "share.create": _portal,
    "share.view": _portal,
    "share.end": _portal,
    "share.end_any": _full_access_only,
    "portal.folder.create": _portal,
    "portal.channel.create": _portal,
    "portal.message.write": _portal,
    "portal.message.read": _portal,
    # serial-letter runs (seed 003, clientcomm.letters.runs): clerks on the
    # units they reach; assistants prepare and check; deleting a released
    # serial letter is for administrators only (ADMIN_ONLY_ACTIONS)
    "letters.prepare": client_access,
    "letters.view": client_access,
    "letters.release": _clerk,
    "letters.order": _clerk,
    "letters.cancel": _clerk,
    "letters.download": _clerk,
    "letters.delete": _admin,
}
"""The seeds' rules per action, for staff below administrator and manager."""

ADMIN_ONLY_ACTIONS = frozenset({"letters.delete"})
"""Actions the full-access roles other than administrators do not get by
their role ("Serienbrief löschen": administrators only, seed 003)."""


class RoleAccessPolicy:
    """The seeds' rules (see module docs).

    Args:
        overrides: action -> rule replacing (or adding to) :data:`DEFAULT_RULES`.
        full_access_roles: roles that may do every known action on every client
            (default: administrators and managers).
    """

    def __init__(
        self,
        overrides: Mapping[str, Rule] | None = None,
        *,
        full_access_roles: Iterable[Role] = (Role.ADMIN, Role.MANAGER),
    ) -> None:
        self.rules: dict[str, Rule] = {**DEFAULT_RULES, **(overrides or {})}
        self.full_access_roles = frozenset(full_access_roles)

    def allows(self, staff: Staff, action: str, client_id: str | None = None) -> bool:
        rule = self.rules.get(action)
        if rule is None or not staff.active:
            return False  # unknown actions are refused: fail closed
        if staff.role in self.full_access_roles and (
            action not in ADMIN_ONLY_ACTIONS or staff.role is Role.ADMIN
        ):
            return True
        return rule(staff, client_id)


class _LegacyPolicy:
    """Adapts a policy written for clientcomm 0.1 (``may_access_client`` and
    ``may_send_mailing``) to :class:`AccessPolicy`; deprecated."""

    def __init__(self, legacy: Any) -> None:
        self.legacy = legacy
        self.default = RoleAccessPolicy()

    def allows(self, staff: Staff, action: str, client_id: str | None = None) -> bool:
        if action not in DEFAULT_RULES or not staff.active:
            return False  # unknown actions are refused: fail closed
        if action.startswith("mailing.") and not hasattr(self.legacy, "may_send_mailing"):
            return self.default.allows(staff, action, client_id)
        if action.startswith("mailing."):
            if not self.legacy.may_send_mailing(staff):
                return False
            return (
                client_id is None
                or full_access(staff)
                or bool(self.legacy.may_access_client(staff, client_id))
            )
        if client_id is not None and hasattr(self.legacy, "may_access_client"):
            return full_access(staff) or bool(self.legacy.may_access_client(staff, client_id))
        return self.default.allows(staff, action, client_id)


def as_policy(policy: object | None) -> AccessPolicy:
    """``policy`` as an :class:`AccessPolicy` (None: the default rules; a 0.1
    policy with ``may_*`` methods is adapted)."""
    if policy is None:
        return RoleAccessPolicy()
    if hasattr(policy, "allows"):
        return policy
    if hasattr(policy, "may_access_client"):
        return _LegacyPolicy(policy)
    raise TypeError("an access policy needs an allows(staff, action, client_id) method")


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


async def acting_staff(
    directory: Directory, policy: AccessPolicy, actor: object, action: str
) -> Staff:
    """The acting staff member, once ``actor`` is a staff actor of a known,
    active staff member who may do ``action`` at all (checked before
    anything of the capability is read).

    Raises:
        PermissionDeniedError: not a staff actor, unknown or inactive staff,
            or not allowed ``action``.
    """
    require_actor(actor, StaffActor, action=action)
    assert isinstance(actor, StaffActor)
    staff = await resolve_staff(directory, actor.firm_id, actor.staff_id, action=action)
    require(policy, staff, action)
    return staff


def require(policy: AccessPolicy, staff: Staff, action: str) -> None:
    """Raises PermissionDeniedError unless ``staff`` may do ``action`` at all."""
    if not policy.allows(staff, action):
        raise PermissionDeniedError(
            f"{staff.role.value} {staff.id!r} may not do {action}"
            + ("" if staff.unrestricted else " (restricted client access)"),
            actor=staff.id,
            action=action,
        )


def require_mailing(policy: AccessPolicy, staff: Staff) -> None:
    """Raises PermissionDeniedError if ``staff`` may not send mailings."""
    require(policy, staff, "mailing.send")


def require_reach(
    policy: AccessPolicy,
    staff: Staff,
    client_ids: Iterable[str],
    *,
    action: str,
    kind: str = "client",
    id: str | None = None,
) -> None:
    """Answer objects outside ``staff``'s reach exactly as missing ones.

    Raises:
        NotFoundError: ``staff`` may not do ``action`` on one of ``client_ids``:
            ``NotFoundError(kind, id)`` (``id`` default: that client's id), the
            very error a missing ``kind`` gets, never naming why.
    """
    for client_id in client_ids:
        if not policy.allows(staff, action, client_id):
            raise NotFoundError(kind, client_id if id is None else id)


def require_client_access(
    policy: AccessPolicy, staff: Staff, client_ids: Iterable[str], *, action: str
) -> None:
    """Raises PermissionDeniedError naming every client on which ``staff`` may
    not do ``action``. (The services answer such clients as missing instead,
    with :func:`require_reach`; this is for a host's own checks.)"""
    offending = [c for c in client_ids if not policy.allows(staff, action, c)]
    if offending:
        raise PermissionDeniedError(
            f"{len(offending)} client(s) are outside the access of {staff.id!r}",
            actor=staff.id,
            action=action,
            offending_ids=offending,
        )
