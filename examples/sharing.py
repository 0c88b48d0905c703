"""Portal sharing (seed 001) end to end, on the embedded default store (SQLite)
with the filesystem blob store: a case file with two clients, documents shared
without and with a message, the "shared" markers of the host's document list,
a client's reply and upload, ending a share, and the e-mail notices.

Run with ``python examples/sharing.py``.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from clientcomm import (
    CaseFile,
    Client,
    ClientComm,
    Contact,
    Firm,
    LocalKeyProvider,
    MasterKey,
    PortalDocument,
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

PDF = b"%PDF-1.7\n" + b"Bescheid " * 20_000 + b"\n%%EOF\n"


async def main(work: Path) -> None:
    store = await open_store(f"sqlite:///{work / 'portal.db'}")
    directory = directory_for(store)
    await directory.put_firm(Firm("kanzlei", "Kanzlei Müller & Partner"))
    for cid, name in [("c-alt", "Anna Alt"), ("c-bau", "Bernd Bau")]:
        await directory.put_client(Client(cid, "kanzlei", name))
        await directory.put_contact(
            Contact(f"k-{cid}", "kanzlei", cid, name, email=f"{cid}@example.com", registered=True)
        )
    await directory.put_staff(
        Staff(
            "s-sina",
            "kanzlei",
            "Sina Sachbearbeiterin",
            Role.CLERK,
            email="sina@kanzlei.example",
            client_ids={"c-alt", "c-bau"},
            permissions={StaffPermission.CLIENT_PORTAL},  # "Berechtigung Mandantenportal"
        )
    )
    await directory.put_case_file(
        CaseFile(
            "akte-7", "kanzlei", "c-alt", "Alt ./. Bau", handler_id="s-sina", client_ids={"c-bau"}
        )
    )
    transport = MemoryTransport()
    app = ClientComm(
        store=store,
        directory=directory,
        keys=LocalKeyProvider(store, MasterKey.generate()),
        blobs=FileBlobStore(work / "blobs"),
        transport=transport,
        links=LinkTemplates(default="https://portal.example/{firm_id}/clients/{client_id}"),
        mail=MailSettings(sender="portal@kanzlei.example", message_id_domain="kanzlei.example"),
    )
    async with app:
        sina = StaffActor("kanzlei", "s-sina")
        anna = ClientActor("kanzlei", "c-alt", "k-c-alt")

        # "Mandanten-Portal > Ohne Nachricht": a folder of Anna's portal
        folder = await app.shares.create_folder(sina, "akte-7", "Bescheide", client_id="c-alt")
        receipt = await app.shares.share(
            sina,
            "akte-7",
            [PortalDocument("Bescheid 2025.pdf", PDF, "application/pdf", "dms-1")],
            folder_id=folder.id,
            client_id="c-alt",
        )
        print("shared:", receipt.share_ids)

        # "Mandanten-Portal > Mit Nachricht": a channel
        channel = await app.shares.create_channel(sina, "akte-7", "Steuer 2025", client_id="c-alt")
        await app.shares.share_with_message(
            sina,
            "akte-7",
            [PortalDocument("Anlage.pdf", PDF, "application/pdf", "dms-2")],
            "Bitte prüfen Sie den Bescheid.",
            channel_id=channel.id,
            client_id="c-alt",
        )

        # Anna reads, downloads, replies and sends a document back
        for doc in await app.shares.list_documents(anna, folder.id):
            data = b"".join([c async for c in await app.shares.download(anna, doc.id)])
            print(f"Anna downloaded {doc.filename} ({len(data)} bytes)")
        [message] = await app.shares.list_messages(anna, channel.id)
        await app.shares.post(anna, channel.id, "Danke, erledigt.", reply_to=message.id)
        await app.shares.upload(
            anna, folder.id, [PortalDocument("Beleg.pdf", PDF, "application/pdf")]
        )
        print("unread for Sina:", await app.shares.unread_count(sina, channel.id))

        # the host's document list: which documents are shared
        for document_id, marks in (
            await app.shares.visibility(sina, "akte-7", ["dms-1", "dms-2", "dms-3"])
        ).items():
            print(document_id, [(m.client_id, m.folder_id or m.channel_id) for m in marks])

        # "Freigabe beenden" (only a share without a message)
        await app.shares.end(sina, receipt.share_ids[0])
        left = [d.filename for d in await app.shares.list_documents(anna, folder.id)]
        print("Anna's folder now:", left)
        assert left == ["Beleg.pdf"]

        await app.drain()  # the notices go out in the background
        for mail in transport.messages():
            print("notice to", mail["To"], "-", mail["Subject"])
        assert len(transport.sent) == 4


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
