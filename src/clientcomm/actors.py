"""Who is calling: every service call names its actor and is authorised first."""

from __future__ import annotations

import attrs

__all__ = ["Actor", "ClientActor", "StaffActor", "require_actor"]


@attrs.frozen
class StaffActor:
    """A staff member of ``firm_id`` (resolved through the Directory)."""

    firm_id: str
    staff_id: str


@attrs.frozen
class ClientActor:
    """A client's portal user: the client, and optionally which contact."""

    firm_id: str
    client_id: str
    contact_id: str | None = None


Actor = StaffActor | ClientActor


def require_actor(actor: object, *kinds: type[StaffActor] | type[ClientActor], action: str) -> None:
    """Refuse an actor of the wrong type (a client's actor passed to a staff
    method, or anything that is no actor) as a permission problem, before
    anything is read.

    Raises:
        PermissionDeniedError: ``actor`` is none of ``kinds``.
    """
    if not isinstance(actor, kinds):
        from clientcomm.errors import PermissionDeniedError

        raise PermissionDeniedError(
            "this call is not available to this kind of actor",
            actor=type(actor).__name__,
            action=action,
        )
