"""The PostalProvider conformance suite.

Subclass :class:`PostalConformance` and provide a ``harness`` fixture yielding a
:class:`PostalHarness`: your provider, configured so that firm ``"f1"`` has the
default capabilities (colour, duplex, registered mail within Germany, at most
``max_pages`` pages per letter) and firm ``"f-off"`` has ``available=False``,
and an ``advance(firm_id, batch_id, state)`` that makes the provider (or your
test double of the remote service) move every letter of the batch to
``IN_PRODUCTION`` or ``POSTED``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from pypdf import PdfReader, PdfWriter

from clientcomm.directory.models import Contact, PostalAddress
from clientcomm.errors import ConflictError, InvalidInputError, NotFoundError
from clientcomm.letters.merge import plan_letters
from clientcomm.letters.models import (
    A4,
    LetterDocument,
    PageSize,
    PrintOptions,
    Requirement,
    Sides,
    ValidatedPdf,
)
from clientcomm.letters.printfile import build_print_file
from clientcomm.postal.base import LetterState, PostalBatch, PostalCapabilities, PostalProvider

__all__ = ["PostalConformance", "PostalHarness", "sample_batch"]


@attrs.frozen
class PostalHarness:
    provider: PostalProvider
    advance: Callable[[str, str, LetterState], Any]
    max_pages: int = 100


def _blank_pdf(name: str, pages: int) -> ValidatedPdf:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(A4.width, A4.height)
    out = io.BytesIO()
    writer.write(out)
    return ValidatedPdf(
        name, out.getvalue(), tuple(PageSize(A4.width, A4.height) for _ in range(pages))
    )


def sample_batch(
    batch_id: str,
    *,
    firm_id: str = "f1",
    countries: tuple[str, ...] = ("DE", "DE"),
    pages: int = 1,
    options: PrintOptions | None = None,
    incomplete: bool = False,
) -> PostalBatch:
    """A batch of one letter per country, each ``pages`` long."""
    options = options or PrintOptions(sides=Sides.DUPLEX, duplex_optimised=True)
    contacts = []
    docs = []
    for i, country in enumerate(countries):
        address = PostalAddress(
            f"Kontakt {i}", "" if incomplete else "Hauptstr. 1", "10115", "Berlin", country
        )
        contacts.append(Contact(f"c{i}", firm_id, "cl1", f"Kontakt {i}", address=address))
        docs.append(LetterDocument(f"c{i}", _blank_pdf(f"brief-{i}.pdf", pages)))
    plans = plan_letters(docs, [], contacts, options)
    return PostalBatch.from_print_file(
        firm_id, batch_id, build_print_file(plans, options), contacts
    )


class PostalConformance:
    """What every PostalProvider must do."""

    @pytest.fixture
    def harness(self) -> PostalHarness:
        raise NotImplementedError("provide a harness fixture")

    async def test_capabilities_per_firm(self, harness: PostalHarness) -> None:
        caps = await harness.provider.capabilities("f1")
        assert isinstance(caps, PostalCapabilities) and caps.available
        assert not (await harness.provider.capabilities("f-off")).available

    async def test_order_status_and_cancel(self, harness: PostalHarness) -> None:
        p = harness.provider
        batch = sample_batch("b-1")
        assert await p.validate(batch) == ()
        order = await p.order(batch)
        assert [s.letter_id for s in order.letters] == [x.letter_id for x in batch.letters]
        assert {s.state for s in order.letters} == {LetterState.ORDERED}
        assert order.cancellable
        assert (await p.status("f1", "b-1")).letters == order.letters
        cancelled = await p.cancel("f1", "b-1")
        assert {s.state for s in cancelled.letters} == {LetterState.CANCELLED}
        assert not cancelled.cancellable
        again = await p.cancel("f1", "b-1")  # idempotent
        assert {s.state for s in again.letters} == {LetterState.CANCELLED}

    async def test_order_is_idempotent_and_conflicts_on_other_content(
        self, harness: PostalHarness
    ) -> None:
        p = harness.provider
        first = await p.order(sample_batch("b-2"))
        assert (await p.order(sample_batch("b-2"))).letters == first.letters
        with pytest.raises(ConflictError):
            await p.order(sample_batch("b-2", pages=3))

    async def test_no_cancel_in_production(self, harness: PostalHarness) -> None:
        p = harness.provider
        await p.order(sample_batch("b-3"))
        harness.advance("f1", "b-3", LetterState.IN_PRODUCTION)
        order = await p.status("f1", "b-3")
        assert {s.state for s in order.letters} == {LetterState.IN_PRODUCTION}
        assert not order.cancellable
        with pytest.raises(ConflictError):
            await p.cancel("f1", "b-3")

    async def test_registered_mail_gets_tracking_ids(self, harness: PostalHarness) -> None:
        p = harness.provider
        caps = await p.capabilities("f1")
        if not caps.registered:
            pytest.skip("the provider offers no registered mail")
        opts = PrintOptions(registered=True)
        await p.order(sample_batch("b-4", options=opts))
        harness.advance("f1", "b-4", LetterState.IN_PRODUCTION)
        harness.advance("f1", "b-4", LetterState.POSTED)
        order = await p.status("f1", "b-4")
        assert {s.state for s in order.letters} == {LetterState.POSTED}
        assert all(s.tracking_id for s in order.letters)

    async def test_problems_are_named_and_nothing_is_ordered(self, harness: PostalHarness) -> None:
        p = harness.provider
        bad = sample_batch("b-5", countries=("DE", "AT"), options=PrintOptions(registered=True))
        caps = await p.capabilities("f1")
        problems = await p.validate(bad)
        if caps.registered:
            assert [(x.contact_name, x.requirement) for x in problems] == [
                ("Kontakt 1", Requirement.REGISTERED_GERMANY)
            ]
        else:
            assert problems
        with pytest.raises(InvalidInputError):
            await p.order(bad)
        with pytest.raises(NotFoundError):
            await p.status("f1", "b-5")
        incomplete = await p.validate(sample_batch("b-6", incomplete=True))
        assert {x.contact_name for x in incomplete} == {"Kontakt 0", "Kontakt 1"}
        assert {x.requirement for x in incomplete} == {Requirement.ADDRESS_COMPLETE}
        too_long = await p.validate(sample_batch("b-7", pages=harness.max_pages + 1))
        assert too_long and all(x.requirement is Requirement.PROVIDER for x in too_long)

    async def test_firm_without_the_feature_cannot_order(self, harness: PostalHarness) -> None:
        batch = sample_batch("b-8", firm_id="f-off")
        assert await harness.provider.validate(batch)
        with pytest.raises(InvalidInputError):
            await harness.provider.order(batch)

    async def test_unknown_and_other_firms_batches_are_not_found(
        self, harness: PostalHarness
    ) -> None:
        p = harness.provider
        await p.order(sample_batch("b-9"))
        for firm, batch_id in (("f1", "nope"), ("f2", "b-9")):
            with pytest.raises(NotFoundError):
                await p.status(firm, batch_id)
            with pytest.raises(NotFoundError):
                await p.cancel(firm, batch_id)

    async def test_print_file_matches_the_ranges(self, harness: PostalHarness) -> None:
        batch = sample_batch("b-10", pages=3)
        reader = PdfReader(io.BytesIO(batch.print_file.data))
        assert len(reader.pages) == sum(x.page_count for x in batch.letters) == 8
        assert [x.first_page for x in batch.letters] == [1, 5]
