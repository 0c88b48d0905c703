"""The batch check every postal backend applies before ordering, pure.

A batch cannot be ordered when the firm lacks the feature, asks for colour,
duplex or registered mail the provider does not offer, has more letters than
the provider takes, or when a letter's address is incomplete, lies in a country
the provider does not serve, is registered outside the registered-mail
countries (Germany), or exceeds the page or sheet limits. Each problem names
the letter's contact; batch-wide problems have an empty ``contact_id``.
"""

from __future__ import annotations

from clientcomm.letters.address import postal_address_problems
from clientcomm.letters.models import ColourMode, LetterProblem, Requirement, Sides
from clientcomm.postal.base import PostalBatch, PostalCapabilities

__all__ = ["check_batch"]


def _batch(detail: str) -> LetterProblem:
    return LetterProblem("", "", Requirement.PROVIDER, detail)


def check_batch(caps: PostalCapabilities, batch: PostalBatch) -> tuple[LetterProblem, ...]:
    """Every reason ``batch`` cannot be ordered from a provider offering ``caps``."""
    if not caps.available:
        return (_batch("letter dispatch is not available for this firm"),)
    opts = batch.options
    out: list[LetterProblem] = []
    if opts.colour is ColourMode.COLOUR and not caps.colour:
        out.append(_batch("colour printing is not offered"))
    if opts.sides is Sides.DUPLEX and not caps.duplex:
        out.append(_batch("duplex printing is not offered"))
    if opts.registered and not caps.registered:
        out.append(_batch("registered mail is not offered"))
    if not batch.letters:
        out.append(_batch("the batch has no letters"))
    if len(batch.letters) > caps.max_letters_per_batch:
        out.append(_batch(f"more than {caps.max_letters_per_batch} letters in one batch"))
    for letter in batch.letters:
        named: list[tuple[str, Requirement]] = []
        out.extend(postal_address_problems(letter.contact_id, letter.contact_name, letter.address))
        country = letter.address.country if letter.address is not None else ""
        if country and caps.countries is not None and country not in caps.countries:
            named.append((f"no delivery to {country}", Requirement.PROVIDER))
        if opts.registered and country and country not in caps.registered_countries:
            where = ", ".join(sorted(caps.registered_countries))
            named.append(
                (
                    f"registered mail only within {where}, not to {country}",
                    Requirement.REGISTERED_GERMANY,
                )
            )
        if letter.page_count > caps.max_pages_per_letter:
            named.append(
                (
                    f"{letter.page_count} pages, at most {caps.max_pages_per_letter}",
                    Requirement.PROVIDER,
                )
            )
        if letter.sheets > caps.max_sheets_per_letter:
            named.append(
                (
                    f"{letter.sheets} sheets, at most {caps.max_sheets_per_letter}",
                    Requirement.PROVIDER,
                )
            )
        out.extend(
            LetterProblem(letter.contact_id, letter.contact_name, req, detail)
            for detail, req in named
        )
    return tuple(out)
