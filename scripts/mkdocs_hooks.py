"""mkdocs hooks for the documentation site (mkdocs.yml ``hooks:``).

The docs mark code blocks that the test suite must not run with the info string
```` ```python no-run ```` (tests/test_docs.py). Markdown's fence syntax takes one
word there, so the site renders those blocks as plain ``python`` blocks.
"""

from __future__ import annotations

import re
from typing import Any

_NO_RUN = re.compile(r"^(?P<fence>`{3,}|~{3,})python no-run[ \t]*$", re.MULTILINE)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return _NO_RUN.sub(r"\g<fence>python", markdown)
