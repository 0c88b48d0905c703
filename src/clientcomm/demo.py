"""The guided tour behind ``make demo`` and ``clientcomm demo``.

On the embedded default (a SQLite file, filesystem blobs, a local master key)
it builds a firm with staff of every role and a few hundred clients in groups,
sends a mailing with a PDF attachment to one group in the background behind a
progress bar, delivers the e-mail notices to an SMTP server it starts on
loopback (STARTTLS, with a certificate it makes), lets a client read its copy
and reply, verifies the audit chain, and prints where its outputs are and a
summary table.

Capabilities add their part of the tour in :func:`_tour` (one block each).
Needs the ``demo`` extra (``aiosmtpd``, ``trustme``) for the SMTP server.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from pathlib import Path

from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.attachments import AttachmentInput
from clientcomm.blobs.filesystem import FileBlobStore
from clientcomm.crypto import LocalKeyProvider, MasterKey
from clientcomm.directory.models import Client, ClientGroup, Contact, Firm, Role, Staff
from clientcomm.directory.sql import directory_for
from clientcomm.errors import ConfigurationError
from clientcomm.mail import SMTPTransport
from clientcomm.notifications import LinkTemplates, MailSettings
from clientcomm.rules.audience import Audience
from clientcomm.storage.url import open_store
from clientcomm.worker import Worker

__all__ = ["run_demo"]

FIRM = "kanzlei"
CLIENTS = 300
GROUPS = {"vermieter": "Vermieter", "gmbh": "GmbHs", "privat": "Privatpersonen"}
STAFF = [
    Staff("petra", FIRM, "Petra Partner", Role.ADMIN, email="petra@kanzlei.example"),
    Staff("max", FIRM, "Max Manager", Role.MANAGER),
    Staff("sven", FIRM, "Sven Sachbearbeiter", Role.CLERK),
    Staff("asta", FIRM, "Asta Assistenz", Role.ASSISTANT),
]


def _pdf() -> bytes:
    """A one-page PDF (the mailing's attachment)."""
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


async def _tour(out: Path) -> list[tuple[str, str]]:
    try:
        from clientcomm.testing.smtpd import smtp_server
    except ImportError as exc:  # pragma: no cover - depends on the extras
        raise ConfigurationError(
            "the demo's SMTP server needs the demo extra: pip install 'clientcomm[demo]'"
        ) from exc
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    summary: list[tuple[str, str]] = []
    master = MasterKey.generate()
    (out / "master.key").write_text(master.to_text() + "\n", encoding="ascii")
    db = out / "clientcomm.db"
    store = await open_store(f"sqlite:///{db}")
    async with smtp_server(tls="starttls") as smtp:
        directory = directory_for(store)
        app = ClientComm(
            store=store,
            directory=directory,
            keys=LocalKeyProvider(store, master),
            blobs=FileBlobStore(out / "blobs"),
            transport=SMTPTransport(smtp.config()),
            links=LinkTemplates(default="https://portal.example/{firm_id}/clients/{client_id}"),
            mail=MailSettings(sender="portal@kanzlei.example", message_id_domain="kanzlei.example"),
        )
        try:
            # -- the firm ---------------------------------------------------------------
            await directory.put_firm(Firm(FIRM, "Kanzlei Müller & Partner"))
            for gid, name in GROUPS.items():
                await directory.put_group(ClientGroup(gid, FIRM, name))
            for staff in STAFF:
                await directory.put_staff(staff)
            groups = list(GROUPS)
            for i in range(CLIENTS):
                cid = f"c{i:03}"
                await directory.put_client(
                    Client(cid, FIRM, f"Mandant {i}", group_ids={groups[i % len(groups)]})
                )
                await directory.put_contact(
                    Contact(
                        f"k{i:03}",
                        FIRM,
                        cid,
                        f"Kontakt {i}",
                        email=f"{cid}@example.org",
                        registered=True,
                    )
                )
            summary.append(("firm", f"{len(STAFF)} staff (every role), {CLIENTS} clients"))

            # -- a mailing to a group, with a PDF, sent in the background ---------------
            admin = StaffActor(FIRM, "petra")
            receipt = await app.mailings.submit(
                admin,
                Audience.groups("vermieter"),
                "Die neuen Grundsteuerbescheide sind da: Bitte prüfen Sie den Anhang.",
                attachments=[
                    AttachmentInput.from_bytes("Merkblatt.pdf", _pdf(), "application/pdf")
                ],
                subject="Grundsteuer 2027",
            )
            worker = Worker(app, batch=25, idle_interval=0.05)
            started = time.monotonic()
            running = asyncio.create_task(worker.run())
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            ) as bar:
                task = bar.add_task("mailing", total=receipt.total)
                while True:
                    progress = await app.mailings.status(admin, receipt.id)
                    bar.update(task, completed=progress.delivered + progress.failed)
                    if progress.all_done:
                        break
                    await asyncio.sleep(0.05)
            worker.stop()
            await running
            summary.append(
                (
                    "mailing",
                    f"{progress.delivered}/{progress.total} copies with PDF, "
                    f"{progress.notifications_sent} e-mail notices "
                    f"in {time.monotonic() - started:.1f} s",
                )
            )

            # -- a client reads its copy and replies -----------------------------------
            reader = ClientActor(FIRM, "c000")
            [copy] = await app.messages.list_for_client(reader)
            await app.messages.mark_read(reader, "c000", up_to_seq=copy.seq)
            await app.messages.send(reader, "c000", "Danke, ich sehe es mir an.")
            unread = await app.messages.unread_count(admin, "c000")
            summary.append(("client c000", f"read {copy.subject!r}, replied ({unread} unread)"))

            # -- the audit chain ---------------------------------------------------------
            await app.drain()
            verification = await app.audit.verify(FIRM)
            if not verification.ok:  # pragma: no cover - a bug
                raise RuntimeError(f"audit chain broken: {verification.fault}")
            summary.append(("audit chain", f"{verification.checked} entries verified"))
        finally:
            await app.aclose()
        mails = out / "mail"
        mails.mkdir()
        received = smtp.handler.messages
        for n, message in enumerate(received, 1):
            (mails / f"{n:03}.eml").write_bytes(message.data)
        if not received or not all(m.tls for m in received):  # pragma: no cover - a bug
            raise RuntimeError("the notices did not all arrive over STARTTLS")
        summary.append(("e-mails", f"{len(received)} received on loopback, all over STARTTLS"))
    summary.append(("database", str(db)))
    summary.append(("e-mail files", f"{mails}/*.eml"))
    summary.append(("master key", str(out / "master.key")))
    return summary


def run_demo(out: str | None = None) -> int:
    """Run the tour into ``out`` (a new temporary directory if None); prints
    the summary table and returns 0."""
    from rich.console import Console
    from rich.table import Table

    where = Path(out) if out else Path(tempfile.mkdtemp(prefix="clientcomm-demo-"))
    where.mkdir(parents=True, exist_ok=True)
    if any(where.iterdir()):
        raise ConfigurationError(f"--out: {where} is not empty")
    started = time.monotonic()
    summary = asyncio.run(_tour(where))
    table = Table("", "", title=f"clientcomm demo ({time.monotonic() - started:.1f} s)")
    for key, value in summary:
        table.add_row(key, value)
    Console(highlight=False).print(table)
    return 0
