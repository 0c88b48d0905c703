"""Conformance suite for KeyProvider backends.

Both bundled providers pass it, and an integrator's own provider (a KMS, Vault)
runs the very same tests::

    # tests/test_my_provider.py
    import pytest
    from clientcomm.testing.keys import KeyProviderConformance

    class TestVaultProvider(KeyProviderConformance):
        @pytest.fixture
        async def provider(self):
            p = VaultKeyProvider(...)
            yield p
            await p.aclose()

        # optional: a second instance over the same backing state (another
        # process, as far as caches go); defaults to the same instance
        @pytest.fixture
        async def twin(self, provider):
            yield VaultKeyProvider(...)

        # optional: an instance over the same backing state configured with
        # the wrong master key / credentials (None: the provider has none)
        @pytest.fixture
        async def mismatched(self):
            yield VaultKeyProvider(..., master_key=other_key)

        # optional: damage one client's key record in the backing state
        # (None: the provider keeps no records one could damage)
        @pytest.fixture
        def damage(self):
            async def damage(firm_id, client_id): ...
            return damage

A key that cannot open is never "destroyed": the wrong master key is a
:class:`~clientcomm.errors.ConfigurationError` raised before anything is read
or written (a key check value, verified on first use), a damaged key record an
:class:`~clientcomm.errors.IntegrityError` of its client alone; only a real
tombstone (:meth:`KeyProvider.forget`) yields ``KeyDestroyedError``.

The tests are ``async`` and need ``pytest-asyncio`` in auto mode (or mark them).
Firm and client ids are unique per test run, so a shared backend may be used.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from clientcomm.crypto.context import SealContext
from clientcomm.crypto.envelope import OpenRequest, Sealer, SealRequest, sealed_key_version
from clientcomm.crypto.keys import MAX_KEY_REFERENCE, KeyProvider, key_version
from clientcomm.errors import (
    ConfigurationError,
    IntegrityError,
    InvalidInputError,
    KeyDestroyedError,
)

__all__ = ["Damage", "KeyProviderConformance"]

Damage = Callable[[str, str], Awaitable[None]]
"""``damage(firm_id, client_id)``: corrupt that client's key record in place."""


