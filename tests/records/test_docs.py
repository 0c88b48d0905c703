"""docs/records.md is generated from the registry and must be current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from clientcomm.records.docs import load_all, render

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "records.md"
REGENERATE = "python -m clientcomm.records > docs/records.md"


def test_records_page_is_current() -> None:
    assert PAGE.exists(), f"docs/records.md is missing; generate it with `{REGENERATE}`"
    assert PAGE.read_text(encoding="utf-8") == render(), (
        f"docs/records.md is out of date with the record registry; regenerate it with "
        f"`{REGENERATE}`"
    )


def test_every_kind_is_on_the_page() -> None:
    text = PAGE.read_text(encoding="utf-8")
    for kind in load_all():
        assert f"## `{kind.name}`" in text, f"{kind.name} has no section; run `{REGENERATE}`"
        assert f"[`{kind.name}`](#{kind.name.replace('.', '')})" in text
        assert f"`{kind.cls.__module__}.{kind.cls.__qualname__}`" in text
        assert kind.capability, f"{kind.name} names no capability"


def test_module_prints_the_page() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "clientcomm.records"],
        capture_output=True,
        check=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )
    assert out.stdout == render()
