"""Background steps of portal sharing."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clientcomm.steps import Step

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = ["STEPS"]


async def _timers(app: ClientComm, limit: int) -> int:
    return await app.shares.run_timers(owner=app.worker_id, lease=app.lease, limit=limit)


STEPS: tuple[Step, ...] = (
    Step(
        "sharing.timers",
        _timers,
        "end portal shares at their expiry and remind their sharers before it",
    ),
)
