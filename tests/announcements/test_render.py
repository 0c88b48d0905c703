"""Markdown to safe HTML: a corpus of XSS payloads is rendered harmless."""

from __future__ import annotations

import html.parser
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clientcomm.announcements.render import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, render_markdown

PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=alert(1)>",
    '<a href="javascript:alert(1)">x</a>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](  javascript:alert(1))",
    "[click](java\tscript:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](&#x6A;avascript&#58;alert(1))",
    "[click](%6A%61vascript:alert(1))",
    "[click](vbscript:msgbox(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "![x](data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+)",
    "![x](javascript:alert(1))",
    '![x](https://tracker.example/p.gif "t")',
    "<svg onload=alert(1)>",
    "<svg><script>alert(1)</script></svg>",
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<iframe src="https://evil.example"></iframe>',
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<p style="position:fixed;top:0">overlay</p>',
    "<style>body{display:none}</style>",
    '<a href="https://ok.example" onclick="alert(1)">x</a>',
    '[x](https://ok.example "title\\" onmouseover=\\"alert(1))',
    "<object data=javascript:alert(1)>",
    '<form action="javascript:alert(1)"><input type=submit>',
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "&#60;script&#62;alert(1)&#60;/script&#62;",
    "<scr<script>ipt>alert(1)</scr</script>ipt>",
    "<!--><script>alert(1)</script>-->",
    "`<script>alert(1)</script>`",
    "```html\n<script>alert(1)</script>\n```",
    "<https://ok.example/?q=<script>>",
    "<javascript:alert(1)>",
    "[x]: javascript:alert(1)\n\n[link][x]",
    "*<img src=x onerror=alert(1)>*",
    "<details open ontoggle=alert(1)>",
    '<a href="data:text/html,<script>alert(1)</script>">x</a>',
    '<base href="https://evil.example/">',
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
]


class Collector(html.parser.HTMLParser):
    """Every start tag with its attributes, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def scheme_of(url: str) -> str:
    """The scheme a browser reads (the WHATWG URL parser drops tabs and line
    breaks anywhere and C0 controls and spaces around); "" for a relative URL."""
    cleaned = re.sub(r"[\t\n\r]", "", url).strip(
        "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b"
        "\x0c\x0e\x0f\x10\x11\x12\x13\x14\x15"
        "\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f "
    )
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.\-]*):", cleaned)
    return match.group(1).lower() if match else ""


def assert_harmless(out: str) -> None:
    parser = Collector()
    parser.feed(out)
    parser.close()
    for tag, attrs in parser.tags:
        assert tag in ALLOWED_TAGS, (tag, out)
        for name, value in attrs:
            allowed = ALLOWED_ATTRIBUTES.get(tag, set()) | ({"rel"} if tag == "a" else set())
            assert name in allowed, (tag, name, out)
            if name == "href":
                assert value is not None
                assert scheme_of(value) in ("", "http", "https", "mailto"), (value, out)
        if tag == "a":
            assert ("rel", "noopener noreferrer nofollow") in attrs
    lowered = out.lower()
    for needle in ("<script", "<svg", "<img", "<style", "<iframe", "<math", "<base", "<meta"):
        assert needle not in lowered, out  # as escaped text (&lt;script) it may appear


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_is_harmless(payload: str) -> None:
    rendered = render_markdown(payload)
    assert_harmless(rendered.html)
    assert_harmless(rendered.teaser_html)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_inside_real_markdown_is_harmless(payload: str) -> None:
    text = (
        f"# Hinweis\n\nBitte **beachten** Sie {payload} und [das](https://ok.example).\n\n"
        f"- {payload}\n"
    )
    assert_harmless(render_markdown(text).html)


def test_markdown_still_renders() -> None:
    out = render_markdown(
        "Ab **1. Juni** gelten *neue* Zeiten: [Details](https://kanzlei.example/zeiten).\n\n"
        "- Mo–Do 8–17 Uhr\n- Fr 8–13 Uhr\n\n> Danke!\n\n`Code` & <Ende>"
    )
    assert out.teaser_html == (
        "<p>Ab <strong>1. Juni</strong> gelten <em>neue</em> Zeiten: "
        '<a href="https://kanzlei.example/zeiten" rel="noopener noreferrer nofollow">'
        "Details</a>.</p>\n"
    )
    assert "<ul>\n<li>Mo–Do 8–17 Uhr</li>" in out.html
    assert "<blockquote>" in out.html
    assert "<code>Code</code> &amp; &lt;Ende&gt;" in out.html


def test_the_sanitiser_is_applied_after_the_parser() -> None:
    """Not only markdown-it's html=False: the allow-list alone drops what the
    parser would let through (an image, which CommonMark renders)."""
    out = render_markdown("![logo](https://kanzlei.example/logo.png)")
    assert "<img" not in out.html


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [*PAYLOADS, "<", ">", '"', "'", "&", "](", "[", "*", "\n\n", "javascript:", "on", "="]
        )
        | st.text(max_size=20),
        max_size=8,
    )
)
def test_any_mix_is_harmless(parts: list[str]) -> None:
    rendered = render_markdown("".join(parts))
    assert_harmless(rendered.html)
    assert_harmless(rendered.teaser_html)
