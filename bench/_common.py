"""What every benchmark script prints: one JSON object per figure on stdout
(name, value, unit, and where it has them baseline, ratio and target), progress
lines on stderr. Imported by the scripts in ``bench/`` (``make bench`` runs
every script whose name does not start with ``_``)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


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


@asynccontextmanager
async def postgres_url() -> AsyncIterator[str | None]:
    """The URL of a PostgreSQL server for a benchmark: ``CLIENTCOMM_TEST_PG_URL``
    if set, else a throwaway cluster started (and stopped) with
    ``scripts/pg-cluster.sh``; None (logged) when none can be started."""
    url = os.environ.get("CLIENTCOMM_TEST_PG_URL")
    if url:
        yield url
        return
    cluster = Path(tempfile.mkdtemp(prefix="clientcomm-bench-pg."))
    script = str(ROOT / "scripts" / "pg-cluster.sh")
    try:
        await asyncio.to_thread(
            subprocess.run, ["bash", script, "start", str(cluster)], check=True, capture_output=True
        )
    except (subprocess.CalledProcessError, OSError) as exc:
        log(f"postgres scenario skipped: cannot start a cluster ({exc})")
        yield None
        return
    try:
        yield (cluster / "url").read_text().strip()
    finally:
        await asyncio.to_thread(
            subprocess.run, ["bash", script, "stop", str(cluster)], check=False, capture_output=True
        )
