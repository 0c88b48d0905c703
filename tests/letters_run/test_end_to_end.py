"""A serial-letter run end to end on SQLite: upload, release into the portals,
select, merge, pad, order through the file drop, cancel, re-order, status and
tracking, PDF/A download link, delete; with the portals and e-mails checked."""

from __future__ import annotations

import io
import json
import re
from email.utils import parseaddr
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pypdf
import pytest

from clientcomm import (
    CaseFile,
    ClientActor,
    Contact,
    ContactPreference,
    Role,
    Staff,
    StaffActor,
    StaffPermission,
)
from clientcomm.app import ClientComm
from clientcomm.errors import ConflictError, NotFoundError, PermissionDeniedError
from clientcomm.letters.dispatch import DispatchButton, DispatchReason
from clientcomm.letters.intake import PdfIntake
from clientcomm.letters.pdfa import check_pdfa
from clientcomm.letters.run_models import PageRange
from clientcomm.letters.run_records import DownloadStatus, RunState
from clientcomm.letters.selection import Selection, SendTo
from clientcomm.letters.tokens import LinkTokenError, TokenProblem
from clientcomm.notifications.links import LinkTemplates
from clientcomm.postal.base import PostalCapabilities
from clientcomm.postal.filedrop import FileDropProvider
from clientcomm.storage.sqlite import SQLiteStore
from tests.letters.hostile import letter
from tests.letters_run.support import ADMIN, MANAGER, MEMBERS, letters_app

LETTER = ContactPreference.LETTER
SHARER = StaffActor("f1", "sharer")


def combine(*pdfs: bytes) -> bytes:
    writer = pypdf.PdfWriter()
    for pdf in pdfs:
        for page in pypdf.PdfReader(io.BytesIO(pdf)).pages:
            writer.add_page(page)
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def addressed(name: str, n: int, *, pages: int = 1, title: str = "Abrechnung") -> bytes:
    return letter((name, f"Hauptstraße {n}", "10115 Berlin"), pages=pages, title=title)


UPLOAD = combine(
    addressed("Olga Owner", 1, pages=2, title="u1"),  # pages 1-2: unit 1 (Olga)
    addressed("Olga Owner", 1, title="u2"),  # page 3: unit 2 (Olga again)
    addressed("Uwe Unreg", 3, title="u3"),  # page 4
    addressed("Vera Reg", 4, title="u4"),  # page 5
)
RANGES = [
    PageRange("u1", 1, 2, "Abrechnung"),
    PageRange("u2", 3, 3, "Abrechnung"),
    PageRange("u3", 4, 4, "Abrechnung"),
    PageRange("u4", 5, 5, "Abrechnung"),
]
CASES = {u: f"akte-{u}" for u in ("u1", "u2", "u3", "u4")}


def pages(pdf: bytes) -> int:
    return len(pypdf.PdfReader(io.BytesIO(pdf)).pages)


async def test_a_run_end_to_end(tmp_path: Path, intake: PdfIntake) -> None:
    async with SQLiteStore(tmp_path / "store.db") as store, letters_app(store, tmp_path) as app:
        await _run(app, tmp_path, intake)


async def prepare(app: ClientComm, tmp_path: Path, intake: PdfIntake) -> FileDropProvider:
    d = app.directory
    await d.put_staff(  # type: ignore[attr-defined]
        Staff(
            "sharer",
            "f1",
            "Sina Sharer",
            Role.CLERK,
            email="sina@example.com",
            unrestricted=True,
            permissions={StaffPermission.CLIENT_PORTAL},
        )
    )
    # Olga's portal login for unit 2 (the Directory keeps contacts per client);
    # the run's contact map names her as "olga" for both units, so merge groups them
    await d.put_contact(  # type: ignore[attr-defined]
        Contact("olga-u2", "f1", "u2", "Olga Owner", "olga@example.com", True, LETTER)
    )
    for unit, case in CASES.items():
        await d.put_case_file(CaseFile(case, "f1", unit, f"Akte {unit}", handler_id="sharer"))  # type: ignore[attr-defined]
    drop = FileDropProvider(tmp_path / "drop", capabilities=PostalCapabilities(registered=True))
    runs = app.letter_runs
    runs.intake = intake
    runs.provider = drop
    runs.links = LinkTemplates(
        {"letters_download": "https://office.example/{firm_id}/letters/{event_id}"},
        default="https://portal.example/{firm_id}/clients/{client_id}/messages",
    )
    return drop


