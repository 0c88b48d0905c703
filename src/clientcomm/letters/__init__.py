"""Serial letters (seed 003): safe PDF intake, per-contact merging, duplex
padding, print options, the print file, the DIN 5008 address check and the
dispatch button state. Part 2 (the serial-letter run) builds on these.

* :mod:`~clientcomm.letters.models` - public values;
* :mod:`~clientcomm.letters.intake` - :class:`PdfIntake`, validation of untrusted
  PDFs in limited child processes;
* :mod:`~clientcomm.letters.padding` - the pure duplex padding plan;
* :mod:`~clientcomm.letters.merge` - one letter per contact (pure);
* :mod:`~clientcomm.letters.printfile` - all letters in one PDF, general
  attachments stored once;
* :mod:`~clientcomm.letters.address` - DIN 5008 address window check (pure);
* :mod:`~clientcomm.letters.dispatch` - the dispatch button state (pure).
"""

from __future__ import annotations

from clientcomm.letters.models import (
    A4,
    MM,
    ColourMode,
    DocumentProblem,
    LetterDocument,
    LetterPart,
    LetterPlan,
    LetterProblem,
    LetterRange,
    PageSize,
    PartKind,
    PrintFile,
    PrintOptions,
    Requirement,
    Sides,
    TextFragment,
    ValidatedPdf,
)

__all__ = [
    "A4",
    "MM",
    "ColourMode",
    "DocumentProblem",
    "LetterDocument",
    "LetterPart",
    "LetterPlan",
    "LetterProblem",
    "LetterRange",
    "PageSize",
    "PartKind",
    "PrintFile",
    "PrintOptions",
    "Requirement",
    "Sides",
    "TextFragment",
    "ValidatedPdf",
]
