"""The guided tour behind ``make demo`` and ``clientcomm demo``.

On the embedded default (a SQLite file, filesystem blobs, a local master key)
it shows every capability once, through public APIs only, one small function
per step of the tour:

1. ``_firm``: a firm with staff of every role and 300 clients in groups;
2. ``_mailing``: a mailing to one group with a PDF, sent in the background by a
   worker behind a progress bar;
3. ``_client_reply``: a client reads its copy and replies;
4. ``_portal_share``: a document shared into a client's portal folder, the
   client downloading it, the client's upload (its handler is notified) and
   the share's end;
5. ``_conversation``: a conversation through its statuses, with the office's
   and the administrators' notices;
6. ``_announcement``: an announcement's banner across two logins and an edit;
7. ``_serial_letter``: a serial-letter run released into the units' portals,
   merged with duplex padding into a print file and ordered through the
   file-drop postal provider;
8. ``_pdfa_link``: the run's PDF/A download link e-mailed and opened (needs
   Ghostscript, ``gs``; without it the tour says so and skips only this step);
9. ``_audit``: the audit chain verified.

Every notice is an e-mail to an SMTP server the demo starts on loopback
(STARTTLS, with a certificate it makes); each one is saved as a ``.eml`` file.
The tour ends with where its outputs are and a summary table.

Needs the ``demo`` extra (``aiosmtpd``, ``trustme``) for the SMTP server.
"""

from __future__ import annotations

import asyncio
import email
import io
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pypdf import PdfReader, PdfWriter

from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.attachments import AttachmentInput
from clientcomm.blobs.filesystem import FileBlobStore
from clientcomm.conversations import ConversationStatus
from clientcomm.crypto import LocalKeyProvider, MasterKey
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
from clientcomm.directory.sql import directory_for
from clientcomm.errors import ConfigurationError
from clientcomm.letters import DispatchButton
from clientcomm.letters.pdfa import check_pdfa
from clientcomm.letters.run_models import PageRange
from clientcomm.letters.selection import Selection, SendTo
from clientcomm.mail import SMTPTransport
from clientcomm.notifications import LinkTemplates, MailSettings
from clientcomm.postal import FileDropProvider
from clientcomm.rules.audience import Audience
from clientcomm.sharing import PortalDocument
from clientcomm.storage.url import open_store
from clientcomm.testing.letters import letter
from clientcomm.worker import Worker

if TYPE_CHECKING:
    from clientcomm.directory.base import WritableDirectory
    from clientcomm.testing.smtpd import SMTPTestServer

__all__ = ["DOCUMENT_NAMES", "mail_text", "run_demo"]

FIRM = "kanzlei"
OFFICE = "office@kanzlei.example"
CLIENTS = 300
GROUPS = {"vermieter": "Vermieter", "gmbh": "GmbHs", "privat": "Privatpersonen"}
PROPERTY = "lindenweg"  # a property (a client group) whose units get a serial letter
UNITS = 12  # clients c000..c011 are its units
STAFF = [
    Staff("petra", FIRM, "Petra Partner", Role.ADMIN, email="petra@kanzlei.example"),
    Staff("max", FIRM, "Max Manager", Role.MANAGER, email="max@kanzlei.example"),
    Staff(
        "sven",
        FIRM,
        "Sven Sachbearbeiter",
        Role.CLERK,
        email="sven@kanzlei.example",
        unrestricted=True,
        permissions={StaffPermission.CLIENT_PORTAL},
    ),
    Staff(
        "asta",
        FIRM,
        "Asta Assistenz",
        Role.ASSISTANT,
        client_ids={f"c{i:03}" for i in range(UNITS)},
    ),
]
ADMIN, MANAGER, CLERK = StaffActor(FIRM, "petra"), StaffActor(FIRM, "max"), StaffActor(FIRM, "sven")
# every file the tour sends; no e-mail may name one (notices say only that
# something waits, from whom, and a link)
MAILING_PDF = "Merkblatt-Grundsteuer.pdf"
SHARED_PDF = "Bescheid-2026.pdf"
UPLOADED_PDF = "Beleg-Handwerker.pdf"
CONVERSATION_PDF = "Belege-Jahresabschluss.pdf"
LETTER_PDF = "Nebenkosten-2026.pdf"
ATTACHMENT_PDF = "Hausordnung-Lindenweg.pdf"
DOCUMENT_NAMES = (
    MAILING_PDF,
    SHARED_PDF,
    UPLOADED_PDF,
    CONVERSATION_PDF,
    LETTER_PDF,
    ATTACHMENT_PDF,
)


