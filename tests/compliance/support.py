"""Shared set-up of the compliance tests: one deployment over a Store backend
(LocalKeyProvider: the key material lives in the store too), a filled firm,
and raw scans of everything stored."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.attachments import AttachmentInput, AttachmentMode
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.clock import ManualClock
from clientcomm.crypto import MasterKey
from clientcomm.crypto.local import KEY_CHECK_KIND, KEY_RECORD_KIND
from clientcomm.directory.sql import directory_for
from clientcomm.records import REGISTRY
from clientcomm.rules.audience import Audience
from clientcomm.storage.base import Record, Store
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import World, seed

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
ADMIN = StaffActor("f1", "admin")
FILES = {
    "a.txt": b"erste Anlage " * 100,
    "b.pdf": b"%PDF-1.4 zweite Anlage " * 50,
    "anna.txt": b"Annas Steuerbescheid 2025 " * 40,
}
# what only c1's data holds in plaintext (its messages, its contact's address)
C1_SECRETS = ("Hallo Anna", "Annas Geheimnis", "Danke von Anna", "anna@example.com", "Anna Alt")
C2_TEXTS = ["Hallo Bernd", "Rundschreiben per_copy", "Rundschreiben shared"]


@pytest.fixture(params=STORE_BACKENDS)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    async for store in open_backend(request.param, tmp_path):
        directory = directory_for(store)
        await seed(directory)
        yield World(store, directory, MasterKey.generate(), MemoryBlobStore(), ManualClock(T0))


def attachments(*names: str) -> list[AttachmentInput]:
    return [AttachmentInput.from_bytes(n, FILES[n]) for n in names]


async def fill(app: ClientComm) -> None:
    """c1: two messages with attachments, a reply of its own, read cursors;
    c2: a message; both: a per-copy and a shared mailing (with attachments);
    another firm: a message of its own."""
    await app.messages.send(ADMIN, "c1", "Hallo Anna", attachments=attachments("anna.txt", "b.pdf"))
    await app.messages.send(ADMIN, "c1", "Annas Geheimnis", subject="Vertraulich")
    await app.messages.send(ClientActor("f1", "c1", "k1"), "c1", "Danke von Anna")
    await app.messages.send(ADMIN, "c2", "Hallo Bernd", attachments=attachments("a.txt"))
    for mode in (AttachmentMode.PER_COPY, AttachmentMode.SHARED):
        await app.mailings.submit(
            ADMIN,
            Audience.clients("c1", "c2"),
            f"Rundschreiben {mode.value}",
            attachments=attachments("a.txt"),
            attachment_mode=mode,
        )
    await app.messages.send(StaffActor("f2", "admin2"), "x1", "Fremde Kanzlei")
    await app.drain()
    await app.messages.list_for_client(ClientActor("f1", "c1"))  # read cursors
    await app.messages.list_for_staff(ADMIN, "c1")


async def read_everything(app: ClientComm, firm_id: str, client_id: str) -> list[str]:
    """Every text of the client's chat, every attachment's bytes checked."""
    actor = ClientActor(firm_id, client_id)
    messages = await app.messages.list_for_client(actor, mark_read=False)
    assert not messages.unreadable
    for m in messages:
        for info in m.attachments:
            stream = await app.messages.open_attachment(actor, m.id, info.id)
            assert b"".join([chunk async for chunk in stream]) == FILES[info.filename]
    return sorted(m.text for m in messages)


KINDS = sorted({k.name for k in REGISTRY} | {KEY_RECORD_KIND, KEY_CHECK_KIND})


def row_bytes(r: Record) -> bytes:
    """Everything of a stored row, as bytes to search."""
    columns = [r.kind, r.id, r.parent, r.ref, r.key, r.status, r.lease_owner]
    text = json.dumps([columns, r.data], sort_keys=True, default=str)
    return text.encode() + b"\x00" + (r.body or b"")


async def dump(store: Store, firm_id: str) -> dict[tuple[str, str], Record]:
    """Every row of the firm in every kind clientcomm stores."""
    out: dict[tuple[str, str], Record] = {}
    for kind in KINDS:
        async for r in store.iterate(firm_id, kind):
            out[(r.kind, r.id)] = r
    return out


def owned_by(rows: dict[tuple[str, str], Record], client_id: str) -> dict[tuple[str, str], Record]:
    """The rows the registry declares as ``client_id``'s data."""
    out = {}
    for key, r in rows.items():
        if r.kind in REGISTRY:
            kind = REGISTRY.kind(r.kind)
            if kind.client is not None and kind.client(kind.decode(r)) == client_id:
                out[key] = r
    return out
