"""clientcomm's own background worker loop.

Each step is a plain async function (:meth:`MailingService.step`,
:func:`clientcomm.notifications.outbox.deliver_due`), so a host can call them from its
own task queue (Celery, Dramatiq, arq, ...) instead. Several workers, in one or
many processes and machines, can share one PostgreSQL store: claims are leased
with ``FOR UPDATE SKIP LOCKED`` and finishing is version-checked, so work is
never doubled.
"""

from __future__ import annotations

import asyncio
import logging

from clientcomm.app import ClientComm

__all__ = ["Worker"]

log = logging.getLogger("clientcomm.worker")


class Worker:
    """Runs mailing fan-out and notification delivery until stopped.

    Args:
        app: the wired :class:`~clientcomm.app.ClientComm`.
        batch: recipients per fan-out step.
        idle_interval: seconds to sleep (through the app's Clock) when idle.
    """

    def __init__(self, app: ClientComm, *, batch: int = 500, idle_interval: float = 1.0) -> None:
        self.app = app
        self.batch = batch
        self.idle_interval = idle_interval
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask the loop to finish after the current step."""
        self._stop.set()

    async def run(self, *, stop_when_idle: bool = False) -> int:
        """Work until :meth:`stop` (or, with ``stop_when_idle``, until nothing is
        due). Returns the number of items processed. A failing step is logged and
        retried after ``idle_interval``; its transaction rolled back, so nothing
        is half-done."""
        total = 0
        while not self._stop.is_set():
            try:
                done = await self.app.run_once(limit=self.batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker step failed; retrying")
                done = 0
            total += done
            if done:
                continue
            if stop_when_idle:
                break
            await self.app.clock.sleep(self.idle_interval)
        return total
