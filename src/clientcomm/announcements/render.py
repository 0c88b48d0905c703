"""An announcement's Markdown description, rendered to HTML that is safe in a page.

Two well-kept libraries do the work, nothing is escaped by hand:

* **markdown-it-py** (CommonMark) parses the Markdown with raw HTML disabled
  (``<script>`` in the text becomes visible text) and its own link check
  (``javascript:``, ``vbscript:``, ``file:`` and ``data:`` links are not
  made into links);
* **nh3** (the Rust ``ammonia`` sanitiser) then cleans the HTML against an
  allow-list: the few tags Markdown produces, ``href``/``title`` on links
  only, URL schemes ``http``, ``https`` and ``mailto`` only, every link with
  ``rel="noopener noreferrer nofollow"``. Images are dropped (no tracking
  pixels, no ``data:`` images); so are event handlers, ``style`` and SVG.

The description is stored as Markdown and rendered when read, so a row edited
in the database is sanitised like any other text.
"""

from __future__ import annotations

import attrs
import nh3
from markdown_it import MarkdownIt

__all__ = ["ALLOWED_ATTRIBUTES", "ALLOWED_TAGS", "Rendered", "render_markdown"]

ALLOWED_TAGS = frozenset(
    {
        "a",
        "blockquote",
        "br",
        "code",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "strong",
        "ul",
    }
)
"""The tags an announcement's HTML may hold (what CommonMark produces, no images)."""
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
"""The attributes it may hold."""
_SCHEMES = {"http", "https", "mailto"}

_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


@attrs.frozen
class Rendered:
    """A description rendered: ``html`` the whole, ``teaser_html`` its first
    paragraph (what a banner shows before "read more"); both sanitised."""

    html: str
    teaser_html: str


def _clean(html: str) -> str:
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(_SCHEMES),
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


def render_markdown(text: str) -> Rendered:
    """Render ``text`` (Markdown) to sanitised HTML and its first paragraph."""
    tokens = _MD.parse(text)
    html = _MD.renderer.render(tokens, _MD.options, {})
    teaser = ""
    for i, token in enumerate(tokens):
        if token.type == "paragraph_open":
            end = next(
                j
                for j in range(i + 1, len(tokens))
                if tokens[j].type == "paragraph_close" and tokens[j].level == token.level
            )
            teaser = _MD.renderer.render(tokens[i : end + 1], _MD.options, {})
            break
    return Rendered(html=_clean(html), teaser_html=_clean(teaser))