@dataclass
class Tour:
    """What every step of the tour uses, and the summary rows it adds."""

    app: ClientComm
    directory: WritableDirectory
    out: Path
    smtp: SMTPTestServer
    rows: list[tuple[str, str]] = field(default_factory=list)

    def row(self, step: str, outcome: str) -> None:
        self.rows.append((step, outcome))

    def mails_to(self, address: str) -> list[email.message.EmailMessage]:
        return [m.parse() for m in self.smtp.handler.messages if address in m.rcpt_tos]


def _pdf(pages: int = 1) -> bytes:
    """A blank PDF of ``pages`` A4 pages."""
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(width=595, height=842)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _address(i: int) -> PostalAddress:
    return PostalAddress(f"Kontakt {i}", f"Lindenweg {i + 1}", "10115", "Berlin")


# -- 1. the firm ---------------------------------------------------------------------------
async def _firm(t: Tour) -> None:
    d = t.directory
    await d.put_firm(Firm(FIRM, "Kanzlei Müller & Partner", office_email=OFFICE))
    for gid, name in {**GROUPS, PROPERTY: "Liegenschaft Lindenweg"}.items():
        await d.put_group(ClientGroup(gid, FIRM, name))
    for staff in STAFF:
        await d.put_staff(staff)
    groups = list(GROUPS)
    for i in range(CLIENTS):
        cid = f"c{i:03}"
        member = {groups[i % len(groups)]} | ({PROPERTY} if i < UNITS else set())
        await d.put_client(Client(cid, FIRM, f"Mandant {i}", group_ids=member))
        await d.put_contact(
            Contact(
                f"k{i:03}",
                FIRM,
                cid,
                f"Kontakt {i}",
                email=f"{cid}@example.org",
                # two units' tenants have no portal login: they get letters by post
                registered=i not in (10, 11),
                preference=ContactPreference.LETTER if i % 4 == 0 else ContactPreference.ONLINE,
                address=_address(i),
            )
        )
        if i < UNITS:  # the case file (Akte) Sven handles, Asta assists
            await d.put_case_file(
                CaseFile(
                    f"akte-{cid}",
                    FIRM,
                    cid,
                    f"Akte {cid}",
                    handler_id="sven",
                    assistant_ids={"asta"},
                )
            )
    roles = ", ".join(f"{s.role.value} {s.name.split()[0]}" for s in STAFF)
    sizes = []
    for gid, name in {**GROUPS, PROPERTY: "Lindenweg"}.items():
        sizes.append(f"{name} {len(await d.list_clients(FIRM, group_ids=[gid]))}")
    t.row("firm", f"{len(STAFF)} staff ({roles})")
    t.row("clients", f"{CLIENTS} in groups ({', '.join(sizes)})")


# -- 2. a mailing to a group, with a PDF, sent in the background ----------------------------
async def _mailing(t: Tour) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    receipt = await t.app.mailings.submit(
        ADMIN,
        Audience.groups("vermieter"),
        "Die neuen Grundsteuerbescheide sind da: Bitte prüfen Sie den Anhang.",
        attachments=[AttachmentInput.from_bytes(MAILING_PDF, _pdf(), "application/pdf")],
        subject="Grundsteuer 2027",
    )
    worker = Worker(t.app, batch=25, idle_interval=0.05)
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
            progress = await t.app.mailings.status(ADMIN, receipt.id)
            bar.update(task, completed=progress.delivered + progress.failed)
            if progress.all_done:
                break
            await asyncio.sleep(0.05)
    worker.stop()
    await running
    t.row(
        "mailing",
        f"{progress.delivered}/{progress.total} copies with PDF, "
        f"{progress.notifications_sent} e-mail notices in {time.monotonic() - started:.1f} s",
    )


