"""Compliance: the audit trail, proof of delivery, a client's data export and
erasure after the retention period.

A tax adviser's office sends a message to a client, proves its delivery,
verifies the tamper-evident audit trail against a checkpoint kept elsewhere,
hands the client its data as a zip (GDPR Art. 15/20) and, ten years later,
erases it (crypto-shredding, records and files; the audit trail stays).

Run: ``python examples/compliance.py`` (SQLite file in a temp dir).
"""

from __future__ import annotations

import asyncio
import io
import sys
import tempfile
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from clientcomm import (
    Client,
    ClientActor,
    ClientComm,
    Contact,
    FileBlobStore,
    Firm,
    LinkTemplates,
    LocalKeyProvider,
    MailSettings,
    ManualClock,
    MasterKey,
    MemoryTransport,
    RetentionError,
    RetentionPolicy,
    Role,
    Staff,
    StaffActor,
    directory_for,
    open_store,
)


async def main(tmp: Path) -> None:
    store = await open_store(f"sqlite:///{tmp / 'clientcomm.db'}")
    directory = directory_for(store)
    await directory.put_firm(Firm("kanzlei", "Steuerkanzlei Weber"))
    await directory.put_staff(Staff("petra", "kanzlei", "Petra Weber", Role.ADMIN))
    await directory.put_client(Client("c1", "kanzlei", "Anna Alt"))
    await directory.put_contact(Contact("k1", "kanzlei", "c1", "Anna Alt", "anna@example.org"))
    clock = ManualClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    app = ClientComm(
        store=store,
        directory=directory,
        keys=LocalKeyProvider(store, MasterKey.generate(), clock=clock),
        blobs=FileBlobStore(tmp / "blobs"),
        transport=MemoryTransport(),
        links=LinkTemplates(
            default="https://portal.example/{firm_id}/clients/{client_id}/messages"
        ),
        mail=MailSettings(sender="portal@kanzlei.example", message_id_domain="kanzlei.example"),
        clock=clock,
    )
    petra = StaffActor("kanzlei", "petra")
    anna = ClientActor("kanzlei", "c1")

    # A message, its e-mail notice, and the client opening it.
    message_id = await app.messages.send(petra, "c1", "Ihr Bescheid ist da.", subject="Bescheid")
    await app.drain()
    await app.messages.list_for_client(anna)

    evidence = await app.messages.evidence(petra, message_id)
    print("proof of delivery:", [fact.kind for fact in evidence.facts])

    # The audit trail: chained per firm; the host keeps a checkpoint elsewhere.
    await app.drain()  # the audit.chain step links what was appended
    checkpoint = await app.audit.checkpoint("kanzlei")
    result = await app.audit.verify("kanzlei", checkpoint=checkpoint)
    print(f"audit trail: {result.checked} entries verified, ok={result.ok}")

    # The client's data, as a zip (streamed; here collected in memory).
    data = b"".join(
        [chunk async for chunk in app.compliance.export("kanzlei", "c1", actor="petra")]
    )
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        print("export:", sorted(archive.namelist()))

    # Retention: ten years after the year of the last activity (StBerG § 66).
    await app.compliance.set_policy("kanzlei", RetentionPolicy(years=10), actor="petra")
    try:
        await app.compliance.erase("kanzlei", "c1", actor="petra")
    except RetentionError as exc:
        print("too early:", exc)
    clock.advance(timedelta(days=365 * 11))
    await app.compliance.erase("kanzlei", "c1", actor="petra")
    await app.drain()  # the clients.erase step deletes records and files
    status = await app.compliance.erasure_status("kanzlei", "c1")
    print(
        "erasure:",
        status.status.value,
        "tombstone:",
        await app.compliance.tombstone("kanzlei", "c1") is not None,
    )
    await app.aclose()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
    sys.exit(0)
