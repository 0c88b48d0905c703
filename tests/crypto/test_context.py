"""SealContext.many: the batch constructor validates exactly as the constructor does."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clientcomm import InvalidInputError
from clientcomm.crypto import SealContext


def test_many_builds_the_same_contexts_as_the_constructor() -> None:
    pairs = [("c1", "m1"), ("Mandant-ä", "m2"), ("c" * 400, "m3")]
    built = SealContext.many("f1", "message", "text", pairs)
    assert built == [SealContext("f1", c, "message", m, "text") for c, m in pairs]
    assert [c.value_aad() for c in built] == [
        SealContext("f1", c, "message", m, "text").value_aad() for c, m in pairs
    ]
    assert SealContext.many("f1", "message", "text", []) == []


@pytest.mark.parametrize(
    ("pair", "field"),
    [
        (("", "m"), "client_id"),
        (("c\x00", "m"), "client_id"),
        (("c" * 401, "m"), "client_id"),
        ((7, "m"), "client_id"),
        (("c", ""), "object_id"),
        (("c", "m\x00x"), "object_id"),
        (("c", "\udc80"), "object_id"),  # a lone surrogate is not UTF-8
    ],
)
def test_many_refuses_what_the_constructor_refuses(pair: tuple[object, object], field: str) -> None:
    with pytest.raises(InvalidInputError) as caught:
        SealContext.many("f1", "message", "text", [("ok", "ok"), pair])  # type: ignore[list-item]
    assert caught.value.field == field


@pytest.mark.parametrize(
    "shared", [("", "message", "text"), ("f1", "", "text"), ("f1", "k", "a\x00")]
)
def test_many_checks_the_shared_parts(shared: tuple[str, str, str]) -> None:
    with pytest.raises(InvalidInputError):
        SealContext.many(*shared, [("c", "m")])


@given(st.text(max_size=12), st.text(max_size=12))
def test_many_agrees_with_the_constructor(client_id: str, object_id: str) -> None:
    try:
        expected = SealContext("f1", client_id, "message", object_id, "text")
    except InvalidInputError:
        with pytest.raises(InvalidInputError):
            SealContext.many("f1", "message", "text", [(client_id, object_id)])
        return
    assert SealContext.many("f1", "message", "text", [(client_id, object_id)]) == [expected]
