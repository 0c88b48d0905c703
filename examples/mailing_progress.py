"""A mass mailing with a progress bar.

An administrator sends one message with a subject and a PDF attachment to all
active clients, personalised with each client's salutation and name (previewed
for one client first).
``submit`` returns at once; a background worker fans the mailing out into one
encrypted copy per client while the progress bar follows it. Then a client
reads its copy, and the delivery ledger is printed.

Run: ``python examples/mailing_progress.py`` (uses a SQLite file in a temp dir).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from clientcomm import (
    AttachmentInput,
    Audience,
    Client,
    ClientActor,
    ClientComm,
    ClientGroup,
    Contact,
    FileBlobStore,
    Firm,
    LinkTemplates,
    LocalKeyProvider,
    MailSettings,
    MasterKey,
    MemoryTransport,
    Role,
    Staff,
    StaffActor,
    Worker,
    directory_for,
    open_store,
)


def bar(fraction: float, width: int = 30) -> str:
    done = int(fraction * width)
    return "[" + "#" * done + "." * (width - done) + f"] {fraction:6.1%}"


async def main(tmp: Path) -> None:
    store = await open_store(f"sqlite:///{tmp / 'clientcomm.db'}")
    directory = directory_for(store)
    await directory.put_firm(Firm("kanzlei", "Kanzlei Müller & Partner"))
    await directory.put_group(ClientGroup("vermieter", "kanzlei", "Vermieter"))
    await directory.put_staff(Staff("petra", "kanzlei", "Petra Partner", Role.ADMIN))
    for i in range(1, 201):
        await directory.put_client(
            Client(f"c{i:03}", "kanzlei", f"Mandant {i}", active=i % 25 != 0)
        )
        await directory.put_contact(
            Contact(
                f"k{i:03}",
                "kanzlei",
                f"c{i:03}",
                f"Kontakt {i}",
                email=f"mandant{i}@example.com",
                registered=True,
            )
        )

    app = ClientComm(
        store=store,
        directory=directory,
        keys=LocalKeyProvider(store, MasterKey.generate()),  # production: load_master_key()
        blobs=FileBlobStore(tmp / "blobs"),
        transport=MemoryTransport(),  # production: SMTPTransport(SMTPConfig(...))
        links=LinkTemplates(default="https://portal.example/{firm_id}/clients/{client_id}"),
        mail=MailSettings(sender="portal@kanzlei.example", message_id_domain="kanzlei.example"),
    )
    admin = StaffActor("kanzlei", "petra")
    text = "{{ salutation }},\nanbei unser Rundschreiben zum Jahreswechsel, {{ client_name }}."
    subject = "Rundschreiben zum Jahreswechsel"
    preview = await app.mailings.preview(
        admin, Audience.everyone(), text, subject=subject, for_client="c001"
    )
    print(f"Recipients: {preview.count} active clients")
    assert preview.copy is not None
    print(f"c001 will read: {preview.copy.text.splitlines()[-1]!r}")

    receipt = await app.mailings.submit(
        admin,
        Audience.everyone(),
        text,
        subject=subject,
        attachments=[
            AttachmentInput.from_bytes(
                "Rundschreiben.pdf", b"%PDF-1.7\n...\n%%EOF\n", "application/pdf"
            )
        ],
    )
    worker = Worker(app, batch=20)
    running = asyncio.create_task(worker.run())
    # follow() ends when the copies *and* the e-mail notices are finished
    # (progress.all_done); until="copies" would end with the copies (progress.done).
    async for progress in app.mailings.follow(admin, receipt.id, interval=0.05):
        counts = (
            f"  {progress.delivered}/{progress.total}, e-mails sent {progress.notifications_sent}"
        )
        sys.stdout.write("\r" + bar(progress.fraction) + counts)
        sys.stdout.flush()
    print()
    worker.stop()
    await running

    client = ClientActor("kanzlei", "c001")
    [message] = await app.messages.list_for_client(client)
    print(
        f"c001 reads {message.subject!r}: {message.text.splitlines()[0]!r}"
        f" with {len(message.attachments)} file(s)"
    )
    status = await app.mailings.status(admin, receipt.id)
    print(f"Notifications sent: {status.notifications_sent}")
    lines = [line async for line in app.mailings.export_csv(admin, receipt.id)]
    print(f"Ledger: {len(lines) - 1} rows, e.g. {lines[1].strip()}")
    await app.aclose()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
