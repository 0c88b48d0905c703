"""Quickstart: open the embedded default store (SQLite), register a firm with a few
clients and staff in the SQL-backed Directory, print them, and share a first
document into a client's portal folder (the sharing step: docs/portal.md).

Run with ``make demo`` (or ``python examples/quickstart.py``).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from clientcomm import (
    CaseFile,
    Client,
    ClientComm,
    ClientGroup,
    Contact,
    ContactPreference,
    Firm,
    LocalKeyProvider,
    MasterKey,
    PortalDocument,
    PostalAddress,
    Role,
    Staff,
    StaffPermission,
    directory_for,
    open_store,
)
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.blobs.filesystem import FileBlobStore
from clientcomm.mail.memory import MemoryTransport
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.outbox import MailSettings


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
                permissions={StaffPermission.CLIENT_PORTAL},  # may share into portals
            )
        )
        await directory.put_case_file(
            CaseFile("akte-1", "kanzlei", "c-001", "Steuern 2025", handler_id="s-clerk")
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

        # Sharing: the clerk (handler of the case file) shares a document into
        # Anna's portal folder; Anna lists and downloads it; the notice e-mail
        # (only "new documents", with a link) is background work.
        transport = MemoryTransport()
        app = ClientComm(
            store=store,
            directory=directory,
            keys=LocalKeyProvider(store, MasterKey.generate()),
            blobs=FileBlobStore(db_path.parent / "blobs"),
            transport=transport,
            links=LinkTemplates(default="https://portal.example/{firm_id}/clients/{client_id}"),
            mail=MailSettings(sender="portal@kanzlei.example", message_id_domain="kanzlei.example"),
        )
        sven = StaffActor("kanzlei", "s-clerk")
        anna = ClientActor("kanzlei", "c-001", "k-001")
        folder = await app.shares.create_folder(sven, "akte-1", "Bescheide")
        pdf = b"%PDF-1.7\n" + b"Bescheid " * 1000 + b"\n%%EOF\n"
        await app.shares.share(
            sven,
            "akte-1",
            [PortalDocument("Bescheid 2025.pdf", pdf, "application/pdf", "dms-1")],
            folder_id=folder.id,
        )
        [doc] = await app.shares.list_documents(anna, folder.id)
        data = b"".join([chunk async for chunk in await app.shares.download(anna, doc.id)])
        assert data == pdf
        await app.drain()
        print(f"Shared {doc.filename} into Anna's folder {folder.name!r}; she downloaded it.")
        for mail in transport.messages():
            print(f"  notice to {mail['To']}: {mail['Subject']}")
    finally:
        await store.aclose()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp) / "clientcomm.db"))
