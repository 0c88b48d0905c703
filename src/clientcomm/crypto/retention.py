"""Retention rules: when forgetting a client (crypto-shredding) must be refused.

Professional secrecy laws oblige firms to keep a client's files for years after
the mandate ended, so erasing a client's keys too early would destroy records
the firm must keep. The host knows when a mandate ended; clientcomm asks it
through a :data:`RetentionRule`: ``(firm_id, client_id) -> retain_until``
(an aware datetime, or ``None`` when nothing must be kept). The rule may be a
plain function or a coroutine function.

Presets (periods begin with the end of the calendar year in which the mandate
ended, as both laws say):

* :func:`lawyer_retention`: 6 years (Germany: § 50 Abs. 1 BRAO, Handakten).
* :func:`tax_adviser_retention`: 10 years (Germany: § 66 Abs. 1 StBerG).
* :func:`statutory_retention`: any number of years.

A mandate that has not ended (the host's lookup returns ``None``) is retained
indefinitely. :meth:`clientcomm.crypto.Sealer.forget_client` enforces the rule
and raises :class:`~clientcomm.errors.RetentionError` unless called with
``override=True``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from clientcomm.errors import InvalidInputError, RetentionError

__all__ = [
    "RETAIN_INDEFINITELY",
    "AsyncRetentionRule",
    "MandateEndLookup",
    "RetentionRule",
    "check_retention",
    "lawyer_retention",
    "resolve_retention",
    "statutory_retention",
    "tax_adviser_retention",
]

RETAIN_INDEFINITELY = datetime.max.replace(tzinfo=UTC)
"""``retain_until`` for records that must be kept with no end in sight."""

RetentionRule = Callable[[str, str], "datetime | Awaitable[datetime | None] | None"]
"""``(firm_id, client_id) -> retain_until`` (aware datetime) or ``None``."""

AsyncRetentionRule = Callable[[str, str], Awaitable[datetime | None]]
"""What the presets return: a coroutine function ``(firm_id, client_id) -> retain_until``."""

MandateEndLookup = Callable[[str, str], "datetime | Awaitable[datetime | None] | None"]
"""``(firm_id, client_id) -> when the mandate ended`` or ``None`` if it has not."""


async def _call(
    fn: Callable[[str, str], datetime | Awaitable[datetime | None] | None],
    firm_id: str,
    client_id: str,
) -> datetime | None:
    value = fn(firm_id, client_id)
    if inspect.isawaitable(value):
        value = await value
    if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
        raise InvalidInputError("retain_until", "a retention rule must return an aware datetime")
    return value


async def resolve_retention(rule: RetentionRule, firm_id: str, client_id: str) -> datetime | None:
    """Ask ``rule`` until when the client's records must be kept.

    Raises:
        InvalidInputError: the rule returned something other than an aware
            datetime or None.
    """
    return await _call(rule, firm_id, client_id)


def check_retention(
    retain_until: datetime | None,
    now: datetime,
    *,
    firm_id: str,
    client_id: str,
    override: bool = False,
) -> None:
    """Refuse erasure while ``now < retain_until`` unless ``override``.

    Raises:
        RetentionError: records must still be kept (``context`` names the firm,
            client and ``retain_until``).
    """
    if override or retain_until is None or now >= retain_until:
        return
    shown = (
        "indefinitely"
        if retain_until == RETAIN_INDEFINITELY
        else f"until {retain_until.isoformat()}"
    )
    raise RetentionError(
        f"the client's records must be kept {shown}; pass override=True to erase anyway",
        firm_id=firm_id,
        client_id=client_id,
        retain_until=retain_until.isoformat(),
    )


def _end_of_period(ended: datetime, years: int) -> datetime:
    # The period starts when the calendar year of the mandate's end is over and
    # lasts `years` full years: keep until 1 January of year + years + 1.
    year = ended.astimezone(UTC).year + years + 1
    if year > 9999:
        return RETAIN_INDEFINITELY
    return datetime(year, 1, 1, tzinfo=UTC)


def statutory_retention(years: int, mandate_ended: MandateEndLookup) -> AsyncRetentionRule:
    """A rule keeping records ``years`` full calendar years after the year in
    which the mandate ended; ``mandate_ended`` returning ``None`` (mandate still
    running) keeps them indefinitely.

    Raises:
        InvalidInputError: ``years`` is negative.
    """
    if not isinstance(years, int) or years < 0:
        raise InvalidInputError("years", "must be a non-negative integer", value=years)

    async def rule(firm_id: str, client_id: str) -> datetime | None:
        ended = await _call(mandate_ended, firm_id, client_id)
        if ended is None:
            return RETAIN_INDEFINITELY
        return _end_of_period(ended, years)

    rule.__name__ = f"statutory_retention_{years}y"
    return rule


def lawyer_retention(mandate_ended: MandateEndLookup) -> AsyncRetentionRule:
    """Lawyers: 6 years after the end of the year the mandate ended (§ 50 BRAO)."""
    return statutory_retention(6, mandate_ended)


def tax_adviser_retention(mandate_ended: MandateEndLookup) -> AsyncRetentionRule:
    """Tax advisers: 10 years after the end of the year the mandate ended
    (§ 66 StBerG)."""
    return statutory_retention(10, mandate_ended)
