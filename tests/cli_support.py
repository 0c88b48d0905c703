"""Finding the installed ``clientcomm`` command for the CLI tests.

The tests run the console script that ``pip install`` put beside the
interpreter (``.venv/bin/clientcomm``), so what is tested is the installed
command, entry point included. With ``PYTHONPATH`` set to this checkout's
``src`` (see :func:`cli_env`) the script imports the code under test even
when the editable install points at another checkout.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def clientcomm_script() -> str:
    """The path of the installed ``clientcomm`` script; the test fails (never
    skips) when it is missing: ``make test`` installs it."""
    beside = Path(sys.executable).parent / ("clientcomm.exe" if os.name == "nt" else "clientcomm")
    if beside.is_file():
        return str(beside)
    found = shutil.which("clientcomm")
    if found is None:
        pytest.fail("the clientcomm console script is not installed (pip install -e .)")
    return found


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI run: no CLIENTCOMM_* settings of the caller's
    (the test PostgreSQL URL kept), this checkout's code first."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CLIENTCOMM_") or k in ("CLIENTCOMM_TEST_PG_URL",)
    }
    path = [str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in path if p)
    env["COLUMNS"] = "200"  # rich tables on one line each
    env.update(extra)
    return env
