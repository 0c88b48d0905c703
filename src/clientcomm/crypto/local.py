"""LocalKeyProvider: per-client keys stored in the Store, wrapped under a master key.

Each client's key versions live in one Store record (kind ``"key.client"``, id
= client id, in the client's firm). Every key version is a random 256-bit key
wrapped with AES-256-GCM under the firm's *master key*, which the host supplies
(a key file or an environment variable) and which never enters the database.
The associated data binds firm, client and version, so a wrapped key copied to
another record fails to open.

**Key check value.** Each firm has one more record (kind ``"key.check"``, id
``"master"``): the id of the master key its client keys are wrapped under and
a check value, ``HMAC-SHA256(master key, "clientcomm.v1.key-check" 0x00 firm)``
(first 16 bytes). It is written with the firm's first client key and checked
the first time a provider touches the firm in a process, so a process started
with the wrong master key fails at once with a
:class:`~clientcomm.errors.ConfigurationError` ("the master key does not match
the one this store was written with"), before it reads or writes anything of
the firm. A firm whose keys predate the check value gets one on first use, after
its key records were found to be under a known master key. A provider holding
the current master key and the firm's (older) one in ``previous_master_keys``
moves the check value to the current key on first use: a master-key rotation
has begun, and a process holding only the old key is refused from then on.

Forgetting a client replaces the record with a tombstone without key material.
Note what that does and does not reach (see ``docs/security.md``): the wrapped
client keys live in the same database as the data, so an old backup plus the
live master key still opens old copies. Erasure reaches backups once the master
key is rotated (:meth:`LocalKeyProvider.rotate_master_key`) and the old master
key is destroyed.

Master keys are 32 random bytes, written as standard base64 (44 characters);
64 hex digits are accepted too. ``generate_master_key()`` prints-ready text.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import os
import re
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clientcomm.clock import Clock, SystemClock
from clientcomm.crypto.keys import (
    DATA_KEY_SIZE,
    ClientKeyring,
    unwrap_items,
    valid_key_owners,
    validate_key_owner,
    wrap_items,
)
from clientcomm.errors import (
    ConfigurationError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    KeyDestroyedError,
)
from clientcomm.storage.base import Record, Store, Transaction

__all__ = [
    "KEY_CHECK_ID",
    "KEY_CHECK_KIND",
    "KEY_RECORD_KIND",
    "MASTER_KEY_ENV",
    "MASTER_KEY_FILE_ENV",
    "LocalKeyProvider",
    "MasterKey",
    "generate_master_key",
    "load_master_key",
]

KEY_RECORD_KIND = "key.client"
"""Store record kind holding one client's key versions (id = client id)."""

KEY_CHECK_KIND = "key.check"
"""Store record kind holding a firm's key check value (one per firm)."""

KEY_CHECK_ID = "master"
"""The id of a firm's key check record."""

MASTER_KEY_ENV = "CLIENTCOMM_MASTER_KEY"
"""Environment variable holding the master key text."""

MASTER_KEY_FILE_ENV = "CLIENTCOMM_MASTER_KEY_FILE"
"""Environment variable naming a file that holds the master key text."""

_KEK_LABEL = b"clientcomm.v1.client-key\x00"
_ID_LABEL = b"clientcomm.v1.master-key-id"
_CHECK_LABEL = b"clientcomm.v1.key-check\x00"
_HEX_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_RECORD_FORMAT = 1
_RETRIES = 5


def _master_key_id(material: bytes) -> str:
    return "mk-" + hmac.digest(material, _ID_LABEL, "sha256")[:8].hex()


def _check_value(material: bytes, firm_id: str) -> str:
    return hmac.digest(material, _CHECK_LABEL + firm_id.encode(), "sha256")[:16].hex()


class _UnknownMasterKey(IntegrityError):
    """A key record names a master key this provider does not hold: the wrong
    master key (the firm's check value tells) or a damaged record."""


def _check_material(inst: object, attribute: attrs.Attribute[bytes], value: object) -> None:
    if not isinstance(value, bytes) or len(value) != 32:
        raise ConfigurationError("a master key must be 32 bytes")


