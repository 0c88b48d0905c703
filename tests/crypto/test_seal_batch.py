"""The fan-out's batch paths give exactly what the plain paths give.

``Sealer.seal_batch`` against ``seal_many`` over ``SealContext.many`` (byte for
byte, with the randomness made deterministic), and the batch-wise id checks
(``all_fast_ok``, ``valid_key_owners``) against their per-value checks.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clientcomm.crypto import (
    LocalKeyProvider,
    MasterKey,
    MemoryKeyProvider,
    OpenRequest,
    SealContext,
    Sealer,
    SealRequest,
)
from clientcomm.crypto import keys as keys_module
from clientcomm.crypto.context import _fast_ok, all_fast_ok
from clientcomm.crypto.envelope import Buffer
from clientcomm.crypto.keys import valid_key_owners, validate_key_owner
from clientcomm.errors import InvalidInputError, KeyDestroyedError
from clientcomm.storage.memory import MemoryStore

F = "firm-1"
CLIENTS = ("c1", "c2", "Mandant ä", "c-\u00e9\u20ac")


class Deterministic:
    """``os.urandom`` replaced by a SHAKE-256 stream that can be rewound, so two
    seal paths drawing the same bytes in the same order give equal envelopes."""

    def __init__(self) -> None:
        self.count = 0

    def rewind(self) -> None:
        self.count = 0

    def __call__(self, n: int) -> bytes:
        self.count += 1
        return hashlib.shake_256(b"seal-batch-test:%d" % self.count).digest(n)


@pytest.fixture(params=["memory", "local"])
async def sealer(request: pytest.FixtureRequest) -> AsyncIterator[Sealer]:
    if request.param == "memory":
        yield Sealer(MemoryKeyProvider())
    else:
        async with MemoryStore() as store:
            yield Sealer(LocalKeyProvider(store, MasterKey.generate()))


@pytest.fixture
def rng(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deterministic]:
    det = Deterministic()
    monkeypatch.setattr(os, "urandom", det)
    monkeypatch.setattr(keys_module, "_urandom", det)
    yield det


async def plain_path(
    sealer: Sealer,
    kind: str,
    field: str,
    pairs: Sequence[tuple[str, str]],
    plaintexts: Sequence[Buffer],
) -> list[bytes]:
    """The plain path: a context and a request per value, then ``seal_many``."""
    contexts = SealContext.many(F, kind, field, pairs)
    return await sealer.seal_many(
        [SealRequest(ctx, p) for ctx, p in zip(contexts, plaintexts, strict=True)]
    )


ids = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12
) | st.sampled_from(CLIENTS)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.tuples(st.sampled_from(CLIENTS), ids, st.binary(max_size=300)), max_size=12),
    field=st.sampled_from(["text", "body", "f\u00e4ld"]),
)
async def test_seal_batch_equals_seal_many_byte_for_byte(
    sealer: Sealer, rng: Deterministic, rows: list[tuple[str, str, bytes]], field: str
) -> None:
    pairs = [(c, o) for c, o, _ in rows]
    plains = [p for _, _, p in rows]
    await sealer.seal_many(
        [SealRequest(SealContext(F, c, "message", "x", "t"), b"") for c in CLIENTS]
    )
    rng.rewind()
    expected = await plain_path(sealer, "message", field, pairs, plains)
    rng.rewind()
    got = await sealer.seal_batch(F, "message", field, pairs, plains)
    assert got == expected
    opened = await sealer.open_many(
        [
            OpenRequest(SealContext(F, c, "message", o, field), env)
            for (c, o), env in zip(pairs, got, strict=True)
        ]
    )
    assert opened == plains


async def test_seal_batch_takes_bytes_like_plaintexts_as_seal_many(
    sealer: Sealer, rng: Deterministic
) -> None:
    pairs = [("c1", "m1"), ("c2", "m2"), ("c1", "m3")]
    plains: list[Buffer] = [bytearray(b"ab"), memoryview(b"cd"), b"ef"]
    await sealer.seal_batch(F, "message", "text", pairs, plains)  # keys exist from here on
    rng.rewind()
    expected = await plain_path(sealer, "message", "text", pairs, plains)
    rng.rewind()
    assert await sealer.seal_batch(F, "message", "text", pairs, plains) == expected


async def test_seal_batch_of_nothing(sealer: Sealer) -> None:
    assert await sealer.seal_batch(F, "message", "text", [], []) == []
    with pytest.raises(InvalidInputError) as err:  # shared parts checked even then
        await sealer.seal_batch(F, "message", "", [], [])
    assert err.value.field == "field"


class Counting(MemoryKeyProvider):
    def __init__(self) -> None:
        super().__init__()
        self.wraps = 0

    async def wrap_many(self, firm_id: str, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        self.wraps += 1
        return await super().wrap_many(firm_id, items)


@pytest.mark.parametrize(
    ("pair", "field"),
    [
        (("c\x00x", "m1"), "client_id"),
        (("", "m1"), "client_id"),
        (("c" * 401, "m1"), "client_id"),
        (("c\ud800", "m1"), "client_id"),
        ((7, "m1"), "client_id"),
        (("c1", "m\x00"), "object_id"),
        (("c1", ""), "object_id"),
        (("c1", "\udfff"), "object_id"),
        (("c1", None), "object_id"),
        ((None, "m1"), "context.client_id"),
    ],
)
async def test_a_bad_id_is_refused_as_seal_many_refuses_it_and_nothing_is_sealed(
    pair: tuple[object, object], field: str
) -> None:
    provider = Counting()
    sealer = Sealer(provider)
    pairs = [("c1", "m0"), pair, ("c2", "m2")]
    with pytest.raises(InvalidInputError) as plain:
        await plain_path(sealer, "message", "text", pairs, [b"x"] * 3)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError) as batch:
        await sealer.seal_batch(F, "message", "text", pairs, [b"x"] * 3)  # type: ignore[arg-type]
    assert batch.value.field == plain.value.field == field
    assert batch.value.message == plain.value.message
    assert provider.wraps == 0


async def test_bad_plaintexts_are_refused(sealer: Sealer) -> None:
    with pytest.raises(InvalidInputError) as err:
        await sealer.seal_batch(F, "message", "text", [("c1", "m1")], [b"a", b"b"])
    assert err.value.field == "plaintexts"
    with pytest.raises(InvalidInputError) as err:
        await sealer.seal_batch(F, "message", "text", [("c1", "m1")], ["text"])  # type: ignore[list-item]
    assert err.value.field == "plaintext"


async def test_forgotten_clients_are_named_as_seal_many_names_them(sealer: Sealer) -> None:
    pairs = [("c1", "m1"), ("c2", "m2"), ("c3", "m3")]
    await sealer.seal_batch(F, "message", "text", pairs, [b"x"] * 3)
    await sealer.provider.forget(F, "c3")
    await sealer.provider.forget(F, "c1")
    with pytest.raises(KeyDestroyedError) as plain:
        await plain_path(sealer, "message", "text", pairs, [b"x"] * 3)
    with pytest.raises(KeyDestroyedError) as batch:
        await sealer.seal_batch(F, "message", "text", pairs, [b"x"] * 3)
    assert batch.value.context["client_ids"] == plain.value.context["client_ids"] == ["c1", "c3"]


# -- batch-wise id checks ------------------------------------------------------------------
values = st.lists(
    st.one_of(
        st.text(max_size=8),
        st.text(st.characters(max_codepoint=127), max_size=8),
        st.sampled_from(["", "\x00", "a\x00b", "x" * 400, "x" * 401, "\ud800", "ä"]),
        st.integers(),
        st.none(),
        st.builds(type("Sub", (str,), {}), st.text(max_size=3)),
    ),
    max_size=6,
)


@given(values)
def test_all_fast_ok_is_fast_ok_of_every_value(vals: list[object]) -> None:
    assert all_fast_ok(vals) == all(_fast_ok(v) for v in vals)


@given(values)
def test_valid_key_owners_is_validate_key_owner_of_every_value(vals: list[object]) -> None:
    def ok(v: object) -> bool:
        try:
            validate_key_owner("client_id", v)
        except InvalidInputError:
            return False
        return True

    if valid_key_owners(vals):
        assert all(ok(v) for v in vals)
    else:  # False sends the caller to the per-value checks: exact str only on the fast path
        assert not all(ok(v) for v in vals) or any(type(v) is not str for v in vals)
