"""The DIN 5008 address check and the postal rules of a letter (issue 15, items
5 and 6), pure.

**Address field** (DIN 5008, A4 portrait, measured from the page's top left
corner; 20 mm from the left edge, 85 mm wide, 45 mm high):

====== ============== =================================================
form   field (top)    zones
====== ============== =================================================
A      27 mm – 72 mm  Zusatz- und Vermerkzone 27–44.7 mm, Anschriftzone 44.7–72 mm
B      45 mm – 90 mm  Zusatz- und Vermerkzone 45–62.7 mm, Anschriftzone 62.7–90 mm
====== ============== =================================================

The check reads the text that page 1 shows inside the **Anschriftzone** (plus
``tolerance_mm``, default 2 mm, on every side; the Zusatz- und Vermerkzone above
it holds the return address and notes) and requires the contact's
postal address there: the name, the street, the postal code with the city, and
for an address abroad the country (its ISO code or name as written on the
page). Comparison ignores case, spacing and punctuation and treats ``ß``/``ss``
and umlauts/``ae`` alike. No text in the field: ``address_in_window``; other
text: ``address_matches`` naming what is missing.

**Postal rules**: a letter goes by post only to a complete address (name,
street, postal code, city, a two-letter ISO 3166-1 country code); every page
must be A4 portrait; registered mail (Einwurf-Einschreiben) only to addresses
in Germany (``DE``).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Sequence

import attrs

from clientcomm.directory.models import Contact, PostalAddress
from clientcomm.letters.models import (
    MM,
    LetterPlan,
    LetterProblem,
    PartKind,
    PrintOptions,
    Requirement,
    TextFragment,
    ValidatedPdf,
)

__all__ = [
    "AddressForm",
    "Window",
    "address_problems",
    "check_address_text",
    "check_letter",
    "postal_address_problems",
    "text_in_window",
    "window",
]


class AddressForm(enum.StrEnum):
    A = "A"  # hochgestelltes Anschriftfeld
    B = "B"  # tiefgestelltes Anschriftfeld


@attrs.frozen
class Window:
    """A rectangle in millimetres from the page's top left corner."""

    left: float
    top: float
    width: float
    height: float


def window(form: AddressForm, *, whole_field: bool = False) -> Window:
    """The Anschriftzone of ``form``'s DIN 5008 address field (where the
    recipient's address goes), or with ``whole_field`` the whole 45 mm field."""
    top = 27.0 if form is AddressForm.A else 45.0
    if whole_field:
        return Window(20.0, top, 85.0, 45.0)
    return Window(20.0, top + 17.7, 85.0, 27.3)


def text_in_window(
    fragments: Iterable[TextFragment],
    page_height: float,
    area: Window,
    *,
    tolerance_mm: float = 2.0,
) -> tuple[str, ...]:
    """The fragments whose start point lies inside ``area``, top to bottom."""
    left = (area.left - tolerance_mm) * MM
    right = (area.left + area.width + tolerance_mm) * MM
    top = page_height - (area.top - tolerance_mm) * MM
    bottom = page_height - (area.top + area.height + tolerance_mm) * MM
    inside = [f for f in fragments if left <= f.x <= right and bottom <= f.y <= top]
    inside.sort(key=lambda f: (-f.y, f.x))
    return tuple(f.text for f in inside)


_COUNTRY = re.compile(r"^[A-Z]{2}$")


def address_problems(contact: Contact) -> tuple[LetterProblem, ...]:
    """Why ``contact``'s postal address cannot take a letter (empty: it can)."""
    return postal_address_problems(contact.id, contact.name, contact.address)