@attrs.frozen(slots=True)
class MasterKey:
    """A 256-bit master key. ``repr`` shows only :attr:`key_id`, a fingerprint
    that identifies the key without revealing it."""

    material: bytes = attrs.field(repr=False, validator=_check_material)
    key_id: str = attrs.field(init=False, eq=False)

    @key_id.default
    def _default_key_id(self) -> str:
        return _master_key_id(self.material)

    @classmethod
    def generate(cls) -> MasterKey:
        """A fresh random master key."""
        return cls(os.urandom(32))

    @classmethod
    def from_text(cls, text: str) -> MasterKey:
        """Parse standard/URL-safe base64 (44 characters) or 64 hex digits;
        surrounding whitespace is ignored.

        Raises:
            ConfigurationError: not a 32-byte key in either form.
        """
        text = text.strip() if isinstance(text, str) else ""
        if _HEX_RE.match(text):
            return cls(bytes.fromhex(text))
        try:
            raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                "master key must be 32 bytes as base64 or 64 hex digits"
            ) from None
        if len(raw) != 32:
            raise ConfigurationError("master key must be 32 bytes as base64 or 64 hex digits")
        return cls(raw)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> MasterKey:
        """Read the key text from a file.

        Raises:
            ConfigurationError: unreadable file or malformed key.
        """
        try:
            text = Path(path).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(
                f"cannot read master key file: {exc.__class__.__name__}", path=str(path)
            ) from None
        return cls.from_text(text)

    @classmethod
    def from_env(cls, name: str = MASTER_KEY_ENV) -> MasterKey:
        """Read the key text from an environment variable.

        Raises:
            ConfigurationError: the variable is unset or malformed.
        """
        text = os.environ.get(name)
        if not text:
            raise ConfigurationError(f"environment variable {name} is not set", variable=name)
        return cls.from_text(text)

    def to_text(self) -> str:
        """Standard base64 (44 characters): what ``clientcomm keys new`` prints."""
        return base64.b64encode(self.material).decode("ascii")


def generate_master_key() -> str:
    """A fresh master key as text (standard base64 of 32 random bytes), ready
    to put in ``CLIENTCOMM_MASTER_KEY`` or a key file."""
    return MasterKey.generate().to_text()


def load_master_key(
    path: str | os.PathLike[str] | None = None,
    *,
    env: str = MASTER_KEY_ENV,
    file_env: str = MASTER_KEY_FILE_ENV,
) -> MasterKey:
    """Load the host's master key: from ``path`` if given, else from the
    environment variable ``env`` (the key text), else from the file named by
    ``file_env``.

    Raises:
        ConfigurationError: no source is set, or the key is malformed.
    """
    if path is not None:
        return MasterKey.from_file(path)
    if os.environ.get(env):
        return MasterKey.from_env(env)
    if os.environ.get(file_env):
        return MasterKey.from_file(os.environ[file_env])
    raise ConfigurationError(
        f"no master key: set {env} or {file_env}, or pass a key file path "
        "(`clientcomm keys new` prints a fresh key)"
    )


@attrs.define
class _Cached:
    keys_data: dict[str, str]
    current: int
    master_key_id: str | None
    ring: ClientKeyring | None  # None: forgotten
    loaded_at: float


def _batch_clients(firm_id: str, items: Sequence[tuple[str, bytes]]) -> list[str]:
    """The distinct clients of a wrap/unwrap batch, ids validated.

    Raises:
        InvalidInputError: a bad firm or client id.
    """
    validate_key_owner("firm_id", firm_id)
    clients = list(dict.fromkeys([client_id for client_id, _ in items]))
    if not valid_key_owners(clients):  # the per-id check names the fault
        for client_id in clients:
            validate_key_owner("client_id", client_id)
    return clients


def _kek_aad(firm_id: str, client_id: str, version: int) -> bytes:
    return (
        _KEK_LABEL
        + firm_id.encode()
        + b"\x00"
        + client_id.encode()
        + b"\x00"
        + version.to_bytes(4, "big")
    )


