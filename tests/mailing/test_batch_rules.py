"""The fan-out's batch rules give exactly what the per-copy rules give."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clientcomm.mailing.records import PAGE
from clientcomm.mailing.rules import copy_message_id, copy_message_ids

texts = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)


@given(
    mailing_id=texts,
    clients=st.lists(texts, max_size=8),
    secret=st.one_of(st.just(b""), st.binary(min_size=16, max_size=64)),
)
def test_copy_message_ids_are_copy_message_id_of_each(
    mailing_id: str, clients: list[str], secret: bytes
) -> None:
    assert copy_message_ids(mailing_id, clients, secret) == [
        (c, copy_message_id(mailing_id, c, secret)) for c in clients
    ]


def test_an_id_that_cannot_be_encoded_fails_as_in_copy_message_id() -> None:
    with pytest.raises(UnicodeEncodeError):
        copy_message_id("m1", "c\ud800", b"s" * 32)
    with pytest.raises(UnicodeEncodeError):
        copy_message_ids("m1", ["c1", "c\ud800"], b"s" * 32)


@pytest.mark.parametrize("body", [b'["c1", 2]', b'["c1", null]', b'[["c1"]]', b'{"c": 1}', b'"c1"'])
def test_a_page_body_that_is_not_a_list_of_ids_does_not_decode(body: bytes) -> None:
    decode = PAGE.body_codec[1] if PAGE.body_codec else None
    assert decode is not None
    with pytest.raises(ValueError):
        decode(body)
    assert decode(b'["c1", "c2"]') == ("c1", "c2")
    assert decode(b"") == ()
