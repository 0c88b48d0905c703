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
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
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


def emit(
    name: str,
    value: float,
    unit: str,
    baseline: float | None = None,
    target: float | None = None,
    **extra: Any,
) -> None:
    row: dict[str, Any] = {"name": name, "value": round(value, 3), "unit": unit}
    if baseline is not None:
        row["baseline"] = round(baseline, 3)
        row["ratio"] = round(value / baseline, 3) if baseline else None
    if target is not None:
        row["target"] = target
    row.update(extra)
    print(json.dumps(row), flush=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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


MEASUREMENTS: list[Callable[[Inputs], None]] = [measure_intake, measure_print_file, measure_qpdf]


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