async def _run(app: ClientComm, tmp_path: Path, intake: PdfIntake) -> None:
    drop = await prepare(app, tmp_path, intake)
    runs = app.letter_runs
    transport = app.transport

    # -- upload (one PDF split by the host's page ranges), attachment ------------------
    run = await runs.create(SHARER, property_id="p1", title="Abrechnung 2026", contacts=MEMBERS)
    await runs.upload(SHARER, run.id, filename="abrechnung.pdf", pdf=UPLOAD, ranges=RANGES)
    await runs.add_attachment(
        SHARER, run.id, filename="hausordnung.pdf", pdf=letter(("-",), title="Hausordnung")
    )
    # check before release: a single letter as the print file holds it
    olga_u1 = await runs.download_letter(SHARER, run.id, "olga", unit_id="u1")
    assert pages(olga_u1) == 3  # u1's 2 pages + the attachment (merge off, simplex)

    # -- not orderable before release -----------------------------------------------------
    button = await runs.dispatch(SHARER, run.id)
    assert button.button is DispatchButton.NOT_POSSIBLE
    assert DispatchReason.LETTER_PROBLEMS in button.reasons

    # -- release into the portals, with the e-mail notice ---------------------------------
    released = await runs.release(SHARER, run.id, case_files=CASES)
    assert released.state is RunState.RELEASED
    # u3's only contact (Uwe) is not registered: no portal, post only
    assert set(released.released_units) == {"u1", "u2", "u4"}
    for unit, contact in (("u1", "olga"), ("u2", "olga-u2"), ("u4", "vera")):
        portal = ClientActor("f1", unit, contact)
        [folder] = await app.shares.list_folders(portal, CASES[unit])
        shown = await app.shares.list_documents(portal, folder.id)
        assert sorted(x.filename for x in shown) == sorted(
            [f"abrechnung-{r.first}-{r.last}.pdf" for r in RANGES if r.unit_id == unit]
            + ["hausordnung.pdf"]
        )
    # editing is over once released
    with pytest.raises(Exception, match="until they are released"):
        await runs.add_attachment(SHARER, run.id, filename="x.pdf", pdf=letter())
    await app.drain()
    to = sorted(parseaddr(m["To"])[1] for m in transport.messages())  # type: ignore[attr-defined]
    # registered contacts with an address, per unit: Olga (u1 and u2), Tom, Vera
    assert to == ["olga@example.com", "olga@example.com", "tom@example.com", "vera@example.com"]
    mails_after_release = len(transport.messages())  # type: ignore[attr-defined]

    # -- select, merge, pad, registered --------------------------------------------------
    await runs.set_selection(SHARER, run.id, Selection(SendTo.BY_PREFERENCE, merge=True))
    await runs.set_options(
        SHARER, run.id, colour=False, duplex=True, duplex_optimised=True, registered=True
    )
    lines = await runs.overview(SHARER, run.id)
    assert sorted((x.unit_id, x.contact_id) for x in lines if x.by_post) == [
        ("u1", "olga"),
        ("u2", "olga"),
        ("u3", "uwe"),
        ("u4", "vera"),
    ]
    assert (await runs.dispatch(SHARER, run.id)).button is DispatchButton.ORDERABLE

    # -- order through the file drop; a retried call orders once ---------------------------
    ordered = await runs.order(SHARER, run.id)
    assert ordered.order is not None and ordered.order.state == "ordered"
    batch_1 = ordered.order.batch_id
    again = await runs.order(SHARER, run.id)
    assert again.order == ordered.order
    outbox = tmp_path / "drop" / "outbox" / "f1"
    assert [p.name for p in outbox.iterdir()] == [batch_1]
    manifest = json.loads((outbox / batch_1 / "manifest.json").read_text())
    by_contact = {x["contact_id"]: x["page_count"] for x in manifest["letters"]}
    # Olga: u1 (2) + u2 (1, +1 blank: odd) + attachment once (1, +1 blank) = 6 pages
    # Uwe, Vera: document (1 +1 blank) + attachment (1 +1 blank) = 4 pages
    assert by_contact == {"olga": 6, "uwe": 4, "vera": 4}
    assert manifest["options"]["registered"] is True
    assert pages((outbox / batch_1 / "letters.pdf").read_bytes()) == 14
    assert (await runs.dispatch(SHARER, run.id)).button is DispatchButton.CANCELLABLE

    # -- cancel, re-order ---------------------------------------------------------------------
    cancelled = await runs.cancel(SHARER, run.id)
    assert cancelled.order is not None and cancelled.order.state == "cancelled"
    assert {s.state for s in cancelled.order.letters} == {"cancelled"}
    assert (tmp_path / "drop" / "cancelled" / "f1" / batch_1).is_dir()
    reordered = await runs.order(SHARER, run.id)
    assert reordered.order is not None and reordered.order.batch_id != batch_1
    batch_2 = reordered.order.batch_id

    # -- the shop takes it and reports tracking ids; status flows back -----------------------
    drop.take("f1", batch_2)
    letters_ = {x["contact_id"]: x["letter_id"] for x in manifest["letters"]}
    status_dir = tmp_path / "drop" / "status" / "f1"
    status_dir.mkdir(parents=True, exist_ok=True)
    m2 = json.loads((tmp_path / "drop" / "taken" / "f1" / batch_2 / "manifest.json").read_text())
    ids2 = {x["contact_id"]: x["letter_id"] for x in m2["letters"]}
    assert set(ids2) == set(letters_)
    (status_dir / f"{batch_2}.json").write_text(
        json.dumps({"letters": {ids2["olga"]: {"state": "posted", "tracking_id": "RR123456785DE"}}})
    )
    refreshed = await runs.refresh(SHARER, run.id)
    assert refreshed.order is not None
    states = {s.contact_id: (s.state, s.tracking_id) for s in refreshed.order.letters}
    assert states["olga"] == ("posted", "RR123456785DE")
    assert states["uwe"] == ("in_production", None)
    with pytest.raises(ConflictError):
        await runs.cancel(SHARER, run.id)  # in production
    button = await runs.dispatch(SHARER, run.id)
    assert button.button is DispatchButton.NOT_POSSIBLE
    assert button.reasons == (DispatchReason.ALREADY_ORDERED,)

    # -- PDF/A download link (filtered: unregistered only) ----------------------------------
    await runs.set_selection(SHARER, run.id, Selection(SendTo.UNREGISTERED))
    requested = await runs.request_download(SHARER, run.id)
    assert requested.letters == 1 and requested.recipients == ("sharer",)
    assert await app.run_step("letters.pdfa") == 1
    status = await runs.download_status(SHARER, run.id, requested.id)
    assert status.status is DownloadStatus.READY
    await app.drain()
    new = transport.messages()[mails_after_release:]  # type: ignore[attr-defined]
    [mail] = [m for m in new if parseaddr(m["To"])[1] == "sina@example.com"]
    body = mail.get_body(preferencelist=("plain",)).get_content()
    [link] = re.findall(r"https://\S+token=\S+", body)
    token = parse_qs(urlsplit(link).query)["token"][0]
    claims = await runs.verify_download_link(token)
    assert (claims.run_id, claims.download_id) == (run.id, requested.id)
    data = b"".join([part async for part in await runs.open_download(SHARER, token)])
    report = check_pdfa(data)
    assert (report.part, report.conformance) == ("2", "B")
    reader = pypdf.PdfReader(io.BytesIO(data))
    # Uwe's letter only, as the print options lay it out (duplex-optimised blanks)
    assert not reader.is_encrypted and len(reader.pages) == 4
    assert "Uwe Unreg" in reader.pages[0].extract_text()
    # someone the link was not sent to: refused like a missing download
    with pytest.raises(NotFoundError):
        await runs.open_download(ADMIN, token)
    # a tampered or expired token: refused
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(LinkTokenError) as refused:
        await runs.open_download(SHARER, tampered)
    assert refused.value.problem is TokenProblem.TAMPERED
    app.clock.advance(runs.download_ttl)  # type: ignore[attr-defined]
    with pytest.raises(LinkTokenError) as refused:
        await runs.verify_download_link(token)
    assert refused.value.problem is TokenProblem.EXPIRED

    # -- delete serial letter: administrators only ------------------------------------------
    with pytest.raises(PermissionDeniedError):
        await runs.delete(MANAGER, run.id)
    with pytest.raises(PermissionDeniedError):
        await runs.delete(SHARER, run.id)
    await runs.delete(ADMIN, run.id)
    for unit, contact in (("u1", "olga"), ("u4", "vera")):
        portal = ClientActor("f1", unit, contact)
        [folder] = await app.shares.list_folders(portal, CASES[unit])
        assert await app.shares.list_documents(portal, folder.id) == []
    with pytest.raises(NotFoundError):
        await runs.get(SHARER, run.id)
    await app.run_step("audit.chain")
    page = await app.audit.query("f1", subject=f"letters.run:{run.id}", limit=1000)
    ops = [e.operation for e in page.entries]
    for op in (
        "letters.run_created",
        "letters.documents_added",
        "letters.released",
        "letters.selection_set",
        "letters.ordered",
        "letters.cancelled",
        "letters.status_updated",
        "letters.download_requested",
        "letters.download_ready",
        "letters.download_opened",
        "letters.deleted",
    ):
        assert op in ops, op


