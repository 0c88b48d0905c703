"""In-memory Directory for users' tests and examples."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from clientcomm.directory._validate import check_entry
from clientcomm.directory.models import CaseFile, Client, ClientGroup, Contact, Firm, Staff
from clientcomm.errors import NotFoundError

__all__ = ["MemoryDirectory"]


class MemoryDirectory:
    """A :class:`~clientcomm.directory.base.WritableDirectory` held in memory."""

    def __init__(self) -> None:
        self._firms: dict[str, Firm] = {}
        self._groups: dict[str, dict[str, ClientGroup]] = {}
        self._clients: dict[str, dict[str, Client]] = {}
        self._contacts: dict[str, dict[str, Contact]] = {}
        self._staff: dict[str, dict[str, Staff]] = {}
        self._cases: dict[str, dict[str, CaseFile]] = {}

    def _firm(self, firm_id: str) -> Firm:
        try:
            return self._firms[firm_id]
        except KeyError:
            raise NotFoundError("firm", firm_id) from None

    # -- writes --
    async def put_firm(self, firm: Firm) -> None:
        check_entry(firm)
        self._firms[firm.id] = firm
        for table in (self._groups, self._clients, self._contacts, self._staff, self._cases):
            table.setdefault(firm.id, {})

    async def put_group(self, group: ClientGroup) -> None:
        check_entry(group)
        self._firm(group.firm_id)
        self._groups[group.firm_id][group.id] = group

    async def put_client(self, client: Client) -> None:
        check_entry(client)
        self._firm(client.firm_id)
        for gid in client.group_ids:
            if gid not in self._groups[client.firm_id]:
                raise NotFoundError("group", gid)
        self._clients[client.firm_id][client.id] = client

    async def put_contact(self, contact: Contact) -> None:
        check_entry(contact)
        await self.get_client(contact.firm_id, contact.client_id)
        self._contacts[contact.firm_id][contact.id] = contact

    async def put_staff(self, staff: Staff) -> None:
        check_entry(staff)
        self._firm(staff.firm_id)
        self._staff[staff.firm_id][staff.id] = staff

    async def put_case_file(self, case_file: CaseFile) -> None:
        check_entry(case_file)
        for client_id in case_file.clients:
            await self.get_client(case_file.firm_id, client_id)
        self._cases[case_file.firm_id][case_file.id] = case_file

    # -- reads --
    async def get_firm(self, firm_id: str) -> Firm:
        return self._firm(firm_id)

    async def get_client(self, firm_id: str, client_id: str) -> Client:
        try:
            return self._clients[firm_id][client_id]
        except KeyError:
            raise NotFoundError("client", client_id) from None

    async def list_clients(
        self,
        firm_id: str,
        *,
        ids: Collection[str] | None = None,
        group_ids: Collection[str] | None = None,
        active: bool | None = None,
    ) -> Sequence[Client]:
        table = self._clients.get(firm_id, {})
        groups = set(group_ids) if group_ids is not None else None
        if ids is not None:  # by id: a lookup per id, not a scan of the firm
            found = (table.get(i) for i in set(ids) if isinstance(i, str))
            candidates: Collection[Client] = [c for c in found if c is not None]
        else:
            candidates = table.values()
        out = [
            c
            for c in candidates
            if (groups is None or not groups.isdisjoint(c.group_ids))
            and (active is None or c.active == active)
        ]
        out.sort(key=lambda c: c.id)
        return out

    async def list_groups(self, firm_id: str) -> Sequence[ClientGroup]:
        return sorted(self._groups.get(firm_id, {}).values(), key=lambda g: g.id)

    async def get_staff(self, firm_id: str, staff_id: str) -> Staff:
        try:
            return self._staff[firm_id][staff_id]
        except KeyError:
            raise NotFoundError("staff", staff_id) from None

    async def list_staff(self, firm_id: str) -> Sequence[Staff]:
        return sorted(self._staff.get(firm_id, {}).values(), key=lambda s: s.id)

    async def list_contacts(
        self, firm_id: str, client_ids: Collection[str]
    ) -> Mapping[str, Sequence[Contact]]:
        out: dict[str, list[Contact]] = {cid: [] for cid in client_ids}
        for contact in sorted(self._contacts.get(firm_id, {}).values(), key=lambda c: c.id):
            if contact.client_id in out:
                out[contact.client_id].append(contact)
        return out

    async def get_case_file(self, firm_id: str, case_id: str) -> CaseFile:
        try:
            return self._cases[firm_id][case_id]
        except KeyError:
            raise NotFoundError("case_file", case_id) from None

    async def list_case_files(self, firm_id: str, client_id: str) -> Sequence[CaseFile]:
        cases = self._cases.get(firm_id, {}).values()
        return sorted((c for c in cases if c.has_client(client_id)), key=lambda c: c.id)
