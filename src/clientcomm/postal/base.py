"""The postal provider seam: hand a batch of printed letters to a print shop or a
hybrid-mail service, and follow it.

A provider declares its :class:`PostalCapabilities` per firm (colour, duplex,
registered mail, countries, page and sheet limits, whether the firm has the
feature at all), checks a :class:`PostalBatch` before it is ordered
(:meth:`PostalProvider.validate`), orders it, cancels it while the provider still
allows it, and reports each letter's :class:`LetterStatus` (with the tracking id
of registered mail).

Errors (checked by :mod:`clientcomm.testing.postal`):

* ``order`` of a batch with problems: :class:`~clientcomm.errors.InvalidInputError`
  (``field="batch"``), nothing ordered;
* ``order`` again with the same ``batch_id``: the existing order is returned when the
  batch is the same (a retry after a lost reply), else
  :class:`~clientcomm.errors.ConflictError`;
* ``cancel`` after the provider started production:
  :class:`~clientcomm.errors.ConflictError`;
* an unknown or another firm's batch id: :class:`~clientcomm.errors.NotFoundError`;
* the provider failed: :class:`~clientcomm.errors.TemporaryDeliveryError` (retry) or
  :class:`~clientcomm.errors.PermanentDeliveryError`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Protocol, Self, runtime_checkable

import attrs

from clientcomm.directory.models import Contact, PostalAddress
from clientcomm.errors import InvalidInputError
from clientcomm.letters.models import LetterProblem, PrintFile, PrintOptions

__all__ = [
    "LetterState",
    "LetterStatus",
    "PostalBatch",
    "PostalCapabilities",
    "PostalLetter",
    "PostalOrder",
    "PostalProvider",
]


@attrs.frozen
class PostalCapabilities:
    """What a provider offers one firm.

    ``available`` is the per-firm feature flag (False: the firm has not booked
    letter dispatch, the seed's yellow button). ``countries`` lists the ISO
    3166-1 alpha-2 codes it delivers to (None: worldwide);
    ``registered_countries`` where it sends registered mail
    (Einwurf-Einschreiben: Germany). Limits count one letter's pages and sheets
    and one batch's letters.
    """

    available: bool = True
    colour: bool = True
    duplex: bool = True
    registered: bool = True
    countries: frozenset[str] | None = None
    registered_countries: frozenset[str] = frozenset({"DE"})
    max_pages_per_letter: int = 100
    max_sheets_per_letter: int = 50
    max_letters_per_batch: int = 100_000
    features: frozenset[str] = frozenset()
    """Further feature flags a host's provider may declare (informational)."""


@attrs.frozen
class PostalLetter:
    """One letter of a batch: its recipient and its pages in the batch's print file."""

    letter_id: str
    contact_id: str
    contact_name: str
    address: PostalAddress | None
    first_page: int
    page_count: int
    sheets: int

    def to_dict(self) -> dict[str, object]:
        a = self.address
        return {
            "letter_id": self.letter_id,
            "contact_id": self.contact_id,
            "contact_name": self.contact_name,
            "address": None
            if a is None
            else {
                "name": a.name,
                "extra": a.extra,
                "street": a.street,
                "postal_code": a.postal_code,
                "city": a.city,
                "country": a.country,
            },
            "first_page": self.first_page,
            "last_page": self.first_page + self.page_count - 1,
            "page_count": self.page_count,
            "sheets": self.sheets,
        }


def _check_ranges(instance: PostalBatch, _a: object, letters: tuple[PostalLetter, ...]) -> None:
    expected = 1
    ids: set[str] = set()
    for letter in letters:
        if letter.letter_id in ids:
            raise InvalidInputError("letters", f"duplicate letter id {letter.letter_id!r}")
        ids.add(letter.letter_id)
        if letter.first_page != expected or letter.page_count <= 0:
            raise InvalidInputError(
                "letters", f"page range of {letter.letter_id!r} is not contiguous"
            )
        expected += letter.page_count
    if expected - 1 != instance.print_file.page_count:
        raise InvalidInputError("letters", "page ranges do not cover the print file")


@attrs.frozen
class PostalBatch:
    """Letters to order together: one print file, one range per letter.

    Build with :meth:`from_print_file`. Raises
    :class:`~clientcomm.errors.InvalidInputError` when ranges overlap, leave gaps
    or letter ids repeat.
    """

    firm_id: str
    batch_id: str
    print_file: PrintFile = attrs.field(repr=False)
    letters: tuple[PostalLetter, ...] = attrs.field(validator=_check_ranges)

    @property
    def options(self) -> PrintOptions:
        return self.print_file.options

    @classmethod
    def from_print_file(
        cls,
        firm_id: str,
        batch_id: str,
        print_file: PrintFile,
        contacts: Mapping[str, Contact] | Sequence[Contact],
        *,
        letter_ids: Sequence[str] | None = None,
    ) -> Self:
        """The batch of ``print_file``'s letters, addressed to ``contacts``
        (by id). ``letter_ids`` default to ``"<batch_id>-<n>"``."""
        by_id = dict(contacts) if isinstance(contacts, Mapping) else {c.id: c for c in contacts}
        if letter_ids is not None and len(letter_ids) != len(print_file.letters):
            raise InvalidInputError("letter_ids", "one id per letter")
        letters = []
        for n, rng in enumerate(print_file.letters):
            contact = by_id.get(rng.contact_id)
            if contact is None:
                raise InvalidInputError("contacts", f"no contact {rng.contact_id!r}")
            letters.append(
                PostalLetter(
                    letter_ids[n] if letter_ids is not None else f"{batch_id}-{n + 1}",
                    contact.id,
                    contact.name,
                    contact.address,
                    rng.first_page,
                    rng.page_count,
                    rng.sheets,
                )
            )
        return cls(firm_id, batch_id, print_file, tuple(letters))


class LetterState(enum.StrEnum):
    ORDERED = "ordered"  # accepted, production not started: cancellable
    IN_PRODUCTION = "in_production"  # printing: no longer cancellable
    POSTED = "posted"  # handed to the postal service
    CANCELLED = "cancelled"
    FAILED = "failed"


@attrs.frozen
class LetterStatus:
    letter_id: str
    contact_id: str
    state: LetterState
    tracking_id: str | None = None
    detail: str = ""


@attrs.frozen
class PostalOrder:
    """An ordered batch as the provider sees it now."""

    firm_id: str
    batch_id: str
    provider_ref: str
    letters: tuple[LetterStatus, ...]

    @property
    def cancellable(self) -> bool:
        return bool(self.letters) and all(s.state is LetterState.ORDERED for s in self.letters)


@runtime_checkable
class PostalProvider(Protocol):
    """The postal dispatch seam (see the module docs for its errors)."""

    name: str

    async def capabilities(self, firm_id: str) -> PostalCapabilities: ...

    async def validate(self, batch: PostalBatch) -> tuple[LetterProblem, ...]:
        """Every reason the batch cannot be ordered as it is (empty: it can)."""
        ...

    async def order(self, batch: PostalBatch) -> PostalOrder: ...

    async def cancel(self, firm_id: str, batch_id: str) -> PostalOrder: ...

    async def status(self, firm_id: str, batch_id: str) -> PostalOrder: ...

    async def aclose(self) -> None: ...
