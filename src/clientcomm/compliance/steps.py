"""The background step of retention and erasure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clientcomm.compliance.erasure import run_erasure_jobs
from clientcomm.steps import Step

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = ["STEPS"]


async def _step(app: ClientComm, limit: int) -> int:
    queued = await app.compliance.sweep()
    return queued + await run_erasure_jobs(app, now=app.clock.now(), batch=limit)


STEPS = (
    Step(
        "clients.erase",
        _step,
        "sweep firms' retention policies for due clients and erase them in resumable batches",
    ),
)
