"""``clientcomm letters merge``: PDFs into one print file, from the command line.

Each file is one letter (in the order given); every file is checked by the
intake pool first (:class:`~clientcomm.letters.intake.PdfIntake`), so a hostile
or broken PDF is refused with its reason and nothing is written. With
``--duplex`` the letters are printed two-sided with duplex optimisation: a
blank page after every letter with an odd page count. The print file is
written atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from clientcomm.directory.models import Contact
from clientcomm.errors import InvalidDocumentError
from clientcomm.letters.intake import PdfIntake
from clientcomm.letters.merge import plan_letters
from clientcomm.letters.models import LetterDocument, PrintOptions, Sides
from clientcomm.letters.printfile import build_print_file

__all__ = ["merge_command"]


def merge_command(files: Sequence[str], output: str, *, duplex: bool = False) -> int:
    """Merge ``files`` into the print file ``output``; returns the exit status
    (0: written; 1: a file was refused or unreadable, nothing written)."""
    items: list[tuple[str, bytes]] = []
    for name in files:
        try:
            items.append((Path(name).name, Path(name).read_bytes()))
        except OSError as exc:
            print(f"clientcomm letters merge: error: {name}: {exc.strerror}", file=sys.stderr)
            return 1
    with PdfIntake() as intake:
        results = intake.validate_many(items)
    refused = [r for r in results if isinstance(r, InvalidDocumentError)]
    for err in refused:
        print(
            f"clientcomm letters merge: error: {err.filename}: refused ({err.reason})",
            file=sys.stderr,
        )
    if refused:
        return 1
    contacts = [Contact(f"file-{i}", "cli", "cli", name) for i, (name, _) in enumerate(items)]
    docs = [
        LetterDocument(c.id, pdf, name)
        for c, pdf, (name, _) in zip(contacts, results, items, strict=True)
        if not isinstance(pdf, InvalidDocumentError)
    ]
    options = PrintOptions(sides=Sides.DUPLEX, duplex_optimised=True) if duplex else PrintOptions()
    print_file = build_print_file(plan_letters(docs, (), contacts, options), options)
    target = Path(output)
    fd, tmp = tempfile.mkstemp(prefix=".merge-", suffix=".pdf", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(print_file.data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    for rng, (name, _) in zip(print_file.letters, items, strict=True):
        print(f"{name}: pages {rng.first_page}-{rng.last_page}")
    print(f"{target}: {print_file.page_count} pages")
    return 0
