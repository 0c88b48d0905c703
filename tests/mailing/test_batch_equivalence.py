"""The fan-out's batch path writes exactly the records the plain path writes.

Two deployments with the same master key, clock and (rewound, deterministic)
randomness deliver the same mailing: one with the fan-out as it is
(``Sealer.seal_batch``, ``copy_message_ids``, ``all_identifiers``), one with
those replaced by the plain per-copy paths (a context and a request per copy,
``seal_many``, ``copy_message_id`` and ``is_identifier`` per recipient). Every
stored record (copies, pages, fan-out batch, audit, keys) is equal, byte for
byte.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from clientcomm import Audience, StaffActor
from clientcomm.crypto import keys as keys_module
from clientcomm.crypto.context import SealContext
from clientcomm.crypto.envelope import Buffer, Sealer, SealRequest
from clientcomm.mailing import steps as steps_module
from clientcomm.mailing.rules import copy_message_id
from clientcomm.rules.text import is_identifier
from clientcomm.storage.base import Record
from clientcomm.storage.memory import MemoryStore
from tests.mailing_support import make_app

KINDS = (
    "message",
    "mailing",
    "mailing.page",
    "notify.fanout",
    "key.client",
    "audit",
    "audit.pending",
)


class Deterministic:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, n: int) -> bytes:
        self.count += 1
        return hashlib.shake_256(b"fanout-equivalence:%d" % self.count).digest(n)


async def plain_seal_batch(
    self: Sealer,
    firm_id: str,
    kind: str,
    field: str,
    pairs: Sequence[tuple[str, str]],
    plaintexts: Sequence[Buffer],
) -> list[bytes]:
    contexts = SealContext.many(firm_id, kind, field, pairs)
    return await self.seal_many(
        [SealRequest(ctx, p) for ctx, p in zip(contexts, plaintexts, strict=True)]
    )


def plain_copy_ids(mailing_id: str, clients: Sequence[str], secret: bytes) -> list[tuple[str, str]]:
    return [(c, copy_message_id(mailing_id, c, secret)) for c in clients]


def plain_all_identifiers(values: Sequence[object]) -> bool:
    return all(is_identifier(v) for v in values)


async def deliver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Record]]:
    rng = Deterministic()
    monkeypatch.setattr(os, "urandom", rng)
    monkeypatch.setattr(keys_module, "_urandom", rng)
    async with MemoryStore() as store, make_app(store, tmp_path, mailing_batch=2) as app:
        admin = StaffActor("f1", "admin")
        receipt = await app.mailings.submit(admin, Audience.everyone(), "Hallo allerseits")
        while await app.mailings.step(limit=3):
            pass
        assert (await app.mailings.status(admin, receipt.id)).delivered == receipt.total == 5
        out: dict[str, list[Record]] = {}
        async with store.transaction("f1") as tx:
            for kind in KINDS:
                out[kind] = [
                    r.evolve(lease_owner=None) for r in await tx.list(kind)
                ]  # the worker id holds the host and pid
        return out


async def test_the_fanout_writes_the_records_of_the_plain_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    batch = await deliver(tmp_path / "batch", monkeypatch)
    with monkeypatch.context() as plain:
        plain.setattr(Sealer, "seal_batch", plain_seal_batch)
        plain.setattr(steps_module, "copy_message_ids", plain_copy_ids)
        plain.setattr(steps_module, "all_identifiers", plain_all_identifiers)
        expected = await deliver(tmp_path / "plain", plain)
    assert [len(batch[k]) for k in KINDS] == [len(expected[k]) for k in KINDS]
    assert len(batch["message"]) == 5 and batch["notify.fanout"]
    assert batch == expected
