"""Single-value envelopes: round trips, context binding and every tamper case."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Sequence

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clientcomm.crypto import (
    FORMAT_VERSION,
    LocalKeyProvider,
    MasterKey,
    MemoryKeyProvider,
    OpenRequest,
    SealContext,
    Sealer,
    SealRequest,
    SealReservation,
    decode_sealed,
    encode_sealed,
    sealed_key_version,
)
from clientcomm.crypto.keys import KeyProvider
from clientcomm.errors import (
    ConfigurationError,
    IntegrityError,
    InvalidInputError,
    KeyDestroyedError,
)
from clientcomm.storage.memory import MemoryStore

F, A, B = "firm-1", "client-a", "client-b"
CTX = SealContext(F, A, "message", "m-1", "body")


@pytest.fixture(params=["memory", "local"])
async def sealer(request: pytest.FixtureRequest) -> AsyncIterator[Sealer]:
    provider: KeyProvider
    if request.param == "memory":
        provider = MemoryKeyProvider()
        yield Sealer(provider)
    else:
        async with MemoryStore() as store:
            yield Sealer(LocalKeyProvider(store, MasterKey.generate()))


def flip(data: bytes, index: int, bit: int = 0x01) -> bytes:
    out = bytearray(data)
    out[index] ^= bit
    return bytes(out)


def layout(env: bytes) -> dict[str, slice]:
    """Where each part of a format-1 value envelope is."""
    ref_len = struct.unpack_from(">H", env, 2)[0]
    end = 4 + ref_len
    return {
        "format": slice(0, 1),
        "type": slice(1, 2),
        "ref_len": slice(2, 4),
        "key_version": slice(4, 8),
        "wrapped_key": slice(8, end),
        "commitment": slice(end, end + 32),
        "nonce": slice(end + 32, end + 44),
        "ciphertext": slice(end + 44, len(env) - 16),
        "tag": slice(len(env) - 16, len(env)),
    }


# -- round trips -----------------------------------------------------------------------
async def test_round_trip_and_layout(sealer: Sealer) -> None:
    env = await sealer.seal(CTX, b"hello")
    assert env[0] == FORMAT_VERSION == 1
    assert env[1] == 1
    assert sealed_key_version(env) == 1
    assert b"hello" not in env
    assert len(env) == 4 + 64 + 32 + 12 + 5 + 16
    assert await sealer.open(CTX, env) == b"hello"


async def test_empty_value(sealer: Sealer) -> None:
    env = await sealer.seal(CTX, b"")
    assert await sealer.open(CTX, env) == b""


async def test_fresh_key_and_nonce_per_value(sealer: Sealer) -> None:
    e1, e2 = await sealer.seal_many([SealRequest(CTX, b"same"), SealRequest(CTX, b"same")])
    p1, p2 = layout(e1), layout(e2)
    for part in ("wrapped_key", "commitment", "nonce", "ciphertext"):
        assert e1[p1[part]] != e2[p2[part]], part


async def test_batch_preserves_order_and_clients(sealer: Sealer) -> None:
    ctxs = [SealContext(F, f"c{i % 7}", "message", f"m{i}", "body") for i in range(50)]
    plains = [f"value {i}".encode() * (i + 1) for i in range(50)]
    envs = await sealer.seal_many([SealRequest(c, p) for c, p in zip(ctxs, plains, strict=True)])
    opened = await sealer.open_many([OpenRequest(c, e) for c, e in zip(ctxs, envs, strict=True)])
    assert opened == plains
    assert await sealer.seal_many([]) == []
    assert await sealer.open_many([]) == []


async def test_reserved_keys_seal_without_awaiting_and_open_as_usual(sealer: Sealer) -> None:
    seals = await sealer.reserve(F, [A, B, A])
    assert isinstance(seals, SealReservation) and "unused=3" in repr(seals)
    ctx_b = SealContext(F, B, "message", "m-2", "body")
    e1 = seals.seal(CTX, b"first")
    e2 = seals.seal(ctx_b, b"for b")
    e3 = seals.seal(CTX, b"second")
    p1, p3 = layout(e1), layout(e3)
    for part in ("wrapped_key", "commitment", "nonce"):  # each key and nonce once
        assert e1[p1[part]] != e3[p3[part]], part
    opened = await sealer.open_many(
        [OpenRequest(CTX, e1), OpenRequest(ctx_b, e2), OpenRequest(CTX, e3)]
    )
    assert opened == [b"first", b"for b", b"second"]
    with pytest.raises(IntegrityError):  # bound to its context like any envelope
        await sealer.open(ctx_b, e1)


async def test_a_reservation_seals_once_per_key_for_its_own_firm_and_clients(
    sealer: Sealer,
) -> None:
    seals = await sealer.reserve(F, [A])
    with pytest.raises(InvalidInputError, match="firm"):
        seals.seal(SealContext("firm-2", A, "message", "m", "body"), b"x")
    with pytest.raises(InvalidInputError, match="client_id"):
        seals.seal(SealContext(F, B, "message", "m", "body"), b"x")
    with pytest.raises(InvalidInputError, match="client_id"):
        seals.seal(SealContext(F, None, "message", "m", "body"), b"x")
    with pytest.raises(InvalidInputError, match="plaintext"):
        seals.seal(CTX, "text")  # type: ignore[arg-type]
    seals.seal(CTX, b"once")
    with pytest.raises(InvalidInputError, match="no unused"):
        seals.seal(CTX, b"twice")
    assert (await sealer.reserve(F, [])).seal is not None  # an empty reservation is fine
    for firm, clients in (("", [A]), (F, [""]), (F, [None])):
        with pytest.raises(InvalidInputError):
            await sealer.reserve(firm, clients)  # type: ignore[arg-type]


async def test_no_keys_are_reserved_for_a_forgotten_client(sealer: Sealer) -> None:
    await sealer.seal(CTX, b"before")
    await sealer.forget_client(F, A)
    with pytest.raises(KeyDestroyedError):
        await sealer.reserve(F, [B, A])


async def test_batch_across_firms(sealer: Sealer) -> None:
    c1 = SealContext("firm-1", A, "message", "m", "body")
    c2 = SealContext("firm-2", A, "message", "m", "body")
    e1, e2, e3 = await sealer.seal_many(
        [SealRequest(c1, b"1"), SealRequest(c2, b"2"), SealRequest(c1, b"3")]
    )
    assert await sealer.open_many(
        [OpenRequest(c1, e1), OpenRequest(c2, e2), OpenRequest(c1, e3)]
    ) == [b"1", b"2", b"3"]
    # the same client id in another firm has another key
    with pytest.raises(IntegrityError):
        await sealer.open(c2, e1)


async def test_bytes_like_plaintexts(sealer: Sealer) -> None:
    env = await sealer.seal(CTX, bytearray(b"abc"))
    assert await sealer.open(CTX, env) == b"abc"
    with pytest.raises(InvalidInputError):
        await sealer.seal(CTX, "text")  # type: ignore[arg-type]


async def test_a_value_needs_a_client(sealer: Sealer) -> None:
    shared = SealContext(F, None, "attachment", "blob", "content")
    with pytest.raises(InvalidInputError):
        await sealer.seal(shared, b"x")
    env = await sealer.seal(CTX, b"x")
    with pytest.raises(InvalidInputError):
        await sealer.open(shared, env)


# -- context binding ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "change",
    [
        {"client_id": B},
        {"object_id": "m-2"},
        {"field": "subject"},
        {"kind": "comment"},
        {"firm_id": "firm-2"},
    ],
)
async def test_opening_with_another_context_fails(sealer: Sealer, change: dict[str, str]) -> None:
    await sealer.seal(SealContext(F, B, "message", "x", "body"), b"create b's key")
    env = await sealer.seal(CTX, b"secret")
    with pytest.raises(IntegrityError):
        await sealer.open(attrs.evolve(CTX, **change), env)


async def test_ciphertext_swapped_between_clients(sealer: Sealer) -> None:
    ca = SealContext(F, A, "message", "m-1", "body")
    cb = SealContext(F, B, "message", "m-1", "body")
    ea, eb = await sealer.seal_many([SealRequest(ca, b"for a"), SealRequest(cb, b"for b")])
    # whole envelopes swapped
    with pytest.raises(IntegrityError):
        await sealer.open(cb, ea)
    # body of a's envelope under b's header (b's wrapped key and commitment)
    pa, pb = layout(ea), layout(eb)
    spliced = eb[: pb["nonce"].start] + ea[pa["nonce"].start :]
    with pytest.raises(IntegrityError):
        await sealer.open(cb, spliced)
    # a's key reference moved into b's envelope
    a_ref = ea[pa["key_version"].start : pa["wrapped_key"].stop]
    moved = eb[:4] + a_ref + eb[pb["commitment"].start :]
    with pytest.raises(IntegrityError):
        await sealer.open(cb, moved)


async def test_ciphertext_swapped_between_objects_and_fields(sealer: Sealer) -> None:
    c_obj1 = SealContext(F, A, "message", "m-1", "body")
    c_obj2 = SealContext(F, A, "message", "m-2", "body")
    c_field = SealContext(F, A, "message", "m-1", "subject")
    e1, e2, e3 = await sealer.seal_many(
        [SealRequest(c_obj1, b"one"), SealRequest(c_obj2, b"two"), SealRequest(c_field, b"sub")]
    )
    for ctx, env in ((c_obj2, e1), (c_obj1, e2), (c_field, e1), (c_obj1, e3)):
        with pytest.raises(IntegrityError):
            await sealer.open(ctx, env)
    # the body alone transplanted into another object's envelope of the same length
    p1, p2 = layout(e1), layout(e2)
    body_swap = e2[: p2["ciphertext"].start] + e1[p1["ciphertext"].start :]
    with pytest.raises(IntegrityError):
        await sealer.open(c_obj2, body_swap)


# -- tampering ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "part",
    [
        "format",
        "type",
        "ref_len",
        "key_version",
        "wrapped_key",
        "commitment",
        "nonce",
        "ciphertext",
        "tag",
    ],
)
async def test_bit_flip_in_every_part(sealer: Sealer, part: str) -> None:
    env = await sealer.seal(CTX, b"some secret text")
    where = layout(env)[part]
    for index in (where.start, where.stop - 1):
        for bit in (0x01, 0x80):
            with pytest.raises(IntegrityError):
                await sealer.open(CTX, flip(env, index, bit))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
async def test_any_single_bit_flip_fails(data: st.DataObject) -> None:
    sealer = Sealer(MemoryKeyProvider())
    plain = data.draw(st.binary(max_size=300))
    env = await sealer.seal(CTX, plain)
    index = data.draw(st.integers(0, len(env) - 1))
    bit = data.draw(st.sampled_from([1, 2, 4, 8, 16, 32, 64, 128]))
    with pytest.raises(IntegrityError):
        await sealer.open(CTX, flip(env, index, bit))


@settings(max_examples=60, deadline=None)
@given(cut=st.integers(0, 200))
async def test_truncated_or_extended_envelopes_fail(cut: int) -> None:
    sealer = Sealer(MemoryKeyProvider())
    env = await sealer.seal(CTX, b"x" * 50)
    cut = min(cut, len(env) - 1)
    with pytest.raises(IntegrityError):
        await sealer.open(CTX, env[:cut])
    with pytest.raises(IntegrityError):
        await sealer.open(CTX, env + b"\x00" * (cut + 1))


async def test_garbage_and_wrong_format_version(sealer: Sealer) -> None:
    env = await sealer.seal(CTX, b"x")
    for bad in (b"", b"\x01", b"\x02\x01" + env[2:], b"\x01\x02" + env[2:], b"\x00" * 200):
        with pytest.raises(IntegrityError):
            await sealer.open(CTX, bad)
    with pytest.raises(IntegrityError):
        await sealer.open(CTX, "not bytes")  # type: ignore[arg-type]


async def test_wrong_master_key_fails() -> None:
    async with MemoryStore() as store:
        good = Sealer(LocalKeyProvider(store, MasterKey.generate()))
        env = await good.seal(CTX, b"secret")
        wrong = Sealer(LocalKeyProvider(store, MasterKey.generate()))
        # the firm's key check value tells: a configuration error, loudly, never
        # an error in place and never "destroyed"
        with pytest.raises(ConfigurationError, match="master key does not match"):
            await wrong.open(CTX, env)
        with pytest.raises(ConfigurationError):
            await wrong.open_many([OpenRequest(CTX, env)], return_exceptions=True)
        with pytest.raises(ConfigurationError):
            await wrong.seal(CTX, b"must not wrap under a key it cannot read")
        other = SealContext(F, "client-new", "message", "m", "body")
        with pytest.raises(ConfigurationError):  # no key record is made for a new client
            await wrong.seal(other, b"x")
        assert await good.provider.current_versions(F, ["client-new"]) == {}
        assert await good.open(CTX, env) == b"secret"


async def test_open_many_can_return_errors_in_place(sealer: Sealer) -> None:
    ca = SealContext(F, A, "message", "m", "body")
    cb = SealContext(F, B, "message", "m", "body")
    ea, eb = await sealer.seal_many([SealRequest(ca, b"a"), SealRequest(cb, b"b")])
    await sealer.forget_client(F, A)
    requests = [OpenRequest(ca, ea), OpenRequest(cb, eb), OpenRequest(cb, flip(eb, -1))]
    res = await sealer.open_many(requests, return_exceptions=True)
    assert isinstance(res[0], KeyDestroyedError)
    assert res[1] == b"b"
    assert isinstance(res[2], IntegrityError)
    with pytest.raises(KeyDestroyedError):
        await sealer.open_many(requests)


async def test_open_many_reports_every_failure_in_place_and_raises_the_first(
    sealer: Sealer,
) -> None:
    ctxs = [SealContext(F, f"c{i}", "message", f"m{i}", "body") for i in range(6)]
    envs = await sealer.seal_many([SealRequest(c, b"v%d" % i) for i, c in enumerate(ctxs)])
    bad = {
        1: envs[1][:60],  # truncated inside the key reference
        2: flip(envs[2], 70),  # commitment
        3: flip(envs[3], len(envs[3]) - 1),  # tag
        4: b"\x01\x01\x00\x40",  # a bare header
    }
    requests = [
        OpenRequest(c, bad.get(i, e)) for i, (c, e) in enumerate(zip(ctxs, envs, strict=True))
    ]
    res = await sealer.open_many(requests, return_exceptions=True)
    assert res[0] == b"v0"
    assert res[5] == b"v5"
    for i in bad:
        assert isinstance(res[i], IntegrityError), i
    with pytest.raises(IntegrityError) as info:
        await sealer.open_many(requests)
    assert info.value.message == res[1].message  # type: ignore[union-attr]


class _BytearrayKeys(MemoryKeyProvider):
    """A provider handing back data keys as bytearray (bytes-like is enough)."""

    async def unwrap_many(
        self, firm_id: str, items: Sequence[tuple[str, bytes]]
    ) -> list[bytes | IntegrityError]:
        keys = await super().unwrap_many(firm_id, items)
        return [bytearray(k) if isinstance(k, bytes) else k for k in keys]  # type: ignore[misc]


async def test_bytes_like_data_keys_from_a_provider() -> None:
    sealer = Sealer(_BytearrayKeys())
    envs = await sealer.seal_many([SealRequest(CTX, b"one"), SealRequest(CTX, b"two")])
    assert await sealer.open_many([OpenRequest(CTX, e) for e in envs]) == [b"one", b"two"]
    with pytest.raises(IntegrityError):
        await sealer.open(CTX, flip(envs[0], 80))


# -- helpers and values crossing seams ------------------------------------------------------
async def test_text_encoding_of_sealed_values(sealer: Sealer) -> None:
    env = await sealer.seal(CTX, b"x")
    text = encode_sealed(env)
    assert text.isascii()
    assert decode_sealed(text) == env
    with pytest.raises(IntegrityError):
        decode_sealed("not base64!")


def test_reprs_hide_plaintext_and_envelopes() -> None:
    req = SealRequest(CTX, b"top secret plaintext")
    assert "top secret" not in repr(req)
    opened = OpenRequest(CTX, b"\x01\x01envelope-bytes")
    assert "envelope-bytes" not in repr(opened)
    assert "client-a" in repr(CTX)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"firm_id": ""},
        {"client_id": ""},
        {"kind": "a\x00b"},
        {"object_id": "x" * 401},
        {"field": "\ud800"},
        {"firm_id": 3},
    ],
)
def test_context_validation(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "firm_id": F,
        "client_id": A,
        "kind": "message",
        "object_id": "m",
        "field": "body",
    }
    base.update(kwargs)
    with pytest.raises(InvalidInputError):
        SealContext(**base)  # type: ignore[arg-type]


def test_context_encoding_is_unambiguous() -> None:
    a = SealContext(F, A, "message", "m", "body")
    shared = SealContext(F, None, "message", "m", "body")
    assert a.encode() != shared.encode()
    assert a.value_aad() != a.encode()
    assert a.encode().split(b"\x00") == [F.encode(), A.encode(), b"message", b"m", b"body"]


async def test_format_matches_the_documentation() -> None:
    """Open an envelope by hand, following docs/security.md byte by byte."""
    import hashlib

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    provider = MemoryKeyProvider()
    env = await Sealer(provider).seal(CTX, b"documented")
    assert env[:2] == b"\x01\x01"
    ref_len = int.from_bytes(env[2:4], "big")
    ref = env[4 : 4 + ref_len]
    assert int.from_bytes(ref[:4], "big") == 1  # key version
    commitment = env[4 + ref_len : 36 + ref_len]
    nonce = env[36 + ref_len : 48 + ref_len]
    (dk,) = await provider.unwrap_many(F, [(A, ref)])
    assert isinstance(dk, bytes)
    assert commitment == hashlib.sha256(b"clientcomm.v1.key-commitment\x00" + dk).digest()
    aad = b"clientcomm.v1.value\x00firm-1\x00client-a\x00message\x00m-1\x00body"
    assert aad == CTX.value_aad()
    assert AESGCM(dk).decrypt(nonce, env[48 + ref_len :], aad) == b"documented"
