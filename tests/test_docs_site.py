"""The documentation site's strict build (run in full by scripts/test.sh) fails on a
broken link, a missing anchor and an API reference that does not resolve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")  # with the docs extra (make test installs it)
pytest.importorskip("mkdocstrings")

ROOT = Path(__file__).resolve().parent.parent


def site(tmp_path: Path, pages: dict[str, str]) -> Path:
    """A copy of mkdocs.yml over ``pages`` (with the real hooks and plugins)."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "mkdocs.yml").read_text("utf-8"))
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in pages.items():
        (docs / name).write_text(text, encoding="utf-8")
    config["docs_dir"] = str(docs)
    config["site_dir"] = str(tmp_path / "site")
    config["nav"] = [{name.removesuffix(".md"): name} for name in pages]
    config["hooks"] = [str(ROOT / h) for h in config["hooks"]]
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            plugin["mkdocstrings"]["handlers"]["python"]["paths"] = [str(ROOT / "src")]
    path = tmp_path / "mkdocs.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def build(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )


GOOD_INDEX = "# Home\n\nSee [the other page](other.md#a-heading).\n"
GOOD_OTHER = "# Other\n\n## A heading\n\n```python no-run\nx = 1\n```\n\n::: clientcomm.sync\n"


def test_a_good_site_builds(tmp_path: Path) -> None:
    proc = build(site(tmp_path, {"index.md": GOOD_INDEX, "other.md": GOOD_OTHER}))
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "site" / "other" / "index.html").read_text("utf-8")
    assert "SyncClientComm" in html  # the API reference came from the docstrings
    assert "no-run" not in html  # the test marker is not shown


@pytest.mark.parametrize(
    ("index", "other", "message"),
    [
        ("# Home\n\n[gone](missing.md)\n", GOOD_OTHER, "missing.md"),
        ("# Home\n\n[gone](other.md#no-such-heading)\n", GOOD_OTHER, "no-such-heading"),
        (
            GOOD_INDEX,
            "# Other\n\n## A heading\n\n::: clientcomm.no_such_module\n",
            "no_such_module",
        ),
    ],
    ids=["link", "anchor", "reference"],
)
def test_a_broken_link_or_reference_fails_the_build(
    tmp_path: Path, index: str, other: str, message: str
) -> None:
    proc = build(site(tmp_path, {"index.md": index, "other.md": other}))
    assert proc.returncode != 0
    assert message in proc.stderr
