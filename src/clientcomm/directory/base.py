"""The Directory port: the host application's client master data, read-only to clientcomm.

The host owns firms, clients, groups, contacts, staff and case files. clientcomm
only reads them through this Protocol. :class:`WritableDirectory` adds the write
methods that the bundled in-memory and SQL directories offer for demos, the CLI
and tests.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Protocol, runtime_checkable

from clientcomm.directory.models import CaseFile, Client, ClientGroup, Contact, Firm, Staff

__all__ = ["Directory", "WritableDirectory"]


@runtime_checkable
class Directory(Protocol):
    """Read access to the host's data. Every method is scoped to one firm: an id
    of another firm answers :class:`~clientcomm.errors.NotFoundError` (``get_*``)
    or is absent from the result (``list_*``)."""

    async def get_firm(self, firm_id: str) -> Firm:
        """Raises NotFoundError for an unknown firm."""
        ...

    async def get_client(self, firm_id: str, client_id: str) -> Client:
        """Raises NotFoundError for an unknown client."""
        ...

    async def list_clients(
        self,
        firm_id: str,
        *,
        ids: Collection[str] | None = None,
        group_ids: Collection[str] | None = None,
        active: bool | None = None,
    ) -> Sequence[Client]:
        """Clients of the firm, ordered by id; filters combine with AND:
        ``ids`` restricts to those ids (unknown ids are simply absent),
        ``group_ids`` to members of any of those groups, ``active`` to that state."""
        ...

    async def list_groups(self, firm_id: str) -> Sequence[ClientGroup]:
        """The firm's client groups, ordered by id."""
        ...

    async def get_staff(self, firm_id: str, staff_id: str) -> Staff:
        """Raises NotFoundError for an unknown staff member."""
        ...

    async def list_staff(self, firm_id: str) -> Sequence[Staff]:
        """All staff of the firm, ordered by id."""
        ...

    async def list_contacts(
        self, firm_id: str, client_ids: Collection[str]
    ) -> Mapping[str, Sequence[Contact]]:
        """Contacts of each given client (clients without contacts map to ``()``)."""
        ...

    async def get_case_file(self, firm_id: str, case_id: str) -> CaseFile:
        """Raises NotFoundError for an unknown case file."""
        ...

    async def list_case_files(self, firm_id: str, client_id: str) -> Sequence[CaseFile]:
        """Case files of one client, ordered by id."""
        ...


@runtime_checkable
class WritableDirectory(Directory, Protocol):
    """A Directory that clientcomm's bundled backends can also write (demo, CLI, tests).

    ``put_*`` inserts or replaces by id. Raises InvalidInputError for empty ids or
    names, NotFoundError when the firm (or the client of a contact/case file) does
    not exist.
    """

    async def put_firm(self, firm: Firm) -> None: ...

    async def put_group(self, group: ClientGroup) -> None: ...

    async def put_client(self, client: Client) -> None: ...

    async def put_contact(self, contact: Contact) -> None: ...

    async def put_staff(self, staff: Staff) -> None: ...

    async def put_case_file(self, case_file: CaseFile) -> None: ...