def postal_address_problems(
    contact_id: str, contact_name: str, a: PostalAddress | None
) -> tuple[LetterProblem, ...]:
    """:func:`address_problems` for an address given apart from its contact."""
    contact = Contact(contact_id, "", "", contact_name)
    if a is None:
        return (_problem(contact, Requirement.ADDRESS_COMPLETE, "no postal address"),)
    missing = [
        name
        for name, value in (
            ("name", a.name),
            ("street", a.street),
            ("postal_code", a.postal_code),
            ("city", a.city),
            ("country", a.country),
        )
        if not (value or "").strip()
    ]
    out = []
    if missing:
        out.append(_problem(contact, Requirement.ADDRESS_COMPLETE, "missing " + ", ".join(missing)))
    if a.country and not _COUNTRY.match(a.country):
        out.append(
            _problem(
                contact,
                Requirement.ADDRESS_COMPLETE,
                f"country {a.country!r} is not an ISO 3166-1 alpha-2 code",
            )
        )
    return tuple(out)


def _norm(text: str) -> str:
    text = text.casefold().replace("ß", "ss")
    for umlaut, plain in (("ä", "ae"), ("ö", "oe"), ("ü", "ue")):
        text = text.replace(umlaut, plain)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    return re.sub(r"[^0-9a-z]+", "", text)


def _expected(a: PostalAddress) -> list[tuple[str, str]]:
    parts = [
        ("name", a.name),
        ("street", a.street),
        ("postal code and city", f"{a.postal_code} {a.city}"),
    ]
    return parts


def check_address_text(contact: Contact, lines: Sequence[str]) -> tuple[LetterProblem, ...]:
    """``lines`` (the text in the address field) against the contact's address."""
    if not lines:
        return (_problem(contact, Requirement.ADDRESS_IN_WINDOW, "no text in the address field"),)
    a = contact.address
    if a is None:
        return ()  # reported by address_problems
    shown = _norm(" ".join(lines))
    missing = [label for label, value in _expected(a) if _norm(value) not in shown]
    if a.country and a.country != "DE":
        from_lines = {_norm(line) for line in lines}
        if _norm(a.country) not in from_lines and not any(
            line.strip().upper().endswith(a.country) for line in lines
        ):
            missing.append("country")
    if missing:
        return (
            _problem(
                contact,
                Requirement.ADDRESS_MATCHES,
                "address field does not show the contact's " + ", ".join(missing),
            ),
        )
    return ()


def check_letter(
    plan: LetterPlan,
    options: PrintOptions,
    *,
    form: AddressForm = AddressForm.B,
    tolerance_mm: float = 2.0,
) -> tuple[LetterProblem, ...]:
    """Every reason ``plan`` cannot go by post: address complete, the address in
    the window of page 1 of its first document (validated with
    ``first_page_text=True``), every page A4 portrait, registered mail only in
    Germany. Each problem names the contact and, where it applies, the document.
    """
    contact = plan.contact
    out = list(address_problems(contact))
    first = next((p for p in plan.parts if p.kind is PartKind.DOCUMENT), None)
    if first is not None and contact.address is not None:
        lines = _window_lines(first.pdf, form, tolerance_mm)
        out += [attrs.evolve(p, document=first.label) for p in check_address_text(contact, lines)]
    for part in plan.parts:
        bad = [n + 1 for n, size in enumerate(part.pdf.page_sizes) if not size.is_a4_portrait()]
        if bad:
            pages = ", ".join(map(str, bad[:10])) + (" ..." if len(bad) > 10 else "")
            out.append(
                attrs.evolve(
                    _problem(
                        contact, Requirement.A4_PORTRAIT, f"pages {pages} are not A4 portrait"
                    ),
                    document=part.label,
                )
            )
    if options.registered and contact.address is not None and contact.address.country != "DE":
        out.append(
            _problem(
                contact,
                Requirement.REGISTERED_GERMANY,
                f"registered mail only within Germany, not to {contact.address.country or '?'}",
            )
        )
    return tuple(out)


def _window_lines(pdf: ValidatedPdf, form: AddressForm, tolerance_mm: float) -> tuple[str, ...]:
    height = pdf.page_sizes[0].height
    return text_in_window(pdf.first_page_text, height, window(form), tolerance_mm=tolerance_mm)


def _problem(contact: Contact, requirement: Requirement, detail: str) -> LetterProblem:
    return LetterProblem(contact.id, contact.name, requirement, detail)
