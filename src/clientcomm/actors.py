"""Who is calling: every service call names its actor and is authorised first."""

from __future__ import annotations

import attrs

__all__ = ["Actor", "ClientActor", "StaffActor"]


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