class LocalKeyProvider:
    """A :class:`~clientcomm.crypto.keys.KeyProvider` keeping per-client keys in
    the Store, wrapped under a host-supplied master key.

    Args:
        store: where key records live (the same Store as the data is fine).
        master_key: wraps new and re-wrapped client keys.
        previous_master_keys: older master keys still accepted for reading
            during a master-key rotation; drop them once
            :meth:`rotate_master_key` has finished for every firm.
        clock: timestamps for new records and tombstones.
        revalidate_after: seconds a loaded key record is trusted without reading
            the Store again. ``0`` (default) reads it on every call, so a client
            forgotten by another process cannot be opened here afterwards; a
            positive value saves reads and bounds that delay.
        wrap_revalidate_after: the same bound for *wrapping* only (default 5 s).
            A forget in another process is then seen by wraps here within that
            time; a value sealed meanwhile is sealed under a destroyed key and
            can never be opened (opening always honours ``revalidate_after``),
            so this only trades a few useless ciphertexts for far fewer Store
            reads on the mailing hot path.
        cache_size: how many clients' unwrapped keys are kept in memory.

    Every method opens its own short Store transaction (one per call, batches
    included): call it outside your own transaction on the same store.
    """

    def __init__(
        self,
        store: Store,
        master_key: MasterKey,
        *,
        previous_master_keys: Sequence[MasterKey] = (),
        clock: Clock | None = None,
        revalidate_after: float = 0.0,
        wrap_revalidate_after: float = 5.0,
        cache_size: int = 16384,
    ) -> None:
        if not isinstance(master_key, MasterKey):
            raise ConfigurationError("master_key must be a MasterKey")
        if revalidate_after < 0 or wrap_revalidate_after < 0 or cache_size < 1:
            raise InvalidInputError("revalidate_after", "must be >= 0 (and cache_size >= 1)")
        self._store = store
        self._master = master_key
        self._masters: dict[str, AESGCM] = {
            key.key_id: AESGCM(key.material) for key in (*previous_master_keys, master_key)
        }
        self._materials: dict[str, bytes] = {
            key.key_id: key.material for key in (*previous_master_keys, master_key)
        }
        self._verified: set[str] = set()  # firms whose key check value matched
        self._clock: Clock = clock or SystemClock()
        self._ttl = float(revalidate_after)
        self._wrap_ttl = max(self._ttl, float(wrap_revalidate_after))
        self._cache: OrderedDict[tuple[str, str], _Cached] = OrderedDict()
        self._cache_size = cache_size

    def __repr__(self) -> str:
        return (
            f"LocalKeyProvider(master_key_id={self._master.key_id!r}, "
            f"revalidate_after={self._ttl}, cached={len(self._cache)})"
        )

    @property
    def master_key_id(self) -> str:
        """Fingerprint of the current master key."""
        return self._master.key_id

    # -- records <-> keyrings -----------------------------------------------------
    def _wrap_client_key(self, firm_id: str, client_id: str, version: int, key: bytes) -> str:
        nonce = os.urandom(12)
        sealed = self._masters[self._master.key_id].encrypt(
            nonce, key, _kek_aad(firm_id, client_id, version)
        )
        return base64.b64encode(nonce + sealed).decode("ascii")

    def _unwrap_client_keys(
        self, firm_id: str, client_id: str, master_key_id: str | None, keys: Mapping[str, Any]
    ) -> dict[int, bytes]:
        master = self._masters.get(master_key_id or "")
        if master is None:
            raise _UnknownMasterKey(
                "client key is wrapped under an unknown master key (wrong master key?)",
                client_id=client_id,
                master_key_id=master_key_id,
            )
        out: dict[int, bytes] = {}
        for text_version, wrapped in keys.items():
            try:
                version = int(text_version)
                raw = base64.b64decode(wrapped, validate=True)
                key = master.decrypt(raw[:12], raw[12:], _kek_aad(firm_id, client_id, version))
            except (ValueError, TypeError, binascii.Error, InvalidTag):
                raise IntegrityError(
                    "client key failed authentication (damaged or tampered key record)",
                    client_id=client_id,
                ) from None
            if len(key) != DATA_KEY_SIZE or version < 1:
                raise IntegrityError("malformed client key", client_id=client_id)
            out[version] = key
        return out

    def _load(self, firm_id: str, client_id: str, record: Record) -> _Cached:
        data = record.data
        now = time.monotonic()
        try:
            keys = dict(data["keys"])
            current = int(data["current"])
            master_key_id = data.get("master_key_id")
            forgotten = data.get("forgotten_at") is not None
        except (KeyError, TypeError, ValueError):
            raise IntegrityError("malformed key record", client_id=client_id) from None
        cached = self._cache.get((firm_id, client_id))
        if (
            cached is not None
            and cached.keys_data == keys
            and cached.current == current
            and cached.master_key_id == master_key_id
            and (cached.ring is None) == forgotten
        ):
            cached.loaded_at = now
            self._cache.move_to_end((firm_id, client_id))
            return cached
        ring: ClientKeyring | None = None
        if not forgotten:
            raw = self._unwrap_client_keys(firm_id, client_id, master_key_id, keys)
            ring = ClientKeyring(firm_id, client_id, raw, current)
        cached = _Cached(keys, current, master_key_id, ring, now)
        self._remember(firm_id, client_id, cached)
        return cached

    def _remember(self, firm_id: str, client_id: str, cached: _Cached) -> None:
        self._cache[(firm_id, client_id)] = cached
        self._cache.move_to_end((firm_id, client_id))
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _fresh(
        self, firm_id: str, client_ids: Sequence[str], ttl: float
    ) -> dict[str, _Cached] | None:
        """Cached entries for all clients if revalidation is not due, else None."""
        if ttl <= 0:
            return None
        limit = time.monotonic() - ttl
        out: dict[str, _Cached] = {}
        for client_id in client_ids:
            cached = self._cache.get((firm_id, client_id))
            if cached is None or cached.loaded_at < limit:
                return None
            out[client_id] = cached
        return out

    # -- the firm's key check value ---------------------------------------------------
    def _mismatch(self, firm_id: str, stored_id: object) -> ConfigurationError:
        return ConfigurationError(
            "the master key does not match the one this store was written with"
            f" (firm {firm_id!r}, master key {self._master.key_id}, the store's"
            f" {stored_id if isinstance(stored_id, str) and stored_id else 'unknown'}):"
            f" check {MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV}",
            firm_id=firm_id,
            master_key_id=self._master.key_id,
            store_master_key_id=stored_id if isinstance(stored_id, str) else None,
        )

    def _check_record(self, firm_id: str) -> Record:
        return Record(
            kind=KEY_CHECK_KIND,
            id=KEY_CHECK_ID,
            firm_id=firm_id,
            data={
                "format": _RECORD_FORMAT,
                "master_key_id": self._master.key_id,
                "check": _check_value(self._master.material, firm_id),
            },
            created_at=self._clock.now(),
        )

    def _matches(self, firm_id: str, rec: Record) -> bool:
        stored_id = rec.data.get("master_key_id")
        check = rec.data.get("check")
        material = self._materials.get(stored_id) if isinstance(stored_id, str) else None
        return (
            material is not None
            and isinstance(check, str)
            and hmac.compare_digest(check, _check_value(material, firm_id))
        )

    @staticmethod
    async def _legacy_master(tx: Transaction, firm_id: str) -> str | None:
        """The master key id of the firm's first live key record ("" if it names
        none), or None if the firm has no live key: for firms whose keys were
        written before check values existed."""
        after = 0
        while True:
            page = await tx.list(KEY_RECORD_KIND, after_seq=after, limit=100)
            for rec in page:
                if rec.data.get("keys") and rec.data.get("forgotten_at") is None:
                    stored = rec.data.get("master_key_id")
                    return stored if isinstance(stored, str) else ""
            if len(page) < 100:
                return None
            after = page[-1].seq

    async def _verify(self, tx: Transaction, firm_id: str, *, write: bool) -> bool:
        """Check the firm's key check value in ``tx``; write it if it is missing
        and ``write`` (the firm's first key is being created) or the firm's keys
        predate it. Returns whether the firm is verified (False: no check value
        and no keys yet, nothing to compare).

        Raises:
            ConfigurationError: the check value (or, without one, the firm's key
                records) belongs to another master key.
        """
        rec = await tx.find(KEY_CHECK_KIND, KEY_CHECK_ID)
        if rec is not None:
            if not self._matches(firm_id, rec):
                raise self._mismatch(firm_id, rec.data.get("master_key_id"))
            if rec.data.get("master_key_id") != self._master.key_id:
                # under one of previous_master_keys: a master-key rotation has
                # begun, so from now on only providers with the new key pass
                await tx.update([rec.evolve(data=self._check_record(firm_id).data)])
            return True
        legacy = await self._legacy_master(tx, firm_id)
        if legacy is not None and legacy not in self._masters:
            raise self._mismatch(firm_id, legacy)
        if legacy is None and not write:
            return False
        await tx.insert([self._check_record(firm_id)])
        return True

    async def _check_firm(self, firm_id: str) -> None:
        """:meth:`_verify` in a transaction of its own (unless verified already).

        Raises:
            ConfigurationError: the wrong master key.
        """
        if firm_id in self._verified:
            return
        verified = False
        for attempt in range(_RETRIES):
            try:
                async with self._store.transaction(firm_id) as tx:
                    verified = await self._verify(tx, firm_id, write=False)
                break
            except ConflictError:  # another process wrote the check value meanwhile
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        if verified:
            self._verified.add(firm_id)

    async def check_master_key(self, firm_id: str) -> bool:
        """Check now that this provider's master key is the one ``firm_id``'s
        keys are under (what every other method does on its first call for
        the firm); returns False if the firm has no keys yet.

        Raises:
            ConfigurationError: the master key does not match the store's.
        """
        validate_key_owner("firm_id", firm_id)
        self._verified.discard(firm_id)
        await self._check_firm(firm_id)
        return firm_id in self._verified

    def _new_record(self, firm_id: str, client_id: str, *, forgotten: bool = False) -> Record:
        now = self._clock.now()
        keys: dict[str, str] = {}
        if not forgotten:
            keys["1"] = self._wrap_client_key(firm_id, client_id, 1, os.urandom(DATA_KEY_SIZE))
        return Record(
            kind=KEY_RECORD_KIND,
            id=client_id,
            firm_id=firm_id,
            data={
                "format": _RECORD_FORMAT,
                "master_key_id": None if forgotten else self._master.key_id,
                "current": 0 if forgotten else 1,
                "keys": keys,
                "forgotten_at": now.isoformat() if forgotten else None,
            },
            created_at=now,
        )

    async def _read(
        self, firm_id: str, client_ids: Sequence[str], *, create: bool, ttl: float | None = None
    ) -> dict[str, _Cached | None]:
        """Load the clients' records (creating missing ones if ``create``);
        None for clients without a record."""
        fresh = self._fresh(firm_id, client_ids, self._ttl if ttl is None else ttl)
        if fresh is not None:
            return dict(fresh)
        verified = checked = firm_id in self._verified
        for attempt in range(_RETRIES):
            try:
                async with self._store.transaction(firm_id) as tx:
                    records = dict(await tx.get_many(KEY_RECORD_KIND, client_ids))
                    missing = [c for c in client_ids if c not in records]
                    if not verified:  # first use in this process: the check value
                        checked = await self._verify(tx, firm_id, write=create and bool(missing))
                    if create and missing:
                        inserted = await tx.insert([self._new_record(firm_id, c) for c in missing])
                        for rec in inserted:
                            records[rec.id] = rec
                break
            except ConflictError:
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        if not verified and checked:
            self._verified.add(firm_id)
        out: dict[str, _Cached | None] = {}
        for client_id in client_ids:
            found = records.get(client_id)
            if found is None:
                self._cache.pop((firm_id, client_id), None)
                out[client_id] = None
                continue
            try:
                out[client_id] = self._load(firm_id, client_id, found)
            except _UnknownMasterKey as exc:
                # The wrong master key (the check value changed, e.g. another
                # process rotated the master key) or a damaged record: check again.
                self._verified.discard(firm_id)
                await self._check_firm(firm_id)
                raise IntegrityError(exc.message, **exc.context) from None
        return out

    # -- KeyProvider ------------------------------------------------------------------
    async def wrap_many(self, firm_id: str, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        """See :meth:`~clientcomm.crypto.keys.KeyProvider.wrap_many`.

        Raises:
            ConfigurationError: this provider's master key is not the firm's
                (its key check value does not match).
            KeyDestroyedError: a client in the batch was forgotten.
            IntegrityError: a key record is damaged.
            InvalidInputError: bad ids or data keys.
            StorageError: the Store failed.
        """
        clients = _batch_clients(firm_id, items)
        if not clients:
            return []
        loaded = await self._read(firm_id, clients, create=True, ttl=self._wrap_ttl)
        rings: dict[str, ClientKeyring] = {}
        forgotten: list[str] = []
        for client_id, cached in loaded.items():
            if cached is None or cached.ring is None:
                forgotten.append(client_id)
            else:
                rings[client_id] = cached.ring
        if forgotten:
            raise KeyDestroyedError(
                "keys of forgotten clients cannot wrap new data", client_ids=sorted(forgotten)
            )
        return wrap_items(rings, items)

    async def unwrap_many(
        self, firm_id: str, items: Sequence[tuple[str, bytes]]
    ) -> list[bytes | IntegrityError]:
        """See :meth:`~clientcomm.crypto.keys.KeyProvider.unwrap_many`: a client
        without a key record or with a damaged one yields IntegrityError, a
        forgotten one KeyDestroyedError.

        Raises:
            ConfigurationError: this provider's master key is not the firm's
                (its key check value does not match); nothing was read.
            InvalidInputError: bad ids.
            StorageError: the Store failed.
        """
        clients = _batch_clients(firm_id, items)
        if not clients:
            return []
        rings: dict[str, ClientKeyring | IntegrityError] = {}
        try:
            loaded = await self._read(firm_id, clients, create=False)
        except IntegrityError:
            loaded = {}
            for client_id in clients:  # isolate the damaged record(s)
                try:
                    loaded.update(await self._read(firm_id, [client_id], create=False))
                except IntegrityError as exc:
                    rings[client_id] = exc
        for client_id, cached in loaded.items():
            if cached is None:
                rings[client_id] = IntegrityError(
                    "no key exists for the client", client_id=client_id
                )
            elif cached.ring is None:
                rings[client_id] = KeyDestroyedError(
                    "the client's keys were destroyed", client_id=client_id
                )
            else:
                rings[client_id] = cached.ring
        return unwrap_items(rings, items)

    async def current_versions(self, firm_id: str, client_ids: Sequence[str]) -> Mapping[str, int]:
        """See :meth:`~clientcomm.crypto.keys.KeyProvider.current_versions`."""
        validate_key_owner("firm_id", firm_id)
        clients = list(dict.fromkeys(client_ids))
        if not clients:
            return {}
        async with self._store.transaction(firm_id) as tx:
            records = await tx.get_many(KEY_RECORD_KIND, clients)
        out: dict[str, int] = {}
        for client_id, rec in records.items():
            if rec.data.get("forgotten_at") is None and rec.data.get("keys"):
                out[client_id] = int(rec.data["current"])
        return out

    async def rotate(self, firm_id: str, client_id: str) -> int:
        """See :meth:`~clientcomm.crypto.keys.KeyProvider.rotate`.

        Raises:
            ConfigurationError: the wrong master key (see :meth:`wrap_many`).
            KeyDestroyedError: the client was forgotten.
            IntegrityError: the key record is damaged.
            StorageError: the Store failed.
        """
        validate_key_owner("firm_id", firm_id)
        validate_key_owner("client_id", client_id)
        for attempt in range(_RETRIES):
            try:
                async with self._store.transaction(firm_id) as tx:
                    checked = firm_id in self._verified or await self._verify(
                        tx, firm_id, write=True
                    )
                    rec = await tx.find(KEY_RECORD_KIND, client_id)
                    if rec is None:
                        await tx.insert([self._new_record(firm_id, client_id)])
                        version = 1
                    else:
                        if rec.data.get("forgotten_at") is not None:
                            raise KeyDestroyedError(
                                "the client's keys were destroyed", client_id=client_id
                            )
                        cached = self._load(firm_id, client_id, rec)
                        assert cached.ring is not None
                        version = max(cached.ring.versions) + 1
                        keys = dict(rec.data["keys"])
                        if rec.data.get("master_key_id") != self._master.key_id:
                            keys = self._rewrapped_keys(firm_id, client_id, rec)
                        keys[str(version)] = self._wrap_client_key(
                            firm_id, client_id, version, os.urandom(DATA_KEY_SIZE)
                        )
                        data = dict(rec.data)
                        data.update(keys=keys, current=version, master_key_id=self._master.key_id)
                        await tx.update([rec.evolve(data=data)])
                if checked:
                    self._verified.add(firm_id)
                self._cache.pop((firm_id, client_id), None)
                return version
            except ConflictError:
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def forget(self, firm_id: str, client_id: str) -> bool:
        """See :meth:`~clientcomm.crypto.keys.KeyProvider.forget`: the record
        becomes a tombstone (no key material, ``forgotten_at`` set). Forgetting
        needs no master key, so it does not check the firm's key check value
        (erasure stays possible even when the master key is lost).

        Raises:
            StorageError: the Store failed.
        """
        validate_key_owner("firm_id", firm_id)
        validate_key_owner("client_id", client_id)
        self._cache.pop((firm_id, client_id), None)
        for attempt in range(_RETRIES):
            try:
                async with self._store.transaction(firm_id) as tx:
                    rec = await tx.find(KEY_RECORD_KIND, client_id)
                    tomb = self._new_record(firm_id, client_id, forgotten=True)
                    if rec is None:
                        await tx.insert([tomb])
                        existed = False
                    else:
                        existed = bool(rec.data.get("keys"))
                        await tx.update([rec.evolve(data=tomb.data)])
                self._cache.pop((firm_id, client_id), None)
                return existed
            except ConflictError:
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def aclose(self) -> None:
        """Drop cached keys (the Store is the caller's to close)."""
        self._cache.clear()

    # -- master-key rotation ----------------------------------------------------------
    def _rewrapped_keys(self, firm_id: str, client_id: str, rec: Record) -> dict[str, str]:
        raw = self._unwrap_client_keys(
            firm_id, client_id, rec.data.get("master_key_id"), rec.data.get("keys", {})
        )
        return {
            str(version): self._wrap_client_key(firm_id, client_id, version, key)
            for version, key in sorted(raw.items())
        }

    async def rotate_master_key(self, firm_id: str, *, batch: int = 500) -> int:
        """Re-wrap every client key of ``firm_id`` that is still under a previous
        master key with the current one; returns how many records changed.
        Run it for every firm, then check :meth:`pending_master_rotation` is 0
        everywhere before destroying the old master key. Safe to re-run and to
        run while the system is in use.

        The firm's key check value moves to the current master key first (as
        on any provider's first use of the firm with the current key and the
        old one in ``previous_master_keys``): from then on a process holding only
        the old master key is refused for the firm.

        Raises:
            ConfigurationError: the firm's check value belongs to none of this
                provider's master keys.
            IntegrityError: a record is under a master key this provider does not
                know (pass it in ``previous_master_keys``) or is damaged.
            StorageError: the Store failed.
        """
        validate_key_owner("firm_id", firm_id)
        self._verified.discard(firm_id)
        await self._check_firm(firm_id)  # moves the check value to the current key
        changed = 0
        page: list[str] = []
        async for rec in self._store.iterate(firm_id, KEY_RECORD_KIND, batch=batch):
            if rec.data.get("keys") and rec.data.get("master_key_id") != self._master.key_id:
                page.append(rec.id)
            if len(page) >= batch:
                changed += await self._rotate_master_page(firm_id, page)
                page = []
        if page:
            changed += await self._rotate_master_page(firm_id, page)
        return changed

    async def _rotate_master_page(self, firm_id: str, client_ids: Sequence[str]) -> int:
        for attempt in range(_RETRIES):
            try:
                changed = 0
                async with self._store.transaction(firm_id) as tx:
                    records = await tx.get_many(KEY_RECORD_KIND, client_ids)
                    updates: list[Record] = []
                    for client_id, rec in records.items():
                        if not rec.data.get("keys") or (
                            rec.data.get("master_key_id") == self._master.key_id
                        ):
                            continue
                        data = dict(rec.data)
                        data.update(
                            keys=self._rewrapped_keys(firm_id, client_id, rec),
                            master_key_id=self._master.key_id,
                        )
                        updates.append(rec.evolve(data=data))
                    if updates:
                        await tx.update(updates)
                    changed = len(updates)
                for client_id in client_ids:
                    self._cache.pop((firm_id, client_id), None)
                return changed
            except ConflictError:
                if attempt == _RETRIES - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def pending_master_rotation(self, firm_id: str) -> int:
        """How many of the firm's key records are not yet under the current
        master key (tombstones excluded)."""
        validate_key_owner("firm_id", firm_id)
        count = 0
        async for rec in self._store.iterate(firm_id, KEY_RECORD_KIND):
            if rec.data.get("keys") and rec.data.get("master_key_id") != self._master.key_id:
                count += 1
        return count
