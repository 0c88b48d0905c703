"""``all_identifiers`` (a page's recipients checked in one pass) answers as
``is_identifier`` of every value."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from clientcomm.rules.text import MAX_ID, all_identifiers, is_identifier

Sub = type("Sub", (str,), {})

values = st.lists(
    st.one_of(
        st.text(max_size=8),
        st.text(st.characters(max_codepoint=127), max_size=8),
        st.sampled_from(
            ["", " ", "\t", "a b", "\x00", "a\nb", "\x85", "\u2028", "\ud800", "ä", "x" * MAX_ID]
        ),
        st.just("x" * (MAX_ID + 1)),
        st.integers(),
        st.none(),
        st.builds(Sub, st.text(max_size=3)),
    ),
    max_size=6,
)


@given(values, st.sampled_from([MAX_ID, 3, 1]))
def test_all_identifiers_is_is_identifier_of_every_value(vals: list[object], limit: int) -> None:
    assert all_identifiers(vals, max_length=limit) == all(
        is_identifier(v, max_length=limit) for v in vals
    )


def test_one_bad_id_in_a_page_is_found() -> None:
    page = [f"c{i:06}" for i in range(500)]
    assert all_identifiers(page)
    for bad in ("c\x00", "c\ud800", " ", "", "x" * (MAX_ID + 1), "a\u2029"):
        assert not all_identifiers([*page[:250], bad, *page[250:]])
