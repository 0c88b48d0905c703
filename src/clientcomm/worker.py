"""clientcomm's own background worker loop: the one loop over the registered steps.

Each step is a named, plain async function registered by its capability
(``app.steps.names``: ``mailing.fanout``, ``attachments.sweep``,
``notifications.expand``, ``notifications.deliver``, ...), so a host can run
them from its own task queue (Celery, Dramatiq, procrastinate, arq) with
:meth:`ClientComm.run_step` instead. Several workers, in one or
many processes and machines, can share one PostgreSQL store: claims are leased
with ``FOR UPDATE SKIP LOCKED`` and finishing is version-checked, so work is
never doubled.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Sequence

from clientcomm.app import ClientComm
from clientcomm.errors import ConfigurationError, InvalidInputError

__all__ = ["Worker"]

log = logging.getLogger("clientcomm.worker")


class Worker:
    """Runs the app's registered background steps until stopped.

    Args:
        app: the wired :class:`~clientcomm.app.ClientComm`.
        batch: the budget of each step per round (e.g. recipients per fan-out step).
        idle_interval: seconds to sleep (through the app's Clock) when idle.
        steps: run only these steps (by name); default: all of ``app.steps``.

    Raises:
        InvalidInputError: ``batch`` not a positive integer, ``idle_interval``
            negative, or an unknown step name.
    """

    def __init__(
        self,
        app: ClientComm,
        *,
        batch: int = 500,
        idle_interval: float = 1.0,
        steps: Sequence[str] | None = None,
    ) -> None:
        if not isinstance(batch, int) or isinstance(batch, bool) or batch <= 0:
            raise InvalidInputError("batch", "must be a positive integer", value=batch)
        if (
            not isinstance(idle_interval, int | float)
            or isinstance(idle_interval, bool)
            or not math.isfinite(idle_interval)
            or idle_interval < 0
        ):
            raise InvalidInputError("idle_interval", "must be zero or more seconds")
        self.app = app
        self.batch = batch
        self.idle_interval = idle_interval
        if steps is not None and not steps:
            raise InvalidInputError("steps", "name at least one step, or None for all")
        self.steps = None if steps is None else tuple(app.steps.get(n).name for n in steps)
        self._stop = asyncio.Event()

    async def run_round(self) -> int:
        """Every step (or the chosen ones) once, in order; returns the items
        processed. After :meth:`stop` no further step of the round starts."""
        done = 0
        for name in self.steps if self.steps is not None else self.app.steps.names:
            if self._stop.is_set():
                break
            done += await self.app.run_step(name, limit=self.batch)
        return done

    def stop(self) -> None:
        """Ask the loop to finish: the step running now completes (its
        transactions commit), no further step starts, and an idle sleep ends at
        once. Safe to call from a signal handler (``loop.add_signal_handler``)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """:meth:`stop` was called."""
        return self._stop.is_set()

    async def run(self, *, stop_when_idle: bool = False) -> int:
        """Work until :meth:`stop` (or, with ``stop_when_idle``, until nothing is
        due). Returns the number of items processed. A failing step is logged and
        retried after ``idle_interval``; its transaction rolled back, so nothing
        is half-done.

        Raises:
            ConfigurationError: a step found clientcomm misconfigured (e.g. the
                wrong master key for the store); retrying would not help, so
                the worker stops (the work it had claimed stays queued).
        """
        total = 0
        while not self._stop.is_set():
            try:
                done = await self.run_round()
            except (asyncio.CancelledError, ConfigurationError):
                # a misconfiguration (the wrong master key) does not heal by
                # retrying: stop, and let the host (or the CLI) report it
                raise
            except Exception:
                log.exception("worker step failed; retrying")
                done = 0
            total += done
            if done or self._stop.is_set():
                continue
            if stop_when_idle:
                break
            await self._idle()
        return total

    async def _idle(self) -> None:
        """Sleep ``idle_interval`` through the Clock, or until :meth:`stop`."""
        sleeper = asyncio.ensure_future(self.app.clock.sleep(self.idle_interval))
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, stopper):
                task.cancel()
        if sleeper.done() and not sleeper.cancelled():
            sleeper.result()  # a failing clock is not swallowed
