"""The sweep after a killed submit (every Store, blobs on disk): the staging key
the submit made is forgotten, its blobs and the ``.partial-*`` files of its
half-written puts are removed; a committed mailing's key is never touched."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from clientcomm import ManualClock, SQLiteStore
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.attachments import (
    BLOB_INTENT_KIND,
    AttachmentInput,
    AttachmentMode,
    BlobReservation,
)
from clientcomm.blobs import filesystem
from clientcomm.blobs.base import ByteChunks
from clientcomm.blobs.filesystem import PARTIAL_PREFIX, FileBlobStore
from clientcomm.crypto.local import KEY_RECORD_KIND
from clientcomm.mailing import MAILING_KIND, MailingState, staging_owner
from clientcomm.records import RecordTx
from clientcomm.rules.audience import Audience
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import make_app

ROOT = Path(__file__).resolve().parent.parent
ADMIN = StaffActor("f1", "admin")
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 8000 + b"\n%%EOF\n"  # 2 MB: puts write batches
TTL = timedelta(hours=1)


class Killed(BaseException):
    """The process dies here: nothing after it runs, no clean-up either."""


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path, blobs_on_disk=True) as application:
            yield application


def files(app: ClientComm) -> tuple[list[str], list[str]]:
    """(blob files, partial files) under the FileBlobStore's root."""
    assert isinstance(app.blobs, FileBlobStore)
    blobs: list[str] = []
    partial: list[str] = []
    for path in app.blobs.root.rglob("*"):
        if path.is_file():
            (partial if path.name.startswith(PARTIAL_PREFIX) else blobs).append(path.name)
    return blobs, partial


def age_partial_files(app: ClientComm, by: timedelta) -> None:
    """Make the partial files look untouched for ``by`` (their mtime is real time)."""
    assert isinstance(app.blobs, FileBlobStore)
    then = time.time() - by.total_seconds()
    for path in app.blobs.root.rglob(f"{PARTIAL_PREFIX}*"):
        os.utime(path, (then, then))


async def staging_keys(app: ClientComm) -> dict[str, bool]:
    """Every mailing staging key record: id -> live (has key material)."""
    async with app.store.transaction("f1") as tx:
        records = await tx.list(KEY_RECORD_KIND, limit=1000)
    return {r.id: bool(r.data.get("keys")) for r in records if r.id.startswith("mailing:")}


async def count(app: ClientComm, kind: str) -> int:
    async with app.store.transaction("f1") as tx:
        return await tx.count(kind)


def advance(app: ClientComm, by: timedelta) -> None:
    assert isinstance(app.clock, ManualClock)
    app.clock.advance(by)


def kill_submit(app: ClientComm, monkeypatch: pytest.MonkeyPatch, *, mid_put: bool) -> None:
    """The next submit dies just before its transaction commits or, with
    ``mid_put``, in the middle of writing an attachment's blob."""

    async def no_cleanup(*args: object) -> None:
        return None

    monkeypatch.setattr(app.mailings, "_abandon", no_cleanup)
    if mid_put:
        # a killed process runs no abort: its temporary file stays behind
        def close_only(pending: filesystem._PendingBlob) -> None:
            if pending.fd is not None:
                os.close(pending.fd)
                pending.fd = None

        monkeypatch.setattr(filesystem._PendingBlob, "abort", close_only)
        put = app.blobs.put

        async def put_and_die(firm_id: str, blob_id: str, chunks: ByteChunks) -> int:
            async def frames() -> AsyncIterator[bytes]:
                sent = 0
                async for frame in chunks:  # type: ignore[union-attr]
                    yield frame
                    sent += len(frame)
                    if sent > 1024 * 1024:  # one batch is in the .partial file
                        raise Killed

            return await put(firm_id, blob_id, frames())

        monkeypatch.setattr(app.blobs, "put", put_and_die)
    else:

        async def settle_and_die(tx: RecordTx, reservation: BlobReservation | None) -> None:
            raise Killed

        monkeypatch.setattr(app.attachments, "settle", settle_and_die)


