"""The Clock port: every "now" in clientcomm comes from here, so tests can move time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SystemClock", "utc"]


def utc(value: datetime) -> datetime:
    """Return ``value`` as an aware UTC datetime; naive values are refused.

    Raises:
        InvalidInputError: ``value`` has no time zone.
    """
    if value.tzinfo is None:
        from clientcomm.errors import InvalidInputError

        raise InvalidInputError("datetime", "must be timezone-aware", value=value.isoformat())
    return value.astimezone(UTC)


@runtime_checkable
class Clock(Protocol):
    """Source of the current time (aware, UTC) and of waiting."""

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ManualClock:
    """A settable clock for tests. ``sleep`` advances the clock instead of waiting
    (it still yields to the event loop once, so other tasks run)."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = utc(start) if start is not None else datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, value: datetime) -> None:
        self._now = utc(value)

    def advance(self, delta: timedelta | float) -> datetime:
        """Move the clock forward by ``delta`` (seconds or a timedelta); returns the new now."""
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        if delta < timedelta(0):
            from clientcomm.errors import InvalidInputError

            raise InvalidInputError("delta", "a clock only moves forward")
        self._now += delta
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)