# -- 3. a client reads its copy and replies --------------------------------------------------
async def _client_reply(t: Tour) -> None:
    reader = ClientActor(FIRM, "c000")
    [copy] = await t.app.messages.list_for_client(reader)
    await t.app.messages.mark_read(reader, "c000", up_to_seq=copy.seq)
    await t.app.messages.send(reader, "c000", "Danke, ich sehe es mir an.")
    unread = await t.app.messages.unread_count(ADMIN, "c000")
    t.row("client reply", f"c000 read {copy.subject!r} and replied ({unread} unread for staff)")


# -- 4. a document share into a client's portal, an upload, the share's end -------------------
async def _portal_share(t: Tour) -> None:
    shares = t.app.shares
    client = ClientActor(FIRM, "c003", "k003")
    folder = await shares.create_folder(CLERK, "akte-c003", "Bescheide")
    receipt = await shares.share(
        CLERK,
        "akte-c003",
        [PortalDocument(SHARED_PDF, _pdf(2), "application/pdf", "dms-4711")],
        folder_id=folder.id,
    )
    [doc] = await shares.list_documents(client, folder.id)
    data = b"".join([chunk async for chunk in await shares.download(client, doc.id)])
    await shares.upload(
        client, folder.id, [PortalDocument(UPLOADED_PDF, _pdf(), "application/pdf")]
    )
    await shares.end(CLERK, receipt.share_ids[0])
    left = [d.filename for d in await shares.list_documents(client, folder.id)]
    await t.app.drain()  # the notices: "new documents" to c003, "an upload" to Sven
    inapp = [n.kind.value for n in await t.app.conversations.notifications(CLERK)]
    t.row(
        "portal share",
        f"{SHARED_PDF} shared into c003's folder, downloaded ({len(data)} bytes), "
        f"share ended: c003 now sees {left}",
    )
    t.row(
        "client upload",
        f"c003 uploaded {UPLOADED_PDF}: handler Sven notified by e-mail "
        f"({len(t.mails_to('sven@kanzlei.example'))}) and in-app ({', '.join(inapp)})",
    )


# -- 5. a conversation through its statuses, with the office's and administrators' notices ----
async def _conversation(t: Tour) -> None:
    talks = t.app.conversations
    client = ClientActor(FIRM, "c001", "k001")
    cid = await talks.create(
        CLERK,
        "c001",
        "Jahresabschluss 2025",
        "Bitte senden Sie uns die Belege.",
        assignee_id="petra",
    )
    path = [(await talks.get(CLERK, cid)).status]
    await talks.set_status(CLERK, cid, ConversationStatus.NEEDS_ATTENTION)
    path.append((await talks.get(CLERK, cid)).status)
    belege = AttachmentInput.from_bytes(CONVERSATION_PDF, _pdf(), "application/pdf")
    await talks.comment(client, cid, "Anbei die Belege.", attachments=[belege])
    path.append((await talks.get(CLERK, cid)).status)  # the client replied: open again
    await talks.notify_admins(CLERK, [cid])  # "Benachrichtigung an Administratoren"
    await talks.comment(ADMIN, cid, "Danke, alles da.")
    await talks.set_status(ADMIN, cid, ConversationStatus.ANSWERED)
    path.append((await talks.get(CLERK, cid)).status)
    await t.app.drain()
    inapp = [n.kind.value for n in await talks.notifications(ADMIN)]
    t.row("conversation", " → ".join(s.value for s in path) + " (the client replied in between)")
    t.row(
        "conversation notices",
        f"office {len(t.mails_to(OFFICE))} e-mail, administrator Petra "
        f"{len(t.mails_to('petra@kanzlei.example'))} e-mails + in-app ({', '.join(inapp)}), "
        f"client c001 {len(t.mails_to('c001@example.org'))}",
    )


