"""Key lifecycle: rotation and re-wrapping, crypto-shredding across processes,
master keys and their rotation, retention rules, background re-wrapping."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clientcomm.clock import ManualClock
from clientcomm.crypto import (
    KEY_CHECK_ID,
    KEY_CHECK_KIND,
    KEY_RECORD_KIND,
    MASTER_KEY_ENV,
    MASTER_KEY_FILE_ENV,
    RETAIN_INDEFINITELY,
    LocalKeyProvider,
    MasterKey,
    MemoryKeyProvider,
    SealContext,
    Sealer,
    encode_sealed,
    generate_master_key,
    lawyer_retention,
    load_master_key,
    rewrap_records,
    sealed_key_version,
    statutory_retention,
    tax_adviser_retention,
)
from clientcomm.crypto.keys import ClientKeyring, KeyProvider, unwrap_items, wrap_items
from clientcomm.errors import (
    ConfigurationError,
    IntegrityError,
    InvalidInputError,
    KeyDestroyedError,
    RetentionError,
)
from clientcomm.storage.base import Record, Store
from clientcomm.storage.memory import MemoryStore
from clientcomm.storage.sqlite import SQLiteStore

F, A, B = "firm-1", "client-a", "client-b"
CA = SealContext(F, A, "message", "m-1", "body")
CB = SealContext(F, B, "message", "m-1", "body")


@pytest.fixture(params=["memory", "local-memory", "local-sqlite"])
async def provider(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[KeyProvider]:
    if request.param == "memory":
        yield MemoryKeyProvider()
    elif request.param == "local-memory":
        async with MemoryStore() as store:
            yield LocalKeyProvider(store, MasterKey.generate())
    else:
        async with SQLiteStore(tmp_path / "keys.db") as sqlite:
            yield LocalKeyProvider(sqlite, MasterKey.generate())


# -- rotation ------------------------------------------------------------------------------
async def test_rotate_rewrap_forget(provider: KeyProvider) -> None:
    sealer = Sealer(provider)
    v1 = await sealer.seal(CA, b"written under v1")
    stream1 = await sealer.seal_stream(CA, b"stream under v1")
    frames1 = [f async for f in stream1.chunks]
    other = await sealer.seal(CB, b"another client")
    assert sealed_key_version(v1) == 1

    assert await sealer.rotate_client_key(F, A) == 2
    v2 = await sealer.seal(CA, b"written under v2")
    assert sealed_key_version(v2) == 2
    assert await sealer.open(CA, v1) == b"written under v1"
    assert await sealer.open(CA, v2) == b"written under v2"

    moved, moved_stream, same = await sealer.rewrap_many(F, [(A, v1), (A, stream1.key), (A, v2)])
    assert isinstance(moved, bytes) and isinstance(moved_stream, bytes)
    assert sealed_key_version(moved) == 2
    assert sealed_key_version(moved_stream) == 2
    assert same is v2  # already current: returned as is
    assert moved[-(16 + 16) :] == v1[-(16 + 16) :]  # the body was not re-encrypted
    assert await sealer.open(CA, moved) == b"written under v1"
    got = b"".join([p async for p in sealer.open_stream(CA, moved_stream, frames1)])
    assert got == b"stream under v1"

    await sealer.forget_client(F, A)
    for env in (v1, v2, moved):
        with pytest.raises(KeyDestroyedError):
            await sealer.open(CA, env)
    for key in (stream1.key, moved_stream):
        with pytest.raises(KeyDestroyedError):
            async for _ in sealer.open_stream(CA, key, frames1):
                pass
    with pytest.raises(KeyDestroyedError):
        await sealer.seal(CA, b"nothing new for a forgotten client")
    (res,) = await sealer.rewrap_many(F, [(A, v1)])
    assert isinstance(res, KeyDestroyedError)
    with pytest.raises(KeyDestroyedError):
        await sealer.rewrap(F, A, v1)
    assert await sealer.open(CB, other) == b"another client"


async def test_rewrap_reports_bad_items_in_place(provider: KeyProvider) -> None:
    sealer = Sealer(provider)
    env = await sealer.seal(CA, b"x")
    await sealer.rotate_client_key(F, A)
    flipped = bytearray(env)
    flipped[10] ^= 1
    res = await sealer.rewrap_many(F, [(A, b"junk"), (A, bytes(flipped)), (B, env), (A, env)])
    assert isinstance(res[0], IntegrityError)
    assert isinstance(res[1], IntegrityError)
    assert isinstance(res[2], IntegrityError)  # wrong key owner
    assert isinstance(res[3], bytes) and sealed_key_version(res[3]) == 2


async def test_rewrap_checks_the_commitment(provider: KeyProvider) -> None:
    sealer = Sealer(provider)
    e1 = await sealer.seal(CA, b"one")
    e2 = await sealer.seal(CA, b"two")
    await sealer.rotate_client_key(F, A)
    # e1's body and commitment with e2's (valid) key reference
    end = 4 + 64
    forged = e1[:4] + e2[4:end] + e1[end:]
    with pytest.raises(IntegrityError):
        await sealer.rewrap(F, A, forged)


# -- crypto-shredding across processes ------------------------------------------------------
async def test_forget_in_another_process_is_seen_on_next_open(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    master = MasterKey.generate()
    async with SQLiteStore(path) as s1, SQLiteStore(path) as s2:
        p1 = Sealer(LocalKeyProvider(s1, master))
        p2 = Sealer(LocalKeyProvider(s2, master))
        env = await p1.seal(CA, b"secret")
        assert await p2.open(CA, env) == b"secret"  # p2 now has the key cached
        await p1.forget_client(F, A)
        with pytest.raises(KeyDestroyedError):
            await p2.open(CA, env)
        with pytest.raises(KeyDestroyedError):
            await p2.seal(CA, b"new")


async def test_revalidate_after_bounds_the_delay() -> None:
    master = MasterKey.generate()
    async with MemoryStore() as store:
        writer = Sealer(LocalKeyProvider(store, master))
        cached = LocalKeyProvider(store, master, revalidate_after=3600)
        reader = Sealer(cached)
        env = await writer.seal(CA, b"secret")
        assert await reader.open(CA, env) == b"secret"
        await writer.forget_client(F, A)
        # within the documented bound the cached key still opens...
        assert await reader.open(CA, env) == b"secret"
        # ...and once the entry is older than revalidate_after, it does not
        for entry in cached._cache.values():
            entry.loaded_at -= 7200
        with pytest.raises(KeyDestroyedError):
            await reader.open(CA, env)


async def test_concurrent_first_use_creates_one_key(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    master = MasterKey.generate()
    async with SQLiteStore(path) as s1, SQLiteStore(path) as s2:
        p1 = Sealer(LocalKeyProvider(s1, master))
        p2 = Sealer(LocalKeyProvider(s2, master))
        e1, e2 = await asyncio.gather(p1.seal(CA, b"one"), p2.seal(CA, b"two"))
        assert await p2.open(CA, e1) == b"one"
        assert await p1.open(CA, e2) == b"two"


# -- the key records -------------------------------------------------------------------------
async def test_key_records_hold_no_plain_key_material() -> None:
    master = MasterKey.generate()
    async with MemoryStore() as store:
        provider = LocalKeyProvider(store, master)
        await provider.wrap_many(F, [(A, bytes(32))])
        await provider.rotate(F, A)
        async with store.transaction(F) as tx:
            rec = await tx.get(KEY_RECORD_KIND, A)
        assert rec.data["current"] == 2
        assert rec.data["master_key_id"] == master.key_id
        text = repr(dict(rec.data))
        for version in ("1", "2"):
            raw = base64.b64decode(rec.data["keys"][version])
            assert len(raw) == 12 + 32 + 16
            aad = b"clientcomm.v1.client-key\x00" + f"{F}\x00{A}\x00".encode()
            key = AESGCM(master.material).decrypt(
                raw[:12], raw[12:], aad + int(version).to_bytes(4, "big")
            )
            assert key.hex() not in text
            assert base64.b64encode(key).decode() not in text
        await provider.forget(F, A)
        async with store.transaction(F) as tx:
            tomb = await tx.get(KEY_RECORD_KIND, A)
        assert tomb.data["keys"] == {}
        assert tomb.data["forgotten_at"] is not None
        assert tomb.data["master_key_id"] is None


async def test_wrapped_client_key_moved_between_records_fails() -> None:
    async with MemoryStore() as store:
        sealer = Sealer(LocalKeyProvider(store, MasterKey.generate()))
        env_b = await sealer.seal(CB, b"b")
        await sealer.seal(CA, b"a")
        async with store.transaction(F) as tx:
            ra = await tx.get(KEY_RECORD_KIND, A)
            rb = await tx.get(KEY_RECORD_KIND, B)
            data = dict(rb.data)
            data["keys"] = dict(ra.data["keys"])  # a's wrapped key into b's record
            await tx.update([rb.evolve(data=data)])
        with pytest.raises(IntegrityError):
            await sealer.open(CB, env_b)


async def test_damaged_record_only_affects_its_client() -> None:
    async with MemoryStore() as store:
        sealer = Sealer(LocalKeyProvider(store, MasterKey.generate()))
        ea = await sealer.seal(CA, b"a")
        eb = await sealer.seal(CB, b"b")
        async with store.transaction(F) as tx:
            ra = await tx.get(KEY_RECORD_KIND, A)
            await tx.update([ra.evolve(data={"junk": True})])
        from clientcomm.crypto import OpenRequest

        res = await sealer.open_many(
            [OpenRequest(CA, ea), OpenRequest(CB, eb)], return_exceptions=True
        )
        assert isinstance(res[0], IntegrityError)
        assert res[1] == b"b"


# -- master keys ------------------------------------------------------------------------------
def test_master_key_text_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = generate_master_key()
    key = MasterKey.from_text(text)
    assert len(base64.b64decode(text)) == 32
    assert key.to_text() == text
    assert MasterKey.from_text(key.material.hex()) == key
    assert MasterKey.from_text(f"  {text}\n") == key
    urlsafe = base64.urlsafe_b64encode(key.material).decode()
    assert MasterKey.from_text(urlsafe) == key
    assert text not in repr(key) and key.material.hex() not in repr(key)
    assert key.key_id in repr(key)
    for bad in ("", "abc", base64.b64encode(b"x" * 31).decode(), "zz" * 32):
        with pytest.raises(ConfigurationError):
            MasterKey.from_text(bad)
    with pytest.raises(ConfigurationError):
        MasterKey(b"short")

    path = tmp_path / "master.key"
    path.write_text(text + "\n")
    assert MasterKey.from_file(path) == key
    assert load_master_key(path) == key
    with pytest.raises(ConfigurationError):
        MasterKey.from_file(tmp_path / "missing.key")

    monkeypatch.delenv(MASTER_KEY_ENV, raising=False)
    monkeypatch.delenv(MASTER_KEY_FILE_ENV, raising=False)
    with pytest.raises(ConfigurationError):
        load_master_key()
    with pytest.raises(ConfigurationError):
        MasterKey.from_env()
    monkeypatch.setenv(MASTER_KEY_FILE_ENV, str(path))
    assert load_master_key() == key
    other = MasterKey.generate()
    monkeypatch.setenv(MASTER_KEY_ENV, other.to_text())
    assert load_master_key() == other  # the variable wins over the file variable
    monkeypatch.setenv(MASTER_KEY_ENV, "not a key")
    with pytest.raises(ConfigurationError):
        load_master_key()


async def test_master_key_rotation() -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    async with MemoryStore() as store:
        before = Sealer(LocalKeyProvider(store, old))
        envs = [
            await before.seal(SealContext(F, f"c{i}", "message", "m", "body"), b"x")
            for i in range(7)
        ]
        await before.forget_client(F, "c6")
        # without the old key the new one cannot read the records: the firm's
        # key check value names the old key
        with pytest.raises(ConfigurationError, match="master key does not match"):
            await Sealer(LocalKeyProvider(store, new)).open(
                SealContext(F, "c0", "message", "m", "body"), envs[0]
            )
        rotating = LocalKeyProvider(store, new, previous_master_keys=[old])
        assert await rotating.pending_master_rotation(F) == 6
        assert await rotating.rotate_master_key(F, batch=4) == 6
        assert await rotating.pending_master_rotation(F) == 0
        assert await rotating.rotate_master_key(F) == 0  # idempotent
        after = Sealer(LocalKeyProvider(store, new))  # the old key is gone
        for i, env in enumerate(envs[:6]):
            assert await after.open(SealContext(F, f"c{i}", "message", "m", "body"), env) == b"x"
        with pytest.raises(KeyDestroyedError):
            await after.open(SealContext(F, "c6", "message", "m", "body"), envs[6])
        with pytest.raises(ConfigurationError):  # the old master key no longer opens anything
            await Sealer(LocalKeyProvider(store, old)).open(
                SealContext(F, "c0", "message", "m", "body"), envs[0]
            )


async def test_rotating_a_client_key_moves_its_record_to_the_new_master() -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    async with MemoryStore() as store:
        env = await Sealer(LocalKeyProvider(store, old)).seal(CA, b"x")
        provider = LocalKeyProvider(store, new, previous_master_keys=[old])
        assert await provider.rotate(F, A) == 2
        assert await provider.pending_master_rotation(F) == 0
        assert await Sealer(LocalKeyProvider(store, new)).open(CA, env) == b"x"


# -- the key check value ------------------------------------------------------------------
async def _check_record(store: Store) -> Record:
    async with store.transaction(F) as tx:
        return await tx.get(KEY_CHECK_KIND, KEY_CHECK_ID)


async def test_key_check_value_is_written_with_the_first_key() -> None:
    master = MasterKey.generate()
    async with MemoryStore() as store:
        provider = LocalKeyProvider(store, master)
        assert await provider.check_master_key(F) is False  # no keys yet: nothing to check
        await provider.unwrap_many(F, [(A, bytes(64))])  # reading writes nothing
        async with store.transaction(F) as tx:
            assert await tx.find(KEY_CHECK_KIND, KEY_CHECK_ID) is None
        await provider.wrap_many(F, [(A, bytes(32))])
        rec = await _check_record(store)
        assert rec.data["master_key_id"] == master.key_id
        assert len(bytes.fromhex(rec.data["check"])) == 16
        assert master.material.hex() not in repr(dict(rec.data))
        assert await provider.check_master_key(F) is True
        # per firm: another firm's check value is its own
        await provider.wrap_many("firm-2", [(A, bytes(32))])
        async with store.transaction("firm-2") as tx:
            other = await tx.get(KEY_CHECK_KIND, KEY_CHECK_ID)
        assert other.data["check"] != rec.data["check"]


async def test_wrong_master_key_is_refused_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "kcv.db"
    async with SQLiteStore(path) as s1, SQLiteStore(path) as s2:
        right = Sealer(LocalKeyProvider(s1, MasterKey.generate()))
        env = await right.seal(CA, b"a")
        wrong_provider = LocalKeyProvider(s2, MasterKey.generate())
        wrong = Sealer(wrong_provider)
        attempts: list[Callable[[], Awaitable[object]]] = [
            lambda: wrong.open(CA, env),
            lambda: wrong.seal(CB, b"b"),
            lambda: wrong.rotate_client_key(F, A),
            lambda: wrong_provider.rotate_master_key(F),
            lambda: wrong_provider.check_master_key(F),
        ]
        for attempt in attempts:
            with pytest.raises(ConfigurationError, match="master key does not match") as info:
                await attempt()
            assert info.value.context["store_master_key_id"] == right.provider.master_key_id  # type: ignore[attr-defined]
        # nothing was written: no key for B, A still on version 1
        assert dict(await right.provider.current_versions(F, [A, B])) == {A: 1}
        assert await right.open(CA, env) == b"a"


async def test_damaged_key_record_is_an_integrity_error_not_a_configuration_error() -> None:
    async with MemoryStore() as store:
        sealer = Sealer(LocalKeyProvider(store, MasterKey.generate()))
        ea = await sealer.seal(CA, b"a")
        eb = await sealer.seal(CB, b"b")
        async with store.transaction(F) as tx:
            ra = await tx.get(KEY_RECORD_KIND, A)
            await tx.update([ra.evolve(data={**ra.data, "master_key_id": "mk-0000000000000000"})])
        fresh = Sealer(LocalKeyProvider(store, sealer.provider._master))  # type: ignore[attr-defined]
        for s in (sealer, fresh):
            with pytest.raises(IntegrityError) as info:
                await s.open(CA, ea)
            assert not isinstance(info.value, KeyDestroyedError)
            assert type(info.value) is IntegrityError
            assert await s.open(CB, eb) == b"b"


async def test_a_check_value_that_changed_under_a_running_provider_is_seen() -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    async with MemoryStore() as store:
        running = Sealer(LocalKeyProvider(store, old))
        env = await running.seal(CA, b"a")
        rotating = LocalKeyProvider(store, new, previous_master_keys=[old])
        assert await rotating.rotate_master_key(F) == 1
        # the running provider verified the firm long ago; the record it reads
        # is now under a key it does not hold, and the check value tells why
        with pytest.raises(ConfigurationError):
            await running.open(CA, env)


async def test_firm_written_before_check_values_gets_one() -> None:
    master = MasterKey.generate()
    async with MemoryStore() as store:
        sealer = Sealer(LocalKeyProvider(store, master))
        env = await sealer.seal(CA, b"a")
        async with store.transaction(F) as tx:  # as a store written by 0.1
            await tx.delete(KEY_CHECK_KIND, [KEY_CHECK_ID])
        with pytest.raises(ConfigurationError):
            await Sealer(LocalKeyProvider(store, MasterKey.generate())).open(CA, env)
        async with store.transaction(F) as tx:
            assert await tx.find(KEY_CHECK_KIND, KEY_CHECK_ID) is None  # nothing written
        assert await Sealer(LocalKeyProvider(store, master)).open(CA, env) == b"a"
        assert (await _check_record(store)).data["master_key_id"] == master.key_id


async def test_concurrent_first_use_writes_one_check_value(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    master = MasterKey.generate()
    async with SQLiteStore(path) as s1, SQLiteStore(path) as s2:
        p1 = Sealer(LocalKeyProvider(s1, master))
        p2 = Sealer(LocalKeyProvider(s2, master))
        await asyncio.gather(p1.seal(CA, b"one"), p2.seal(CB, b"two"))
        assert (await _check_record(s1)).data["master_key_id"] == master.key_id


def test_provider_configuration_errors() -> None:
    store = MemoryStore()
    with pytest.raises(ConfigurationError):
        LocalKeyProvider(store, b"raw bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        LocalKeyProvider(store, MasterKey.generate(), revalidate_after=-1)
    assert "mk-" in repr(LocalKeyProvider(store, MasterKey.generate()))


# -- retention ------------------------------------------------------------------------------------
ENDED = {A: datetime(2020, 5, 1, tzinfo=UTC), B: None}


def mandate_ended(firm_id: str, client_id: str) -> datetime | None:
    return ENDED.get(client_id)


async def test_retention_presets() -> None:
    assert await lawyer_retention(mandate_ended)(F, A) == datetime(2027, 1, 1, tzinfo=UTC)
    assert await tax_adviser_retention(mandate_ended)(F, A) == datetime(2031, 1, 1, tzinfo=UTC)
    assert await tax_adviser_retention(mandate_ended)(F, B) == RETAIN_INDEFINITELY

    async def async_lookup(firm_id: str, client_id: str) -> datetime | None:
        return datetime(2024, 12, 31, 23, 0, tzinfo=UTC)

    assert await statutory_retention(0, async_lookup)(F, A) == datetime(2025, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidInputError):
        statutory_retention(-1, mandate_ended)


@pytest.mark.parametrize(
    ("now", "client", "override", "refused"),
    [
        (datetime(2026, 12, 31, tzinfo=UTC), A, False, True),  # lawyer: until 2027-01-01
        (datetime(2027, 1, 1, tzinfo=UTC), A, False, False),
        (datetime(2026, 1, 1, tzinfo=UTC), A, True, False),  # explicit override
        (datetime(2090, 1, 1, tzinfo=UTC), B, False, True),  # mandate still running
        (datetime(2026, 1, 1, tzinfo=UTC), "client-c", False, True),  # unknown: running
    ],
)
async def test_forget_respects_retention(
    now: datetime, client: str, override: bool, refused: bool
) -> None:
    clock = ManualClock(now)
    sealer = Sealer(MemoryKeyProvider(), clock=clock, retention=lawyer_retention(mandate_ended))
    ctx = SealContext(F, client, "message", "m", "body")
    env = await sealer.seal(ctx, b"kept?")
    if refused:
        with pytest.raises(RetentionError) as info:
            await sealer.forget_client(F, client, override=override)
        assert info.value.context["client_id"] == client
        assert isinstance(info.value, PermissionError)
        assert await sealer.open(ctx, env) == b"kept?"  # nothing was erased
    else:
        assert await sealer.forget_client(F, client, override=override) is True
        with pytest.raises(KeyDestroyedError):
            await sealer.open(ctx, env)


async def test_rule_returning_none_allows_and_bad_values_are_refused() -> None:
    sealer = Sealer(MemoryKeyProvider(), retention=lambda firm, client: None)
    assert await sealer.forget_client(F, A) is False
    naive = Sealer(MemoryKeyProvider(), retention=lambda firm, client: datetime(2030, 1, 1))
    with pytest.raises(InvalidInputError):
        await naive.forget_client(F, A)


# -- background re-wrapping of stored records ----------------------------------------------------
async def _seed(store: Store, sealer: Sealer, n: int) -> None:
    records = []
    for i in range(n):
        client = f"c{i % 3}"
        ctx = SealContext(F, client, "note", f"n{i}", "body")
        env = await sealer.seal(ctx, f"note {i}".encode())
        key = await sealer.seal(SealContext(F, client, "note", f"n{i}", "extra"), b"extra")
        records.append(
            Record(
                kind="note",
                id=f"n{i}",
                firm_id=F,
                body=env,
                data={"client": client, "keys": [encode_sealed(key)], "one": encode_sealed(key)},
            )
        )
    async with store.transaction(F) as tx:
        await tx.insert(records)


async def test_rewrap_records_moves_everything_to_the_newest_version(provider: KeyProvider) -> None:
    async with MemoryStore() as store:
        sealer = Sealer(provider)
        await _seed(store, sealer, 11)
        for c in ("c0", "c1"):
            await sealer.rotate_client_key(F, c)

        def client_of(rec: Record) -> str | None:
            return str(rec.data["client"])

        report = await rewrap_records(store, sealer, F, "note", client_of=client_of, batch=4)
        assert report.examined == 11
        assert report.rewrapped == 8  # c0 and c1 own 4 + 4 of the 11 notes
        assert report.failed == report.conflicts == 0
        for field in ("keys", "one"):
            r = await rewrap_records(store, sealer, F, "note", client_of=client_of, field=field)
            assert (r.examined, r.rewrapped) == (11, 8)
        again = await rewrap_records(store, sealer, F, "note", client_of=client_of)
        assert again.rewrapped == 0
        async for rec in store.iterate(F, "note"):
            assert rec.body is not None
            expected = 1 if rec.data["client"] == "c2" else 2
            assert sealed_key_version(rec.body) == expected
            ctx = SealContext(F, str(rec.data["client"]), "note", rec.id, "body")
            assert await sealer.open(ctx, rec.body) == f"note {rec.id[1:]}".encode()
        await sealer.forget_client(F, "c2")
        await sealer.rotate_client_key(F, "c0")
        final = await rewrap_records(store, sealer, F, "note", client_of=client_of)
        assert (final.rewrapped, final.failed) == (4, 3)
        skipped = await rewrap_records(store, sealer, F, "note", client_of=lambda rec: None)
        assert skipped.examined == 0
        with pytest.raises(InvalidInputError):
            await rewrap_records(store, sealer, F, "note", client_of=client_of, batch=0)


def test_client_keyring_wrap_and_unwrap() -> None:
    key = AESGCM.generate_key(256)
    ring = ClientKeyring(F, A, {1: key}, 1)
    dk = bytes(range(32))
    ref = ring.wrap(dk)
    assert len(ref) == 64
    assert ring.unwrap(ref) == dk
    assert ring.unwrap(ring.wrap(dk, bytes(12))) == dk
    for bad_nonce in (b"", bytes(11), bytes(16)):
        with pytest.raises(InvalidInputError):
            ring.wrap(dk, bad_nonce)
    with pytest.raises(InvalidInputError):
        ring.wrap(dk[:31])
    assert wrap_items({A: ring}, [(A, dk)])[0][:4] == ref[:4]
    assert (
        unwrap_items({A: ring}, [(A, r) for r in wrap_items({A: ring}, [(A, dk)] * 3)]) == [dk] * 3
    )
    for bad_ref in (ref[:-1], (2).to_bytes(4, "big") + ref[4:], ref[:20] + bytes(44)):
        with pytest.raises(IntegrityError):
            ring.unwrap(bad_ref)
