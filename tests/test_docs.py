"""Documentation stays honest: every ```python block in docs/*.md and every
examples/*.py runs.

* A document's blocks run in order in one shared namespace (so a later block
  can use what an earlier one defined). Blocks may use top-level ``await``.
  Only blocks fenced as ```python no-run are skipped (code that needs an
  integrator's own classes or a real server); any other ``python ...`` info
  string is an error, so a typo cannot silently skip a block.
* Examples are run as scripts in a subprocess (they call ``asyncio.run``
  themselves) and must exit with status 0.
* Both run in a temporary working directory, so nothing they write litters
  the checkout.
"""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"

RUN = "python"
NO_RUN = "python no-run"
_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_LINK = re.compile(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)")
EXAMPLE_TIMEOUT = 120.0


@attrs.frozen
class Block:
    """One fenced code block of a markdown document."""

    info: str
    source: str
    line: int  # 1-based line of the opening fence


def fenced_blocks(text: str) -> list[Block]:
    """Every fenced code block in ``text``, in order (unindented fences only).

    Raises:
        ValueError: a fence is never closed.
    """
    blocks: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence, info, start = match["fence"], match["info"].strip(), i + 1
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i].startswith(fence[0] * len(fence)) and not lines[i].strip(fence[0]).strip()
        ):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise ValueError(f"line {start}: unclosed code fence")
        blocks.append(Block(info, "\n".join(body) + "\n", start))
        i += 1
    return blocks


def python_blocks(path: Path) -> list[Block]:
    """The document's python blocks (runnable and ``no-run``).

    Raises:
        ValueError: an info string starts with ``python`` but is neither
            ``python`` nor ``python no-run``.
    """
    out: list[Block] = []
    for block in fenced_blocks(path.read_text(encoding="utf-8")):
        words = block.info.split()
        if not words or words[0] not in ("python", "py", "python3", "pycon"):
            continue
        normalised = " ".join(words)
        if normalised not in (RUN, NO_RUN):
            raise ValueError(
                f"{path.name}:{block.line}: unknown info string {block.info!r} "
                f"(use {RUN!r} or {NO_RUN!r})"
            )
        out.append(attrs.evolve(block, info=normalised))
    return out


DOC_FILES = sorted(DOCS.glob("*.md"))
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.py"))
#: an example whose docstring says ``requires: postgres`` runs against the suite's
#: PostgreSQL server (CLIENTCOMM_TEST_PG_URL), marked ``postgres``
NEEDS_PG = re.compile(r"^requires: postgres\b", re.MULTILINE)


def needs_pg(example: Path) -> bool:
    return bool(NEEDS_PG.search(ast.get_docstring(ast.parse(example.read_text("utf-8"))) or ""))


EXAMPLE_PARAMS = [
    pytest.param(p, id=p.name, marks=[pytest.mark.postgres] if needs_pg(p) else [])
    for p in EXAMPLE_FILES
]


# -- the checker itself ------------------------------------------------------------------
def test_fence_parser_finds_blocks_and_their_kinds() -> None:
    text = (
        "# Title\n```python\nx = 1\n```\ntext\n```python no-run\nMyStore()\n```\n"
        "````markdown\n```python\nnested = True\n```\n````\n```sh\nls\n```\n"
    )
    blocks = fenced_blocks(text)
    assert [(b.info, b.source, b.line) for b in blocks] == [
        ("python", "x = 1\n", 2),
        ("python no-run", "MyStore()\n", 6),
        ("markdown", "```python\nnested = True\n```\n", 9),
        ("sh", "ls\n", 14),
    ]
    with pytest.raises(ValueError, match="unclosed"):
        fenced_blocks("```python\nx = 1\n")


def test_misspelt_no_run_marker_is_an_error(tmp_path: Path) -> None:
    doc = tmp_path / "bad.md"
    doc.write_text("```python norun\nMyStore()\n```\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown info string"):
        python_blocks(doc)


async def test_a_failing_block_fails_the_document(tmp_path: Path) -> None:
    doc = tmp_path / "bad.md"
    doc.write_text("```python\nx = 1\n```\n\n```python\nassert x == 2\n```\n", encoding="utf-8")
    with pytest.raises(AssertionError):
        await run_document(doc)


# -- docs -------------------------------------------------------------------------------
async def run_document(path: Path) -> int:
    """Run the document's runnable blocks in one namespace; returns how many ran."""
    namespace: dict[str, Any] = {"__name__": f"docs_{path.stem}"}
    ran = 0
    for block in python_blocks(path):
        if block.info == NO_RUN:
            continue
        # Pad with newlines so tracebacks point at the line in the markdown file.
        source = "\n" * block.line + block.source
        code = compile(source, str(path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)  # our own documentation
        if inspect.iscoroutine(result):
            await result
        ran += 1
    return ran


@pytest.mark.parametrize("doc", DOC_FILES, ids=[p.name for p in DOC_FILES])
async def test_doc_code_blocks_run(
    doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    if not any(b.info == RUN for b in python_blocks(doc)):
        pytest.skip(f"{doc.name} has no runnable python blocks")
    assert await run_document(doc) > 0


def test_index_links_every_document() -> None:
    index = DOCS / "index.md"
    linked = set(_LINK.findall(index.read_text(encoding="utf-8")))
    others = {p.name for p in DOC_FILES if p.name != "index.md"}
    assert others - linked == set(), "documents missing from docs/index.md"
    assert {name for name in linked if not (DOCS / name).is_file()} == set(), "broken links"


# -- examples ----------------------------------------------------------------------------
@pytest.mark.parametrize("example", EXAMPLE_PARAMS)
def test_example_runs(example: Path, tmp_path: Path) -> None:
    env = dict(os.environ)
    if needs_pg(example):
        from tests.conftest import pg_admin_url

        env["CLIENTCOMM_TEST_PG_URL"] = pg_admin_url()  # skips or fails without a server
    else:
        env.pop("CLIENTCOMM_TEST_PG_URL", None)  # the others need none
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    proc = subprocess.run(  # our own example, our own interpreter
        [sys.executable, str(example)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, f"{example.name} failed:\n{proc.stdout}\n{proc.stderr}"
    assert list(tmp_path.iterdir()) == [], "the example left files in its working directory"


def test_there_is_something_to_check() -> None:
    assert DOC_FILES and EXAMPLE_FILES
    assert needs_pg(EXAMPLES / "task_queue.py") and not needs_pg(EXAMPLES / "quickstart.py")