# -- 6. an announcement's banner across two logins and an edit ------------------------------
async def _announcement(t: Tour) -> None:
    notices = t.app.announcements
    user = ClientActor(FIRM, "c002", "k002")

    async def banners() -> str:
        """The banners a portal page shows now: revision, and whether unread."""
        page = await notices.page_view(user)
        shown = [f"r{b.revision}{' unread' if b.unread else ''}" for b in page.banners]
        return f"[{', '.join(shown)}]"

    notice = await notices.create(
        MANAGER, "Neue Öffnungszeiten", "Ab **1. Januar**: Mo–Do 8–17 Uhr."
    )
    seen = []
    await notices.login(user)
    seen.append(f"login 1: {await banners()}")
    await notices.close(user, notice.id)
    seen.append(f"closed: {await banners()}")
    await notices.login(user)
    seen.append(f"login 2: {await banners()}")
    await notices.read_more(user, notice.id)
    await notices.edit(
        MANAGER, notice.id, "Neue Öffnungszeiten", "Ab **1. Januar**: Mo–Fr 8–17 Uhr."
    )
    seen.append(f"read, edited: {await banners()}")
    await notices.login(user)
    seen.append(f"login 3: {await banners()}")
    t.row("announcement", "; ".join(seen))


# -- 7. a serial letter: released, merged with duplex padding, ordered by post --------------
async def _serial_letter(t: Tour) -> str:
    runs = t.app.letter_runs
    runs.provider = FileDropProvider(t.out / "print-shop")
    units = [f"c{i:03}" for i in range(UNITS)]
    # the firm's system made one PDF with every unit's letter (1 or 2 pages each)
    upload, ranges, page = [], [], 1
    for i, unit in enumerate(units):
        a = _address(i)
        pages = 1 + i % 2
        upload.append(letter([a.name, a.street, f"{a.postal_code} {a.city}"], pages=pages))
        ranges.append(PageRange(unit, page, page + pages - 1, "Nebenkostenabrechnung"))
        page += pages
    run = await runs.create(CLERK, property_id=PROPERTY, title="Nebenkosten 2026")
    await runs.upload(CLERK, run.id, filename=LETTER_PDF, pdf=_combine(upload), ranges=ranges)
    await runs.add_attachment(
        CLERK, run.id, filename=ATTACHMENT_PDF, pdf=letter(("",), title="Hausordnung")
    )
    released = await runs.release(CLERK, run.id, case_files={u: f"akte-{u}" for u in units})
    # by post: who prefers letters, and who has no portal login; merged per contact
    await runs.set_selection(CLERK, run.id, Selection(SendTo.BY_PREFERENCE, merge=True))
    await runs.set_options(CLERK, run.id, colour=False, duplex=True, duplex_optimised=True)
    button = await runs.dispatch(CLERK, run.id)
    if button.button is not DispatchButton.ORDERABLE:  # pragma: no cover - a bug
        raise RuntimeError(f"the dispatch is not orderable: {button}")
    ordered = await runs.order(CLERK, run.id)
    assert ordered.order is not None
    batch = t.out / "print-shop" / "outbox" / FIRM / ordered.order.batch_id
    printed = len(PdfReader(batch / "letters.pdf").pages)
    t.row(
        "serial letter",
        f"{len(units)} units: released into {len(released.released_units)} portals, "
        f"{len(ordered.order.letters)} letters by post, {printed} pages with duplex padding, "
        f"ordered through the file drop ({ordered.order.batch_id})",
    )
    t.row("print PDF", str(batch / "letters.pdf"))
    return run.id


def _combine(pdfs: list[bytes]) -> bytes:
    writer = PdfWriter()
    for pdf in pdfs:
        for page in PdfReader(io.BytesIO(pdf)).pages:
            writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# -- 8. the run's PDF/A, its download link e-mailed ---------------------------------------------
async def _pdfa_link(t: Tour, run_id: str) -> None:
    if shutil.which("gs") is None:
        print("PDF/A download link: skipped, Ghostscript (gs) is not installed")
        t.row("PDF/A", "skipped: Ghostscript (gs) is not installed")
        return
    runs = t.app.letter_runs
    await runs.request_download(CLERK, run_id)
    await t.app.drain()  # the letters.pdfa step converts, stores and e-mails the link
    [mail] = [m for m in t.mails_to("sven@kanzlei.example") if "token=" in mail_text(m)]
    token = _link_token(mail_text(mail))
    stream = await runs.open_download(CLERK, token)
    pdfa = b"".join([chunk async for chunk in stream])
    path = t.out / "serienbrief-pdfa.pdf"
    path.write_bytes(pdfa)
    report = check_pdfa(pdfa)
    t.row(
        "PDF/A",
        f"link e-mailed to Sven, opened with its signed token: PDF/A-2b, {report.pages} pages",
    )
    t.row("PDF/A file", str(path))


