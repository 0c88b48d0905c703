"""Background work as named, registered steps.

Every capability declares its background steps in its ``steps`` module (a
:class:`Step`: a name, a plain async function of the app and a budget, and one
line of documentation). :class:`~clientcomm.app.ClientComm` collects them in
one :class:`StepRegistry`; :meth:`ClientComm.run_once`,
:meth:`ClientComm.drain`, :class:`~clientcomm.worker.Worker` and a host's own
task queue (through :meth:`ClientComm.run_step`) all run the same steps.

A step returns how many items it finished (0: nothing was due). It must let one
bad item fail alone: mark it, log it, and go on with the rest, so that a
poisoned record never blocks the queue behind it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

import attrs

from clientcomm.errors import ConfigurationError, ConflictError, InvalidInputError

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = ["Step", "StepRegistry", "each_alone"]

T = TypeVar("T")


async def each_alone(
    jobs: Iterable[T],
    run: Callable[[T], Awaitable[int]],
    *,
    describe: Callable[[T], str],
    logger: logging.Logger,
) -> int:
    """Run ``run`` for each claimed job, each failing alone; returns the sum of
    what they returned. A lost lease (:class:`ConflictError`) skips the job
    (another worker has it); any other error is logged and the job is retried
    after its lease while the others go on. A :class:`ConfigurationError` (a
    key that cannot open: the wrong master key) is raised at once."""
    done = 0
    for job in jobs:
        try:
            done += await run(job)
        except ConflictError:
            continue
        except ConfigurationError:
            raise
        except Exception:
            logger.exception("%s failed", describe(job))
    return done


_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


@attrs.frozen
class Step:
    """One background step.

    Attributes:
        name: ``capability.step``, e.g. ``"mailing.fanout"``.
        run: ``async (app, limit) -> int``: do up to about ``limit`` items of
            work, return how many were finished.
        doc: what it does, in one line (listed in ``docs/architecture.md``).
    """

    name: str
    run: Callable[[ClientComm, int], Awaitable[int]] = attrs.field(repr=False)
    doc: str = ""

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ConfigurationError(f"step name {self.name!r} must look like 'capability.step'")


class StepRegistry:
    """The steps of one app, in the order a round runs them."""

    def __init__(self, steps: Iterable[Step] = ()) -> None:
        self._steps: dict[str, Step] = {}
        for step in steps:
            self.register(step)

    def register(self, step: Step) -> Step:
        """Add ``step`` (after the ones registered before it).

        Raises:
            ConfigurationError: a step of that name is registered already.
        """
        if step.name in self._steps:
            raise ConfigurationError(f"step {step.name!r} is registered twice")
        self._steps[step.name] = step
        return step

    def get(self, name: str) -> Step:
        """The step named ``name``.

        Raises:
            InvalidInputError: no such step (``field`` is ``"name"``).
        """
        try:
            return self._steps[name]
        except KeyError:
            raise InvalidInputError(
                "name",
                f"no background step of that name (known: {', '.join(self._steps)})",
                value=name,
            ) from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._steps)

    def __iter__(self) -> Iterator[Step]:
        return iter(tuple(self._steps.values()))

    def __len__(self) -> int:
        return len(self._steps)
