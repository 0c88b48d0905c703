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

from clientcomm.letters.address import AddressForm, Window, check_letter, window
from clientcomm.letters.dispatch import (
    DispatchButton,
    DispatchFacts,
    DispatchReason,
    DispatchState,
    dispatch_state,
)
from clientcomm.letters.intake import IntakeLimits, PdfAttachmentScanner, PdfIntake
from clientcomm.letters.merge import plan_letters
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
from clientcomm.letters.padding import Blank, SourcePage, blanks_after, page_plan
from clientcomm.letters.printfile import build_print_file

__all__ = [
    "A4",
    "MM",
    "AddressForm",
    "Blank",
    "ColourMode",
    "DispatchButton",
    "DispatchFacts",
    "DispatchReason",
    "DispatchState",
    "DocumentProblem",
    "IntakeLimits",
    "LetterDocument",
    "LetterPart",
    "LetterPlan",
    "LetterProblem",
    "LetterRange",
    "PageSize",
    "PartKind",
    "PdfAttachmentScanner",
    "PdfIntake",
    "PrintFile",
    "PrintOptions",
    "Requirement",
    "Sides",
    "SourcePage",
    "TextFragment",
    "ValidatedPdf",
    "Window",
    "blanks_after",
    "build_print_file",
    "check_letter",
    "dispatch_state",
    "page_plan",
    "plan_letters",
    "window",
]
