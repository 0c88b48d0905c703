"""What every benchmark script prints: one JSON object per figure on stdout
(name, value, unit, and where it has them baseline, ratio and target), progress
lines on stderr. Imported by the scripts in ``bench/`` (``make bench`` runs
every script whose name does not start with ``_``)."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(
    name: str,
    value: float,
    unit: str,
    baseline: float | None = None,
    target: float | None = None,
    *,
    digits: int = 3,
    **extra: Any,
) -> None:
    """Print one figure; ``ratio`` is ``value / baseline`` when there is a baseline."""
    row: dict[str, Any] = {"name": name, "value": round(value, digits), "unit": unit}
    if baseline is not None:
        row["baseline"] = round(baseline, digits)
        row["ratio"] = round(value / baseline, 3) if baseline else None
    if target is not None:
        row["target"] = target
    row.update(extra)
    print(json.dumps(row), flush=True)


def log(msg: str) -> None:
    """A human-readable progress line (stderr)."""
    print(msg, file=sys.stderr, flush=True)