async def test_a_release_stopped_part_way_is_finished_without_duplicates(
    tmp_path: Path, intake: PdfIntake, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SQLiteStore(tmp_path / "store.db") as store, letters_app(store, tmp_path) as app:
        await prepare(app, tmp_path, intake)
        runs = app.letter_runs
        run = await runs.create(SHARER, property_id="p1", title="T", contacts=MEMBERS)
        await runs.upload(SHARER, run.id, filename="a.pdf", pdf=UPLOAD, ranges=RANGES)
        real = app.shares.share
        calls = 0

        async def crash_on_second(*args: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            result = await real(*args, **kwargs)  # type: ignore[arg-type]
            if calls == 2:
                raise RuntimeError("killed after sharing unit 2")
            return result

        monkeypatch.setattr(app.shares, "share", crash_on_second)
        with pytest.raises(RuntimeError):
            await runs.release(SHARER, run.id, case_files=CASES)
        monkeypatch.setattr(app.shares, "share", real)
        assert (await runs.get(SHARER, run.id)).state is RunState.DRAFT
        done = await runs.release(SHARER, run.id, case_files=CASES)
        assert done.state is RunState.RELEASED
        for unit, contact in (("u1", "olga"), ("u2", "olga-u2"), ("u4", "vera")):
            portal = ClientActor("f1", unit, contact)
            shown = []
            for folder in await app.shares.list_folders(portal, CASES[unit]):
                shown += await app.shares.list_documents(portal, folder.id)
            assert len(shown) == 1, unit  # the unit's document, once