@pytest.mark.parametrize(
    ("attachments", "mid_put"),
    [(0, False), (1, False), (2, True)],
    ids=["text-only", "staged", "mid-put"],
)
async def test_a_killed_submit_is_swept_key_blobs_and_partial_files(
    app: ClientComm, monkeypatch: pytest.MonkeyPatch, attachments: int, mid_put: bool
) -> None:
    kill_submit(app, monkeypatch, mid_put=mid_put)
    pdfs = [
        AttachmentInput.from_bytes(f"Info-{i}.pdf", PDF, "application/pdf")
        for i in range(attachments)
    ]
    with pytest.raises(Killed):
        await app.mailings.submit(ADMIN, Audience.clients("c1", "c2"), "Hallo", attachments=pdfs)
    monkeypatch.undo()
    # what the dead submit left: a live staging key with no mailing, its reservation,
    # the staged blobs and (killed mid-put) a partial file
    [(key_id, live)] = (await staging_keys(app)).items()
    assert live and await count(app, MAILING_KIND) == 0
    assert await count(app, BLOB_INTENT_KIND) == 1
    blobs, partial = files(app)
    assert (len(blobs), len(partial)) == ((0, 1) if mid_put else (attachments, 0))

    await app.drain()  # within the TTL the writer may still be alive: nothing is touched
    assert await staging_keys(app) == {key_id: True}
    assert files(app) == (blobs, partial)

    advance(app, TTL + timedelta(seconds=1))
    age_partial_files(app, TTL + timedelta(minutes=1))
    await app.drain()
    assert await staging_keys(app) == {key_id: False}  # forgotten: a tombstone
    assert await count(app, BLOB_INTENT_KIND) == 0
    assert files(app) == ([], [])
    # the same process goes on working
    receipt = await app.mailings.submit(
        ADMIN,
        Audience.clients("c1"),
        "Noch einmal",
        attachments=[AttachmentInput.from_bytes("Info.pdf", PDF, "application/pdf")],
    )
    await app.drain()
    assert (await app.mailings.status(ADMIN, receipt.id)).state is MailingState.COMPLETED
    [copy] = await app.messages.list_for_client(ClientActor("f1", "c1"))
    assert copy.text == "Noch einmal"


async def test_a_submit_that_fails_cleans_up_at_once(
    app: ClientComm, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def settle_fails(tx: RecordTx, reservation: BlobReservation | None) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(app.attachments, "settle", settle_fails)
    pdf = AttachmentInput.from_bytes("Info.pdf", PDF, "application/pdf")
    with pytest.raises(RuntimeError):
        await app.mailings.submit(ADMIN, Audience.clients("c1"), "Hallo", attachments=[pdf])
    assert list((await staging_keys(app)).values()) == [False]
    assert await count(app, BLOB_INTENT_KIND) == 0
    assert files(app) == ([], [])


async def test_the_sweep_never_forgets_the_key_of_a_committed_mailing(app: ClientComm) -> None:
    receipt = await app.mailings.submit(
        ADMIN,
        Audience.clients("c1"),
        "Später",
        attachments=[AttachmentInput.from_bytes("Info.pdf", PDF, "application/pdf")],
        attachment_mode=AttachmentMode.SHARED,
        schedule_at=app.clock.now() + timedelta(days=2),
    )
    owner = staging_owner(receipt.id)
    # a stray reservation naming the mailing's key (its commit settled its own)
    await app.attachments.reserve("f1", [], key_owner=owner, holder=(MAILING_KIND, receipt.id))
    advance(app, TTL + timedelta(seconds=1))
    await app.drain()
    assert await count(app, BLOB_INTENT_KIND) == 0
    assert await staging_keys(app) == {owner: True}
    advance(app, timedelta(days=2))
    await app.drain()
    [copy] = await app.messages.list_for_client(ClientActor("f1", "c1"))
    assert copy.text == "Später"
    assert await staging_keys(app) == {owner: False}  # forgotten when it completed


async def test_partial_files_are_looked_for_at_most_every_interval(app: ClientComm) -> None:
    assert isinstance(app.blobs, FileBlobStore)
    stale = app.blobs.root / f"{PARTIAL_PREFIX}0123456789abcdef-att-x"
    fresh = app.blobs.root / f"{PARTIAL_PREFIX}fedcba9876543210-att-y"
    assert await app.attachments.sweep() == 0
    stale.write_bytes(b"half a blob")
    fresh.write_bytes(b"a put in progress")
    age_partial_files(app, TTL + timedelta(minutes=1))
    fresh.touch()
    assert await app.attachments.sweep() == 0  # looked a moment ago
    advance(app, app.attachments.partial_sweep_interval)
    assert await app.attachments.sweep() == 1
    assert not stale.exists() and fresh.exists()


async def test_sigkill_mid_submit_leaves_nothing_after_the_sweep(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    async with SQLiteStore(db) as store, make_app(store, tmp_path, blobs_on_disk=True):
        pass  # seeds the directory
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "tests" / "attachments_submit_proc.py"),
        str(db),
        str(tmp_path),
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL, out
    async with SQLiteStore(db) as store, make_app(store, tmp_path, blobs_on_disk=True) as app:
        [(key_id, live)] = (await staging_keys(app)).items()
        assert live and await count(app, MAILING_KIND) == 0
        assert len(files(app)[1]) == 1  # the killed put's partial file
        advance(app, TTL + timedelta(seconds=1))
        age_partial_files(app, TTL + timedelta(minutes=1))
        await app.drain()
        assert await staging_keys(app) == {key_id: False}
        assert await count(app, BLOB_INTENT_KIND) == 0
        assert files(app) == ([], [])
