"""Background steps of serial-letter runs."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from clientcomm.steps import Step

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = ["STEPS"]


_MIN_LEASE = timedelta(minutes=10)
"""Ghostscript may take minutes for a large run: the lease outlasts it."""


async def _pdfa(app: ClientComm, limit: int) -> int:
    return await app.letter_runs.produce_downloads(
        owner=app.worker_id, lease=max(app.lease, _MIN_LEASE), limit=limit
    )


STEPS: tuple[Step, ...] = (
    Step(
        "letters.pdfa",
        _pdfa,
        "produce requested serial-letter PDF/A downloads (Ghostscript), check, store"
        " sealed and e-mail the signed link",
    ),
)
