"""Crash safety of sharing: a process killed between writing the documents'
blobs and committing the shares leaves no visible share, and after the sweep
no orphan blob (SQLite + FileBlobStore, a real SIGKILL); and a failed commit
in-process removes its blobs at once (every backend)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from clientcomm import SQLiteStore, StorageError
from clientcomm.actors import ClientActor
from clientcomm.app import ClientComm
from clientcomm.attachments import BLOB_INTENT_KIND
from clientcomm.blobs.filesystem import FileBlobStore
from clientcomm.sharing import SHARE_KIND, PortalDocument
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.sharing.support import (
    CRASH_MASTER,
    PDF,
    SHARER,
    blob_ids,
    clock_of,
    count,
    sharing_app,
)

ROOT = Path(__file__).resolve().parent.parent.parent
TTL = timedelta(hours=1)


def blob_files(app: ClientComm) -> list[str]:
    assert isinstance(app.blobs, FileBlobStore)
    return [p.name for p in app.blobs.root.rglob("*") if p.is_file()]


async def test_a_sharer_killed_before_its_commit_leaves_nothing_after_the_sweep(
    tmp_path: Path,
) -> None:
    db = tmp_path / "crash.db"
    async with (
        SQLiteStore(db) as store,
        sharing_app(store, tmp_path, master=CRASH_MASTER, blobs_on_disk=True),
    ):
        pass  # seeds the directory
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "tests" / "sharing_share_proc.py"),
        str(db),
        str(tmp_path),
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL, out
    folder_id = out.decode().split()[0]
    async with (
        SQLiteStore(db) as store,
        sharing_app(store, tmp_path, master=CRASH_MASTER, blobs_on_disk=True) as app,
    ):
        # the killed sharer wrote both blobs; no share is visible
        assert len(blob_files(app)) == 2
        assert await count(app, SHARE_KIND) == 0 and await count(app, BLOB_INTENT_KIND) == 1
        assert await app.shares.list_documents(ClientActor("f1", "c4"), folder_id) == []
        assert await app.shares.list_documents(SHARER, folder_id, include_ended=True) == []
        assert (await app.shares.visibility(SHARER, "akte3", ["h1", "h2"])) == {
            "h1": (),
            "h2": (),
        }
        await app.drain()  # within the TTL the writer may still be alive
        assert len(blob_files(app)) == 2
        clock_of(app).advance(TTL + timedelta(seconds=1))
        await app.drain()
        assert blob_files(app) == [] and await count(app, BLOB_INTENT_KIND) == 0
        # and sharing works on
        doc = PortalDocument("c.pdf", PDF, "application/pdf", "h3")
        await app.shares.share(SHARER, "akte3", [doc], folder_id=folder_id)
        assert len(blob_files(app)) == 1


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with sharing_app(store, tmp_path) as application:
            yield application


async def test_a_commit_that_fails_removes_its_blobs_and_reservation(app: ClientComm) -> None:
    folder = await app.shares.create_folder(SHARER, "akte3", "Bescheide")
    settle = app.attachments.settle

    async def broken(*args: Any, **kwargs: Any) -> None:
        await settle(*args, **kwargs)
        raise StorageError("the database went away")

    app.attachments.settle = broken  # type: ignore[method-assign]
    docs = [PortalDocument("a.pdf", PDF, "application/pdf", "h1")] * 2
    with pytest.raises(StorageError):
        await app.shares.share(SHARER, "akte3", docs, folder_id=folder.id)
    assert blob_ids(app) == []
    assert await count(app, SHARE_KIND) == 0 and await count(app, BLOB_INTENT_KIND) == 0
