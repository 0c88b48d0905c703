"""Serial letters, part 1: from untrusted PDFs to a print shop's drop folder.

Three contacts get letters (one of them two, for two units, merged into one
letter), every letter carries a general attachment once; the PDFs are checked
in limited child processes, a hostile upload is refused, the letters are merged
with duplex padding into one print file (the attachment stored once), checked
against DIN 5008 and dropped for a print shop with a manifest.

Run: ``python examples/letters.py`` (writes into a temporary folder and prints
where the print file was; pass a folder to keep it).
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import tempfile
import zlib
from pathlib import Path

from pypdf import PdfReader

from clientcomm.directory.models import Contact, PostalAddress
from clientcomm.errors import InvalidDocumentError
from clientcomm.letters import (
    DispatchFacts,
    LetterDocument,
    PdfIntake,
    PrintOptions,
    Sides,
    build_print_file,
    check_letter,
    dispatch_state,
    plan_letters,
)
from clientcomm.postal import FileDropProvider, PostalBatch
from clientcomm.testing.letters import build, letter, stream


def contact(i: int, name: str, street: str, city: str) -> Contact:
    address = PostalAddress(name, street, city.split()[0], city.split(maxsplit=1)[1])
    return Contact(f"c{i}", "f1", "cl1", name, address=address)


async def main(out: Path) -> None:
    contacts = [
        contact(1, "Erika Mustermann", "Hauptstraße 1", "10115 Berlin"),
        contact(2, "Max Beispiel", "Ringweg 7", "80331 München"),
        contact(3, "Jana Probe", "Am Markt 3", "04109 Leipzig"),
    ]
    uploads = []
    for c, pages, unit in (
        (contacts[0], 1, "WE 1"),
        (contacts[1], 2, "WE 2"),
        (contacts[0], 3, "WE 3"),
        (contacts[2], 1, "WE 4"),
    ):
        a = c.address
        assert a is not None
        uploads.append(
            (
                f"{unit}.pdf",
                letter([a.name, a.street, f"{a.postal_code} {a.city}"], pages=pages, title=unit),
            )
        )
    bomb = stream(zlib.compress(bytes(200 << 20)), b"/Filter /FlateDecode ")
    hostile = build(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R >>",
            2: b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
            4: bomb,
        }
    )
    options = PrintOptions(sides=Sides.DUPLEX, duplex_optimised=True)

    async with PdfIntake(workers=2) as intake:
        checked = await intake.avalidate_many(uploads, first_page_text=True)
        attachment = await intake.avalidate(
            "Hausordnung.pdf", letter(("",), pages=3, title="Hausordnung")
        )
        try:
            await intake.avalidate("kaputt.pdf", hostile)
        except InvalidDocumentError as err:
            print(f"refused: {err.filename} ({err.reason})")

    owners = ["c1", "c2", "c1", "c3"]
    docs = []
    for (name, _), owner, pdf in zip(uploads, owners, checked, strict=True):
        assert not isinstance(pdf, InvalidDocumentError)
        docs.append(LetterDocument(owner, pdf, name))
    plans = plan_letters(docs, [attachment], contacts, options)
    problems = [p for plan in plans for p in check_letter(plan, options)]
    state = dispatch_state(DispatchFacts(True, len(plans), problems))
    print(f"dispatch button: {state.button.value} ({state.button.colour})")

    print_file = build_print_file(plans, options)
    (out / "serienbrief.pdf").write_bytes(print_file.data)
    reader = PdfReader(io.BytesIO(print_file.data))
    for rng in print_file.letters:
        print(f"{rng.contact_id}: pages {rng.first_page}-{rng.last_page}, {rng.sheets} sheets")
    assert len(reader.pages) == print_file.page_count

    provider = FileDropProvider(out / "druckerei")
    batch = PostalBatch.from_print_file("f1", "serienbrief-2026-12", print_file, contacts)
    order = await provider.order(batch)
    manifest = json.loads(
        (out / "druckerei/outbox/f1/serienbrief-2026-12/manifest.json").read_text()
    )
    print(f"ordered {len(order.letters)} letters, manifest lists {len(manifest['letters'])}")
    print(f"print file: {out / 'serienbrief.pdf'} ({len(print_file.data)} bytes)")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp)))