def mail_text(mail: email.message.EmailMessage) -> str:
    """Every header and decoded text part of an e-mail (what a reader sees)."""
    parts = [f"{k}: {v}" for k, v in mail.items()]
    for part in mail.walk():
        if part.get_content_maintype() == "text":
            parts.append(str(part.get_content()))
    return "\n".join(parts)


def _link_token(text: str) -> str:
    found = re.search(r"[?&]token=([^\s&\"<>]+)", text)
    if found is None:  # pragma: no cover - a bug
        raise RuntimeError("the download e-mail holds no link token")
    return found.group(1)


# -- 9. the audit chain ------------------------------------------------------------------------
async def _audit(t: Tour) -> None:
    await t.app.drain()
    verification = await t.app.audit.verify(FIRM)
    if not verification.ok:  # pragma: no cover - a bug
        raise RuntimeError(f"audit chain broken: {verification.fault}")
    t.row("audit chain", f"{verification.checked} entries verified")


def _save_mails(t: Tour) -> Path:
    """Every e-mail the SMTP server received, as a .eml file."""
    mails = t.out / "mail"
    mails.mkdir()
    received = t.smtp.handler.messages
    for n, message in enumerate(received, 1):
        (mails / f"{n:03}.eml").write_bytes(message.data)
    if not received or not all(m.tls for m in received):  # pragma: no cover - a bug
        raise RuntimeError("the notices did not all arrive over STARTTLS")
    named = [m for m in received if any(n in mail_text(m.parse()) for n in DOCUMENT_NAMES)]
    if named:  # pragma: no cover - a bug
        raise RuntimeError(f"{len(named)} e-mails name a document")
    t.row("e-mails", f"{len(received)} received on loopback, all over STARTTLS, none names a file")
    return mails


async def _tour(out: Path) -> list[tuple[str, str]]:
    try:
        from clientcomm.testing.smtpd import smtp_server
    except ImportError as exc:  # pragma: no cover - depends on the extras
        raise ConfigurationError(
            "the demo's SMTP server needs the demo extra: pip install 'clientcomm[demo]'"
        ) from exc

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
            links=LinkTemplates(
                {
                    kind: f"https://office.example/{{firm_id}}/{kind}/{{event_id}}"
                    for kind in ("new_comment", "admin_alert", "letters_download")
                },
                default="https://portal.example/{firm_id}/clients/{client_id}",
            ),
            mail=MailSettings(sender="portal@kanzlei.example", message_id_domain="kanzlei.example"),
        )
        t = Tour(app, directory, out, smtp)
        try:
            await _firm(t)
            await _mailing(t)
            await _client_reply(t)
            await _portal_share(t)
            await _conversation(t)
            await _announcement(t)
            run_id = await _serial_letter(t)
            await _pdfa_link(t, run_id)
            await _audit(t)
        finally:
            await app.aclose()
        mails = _save_mails(t)
    t.row("database", str(db))
    t.row("e-mail files", f"{mails}/*.eml")
    t.row("master key", str(out / "master.key"))
    return t.rows


def run_demo(out: str | None = None) -> int:
    """Run the tour into ``out`` (a new temporary directory if None); prints
    the summary table and returns 0."""
    from rich.console import Console
    from rich.table import Column, Table
    from rich.text import Text

    where = Path(out) if out else Path(tempfile.mkdtemp(prefix="clientcomm-demo-"))
    where.mkdir(parents=True, exist_ok=True)
    if any(where.iterdir()):
        raise ConfigurationError(f"--out: {where} is not empty")
    started = time.monotonic()
    summary = asyncio.run(_tour(where))
    table = Table(
        Column("step"),
        Column("outcome", overflow="fold"),  # paths whole, never cut
        title=f"clientcomm demo ({time.monotonic() - started:.1f} s)",
    )
    for key, value in summary:
        table.add_row(Text(key), Text(value))  # plain text, not rich markup
    Console(highlight=False).print(table)
    return 0