def _ids() -> tuple[str, str, str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"firm-{tag}", f"other-firm-{tag}", f"client-a-{tag}", f"client-b-{tag}"


def _dk() -> bytes:
    return os.urandom(32)


class KeyProviderConformance:
    """Subclass and provide a ``provider`` fixture (and optionally ``twin``)."""

    @pytest.fixture
    async def provider(self) -> AsyncIterator[KeyProvider]:
        raise NotImplementedError("override the `provider` fixture")
        yield  # pragma: no cover

    @pytest.fixture
    async def twin(self, provider: KeyProvider) -> AsyncIterator[KeyProvider]:
        """A second instance sharing the provider's state (override if your
        provider caches keys per instance)."""
        yield provider

    @pytest.fixture
    async def mismatched(self) -> AsyncIterator[KeyProvider | None]:
        """An instance over the same backing state as ``provider`` but with the
        wrong master key (or credentials); None if the provider has no such
        notion (the KCV tests are skipped)."""
        yield None

    @pytest.fixture
    def damage(self) -> Damage | None:
        """Corrupts one client's key record in the backing state; None if the
        provider keeps no records one could damage."""
        return None

    # -- basics -------------------------------------------------------------------
    async def test_satisfies_protocol(self, provider: KeyProvider) -> None:
        assert isinstance(provider, KeyProvider)

    async def test_wrap_unwrap_roundtrip_in_batches(self, provider: KeyProvider) -> None:
        firm, _, a, b = _ids()
        dks = [_dk() for _ in range(5)]
        items = [(a, dks[0]), (b, dks[1]), (a, dks[2]), (b, dks[3]), (a, dks[4])]
        refs = await provider.wrap_many(firm, items)
        assert len(refs) == 5
        for ref in refs:
            assert isinstance(ref, bytes)
            assert 4 < len(ref) <= MAX_KEY_REFERENCE
            assert key_version(ref) == 1
            for dk in dks:
                assert dk not in ref  # wrapped, not copied
        got = await provider.unwrap_many(
            firm, [(client, ref) for (client, _), ref in zip(items, refs, strict=True)]
        )
        assert got == dks

    async def test_empty_batches(self, provider: KeyProvider) -> None:
        firm, *_ = _ids()
        assert await provider.wrap_many(firm, []) == []
        assert await provider.unwrap_many(firm, []) == []
        assert dict(await provider.current_versions(firm, [])) == {}

    async def test_keys_are_created_on_first_use(self, provider: KeyProvider) -> None:
        firm, _, a, b = _ids()
        assert dict(await provider.current_versions(firm, [a, b])) == {}
        await provider.wrap_many(firm, [(a, _dk())])
        assert dict(await provider.current_versions(firm, [a, b])) == {a: 1}

    async def test_bad_input_is_refused(self, provider: KeyProvider) -> None:
        firm, _, a, _ = _ids()
        with pytest.raises(InvalidInputError):
            await provider.wrap_many(firm, [(a, b"short")])
        with pytest.raises(InvalidInputError):
            await provider.wrap_many("", [(a, _dk())])
        with pytest.raises(InvalidInputError):
            await provider.wrap_many(firm, [("", _dk())])

    # -- binding --------------------------------------------------------------------
    async def test_reference_is_bound_to_client(self, provider: KeyProvider) -> None:
        firm, _, a, b = _ids()
        await provider.wrap_many(firm, [(b, _dk())])
        (ref,) = await provider.wrap_many(firm, [(a, _dk())])
        (res,) = await provider.unwrap_many(firm, [(b, ref)])
        assert isinstance(res, IntegrityError)

    async def test_reference_is_bound_to_firm(self, provider: KeyProvider) -> None:
        firm, other, a, _ = _ids()
        await provider.wrap_many(other, [(a, _dk())])
        (ref,) = await provider.wrap_many(firm, [(a, _dk())])
        (res,) = await provider.unwrap_many(other, [(a, ref)])
        assert isinstance(res, IntegrityError)

    async def test_unknown_client_is_an_integrity_error(self, provider: KeyProvider) -> None:
        firm, _, a, b = _ids()
        (ref,) = await provider.wrap_many(firm, [(a, _dk())])
        (res,) = await provider.unwrap_many(firm, [(b, ref)])
        assert isinstance(res, IntegrityError)
        assert not isinstance(res, KeyDestroyedError)

    async def test_every_tampered_byte_fails(self, provider: KeyProvider) -> None:
        firm, _, a, _ = _ids()
        dk = _dk()
        (ref,) = await provider.wrap_many(firm, [(a, dk)])
        tampered = []
        for i in range(len(ref)):
            for bit in (0x01, 0x80):
                bad = bytearray(ref)
                bad[i] ^= bit
                tampered.append((a, bytes(bad)))
        tampered += [(a, ref[:-1]), (a, ref + b"\x00"), (a, b""), (a, ref[:4])]
        for res in await provider.unwrap_many(firm, tampered):
            assert isinstance(res, IntegrityError), "a tampered reference must not unwrap"

    async def test_single_item_calls_check_everything(self, provider: KeyProvider) -> None:
        # one-item batches (one stream key, one value) may take a shorter path
        firm, other, a, b = _ids()
        dk = _dk()
        (ref,) = await provider.wrap_many(firm, [(a, dk)])
        await provider.wrap_many(firm, [(b, _dk())])
        assert await provider.unwrap_many(firm, [(a, ref)]) == [dk]
        bad_refs = [ref[:-1], ref + b"\x00", b"", ref[:4], (9).to_bytes(4, "big") + ref[4:]]
        for i in range(len(ref)):
            flipped = bytearray(ref)
            flipped[i] ^= 0x01
            bad_refs.append(bytes(flipped))
        for bad in bad_refs:
            (res,) = await provider.unwrap_many(firm, [(a, bad)])
            assert isinstance(res, IntegrityError), "a tampered reference must not unwrap"
        for client, firm_id in ((b, firm), ("client-never-seen", firm), (a, other)):
            (res,) = await provider.unwrap_many(firm_id, [(client, ref)])
            assert isinstance(res, IntegrityError)
            assert not isinstance(res, KeyDestroyedError)
        with pytest.raises(InvalidInputError):
            await provider.wrap_many(firm, [(a, b"short")])
        assert await provider.forget(firm, a) is True
        (res,) = await provider.unwrap_many(firm, [(a, ref)])
        assert isinstance(res, KeyDestroyedError)
        with pytest.raises(KeyDestroyedError):
            await provider.wrap_many(firm, [(a, _dk())])

    async def test_per_item_errors_keep_order(self, provider: KeyProvider) -> None:
        firm, _, a, b = _ids()
        dk1, dk2 = _dk(), _dk()
        r1, r2 = await provider.wrap_many(firm, [(a, dk1), (b, dk2)])
        res = await provider.unwrap_many(firm, [(a, r1), (a, r2), (b, r2), (b, b"junk")])
        assert res[0] == dk1
        assert isinstance(res[1], IntegrityError)
        assert res[2] == dk2
        assert isinstance(res[3], IntegrityError)

    # -- rotation ---------------------------------------------------------------------
    async def test_rotation_keeps_old_versions_open(self, provider: KeyProvider) -> None:
        firm, _, a, b = _ids()
        dk1 = _dk()
        (r1,) = await provider.wrap_many(firm, [(a, dk1)])
        assert await provider.rotate(firm, a) == 2
        dk2 = _dk()
        (r2,) = await provider.wrap_many(firm, [(a, dk2)])
        assert key_version(r1) == 1
        assert key_version(r2) == 2
        assert await provider.unwrap_many(firm, [(a, r1), (a, r2)]) == [dk1, dk2]
        assert dict(await provider.current_versions(firm, [a])) == {a: 2}
        assert await provider.rotate(firm, a) == 3
        assert await provider.rotate(firm, b) == 1  # no key yet: version 1

    async def test_version_field_cannot_be_swapped(self, provider: KeyProvider) -> None:
        firm, _, a, _ = _ids()
        (r1,) = await provider.wrap_many(firm, [(a, _dk())])
        await provider.rotate(firm, a)
        forged = (2).to_bytes(4, "big") + r1[4:]
        (res,) = await provider.unwrap_many(firm, [(a, forged)])
        assert isinstance(res, IntegrityError)

    # -- forgetting -------------------------------------------------------------------
    async def test_forget_destroys_all_versions(
        self, provider: KeyProvider, twin: KeyProvider
    ) -> None:
        firm, _, a, b = _ids()
        dka1, dkb = _dk(), _dk()
        (ra1, rb) = await provider.wrap_many(firm, [(a, dka1), (b, dkb)])
        await provider.rotate(firm, a)
        (ra2,) = await provider.wrap_many(firm, [(a, _dk())])
        # the twin has the keys cached
        assert (await twin.unwrap_many(firm, [(a, ra1)]))[0] == dka1
        assert await provider.forget(firm, a) is True
        for p in (provider, twin):
            res = await p.unwrap_many(firm, [(a, ra1), (a, ra2), (b, rb)])
            assert isinstance(res[0], KeyDestroyedError)
            assert isinstance(res[1], KeyDestroyedError)
            assert res[2] == dkb  # other clients unaffected
            with pytest.raises(KeyDestroyedError) as info:
                await p.wrap_many(firm, [(b, _dk()), (a, _dk())])
            assert a in info.value.context["client_ids"]
            with pytest.raises(KeyDestroyedError):
                await p.rotate(firm, a)
            assert dict(await p.current_versions(firm, [a, b])) == {b: 1}
        assert await provider.forget(firm, a) is False  # idempotent

    async def test_forget_unknown_client(self, provider: KeyProvider) -> None:
        firm, _, a, _ = _ids()
        assert await provider.forget(firm, a) is False
        with pytest.raises(KeyDestroyedError):
            await provider.wrap_many(firm, [(a, _dk())])

    async def test_forget_is_per_firm(self, provider: KeyProvider) -> None:
        firm, other, a, _ = _ids()
        dk = _dk()
        (ref,) = await provider.wrap_many(other, [(a, dk)])
        await provider.forget(firm, a)
        assert await provider.unwrap_many(other, [(a, ref)]) == [dk]

    # -- through the Sealer ---------------------------------------------------------------
    async def test_sealer_end_to_end(self, provider: KeyProvider) -> None:
        firm, _, a, b = _ids()
        sealer = Sealer(provider)
        ca = SealContext(firm, a, "message", "m1", "body")
        cb = SealContext(firm, b, "message", "m1", "body")
        ea, eb = await sealer.seal_many([SealRequest(ca, b"for a"), SealRequest(cb, b"for b")])
        assert await sealer.open_many([OpenRequest(ca, ea), OpenRequest(cb, eb)]) == [
            b"for a",
            b"for b",
        ]
        with pytest.raises(IntegrityError):
            await sealer.open(cb, ea)
        await sealer.rotate_client_key(firm, a)
        ea2 = await sealer.seal(ca, b"v2")
        assert sealed_key_version(ea2) == 2
        moved = await sealer.rewrap(firm, a, ea)
        assert sealed_key_version(moved) == 2
        assert moved[-len(b"for a") - 16 :] == ea[-len(b"for a") - 16 :]  # body untouched
        assert await sealer.open(ca, moved) == b"for a"
        assert await sealer.open(ca, ea) == b"for a"
        await sealer.forget_client(firm, a)
        for env in (ea, ea2, moved):
            with pytest.raises(KeyDestroyedError):
                await sealer.open(ca, env)
        assert await sealer.open(cb, eb) == b"for b"

    async def test_sealer_streams(self, provider: KeyProvider) -> None:
        firm, _, a, b = _ids()
        sealer = Sealer(provider, chunk_size=1024)
        shared = SealContext(firm, None, "attachment", "blob-1", "content")
        key = sealer.new_stream_key()
        data = os.urandom(5000)
        frames = [f async for f in sealer.seal_chunks(shared, key, [data[:3000], data[3000:]])]
        ka, kb = await sealer.wrap_stream_keys(firm, [(a, key), (b, key)])
        for client, ref in ((a, ka), (b, kb)):
            got = [p async for p in sealer.open_stream(shared, ref, frames, key_owner=client)]
            assert b"".join(got) == data
        await sealer.forget_client(firm, a)
        with pytest.raises(KeyDestroyedError):
            async for _ in sealer.open_stream(shared, ka, frames, key_owner=a):
                pass
        got = [p async for p in sealer.open_stream(shared, kb, frames, key_owner=b)]
        assert b"".join(got) == data
        # one-frame streams (sealed and opened whole) and longer ones from bytes
        cb = SealContext(firm, b, "attachment", "blob-2", "content")
        for size in (0, 1, 1024, 1025, 4000):
            plain = os.urandom(size)
            sealed = await sealer.seal_stream(cb, plain)
            blob = b"".join([f async for f in sealed.chunks])
            assert len(blob) == size + 16 * max(1, -(-size // 1024))
            for source in (blob, [blob], memoryview(blob)):
                got = [p async for p in sealer.open_stream(cb, sealed.key, source)]
                assert b"".join(got) == plain
            with pytest.raises(IntegrityError):
                async for _ in sealer.open_stream(cb, sealed.key, blob[:-1]):
                    pass

    # -- a key that cannot open ---------------------------------------------------------
    async def test_wrong_master_key_is_a_configuration_error(
        self, provider: KeyProvider, mismatched: KeyProvider | None
    ) -> None:
        if mismatched is None:
            pytest.skip("the provider has no master key to mismatch")
        firm, _, a, b = _ids()
        dk = _dk()
        (ref,) = await provider.wrap_many(firm, [(a, dk)])
        attempts: list[Callable[[], Awaitable[object]]] = [
            lambda: mismatched.unwrap_many(firm, [(a, ref)]),  # raised, not in place
            lambda: mismatched.wrap_many(firm, [(a, _dk())]),
            lambda: mismatched.wrap_many(firm, [(b, _dk())]),  # a new client: no key made
            lambda: mismatched.rotate(firm, a),
        ]
        for attempt in attempts:
            with pytest.raises(ConfigurationError):
                await attempt()
        # nothing was written: b has no key, a is still on version 1 and opens
        assert dict(await provider.current_versions(firm, [a, b])) == {a: 1}
        assert await provider.unwrap_many(firm, [(a, ref)]) == [dk]
        # a firm the wrong key never saw is that key's own (first use writes the check)
        other, *_ = _ids()
        (mine,) = await mismatched.wrap_many(other, [(a, dk)])
        assert await mismatched.unwrap_many(other, [(a, mine)]) == [dk]
        with pytest.raises(ConfigurationError):
            await provider.unwrap_many(other, [(a, mine)])

    async def test_wrong_master_key_is_never_key_destroyed(
        self, provider: KeyProvider, mismatched: KeyProvider | None
    ) -> None:
        if mismatched is None:
            pytest.skip("the provider has no master key to mismatch")
        firm, _, a, _ = _ids()
        (ref,) = await provider.wrap_many(firm, [(a, _dk())])
        sealer = Sealer(mismatched)
        env = await Sealer(provider).seal(SealContext(firm, a, "message", "m1", "body"), b"x")
        for attempt in (
            lambda: mismatched.unwrap_many(firm, [(a, ref)]),
            lambda: sealer.open(SealContext(firm, a, "message", "m1", "body"), env),
        ):
            try:
                await attempt()
            except ConfigurationError:
                continue
            except KeyDestroyedError:  # pragma: no cover - the failure this test is for
                pytest.fail("a key that cannot open was reported as destroyed")
            pytest.fail("the wrong master key opened a key")  # pragma: no cover

    async def test_damaged_key_record_fails_its_client_alone(
        self, provider: KeyProvider, twin: KeyProvider, damage: Damage | None
    ) -> None:
        if damage is None:
            pytest.skip("the provider keeps no key records to damage")
        firm, _, a, b = _ids()
        dka, dkb = _dk(), _dk()
        ra, rb = await provider.wrap_many(firm, [(a, dka), (b, dkb)])
        await damage(firm, a)
        for p in (provider, twin):
            res = await p.unwrap_many(firm, [(a, ra), (b, rb)])
            assert isinstance(res[0], IntegrityError)
            assert not isinstance(res[0], KeyDestroyedError)
            assert res[1] == dkb
