"""Retention rules (pure): until when a client's records are kept, and whether
their erasure is due.

A firm's :class:`RetentionPolicy` keeps a client's records ``years`` full
calendar years after the year of the client's last activity (its newest
message or other record), as § 50 BRAO and § 66 StBerG count periods. The host
may set a date for one client instead (``keep_until``, e.g. the end of a
mandate's statutory period); that date then decides alone. No policy and no
date: nothing is kept by this rule and nothing is ever due (a client is
erased on request only; the sealer's retention rule, the statutory floor, still
applies when its keys go).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs

from clientcomm.crypto.retention import RETAIN_INDEFINITELY
from clientcomm.errors import InvalidInputError

__all__ = ["RetentionPolicy", "erasure_due", "retain_until"]


def _check_years(_: object, __: object, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 200:
        raise InvalidInputError("years", "must be None or an integer from 0 to 200", value=value)


@attrs.frozen
class RetentionPolicy:
    """A firm's retention policy.

    Attributes:
        years: keep a client's records this many full calendar years after the
            end of the year of its last activity; ``None``: no period (only
            host-set dates make a client due).
    """

    years: int | None = attrs.field(default=None, validator=_check_years)


def retain_until(
    policy: RetentionPolicy | None,
    last_activity: datetime | None,
    keep_until: datetime | None = None,
) -> datetime | None:
    """Until when a client's records are kept: the host-set ``keep_until`` if
    there is one, else the end of the policy's period after ``last_activity``;
    ``None`` when neither applies (no policy period, or no activity at all).

    Raises:
        InvalidInputError: a naive datetime.
    """
    for name, when in (("last_activity", last_activity), ("keep_until", keep_until)):
        if when is not None and (not isinstance(when, datetime) or when.utcoffset() is None):
            raise InvalidInputError(name, "must be None or a timezone-aware datetime")
    if keep_until is not None:
        return keep_until
    if policy is None or policy.years is None or last_activity is None:
        return None
    year = last_activity.astimezone(UTC).year + policy.years + 1
    if year > 9999:
        return RETAIN_INDEFINITELY
    return datetime(year, 1, 1, tzinfo=UTC)


def erasure_due(until: datetime | None, now: datetime) -> bool:
    """Whether the erasure of records kept ``until`` is due at ``now`` (never
    without a date)."""
    return until is not None and until != RETAIN_INDEFINITELY and now >= until
