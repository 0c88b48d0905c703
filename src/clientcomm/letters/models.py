"""Public values of serial letters: validated documents, print options, padded
letter plans, the print file and the problems a check reports.

All values are frozen attrs classes; document bytes never show in a ``repr``.
Page sizes are in PDF points (1/72 inch); :data:`MM` converts millimetres.
"""

from __future__ import annotations

import enum
import hashlib

import attrs

from clientcomm.directory.models import Contact

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

MM = 72 / 25.4
"""Points per millimetre."""


class DocumentProblem(enum.StrEnum):
    """Reason codes of :class:`~clientcomm.errors.InvalidDocumentError`."""

    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_PDF = "not_pdf"
    TRUNCATED = "truncated"
    BROKEN_XREF = "broken_xref"
    ENCRYPTED = "encrypted"
    PAGE_TREE = "page_tree"  # cycles, too deep, no pages, broken nodes
    TOO_MANY_PAGES = "too_many_pages"
    BAD_LENGTH = "bad_length"  # missing, self-referencing or indirect-to-nowhere /Length
    DECOMPRESSION_BOMB = "decompression_bomb"
    HUGE_OBJECT = "huge_object"  # arrays/dictionaries beyond the limit, too many objects
    ACTIVE_CONTENT = "active_content"  # JavaScript, Launch, embedded files, ...
    MALFORMED = "malformed"  # any other parse or decode error
    TIMEOUT = "timeout"
    MEMORY = "memory"
    CRASHED = "crashed"


@attrs.frozen
class PageSize:
    """A page's size in points (width, height as displayed, after /Rotate)."""

    width: float
    height: float

    def is_a4_portrait(self, tolerance_mm: float = 2.0) -> bool:
        tol = tolerance_mm * MM
        return abs(self.width - A4.width) <= tol and abs(self.height - A4.height) <= tol


A4 = PageSize(210 * MM, 297 * MM)


@attrs.frozen
class TextFragment:
    """A piece of text shown on a page at ``(x, y)`` points, origin bottom left."""

    x: float
    y: float
    text: str


@attrs.frozen
class ValidatedPdf:
    """A PDF that passed intake (:class:`~clientcomm.letters.intake.PdfIntake`).

    ``first_page_text`` holds the positioned text of page 1 when intake was asked
    for it (letters, for the address check), else it is empty.
    """

    filename: str
    data: bytes = attrs.field(repr=False)
    page_sizes: tuple[PageSize, ...]
    first_page_text: tuple[TextFragment, ...] = attrs.field(default=(), repr=False)
    sha256: str = attrs.field(default="")

    def __attrs_post_init__(self) -> None:
        if not self.sha256:
            object.__setattr__(self, "sha256", hashlib.sha256(self.data).hexdigest())

    @property
    def page_count(self) -> int:
        return len(self.page_sizes)


@attrs.frozen
class LetterDocument:
    """One document of one contact (e.g. the statement for one unit); a contact
    with several units has several."""

    contact_id: str
    pdf: ValidatedPdf
    label: str = ""


class ColourMode(enum.StrEnum):
    BLACK_WHITE = "bw"
    COLOUR = "colour"


class Sides(enum.StrEnum):
    SIMPLEX = "simplex"
    DUPLEX = "duplex"


@attrs.frozen
class PrintOptions:
    """How letters are printed (seed 003, step 9).

    ``duplex_optimised`` (only with duplex): after every document with an odd page
    count a blank page is inserted, so the next document never starts on the back
    of the previous one's last sheet. ``registered``: Einwurf-Einschreiben
    (Germany only).
    """

    colour: ColourMode = ColourMode.BLACK_WHITE
    sides: Sides = Sides.SIMPLEX
    duplex_optimised: bool = False
    registered: bool = False

    def __attrs_post_init__(self) -> None:
        from clientcomm.errors import InvalidInputError

        if self.duplex_optimised and self.sides is not Sides.DUPLEX:
            raise InvalidInputError("duplex_optimised", "needs sides=duplex")

    def sheets(self, pages: int) -> int:
        return (pages + 1) // 2 if self.sides is Sides.DUPLEX else pages

    def to_dict(self) -> dict[str, object]:
        return {
            "colour": self.colour.value,
            "sides": self.sides.value,
            "duplex_optimised": self.duplex_optimised,
            "registered": self.registered,
        }


class PartKind(enum.StrEnum):
    DOCUMENT = "document"  # the contact's own document
    ATTACHMENT = "attachment"  # a general attachment (stored once in a print file)


@attrs.frozen
class LetterPart:
    """One source document in a letter, with the blank pages padding adds after it."""

    kind: PartKind
    pdf: ValidatedPdf
    label: str
    blanks_after: int = 0

    @property
    def page_count(self) -> int:
        return self.pdf.page_count + self.blanks_after


@attrs.frozen
class LetterPlan:
    """One contact's letter: its documents, then the general attachments once,
    each followed by its padding blanks."""

    contact: Contact
    parts: tuple[LetterPart, ...]

    @property
    def page_count(self) -> int:
        return sum(p.page_count for p in self.parts)


@attrs.frozen
class LetterRange:
    """Where one letter lies in a print file: pages ``first_page`` ..
    ``first_page + page_count - 1`` (1-based)."""

    contact_id: str
    first_page: int
    page_count: int
    sheets: int

    @property
    def last_page(self) -> int:
        return self.first_page + self.page_count - 1


@attrs.frozen
class PrintFile:
    """All letters in one PDF, with each letter's page range."""

    data: bytes = attrs.field(repr=False)
    letters: tuple[LetterRange, ...]
    options: PrintOptions

    @property
    def page_count(self) -> int:
        return sum(r.page_count for r in self.letters)


class Requirement(enum.StrEnum):
    """What a letter must meet to go by post (reported in :class:`LetterProblem`)."""

    ADDRESS_COMPLETE = "address_complete"  # name, street, postal code, city, ISO country
    ADDRESS_IN_WINDOW = "address_in_window"  # some text in the DIN 5008 address field
    ADDRESS_MATCHES = "address_matches"  # that text is the contact's postal address
    A4_PORTRAIT = "a4_portrait"
    REGISTERED_GERMANY = "registered_germany"  # Einwurf-Einschreiben only within DE
    PROVIDER = "provider"  # a provider capability (colour, duplex, limits, country)


@attrs.frozen
class LetterProblem:
    """A named letter fails a named requirement; ``document`` names the file."""

    contact_id: str
    contact_name: str
    requirement: Requirement
    detail: str
    document: str = ""

    def __str__(self) -> str:
        where = f" ({self.document})" if self.document else ""
        return f"{self.contact_name}{where}: {self.requirement.value}: {self.detail}"
