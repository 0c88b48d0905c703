"""Quickstart: open the embedded default store (SQLite), register a firm with a few
clients and staff in the SQL-backed Directory, and print them.

Run with ``make demo`` (or ``python examples/quickstart.py``).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from clientcomm import (
    Client,
    ClientGroup,
    Contact,
    ContactPreference,
    Firm,
    PostalAddress,
    Role,
    Staff,
    directory_for,
    open_store,
)


async def main(db_path: Path) -> None:
    store = await open_store(f"sqlite:///{db_path}")
    try:
        directory = directory_for(store)  # the SQL-backed Directory in the same database
        await directory.put_firm(
            Firm("kanzlei", "Kanzlei Müller & Partner", office_email="office@kanzlei.example")
        )
        await directory.put_group(ClientGroup("vermieter", "kanzlei", "Vermieter"))
        await directory.put_client(Client("c-001", "kanzlei", "Anna Alt", group_ids={"vermieter"}))
        await directory.put_client(Client("c-002", "kanzlei", "Bäckerei Brot GmbH"))
        await directory.put_client(Client("c-003", "kanzlei", "Carl Chor", active=False))
        await directory.put_contact(
            Contact(
                "k-001",
                "kanzlei",
                "c-001",
                "Anna Alt",
                email="anna@example.com",
                registered=True,
                preference=ContactPreference.ONLINE,
                address=PostalAddress("Anna Alt", "Hauptstr. 1", "10115", "Berlin"),
            )
        )
        await directory.put_staff(
            Staff("s-admin", "kanzlei", "Petra Partner", Role.ADMIN, email="petra@kanzlei.example")
        )
        await directory.put_staff(
            Staff(
                "s-clerk",
                "kanzlei",
                "Sven Sachbearbeiter",
                Role.CLERK,
                unrestricted=False,
                client_ids={"c-001"},
            )
        )

        firm = await directory.get_firm("kanzlei")
        print(f"Firm: {firm.name}")
        print("Clients:")
        for client in await directory.list_clients("kanzlei"):
            groups = ", ".join(sorted(client.group_ids)) or "-"
            state = "active" if client.active else "inactive"
            print(f"  {client.id}  {client.name:<24} {state:<8} groups: {groups}")
        print("Staff:")
        for staff in await directory.list_staff("kanzlei"):
            access = "all clients" if staff.unrestricted else ", ".join(sorted(staff.client_ids))
            print(f"  {staff.id:<8} {staff.name:<22} {staff.role.value:<8} access: {access}")
    finally:
        await store.aclose()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp) / "clientcomm.db"))
