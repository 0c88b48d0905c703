"""SQL-backed Directory (tables ``dir_*``) for the embedded default, the demo and the CLI.

It lives in the same database as the Store and runs on either SQL backend
(:class:`~clientcomm.storage.sqlite.SQLiteStore` or
:class:`~clientcomm.storage.postgres.PostgresStore`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from clientcomm.directory._validate import check_entry
from clientcomm.directory.base import WritableDirectory
from clientcomm.directory.models import (
    CaseFile,
    Client,
    ClientGroup,
    Contact,
    ContactPreference,
    Firm,
    PostalAddress,
    Role,
    Staff,
    StaffPermission,
)
from clientcomm.errors import ConfigurationError, NotFoundError
from clientcomm.storage.sql import SqlBackend

__all__ = ["SqlDirectory", "directory_for"]

_CHUNK = 500


def _upsert(table: str, cols: Sequence[str], key: Sequence[str]) -> str:
    updates = ", ".join(f"{c}=excluded.{c}" for c in cols if c not in key)
    return (
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


_FIRM_COLS = ("id", "name", "office_email", "language", "time_zone", "letter_approval")
_GROUP_COLS = ("firm_id", "id", "name")
_CLIENT_COLS = ("firm_id", "id", "name", "active")
_CONTACT_COLS = (
    "firm_id",
    "id",
    "client_id",
    "name",
    "email",
    "registered",
    "preference",
    "address",
    "language",
)
_STAFF_COLS = (
    "firm_id",
    "id",
    "name",
    "role",
    "email",
    "unrestricted",
    "client_ids",
    "permissions",
    "active",
    "language",
)
_CASE_COLS = ("firm_id", "id", "client_id", "title", "handler_id", "assistant_ids", "client_ids")
_FK = ("firm_id", "id")


def _address_json(a: PostalAddress | None) -> str | None:
    if a is None:
        return None
    return json.dumps(
        {
            "name": a.name,
            "street": a.street,
            "postal_code": a.postal_code,
            "city": a.city,
            "country": a.country,
            "extra": a.extra,
        },
        ensure_ascii=False,
    )


def _address(text: str | None) -> PostalAddress | None:
    if text is None:
        return None
    return PostalAddress(**json.loads(text))


def _contact(row: tuple[Any, ...]) -> Contact:
    return Contact(
        firm_id=row[0],
        id=row[1],
        client_id=row[2],
        name=row[3],
        email=row[4],
        registered=bool(row[5]),
        preference=ContactPreference(row[6]),
        address=_address(row[7]),
        language=row[8],
    )


def _staff(row: tuple[Any, ...]) -> Staff:
    return Staff(
        firm_id=row[0],
        id=row[1],
        name=row[2],
        role=Role(row[3]),
        email=row[4],
        unrestricted=bool(row[5]),
        client_ids=frozenset(json.loads(row[6])),
        permissions=frozenset(StaffPermission(p) for p in json.loads(row[7])),
        active=bool(row[8]),
        language=row[9],
    )


def _case(row: tuple[Any, ...]) -> CaseFile:
    return CaseFile(
        firm_id=row[0],
        id=row[1],
        client_id=row[2],
        title=row[3],
        handler_id=row[4],
        assistant_ids=frozenset(json.loads(row[5])),
        client_ids=frozenset(json.loads(row[6])),
    )


class SqlDirectory:
    """A :class:`~clientcomm.directory.base.WritableDirectory` over a SQL Store.

    Args:
        db: an opened ``SQLiteStore`` or ``PostgresStore`` (anything with the
            :class:`~clientcomm.storage.sql.SqlBackend` methods).
    """

    def __init__(self, db: SqlBackend) -> None:
        self._db = db

    async def _one(self, sql: str, params: Sequence[object]) -> tuple[Any, ...] | None:
        rows = await self._db.sql_read(sql, params)
        return rows[0] if rows else None

    # -- writes --
    async def put_firm(self, firm: Firm) -> None:
        check_entry(firm)
        row = (
            firm.id,
            firm.name,
            firm.office_email,
            firm.language,
            firm.time_zone,
            int(firm.letter_approval),
        )
        await self._db.sql_write([(_upsert("dir_firms", _FIRM_COLS, ("id",)), [row])])

    async def put_group(self, group: ClientGroup) -> None:
        check_entry(group)
        await self.get_firm(group.firm_id)
        row = (group.firm_id, group.id, group.name)
        await self._db.sql_write([(_upsert("dir_groups", _GROUP_COLS, _FK), [row])])

    async def put_client(self, client: Client) -> None:
        check_entry(client)
        await self.get_firm(client.firm_id)
        known = {g.id for g in await self.list_groups(client.firm_id)}
        for gid in sorted(client.group_ids - known):
            raise NotFoundError("group", gid)
        f, c = client.firm_id, client.id
        await self._db.sql_write(
            [
                (
                    _upsert("dir_clients", _CLIENT_COLS, _FK),
                    [(f, c, client.name, int(client.active))],
                ),
                ("DELETE FROM dir_client_groups WHERE firm_id=? AND client_id=?", [(f, c)]),
                (
                    "INSERT INTO dir_client_groups (firm_id, client_id, group_id) VALUES (?,?,?)",
                    [(f, c, g) for g in sorted(client.group_ids)],
                ),
            ]
        )

    async def put_contact(self, contact: Contact) -> None:
        check_entry(contact)
        await self.get_client(contact.firm_id, contact.client_id)
        row = (
            contact.firm_id,
            contact.id,
            contact.client_id,
            contact.name,
            contact.email,
            int(contact.registered),
            contact.preference.value,
            _address_json(contact.address),
            contact.language,
        )
        await self._db.sql_write([(_upsert("dir_contacts", _CONTACT_COLS, _FK), [row])])

    async def put_staff(self, staff: Staff) -> None:
        check_entry(staff)
        await self.get_firm(staff.firm_id)
        row = (
            staff.firm_id,
            staff.id,
            staff.name,
            staff.role.value,
            staff.email,
            int(staff.unrestricted),
            json.dumps(sorted(staff.client_ids)),
            json.dumps(sorted(p.value for p in staff.permissions)),
            int(staff.active),
            staff.language,
        )
        await self._db.sql_write([(_upsert("dir_staff", _STAFF_COLS, _FK), [row])])

    async def put_case_file(self, case_file: CaseFile) -> None:
        check_entry(case_file)
        for client_id in case_file.clients:
            await self.get_client(case_file.firm_id, client_id)
        row = (
            case_file.firm_id,
            case_file.id,
            case_file.client_id,
            case_file.title,
            case_file.handler_id,
            json.dumps(sorted(case_file.assistant_ids)),
            json.dumps(sorted(case_file.client_ids - {case_file.client_id})),
        )
        await self._db.sql_write([(_upsert("dir_case_files", _CASE_COLS, _FK), [row])])

    # -- reads --
    async def get_firm(self, firm_id: str) -> Firm:
        row = await self._one(
            f"SELECT {', '.join(_FIRM_COLS)} FROM dir_firms WHERE id=?", [firm_id]
        )
        if row is None:
            raise NotFoundError("firm", firm_id)
        return Firm(
            id=row[0],
            name=row[1],
            office_email=row[2],
            language=row[3],
            time_zone=row[4],
            letter_approval=bool(row[5]),
        )

    async def get_client(self, firm_id: str, client_id: str) -> Client:
        found = await self.list_clients(firm_id, ids=[client_id])
        if not found:
            raise NotFoundError("client", client_id)
        return found[0]

    async def list_clients(
        self,
        firm_id: str,
        *,
        ids: Collection[str] | None = None,
        group_ids: Collection[str] | None = None,
        active: bool | None = None,
    ) -> Sequence[Client]:
        base = "SELECT id, name, active FROM dir_clients WHERE firm_id=?"
        params: list[object] = [firm_id]
        if active is not None:
            base += " AND active=?"
            params.append(int(active))
        if group_ids is not None:
            gids = sorted(set(group_ids))
            if not gids:
                return []
            base += (
                " AND id IN (SELECT client_id FROM dir_client_groups WHERE firm_id=?"
                f" AND group_id IN ({', '.join('?' * len(gids))}))"
            )
            params += [firm_id, *gids]
        rows: list[tuple[Any, ...]] = []
        if ids is None:
            rows = await self._db.sql_read(base, params)
        else:
            wanted = sorted(set(ids))
            for i in range(0, len(wanted), _CHUNK):
                part = wanted[i : i + _CHUNK]
                sql = f"{base} AND id IN ({', '.join('?' * len(part))})"
                rows += await self._db.sql_read(sql, [*params, *part])
        if not rows:
            return []
        memberships: dict[str, set[str]] = {}
        if len(rows) <= _CHUNK:
            cids = [r[0] for r in rows]
            member_rows = await self._db.sql_read(
                "SELECT client_id, group_id FROM dir_client_groups WHERE firm_id=?"
                f" AND client_id IN ({', '.join('?' * len(cids))})",
                [firm_id, *cids],
            )
        else:
            member_rows = await self._db.sql_read(
                "SELECT client_id, group_id FROM dir_client_groups WHERE firm_id=?", [firm_id]
            )
        for cid, gid in member_rows:
            memberships.setdefault(cid, set()).add(gid)
        out = [
            Client(
                id=r[0],
                firm_id=firm_id,
                name=r[1],
                active=bool(r[2]),
                group_ids=frozenset(memberships.get(r[0], ())),
            )
            for r in rows
        ]
        out.sort(key=lambda c: c.id)
        return out

    async def list_groups(self, firm_id: str) -> Sequence[ClientGroup]:
        rows = await self._db.sql_read(
            "SELECT firm_id, id, name FROM dir_groups WHERE firm_id=? ORDER BY id", [firm_id]
        )
        return [ClientGroup(firm_id=r[0], id=r[1], name=r[2]) for r in rows]

    async def get_staff(self, firm_id: str, staff_id: str) -> Staff:
        row = await self._one(
            f"SELECT {', '.join(_STAFF_COLS)} FROM dir_staff WHERE firm_id=? AND id=?",
            [firm_id, staff_id],
        )
        if row is None:
            raise NotFoundError("staff", staff_id)
        return _staff(row)

    async def list_staff(self, firm_id: str) -> Sequence[Staff]:
        rows = await self._db.sql_read(
            f"SELECT {', '.join(_STAFF_COLS)} FROM dir_staff WHERE firm_id=? ORDER BY id",
            [firm_id],
        )
        return [_staff(r) for r in rows]

    async def list_contacts(
        self, firm_id: str, client_ids: Collection[str]
    ) -> Mapping[str, Sequence[Contact]]:
        wanted = sorted(set(client_ids))
        out: dict[str, list[Contact]] = {cid: [] for cid in wanted}
        for i in range(0, len(wanted), _CHUNK):
            part = wanted[i : i + _CHUNK]
            rows = await self._db.sql_read(
                f"SELECT {', '.join(_CONTACT_COLS)} FROM dir_contacts WHERE firm_id=?"
                f" AND client_id IN ({', '.join('?' * len(part))}) ORDER BY id",
                [firm_id, *part],
            )
            for r in rows:
                out[r[2]].append(_contact(r))
        return out

    async def get_case_file(self, firm_id: str, case_id: str) -> CaseFile:
        row = await self._one(
            f"SELECT {', '.join(_CASE_COLS)} FROM dir_case_files WHERE firm_id=? AND id=?",
            [firm_id, case_id],
        )
        if row is None:
            raise NotFoundError("case_file", case_id)
        return _case(row)

    async def list_case_files(self, firm_id: str, client_id: str) -> Sequence[CaseFile]:
        rows = await self._db.sql_read(
            f"SELECT {', '.join(_CASE_COLS)} FROM dir_case_files WHERE firm_id=?"
            " AND (client_id=? OR client_ids LIKE ?) ORDER BY id",
            [firm_id, client_id, "%" + json.dumps(client_id) + "%"],
        )
        # LIKE is only a pre-filter (``%`` and ``_`` in ids are wildcards)
        return [c for c in map(_case, rows) if c.has_client(client_id)]


def directory_for(store: object) -> WritableDirectory:
    """The bundled Directory that lives beside ``store``: a :class:`SqlDirectory`
    in the same database for SQL stores, a fresh
    :class:`~clientcomm.directory.memory.MemoryDirectory` for a memory store.

    Raises:
        ConfigurationError: the store is neither (bring your own Directory).
    """
    from clientcomm.directory.memory import MemoryDirectory
    from clientcomm.storage.memory import MemoryStore

    if isinstance(store, SqlBackend):
        return SqlDirectory(store)
    if isinstance(store, MemoryStore):
        return MemoryDirectory()
    raise ConfigurationError(f"no bundled Directory for {type(store).__name__}")
