"""The KeyProvider port: versioned per-client key-encryption keys.

A :class:`KeyProvider` holds one key-encryption key (KEK) per client, in
numbered versions. clientcomm never sees a client key itself: it hands the
provider fresh 256-bit *data keys* to wrap and asks for them back.

Contract (checked by :mod:`clientcomm.testing.keys`):

* **Wrapped keys** ("key references") are ``bytes`` whose first four bytes are
  the key version (unsigned, big-endian, >= 1); the rest is provider-defined and
  at most :data:`MAX_KEY_REFERENCE` bytes in all. A reference is only valid for
  the firm and client it was made for.
* **Create on first use**: :meth:`KeyProvider.wrap_many` creates version 1 for a
  client that has no key yet.
* **Rotation**: :meth:`KeyProvider.rotate` adds a version and makes it current;
  new wraps use it, older versions still unwrap what they wrapped.
* **Forgetting** destroys every version of a client's key and leaves a
  tombstone: afterwards unwrapping yields :class:`~clientcomm.errors.KeyDestroyedError`
  and wrapping raises it, in every process that shares the provider's state.
* **Errors**: a reference that cannot be unwrapped (tampered, another client's,
  unknown version, unknown client, a damaged key record) is an
  :class:`~clientcomm.errors.IntegrityError` of that item; never bytes.
* **The wrong master key** (or credentials) is detected before anything is read
  or written, e.g. by a key check value per firm verified on first use, and
  raised as :class:`~clientcomm.errors.ConfigurationError` from every call that
  needs it. A key that cannot open is never
  :class:`~clientcomm.errors.KeyDestroyedError`: only a tombstone is.

:class:`ClientKeyring` is the synchronous wrap/unwrap core both bundled
providers share; an integrator's provider may use it too.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Mapping, Sequence
from typing import Protocol, cast, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from clientcomm.errors import IntegrityError, InvalidInputError

__all__ = [
    "DATA_KEY_SIZE",
    "MAX_KEY_REFERENCE",
    "ClientKeyring",
    "KeyProvider",
    "key_version",
    "unwrap_items",
    "valid_key_owners",
    "validate_key_owner",
    "wrap_items",
]

DATA_KEY_SIZE = 32
"""Data keys are 256-bit."""

MAX_KEY_REFERENCE = 4096
"""Upper bound for a key reference (version + provider blob) in bytes."""

_WRAP_LABEL = b"clientcomm.v1.data-key-wrap\x00"
_urandom = os.urandom
_U32 = struct.Struct(">I")
_MAX_ID = 400


def key_version(reference: bytes) -> int:
    """The key version a key reference was made with.

    Raises:
        IntegrityError: ``reference`` is too short or names version 0.
    """
    if len(reference) < 4 or len(reference) > MAX_KEY_REFERENCE:
        raise IntegrityError("malformed key reference")
    version: int = _U32.unpack_from(reference)[0]
    if version == 0:
        raise IntegrityError("malformed key reference")
    return version


def validate_key_owner(name: str, value: object) -> str:
    """Check a firm or client id used with a provider.

    Raises:
        InvalidInputError: not a non-empty string of at most 400 characters
            without NUL characters.
    """
    if not isinstance(value, str) or not value or len(value) > _MAX_ID or "\x00" in value:
        raise InvalidInputError(name, "must be a non-empty string without NUL (<= 400 chars)")
    return value


def valid_key_owners(values: Sequence[object]) -> bool:
    """True if :func:`validate_key_owner` accepts every value (a batch's client
    ids), checked in a few C-level passes over the batch; False means: check
    them one by one (a value of another type than ``str`` included)."""
    if not values:
        return True
    if set(map(type, values)) != {str}:
        return False
    strings = cast("Sequence[str]", values)
    lengths = list(map(len, strings))
    return min(lengths) > 0 and max(lengths) <= _MAX_ID and "\x00" not in "".join(strings)


@runtime_checkable
class KeyProvider(Protocol):
    """Versioned per-client key-encryption keys (see module docs for the contract).

    All methods are batch-shaped so a caller needs O(1) awaits for N values.
    """

    async def wrap_many(self, firm_id: str, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        """Wrap each ``(client_id, data_key)`` under that client's current key
        version, creating version 1 for clients without a key.

        Returns one key reference per item, in order.

        Raises:
            ConfigurationError: the provider's master key (or credentials) is
                not the one the firm's keys are under; nothing was written.
            KeyDestroyedError: a client was forgotten; ``context["client_ids"]``
                lists every such client in the batch, and nothing was wrapped.
            InvalidInputError: bad ids or a data key that is not 32 bytes.
            StorageError: the provider's backend failed.
        """
        ...

    async def unwrap_many(
        self, firm_id: str, items: Sequence[tuple[str, bytes]]
    ) -> list[bytes | IntegrityError]:
        """Unwrap each ``(client_id, key_reference)``.

        Returns, per item and in order, the 32-byte data key or the error for
        that item: :class:`~clientcomm.errors.KeyDestroyedError` if the client
        was forgotten, :class:`~clientcomm.errors.IntegrityError` if the
        reference is malformed, tampered with, made for another firm or client,
        names an unknown key version or a client without keys, or the client's
        key record is damaged.

        Raises:
            ConfigurationError: the provider's master key (or credentials) is
                not the one the firm's keys are under (raised, not in place).
            InvalidInputError: bad ids.
            StorageError: the provider's backend failed.
        """
        ...

    async def current_versions(self, firm_id: str, client_ids: Sequence[str]) -> Mapping[str, int]:
        """The current key version of each client that has live keys (clients
        without keys and forgotten clients are absent)."""
        ...

    async def rotate(self, firm_id: str, client_id: str) -> int:
        """Add a new key version for the client and make it current; returns it
        (1 if the client had no key yet). Older versions keep unwrapping.

        Raises:
            KeyDestroyedError: the client was forgotten.
        """
        ...

    async def forget(self, firm_id: str, client_id: str) -> bool:
        """Destroy every key version of the client (crypto-shredding) and leave a
        tombstone so nothing is wrapped for it again. Returns whether any key
        existed. Idempotent. Retention rules are checked by the caller
        (:meth:`clientcomm.crypto.Sealer.forget_client`), not here."""
        ...

    async def aclose(self) -> None: ...


class ClientKeyring:
    """One client's live key versions, ready to wrap and unwrap (synchronous).

    Wrapping is AES-256-GCM under the client key version with a random 96-bit
    nonce; the associated data binds firm, client and version, so a reference
    moved to another client, firm or version fails. Reference layout::

        u32 version | 12-byte nonce | 32-byte encrypted data key | 16-byte tag

    ``repr`` never shows key material.
    """

    __slots__ = ("_aads", "_ciphers", "_decrypts", "_wrap_parts", "client_id", "current", "firm_id")

    def __init__(
        self, firm_id: str, client_id: str, keys: Mapping[int, bytes], current: int
    ) -> None:
        if current not in keys:
            raise IntegrityError("current key version is missing", client_id=client_id)
        self.firm_id = firm_id
        self.client_id = client_id
        self.current = current
        self._ciphers: dict[int, AESGCM] = {}
        self._aads: dict[int, bytes] = {}
        prefix = _WRAP_LABEL + firm_id.encode() + b"\x00" + client_id.encode() + b"\x00"
        for version, key in keys.items():
            if len(key) != DATA_KEY_SIZE or version < 1:
                raise IntegrityError("malformed client key", client_id=client_id)
            self._ciphers[version] = AESGCM(key)
            self._aads[version] = prefix + _U32.pack(version)
        # hot-path caches: the current version's (encrypt, aad, header) and, per
        # version, (decrypt, aad)
        self._wrap_parts = (
            self._ciphers[current].encrypt,
            self._aads[current],
            _U32.pack(current),
        )
        self._decrypts = {v: (c.decrypt, self._aads[v]) for v, c in self._ciphers.items()}

    def __repr__(self) -> str:
        return (
            f"ClientKeyring(firm_id={self.firm_id!r}, client_id={self.client_id!r}, "
            f"versions={sorted(self._ciphers)}, current={self.current})"
        )

    @property
    def versions(self) -> tuple[int, ...]:
        return tuple(sorted(self._ciphers))

    def wrap(self, data_key: bytes, nonce: bytes | None = None) -> bytes:
        """Wrap one data key under the current version. ``nonce`` (12 bytes from
        a CSPRNG) may be passed by batch callers to save an ``os.urandom`` call.

        Raises:
            InvalidInputError: the data key is not 32 bytes.
        """
        if len(data_key) != DATA_KEY_SIZE:
            raise InvalidInputError("data_key", "must be 32 bytes")
        if nonce is None:
            nonce = _urandom(12)
        elif len(nonce) != 12:
            raise InvalidInputError("nonce", "must be 12 bytes")
        encrypt, aad, head = self._wrap_parts
        return head + nonce + encrypt(nonce, data_key, aad)

    def unwrap(self, reference: bytes) -> bytes:
        """Open a reference made by :meth:`wrap`.

        Raises:
            IntegrityError: malformed, tampered, another client's, or an
                unknown version.
        """
        if len(reference) != 64:
            raise IntegrityError("malformed key reference", client_id=self.client_id)
        parts = self._decrypts.get(_U32.unpack_from(reference)[0])
        if parts is None:
            raise IntegrityError(
                "unknown key version",
                client_id=self.client_id,
                key_version=_U32.unpack_from(reference)[0],
            )
        try:
            return parts[0](reference[4:16], reference[16:], parts[1])
        except InvalidTag:
            raise IntegrityError(
                "key reference failed authentication", client_id=self.client_id
            ) from None


def wrap_items(
    rings: Mapping[str, ClientKeyring], items: Sequence[tuple[str, bytes]]
) -> list[bytes]:
    """Wrap ``(client_id, data_key)`` items with the given keyrings (one
    ``os.urandom`` call for all nonces).

    Raises:
        InvalidInputError: a data key is not 32 bytes.
        KeyError: a client has no keyring in ``rings`` (a caller bug).
    """
    if len(items) == 1:  # one stream key, or a single value
        ((client_id, dk),) = items
        return [rings[client_id].wrap(dk)]
    nonces = os.urandom(12 * len(items))
    out: list[bytes] = []
    append = out.append
    off = 0
    for client_id, dk in items:
        encrypt, aad, head = rings[client_id]._wrap_parts
        if len(dk) != DATA_KEY_SIZE:
            raise InvalidInputError("data_key", "must be 32 bytes")
        nonce = nonces[off : off + 12]
        off += 12
        append(head + nonce + encrypt(nonce, dk, aad))
    return out


def unwrap_items(
    rings: Mapping[str, ClientKeyring | IntegrityError],
    items: Sequence[tuple[str, bytes]],
) -> list[bytes | IntegrityError]:
    """Unwrap ``(client_id, reference)`` items; a client mapped to an error
    yields a fresh error of the same class for each of its items."""
    out: list[bytes | IntegrityError] = []
    append = out.append
    unpack = _U32.unpack_from
    for client_id, ref in items:
        ring = rings[client_id]
        if isinstance(ring, IntegrityError):
            append(type(ring)(ring.message, **ring.context))
            continue
        if len(ref) != 64:
            append(IntegrityError("malformed key reference", client_id=client_id))
            continue
        parts = ring._decrypts.get(unpack(ref)[0])
        if parts is None:
            append(IntegrityError("unknown key version", client_id=client_id))
            continue
        try:
            append(parts[0](ref[4:16], ref[16:], parts[1]))
        except InvalidTag:
            append(IntegrityError("key reference failed authentication", client_id=client_id))
    return out
