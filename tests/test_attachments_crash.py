"""Blob reservations: a writer that dies between writing attachment blobs and
committing the records that reference them leaves nothing behind (every Store)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from clientcomm import ConflictError, InvalidInputError, ManualClock
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.attachments import (
    BLOB_INTENT_KIND,
    AttachmentInput,
    AttachmentMode,
    AttachmentStore,
)
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.mailing import MAILING_KIND, staging_owner
from clientcomm.messages import MESSAGE_KIND
from clientcomm.records import Records
from clientcomm.rules.audience import Audience
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import make_app

ADMIN = StaffActor("f1", "admin")
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
TTL = timedelta(hours=1)


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path) as application:
            yield application


def blob_ids(app: ClientComm) -> list[str]:
    assert isinstance(app.blobs, MemoryBlobStore)
    return app.blobs.blob_ids("f1")


async def intents(app: ClientComm) -> int:
    async with app.store.transaction("f1") as tx:
        return await tx.count(BLOB_INTENT_KIND)


def advance(app: ClientComm, by: timedelta) -> None:
    assert isinstance(app.clock, ManualClock)
    app.clock.advance(by)


async def test_normal_paths_settle_every_reservation(app: ClientComm) -> None:
    pdf = [AttachmentInput.from_bytes("Info.pdf", PDF, "application/pdf")]
    await app.mailings.submit(ADMIN, Audience.clients("c1", "c2"), "Rundschreiben", attachments=pdf)
    await app.messages.send(ADMIN, "c3", "Ihre Unterlagen", attachments=pdf)
    await app.drain()
    assert await intents(app) == 0
    # what is left: one blob per copy (the staged blob went with the mailing)
    assert len(blob_ids(app)) == 3
    for cid in ("c1", "c2", "c3"):
        [message] = await app.messages.list_for_client(ClientActor("f1", cid))
        [info] = message.attachments
        actor = ClientActor("f1", cid)
        stream = await app.messages.open_attachment(actor, message.id, info.id)
        data = b"".join([piece async for piece in stream])
        assert data == PDF


async def test_a_message_writer_that_died_is_swept_after_the_ttl(app: ClientComm) -> None:
    prepared = app.attachments.prepare([AttachmentInput.from_bytes("a.pdf", PDF)])
    # a sender writes the blob and dies before its transaction commits
    orphan = await app.attachments.store_copies("f1", "c1", "m-dead", prepared)
    assert len(blob_ids(app)) == 1 and await intents(app) == 1
    await app.drain()  # within the TTL the writer may still be alive: nothing is touched
    assert len(blob_ids(app)) == 1
    advance(app, TTL + timedelta(seconds=1))
    await app.drain()
    assert blob_ids(app) == [] and await intents(app) == 0
    # the writer wakes up after all: its commit fails, no record points at a lost blob
    with pytest.raises(ConflictError):
        async with Records(app.store).transaction("f1") as tx:
            await app.attachments.settle(tx, orphan.reservation)


async def test_a_mailing_step_that_died_is_swept_and_the_mailing_delivered_once(
    app: ClientComm,
) -> None:
    pdf = [AttachmentInput.from_bytes("Info.pdf", PDF, "application/pdf")]
    receipt = await app.mailings.submit(
        ADMIN, Audience.clients("c1", "c2"), "Hallo", attachments=pdf
    )
    staged_only = blob_ids(app)
    # a worker seals the copies' attachments and dies before its transaction
    loaded = await app.mailings.fanout._load("f1", receipt.id)
    assert loaded is not None
    dead = await app.attachments.copies(
        "f1",
        staging_owner(receipt.id),
        loaded.mailing.attachments,
        [("c1", "m1"), ("c2", "m2")],
    )
    assert len(blob_ids(app)) == len(staged_only) + 2
    advance(app, TTL + timedelta(seconds=1))
    await app.drain()  # sweeps the dead step's blobs and delivers the mailing
    assert await intents(app) == 0
    async with app.store.transaction("f1") as tx:
        copies = await tx.list(MESSAGE_KIND)
        [mailing] = await tx.list(MAILING_KIND)
    assert mailing.status == "completed" and len(copies) == 2
    referenced = {m.data["attachments"][0]["blob_id"] for m in copies}
    assert set(blob_ids(app)) == referenced  # no orphan, no staged leftover
    assert not referenced & {a.blob_id for a in dead.attachments}


async def test_a_submit_that_died_after_staging_is_swept(app: ClientComm) -> None:
    prepared = app.attachments.prepare([AttachmentInput.from_bytes("Info.pdf", PDF)])
    await app.attachments.stage("f1", "mailing:x", "x", prepared, AttachmentMode.SHARED)
    assert len(blob_ids(app)) == 1
    advance(app, TTL + timedelta(seconds=1))
    assert await app.attachments.sweep() == 1
    assert blob_ids(app) == [] and await intents(app) == 0
    assert await app.attachments.sweep() == 0


async def test_a_failed_commit_discards_blobs_and_reservation(app: ClientComm) -> None:
    prepared = app.attachments.prepare([AttachmentInput.from_bytes("a.pdf", PDF)])
    copies = await app.attachments.store_copies("f1", "c1", "m1", prepared)
    await app.attachments.discard("f1", copies)
    assert blob_ids(app) == [] and await intents(app) == 0


async def test_reservation_ttl_must_be_positive(app: ClientComm) -> None:
    with pytest.raises(InvalidInputError):
        AttachmentStore(app.blobs, app.sealer, store=app.store, reservation_ttl=timedelta(0))
