"""Serial letters: merging into one print file, and PDF intake, beside raw baselines.

``python bench/letters.py [--quick]`` (run by ``make bench``) prints one JSON
object per figure on stdout (name, value, unit, baseline, ratio, target);
progress goes to stderr. ``--quick`` uses 100 letters instead of 1,000.

Inputs, built once per run: N letters of 1-3 pages each (A4, Helvetica, an
address in the DIN 5008 window, ~12 text lines per page, Flate-compressed, as a
host's document generator makes them) and one 10-page general attachment.

* ``letters.print_file``: our path (validated inputs -> ``plan_letters`` with
  duplex padding -> ``build_print_file``: attachments stored once, object
  streams) in letters/s, beside the raw baseline in the same run: a plain pypdf
  loop appending every letter's pages and the attachment's pages per letter,
  no padding (``PdfWriter.add_page``, ``write``). Target: ratio >= 0.8.
* ``letters.print_file_bytes``: our output's bytes beside the raw loop's output
  **without** the attachment. Target: ratio < 1.5.
* ``letters.intake``: ``PdfIntake.validate_many`` of the N letters over the
  pool (2 workers, child processes included, every stream decoded), letters/s.
  Target >= 200. ``letters.intake_with_address_text`` also extracts page 1's
  positioned text for the address check (reported, same target).
* ``letters.qpdf_reference``: ``qpdf --empty --pages`` on the same inputs (each
  letter then the attachment), letters/s, beside the raw pypdf loop: the C++
  reference line. Skipped (message on stderr) when qpdf is not installed
  (``apt-get install -y qpdf``).

Each measurement is a function taking the shared :class:`Inputs`; add a line by
adding a function to ``MEASUREMENTS``.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from _common import emit, log
from pypdf import PdfReader, PdfWriter

from clientcomm.directory.models import Contact, PostalAddress
from clientcomm.letters import (
    LetterDocument,
    PdfIntake,
    PrintOptions,
    Sides,
    ValidatedPdf,
    build_print_file,
    plan_letters,
)
from clientcomm.testing.letters import letter

DUPLEX = PrintOptions(sides=Sides.DUPLEX, duplex_optimised=True)


@attrs.define
class Inputs:
    n: int
    raw_letters: list[bytes]
    attachment: bytes
    contacts: list[Contact]
    intake: PdfIntake
    letters: list[ValidatedPdf] = attrs.field(factory=list)
    validated_attachment: ValidatedPdf | None = None
    results: dict[str, float] = attrs.field(factory=dict)


def make_inputs(n: int, intake: PdfIntake) -> Inputs:
    contacts, raw = [], []
    for i in range(n):
        a = PostalAddress(f"Kontakt {i}", f"Hauptstraße {i}", "10115", "Berlin")
        contacts.append(Contact(f"c{i}", "f1", "cl1", a.name, address=a))
        raw.append(
            letter([a.name, a.street, f"{a.postal_code} {a.city}"], pages=1 + i % 3, title=f"B{i}")
        )
    attachment = letter(("",), pages=10, title="Allgemeiner Anhang")
    return Inputs(n, raw, attachment, contacts, intake)


def raw_loop(inputs: Inputs, *, with_attachment: bool) -> tuple[float, int]:
    """Seconds and output bytes of the plain pypdf loop."""
    started = time.perf_counter()
    writer = PdfWriter()
    att = PdfReader(io.BytesIO(inputs.attachment))
    for data in inputs.raw_letters:
        for page in PdfReader(io.BytesIO(data)).pages:
            writer.add_page(page)
        if with_attachment:
            for page in att.pages:
                writer.add_page(page)
    out = io.BytesIO()
    writer.write(out)
    return time.perf_counter() - started, len(out.getvalue())


def measure_intake(inputs: Inputs) -> None:
    items = [(f"brief-{i}.pdf", d) for i, d in enumerate(inputs.raw_letters)]
    inputs.intake.validate("warm.pdf", inputs.raw_letters[0])  # the pool is up
    for name, text in (("letters.intake", False), ("letters.intake_with_address_text", True)):
        started = time.perf_counter()
        results = inputs.intake.validate_many(items, first_page_text=text)
        elapsed = time.perf_counter() - started
        bad = [r for r in results if not isinstance(r, ValidatedPdf)]
        assert not bad, bad[:3]
        if text:
            inputs.letters = [r for r in results if isinstance(r, ValidatedPdf)]
        emit(name, inputs.n / elapsed, "letters/s", target=200, workers=inputs.intake.size)
    inputs.validated_attachment = inputs.intake.validate("anhang.pdf", inputs.attachment)


def measure_print_file(inputs: Inputs) -> None:
    assert inputs.validated_attachment is not None
    raw_s, _ = raw_loop(inputs, with_attachment=True)
    _, raw_bytes_without = raw_loop(inputs, with_attachment=False)
    started = time.perf_counter()
    docs = [LetterDocument(c.id, d) for c, d in zip(inputs.contacts, inputs.letters, strict=True)]
    plans = plan_letters(docs, [inputs.validated_attachment], inputs.contacts, DUPLEX)
    pf = build_print_file(plans, DUPLEX)
    ours_s = time.perf_counter() - started
    pages = len(PdfReader(io.BytesIO(pf.data)).pages)
    assert pages == pf.page_count
    inputs.results["raw_s"] = raw_s
    emit(
        "letters.print_file",
        inputs.n / ours_s,
        "letters/s",
        baseline=inputs.n / raw_s,
        target=0.8,
        pages=pages,
    )
    emit(
        "letters.print_file_bytes",
        len(pf.data),
        "bytes",
        baseline=raw_bytes_without,
        target=1.5,
        note="ratio must stay below the target; baseline is the raw loop without the attachment",
    )


def measure_qpdf(inputs: Inputs) -> None:
    qpdf = shutil.which("qpdf")
    if qpdf is None:
        log("letters.qpdf_reference skipped: qpdf is not installed (apt-get install -y qpdf)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        att = root / "anhang.pdf"
        att.write_bytes(inputs.attachment)
        args: list[str] = []
        for i, data in enumerate(inputs.raw_letters):
            path = root / f"b{i}.pdf"
            path.write_bytes(data)
            args += [str(path), str(att)]
        started = time.perf_counter()
        subprocess.run([qpdf, "--empty", "--pages", *args, "--", str(root / "out.pdf")], check=True)
        elapsed = time.perf_counter() - started
    raw_s = inputs.results.get("raw_s") or raw_loop(inputs, with_attachment=True)[0]
    emit("letters.qpdf_reference", inputs.n / elapsed, "letters/s", baseline=inputs.n / raw_s)


async def _full_run(inputs: Inputs) -> None:
    """``letters.full_run``: a serial-letter run of N units (part 2) end to end
    through ``app.letter_runs`` (release into N portals through sharing, select,
    merge, print file, file drop), beside the sum of the same work done
    separately with the parts' own APIs in the same run: N sharing calls
    (folder + share of the unit's document and the attachment), selection and
    merge (``letter_documents`` + ``plan_letters``), ``build_print_file`` and
    ``FileDropProvider.order``. Each part is done once in each line. In memory
    (MemoryStore), the setup (directory, upload split by page ranges) untimed.
    Target: full / sum of parts <= 1.5."""
    from clientcomm import (
        CaseFile,
        Client,
        ClientActor,
        ClientComm,
        ClientGroup,
        Firm,
        Role,
        Staff,
        StaffActor,
        StaffPermission,
    )
    from clientcomm.letters.run_models import PageRange
    from clientcomm.letters.selection import LetterLine, Selection, SendTo, letter_documents
    from clientcomm.postal.base import PostalBatch
    from clientcomm.postal.filedrop import FileDropProvider
    from clientcomm.sharing import PortalDocument

    n = inputs.n
    actor = StaffActor("f1", "s1")

    async def world() -> ClientComm:
        app = ClientComm.in_memory()
        d: Any = app.directory
        await d.put_firm(Firm("f1", "Hausverwaltung"))
        await d.put_group(ClientGroup("p1", "f1", "Liegenschaft"))
        await d.put_staff(
            Staff(
                "s1",
                "f1",
                "Sina",
                Role.CLERK,
                unrestricted=True,
                permissions={StaffPermission.CLIENT_PORTAL},
            )
        )
        for i, c in enumerate(inputs.contacts):
            unit = f"u{i}"
            await d.put_client(Client(unit, "f1", f"Einheit {i}", group_ids={"p1"}))
            await d.put_contact(attrs.evolve(c, client_id=unit, registered=True))
            await d.put_case_file(CaseFile(f"akte-{i}", "f1", unit, f"Akte {i}", handler_id="s1"))
        return app

    # -- the parts, separately --------------------------------------------------------
    parts_app = await world()
    att = inputs.validated_attachment
    assert att is not None
    started = time.perf_counter()
    for i, doc in enumerate(inputs.letters):
        folder = await parts_app.shares.create_folder(
            actor, f"akte-{i}", "Abrechnung", client_id=f"u{i}"
        )
        await parts_app.shares.share(
            actor,
            f"akte-{i}",
            [
                PortalDocument(doc.filename, doc.data, "application/pdf", f"d{i}"),
                PortalDocument(att.filename, att.data, "application/pdf", f"a{i}"),
            ],
            folder_id=folder.id,
            client_id=f"u{i}",
        )
    t_release = time.perf_counter() - started
    contacts = [attrs.evolve(c, registered=False) for c in inputs.contacts]
    started = time.perf_counter()
    lines = [LetterLine(f"u{i}", c.id, False, c.preference) for i, c in enumerate(contacts)]
    docs = letter_documents(
        lines,
        Selection(SendTo.ALL, merge=True),
        {f"u{i}": [p] for i, p in enumerate(inputs.letters)},
    )
    plans = plan_letters(docs, [att], contacts, DUPLEX, merge=True)
    t_select = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        drop = FileDropProvider(tmp)
        started = time.perf_counter()
        printed = build_print_file(plans, DUPLEX)
        batch = PostalBatch.from_print_file("f1", "bench-1", printed, contacts)
        await drop.order(batch)
        t_drop = time.perf_counter() - started
    await parts_app.aclose()
    parts = t_release + t_select + t_drop

    # -- the full run ----------------------------------------------------------------
    app = await world()
    app.letter_runs.intake = inputs.intake
    run = await app.letter_runs.create(actor, property_id="p1", title="Abrechnung")
    chunk = 300  # uploads of <= 900 pages (intake's default limit is 1,000 pages)
    for first in range(0, n, chunk):
        upload = PdfWriter()
        ranges = []
        page = 1
        for i in range(first, min(n, first + chunk)):
            count = 0
            for p in PdfReader(io.BytesIO(inputs.raw_letters[i])).pages:
                upload.add_page(p)
                count += 1
            ranges.append(PageRange(f"u{i}", page, page + count - 1, "Abrechnung"))
            page += count
        buf = io.BytesIO()
        upload.write(buf)
        await app.letter_runs.upload(
            actor, run.id, filename=f"abr-{first}.pdf", pdf=buf.getvalue(), ranges=ranges
        )
    await app.letter_runs.add_attachment(actor, run.id, filename=att.filename, pdf=att.data)
    await app.letter_runs.set_options(
        actor, run.id, colour=False, duplex=True, duplex_optimised=True
    )
    with tempfile.TemporaryDirectory() as tmp:
        app.letter_runs.provider = FileDropProvider(tmp)
        started = time.perf_counter()
        await app.letter_runs.release(
            actor, run.id, case_files={f"u{i}": f"akte-{i}" for i in range(n)}
        )
        t_full_release = time.perf_counter() - started
        await app.letter_runs.set_selection(actor, run.id, Selection(SendTo.ALL, merge=True))
        view = await app.letter_runs.order(actor, run.id)
        full = time.perf_counter() - started
    assert view.order is not None and len(view.order.letters) == n
    shown = await app.shares.list_folders(ClientActor("f1", "u0", inputs.contacts[0].id), "akte-0")
    assert len(shown) == 1
    await app.aclose()
    emit(
        "letters.full_run",
        full,
        "s",
        baseline=parts,
        target=1.5,
        units=n,
        release_s=round(t_full_release, 3),
        parts_release_s=round(t_release, 3),
        parts_select_merge_s=round(t_select, 3),
        parts_print_file_drop_s=round(t_drop, 3),
    )


def measure_full_run(inputs: Inputs) -> None:
    import asyncio

    if not inputs.letters:
        inputs.letters = [
            v
            for v in inputs.intake.validate_many(
                [(f"l{i}.pdf", d) for i, d in enumerate(inputs.raw_letters)], first_page_text=True
            )
            if isinstance(v, ValidatedPdf)
        ]
    if inputs.validated_attachment is None:
        inputs.validated_attachment = inputs.intake.validate("anhang.pdf", inputs.attachment)
    asyncio.run(_full_run(inputs))


MEASUREMENTS: list[Callable[[Inputs], None]] = [
    measure_intake,
    measure_print_file,
    measure_qpdf,
    measure_full_run,
]


def main(argv: list[str]) -> None:
    n = 100 if "--quick" in argv else 1000
    with PdfIntake(workers=2) as intake:
        log(f"building {n} letters")
        inputs = make_inputs(n, intake)
        for measure in MEASUREMENTS:
            log(f"running {measure.__name__}")
            measure(inputs)


if __name__ == "__main__":
    main(sys.argv[1:])
