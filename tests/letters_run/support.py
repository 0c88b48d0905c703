"""A property with units and contacts for the serial-letter run tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from clientcomm import (
    Client,
    ClientGroup,
    Contact,
    ContactPreference,
    Firm,
    PostalAddress,
    Role,
    Staff,
    StaffActor,
    StaffPermission,
)
from clientcomm.app import ClientComm
from clientcomm.storage.base import Store
from tests.mailing_support import make_app

LETTER = ContactPreference.LETTER
ONLINE = ContactPreference.ONLINE

ADMIN = StaffActor("f1", "admin")
MANAGER = StaffActor("f1", "manager")
CLERK = StaffActor("f1", "clerk")
RESTRICTED = StaffActor("f1", "restricted")
ASSISTANT = StaffActor("f1", "assistant")
OTHER_FIRM = StaffActor("f2", "admin2")

UNITS = ("u1", "u2", "u3", "u4")


def address(name: str, n: int) -> PostalAddress:
    return PostalAddress(name, f"Hauptstraße {n}", "10115", "Berlin")


async def seed_property(app: ClientComm) -> None:
    """Property ``p1`` (group) with four units; contacts: Olga (registered,
    letter) owns u1 and u2, Tom (registered, online) rents u1, Uwe
    (unregistered) rents u3, Vera (registered, letter) rents u4."""
    d: Any = app.directory
    await d.put_group(ClientGroup("p1", "f1", "Liegenschaft Lindenweg"))
    for i, unit in enumerate(UNITS, 1):
        await d.put_client(Client(unit, "f1", f"Einheit {i}", group_ids={"p1"}))
    people = [
        ("olga", "u1", "Olga Owner", "olga@example.com", True, LETTER),
        ("tom", "u1", "Tom Tenant", "tom@example.com", True, ONLINE),
        ("uwe", "u3", "Uwe Unreg", None, False, ONLINE),
        ("vera", "u4", "Vera Reg", "vera@example.com", True, LETTER),
    ]
    for n, (cid, unit, name, email, registered, pref) in enumerate(people, 1):
        await d.put_contact(
            Contact(cid, "f1", unit, name, email, registered, pref, address(name, n))
        )
    await d.put_staff(
        Staff(
            "approver",
            "f1",
            "Anton Approver",
            Role.CLERK,
            email="approver@example.com",
            unrestricted=True,
            permissions={StaffPermission.LETTER_APPROVAL},
        )
    )
    await d.put_staff(Staff("admin", "f1", "Ada Admin", Role.ADMIN, email="ada@example.com"))
    await d.put_staff(Staff("assistant", "f1", "Asta Assist", Role.ASSISTANT, client_ids=UNITS))
    await d.put_firm(Firm("f1", "Kanzlei Müller", office_email="office@mueller.example"))


MEMBERS = {"u1": ["olga", "tom"], "u2": ["olga"], "u3": ["uwe"], "u4": ["vera"]}


@asynccontextmanager
async def letters_app(store: Store, tmp_path: Path, **kwargs: Any) -> AsyncIterator[ClientComm]:
    async with make_app(store, tmp_path, **kwargs) as app:
        await seed_property(app)
        yield app
