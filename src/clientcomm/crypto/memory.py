"""In-memory KeyProvider: same contract and errors as the local provider, keys
held only in process memory (for tests, demos and benchmarks).

Everything it holds is lost with the process: do not use it for data you need
to open again later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from clientcomm.crypto.keys import (
    DATA_KEY_SIZE,
    ClientKeyring,
    unwrap_items,
    validate_key_owner,
    wrap_items,
)
from clientcomm.errors import IntegrityError, InvalidInputError, KeyDestroyedError

__all__ = ["MemoryKeyProvider"]


class _Client:
    __slots__ = ("forgotten", "keys")

    def __init__(self) -> None:
        self.keys: dict[int, bytes] = {}
        self.forgotten = False


class MemoryKeyProvider:
    """A :class:`~clientcomm.crypto.keys.KeyProvider` whose client keys live in a
    dict. Two firms never share keys; forgetting leaves a tombstone.
    """

    def __init__(self) -> None:
        self._clients: dict[str, dict[str, _Client]] = {}  # firm -> client -> keys
        self._rings: dict[str, dict[str, ClientKeyring]] = {}  # firm -> live keyrings

    def __repr__(self) -> str:
        return f"MemoryKeyProvider(firms={len(self._clients)})"

    def _entry(self, firm_id: str, client_id: str) -> _Client | None:
        return self._clients.get(firm_id, {}).get(client_id)

    def _create(self, firm_id: str, client_id: str) -> ClientKeyring:
        """The client's keyring, creating version 1 if needed.

        Raises:
            KeyDestroyedError: the client was forgotten.
        """
        validate_key_owner("client_id", client_id)
        entry = self._clients.setdefault(firm_id, {}).setdefault(client_id, _Client())
        if entry.forgotten:
            raise KeyDestroyedError(
                "the client's keys were destroyed", client_id=client_id, client_ids=[client_id]
            )
        if not entry.keys:
            entry.keys[1] = os.urandom(DATA_KEY_SIZE)
        ring = ClientKeyring(firm_id, client_id, entry.keys, max(entry.keys))
        self._rings.setdefault(firm_id, {})[client_id] = ring
        return ring

    async def wrap_many(self, firm_id: str, items: Sequence[tuple[str, bytes]]) -> list[bytes]:
        """See :meth:`KeyProvider.wrap_many`.

        Raises:
            KeyDestroyedError: a client in the batch was forgotten.
            InvalidInputError: bad ids or data keys.
        """
        live = self._rings.get(firm_id)
        if live is not None:  # a known (already validated) firm: the hot path
            try:
                return wrap_items(live, items)
            except (KeyError, InvalidInputError):
                pass  # a new or forgotten client, or a bad key: checked in order below
        validate_key_owner("firm_id", firm_id)
        if live is None:
            live = self._rings[firm_id] = {}
        missing = {client_id for client_id, _ in items if client_id not in live}
        if missing:
            forgotten = sorted(
                c for c in missing if (e := self._entry(firm_id, c)) is not None and e.forgotten
            )
            if forgotten:
                raise KeyDestroyedError(
                    "keys of forgotten clients cannot wrap new data", client_ids=forgotten
                )
            for client_id in missing:
                self._create(firm_id, client_id)
        return wrap_items(live, items)

    async def unwrap_many(
        self, firm_id: str, items: Sequence[tuple[str, bytes]]
    ) -> list[bytes | IntegrityError]:
        """See :meth:`KeyProvider.unwrap_many`."""
        live = self._rings.get(firm_id)
        if live is not None:  # a known (already validated) firm: the hot path
            try:
                return unwrap_items(live, items)
            except KeyError:
                pass  # a client without a live keyring: see below
        validate_key_owner("firm_id", firm_id)
        live = live or {}
        missing = {client_id for client_id, _ in items if client_id not in live}
        if not missing:
            return unwrap_items(live, items)
        rings: dict[str, ClientKeyring | IntegrityError] = dict(live)
        for client_id in missing:
            entry = self._entry(firm_id, client_id)
            if entry is not None and entry.forgotten:
                rings[client_id] = KeyDestroyedError(
                    "the client's keys were destroyed", client_id=client_id
                )
            else:
                rings[client_id] = IntegrityError(
                    "no key exists for the client", client_id=client_id
                )
        return unwrap_items(rings, items)

    async def current_versions(self, firm_id: str, client_ids: Sequence[str]) -> Mapping[str, int]:
        """See :meth:`KeyProvider.current_versions`."""
        live = self._rings.get(firm_id, {})
        return {c: live[c].current for c in client_ids if c in live}

    async def rotate(self, firm_id: str, client_id: str) -> int:
        """See :meth:`KeyProvider.rotate`.

        Raises:
            KeyDestroyedError: the client was forgotten.
        """
        validate_key_owner("firm_id", firm_id)
        entry = self._entry(firm_id, client_id)
        if entry is None or not entry.keys:
            return self._create(firm_id, client_id).current
        version = max(entry.keys) + 1
        entry.keys[version] = os.urandom(DATA_KEY_SIZE)
        return self._create(firm_id, client_id).current

    async def forget(self, firm_id: str, client_id: str) -> bool:
        """See :meth:`KeyProvider.forget`."""
        validate_key_owner("firm_id", firm_id)
        validate_key_owner("client_id", client_id)
        entry = self._clients.setdefault(firm_id, {}).setdefault(client_id, _Client())
        existed = bool(entry.keys)
        entry.keys.clear()
        entry.forgotten = True
        self._rings.get(firm_id, {}).pop(client_id, None)
        return existed

    async def aclose(self) -> None:
        """Nothing to release; keys stay until the provider is dropped."""
