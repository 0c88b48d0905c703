"""Measuring the audit trail's cost: run code with the trail switched off.

For benchmarks only (``bench/audit.py`` compares the mailing fan-out with and
without the trail in one run): inside ``with suspended():`` every
:func:`clientcomm.audit.append` validates its input as always but writes
nothing. Never use it in production: the operations run unaudited.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from clientcomm.audit import _suspend

__all__ = ["suspended"]


@contextmanager
def suspended() -> Iterator[None]:
    """Appends in this context (and tasks started in it) write nothing."""
    with _suspend():
        yield
