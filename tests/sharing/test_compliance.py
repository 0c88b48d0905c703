"""Sharing reaches the compliance machinery by its kinds' declarations, on every
Store backend: the client data export opens its folders, shares and messages;
key rotation re-wraps them (they still open); erasure deletes the client's
shares, places, messages and document blobs and leaves other clients' alone;
every state change is in the audit trail."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clientcomm.actors import ClientActor
from clientcomm.app import ClientComm
from clientcomm.crypto.envelope import sealed_key_version
from clientcomm.errors import NotFoundError
from clientcomm.sharing import (
    DOWNLOAD_KIND,
    MESSAGE_KIND,
    PLACE_KIND,
    SHARE_KIND,
    PortalDocument,
)
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.sharing.support import PDF, SHARER, blob_ids, count, sharing_app

C1 = ClientActor("f1", "c1", "k1")
C2 = ClientActor("f1", "c2", "k2")


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with sharing_app(store, tmp_path) as application:
            yield application


async def fill(app: ClientComm) -> dict[str, str]:
    """c1 and c2 (both of akte1) get a folder with a share, a channel with a
    share and a message; c1 replies, downloads and uploads."""
    out: dict[str, str] = {}
    for cid in ("c1", "c2"):
        folder = await app.shares.create_folder(SHARER, "akte1", f"Ordner {cid}", client_id=cid)
        channel = await app.shares.create_channel(SHARER, "akte1", f"Post {cid}", client_id=cid)
        doc = PortalDocument(f"Bescheid-{cid}.pdf", PDF, "application/pdf", f"h-{cid}")
        shared = await app.shares.share(SHARER, "akte1", [doc], folder_id=folder.id, client_id=cid)
        await app.shares.share_with_message(
            SHARER, "akte1", [doc], f"Text für {cid}", channel_id=channel.id, client_id=cid
        )
        out[f"{cid}.folder"] = folder.id
        out[f"{cid}.channel"] = channel.id
        out[f"{cid}.share"] = shared.share_ids[0]
    await app.shares.post(C1, out["c1.channel"], "Antwort von c1")
    await app.shares.upload(
        C1, out["c1.folder"], [PortalDocument("Beleg.pdf", PDF, "application/pdf")]
    )
    stream = await app.shares.download(C1, out["c1.share"])
    assert b"".join([p async for p in stream]) == PDF
    return out


async def test_the_export_opens_the_clients_portal_records(app: ClientComm) -> None:
    await fill(app)
    data = b"".join([c async for c in app.compliance.export("f1", "c1", actor="admin")])
    zf = zipfile.ZipFile(io.BytesIO(data))
    manifest = json.loads(zf.read("manifest.json"))
    assert not {SHARE_KIND, PLACE_KIND, MESSAGE_KIND} & set(manifest.get("not_opened", []))
    shares = [json.loads(line) for line in zf.read(f"records/{SHARE_KIND}.jsonl").splitlines()]
    assert sorted(s["filename"] for s in shares) == [
        "Beleg.pdf",
        "Bescheid-c1.pdf",
        "Bescheid-c1.pdf",
    ]
    messages = [json.loads(x) for x in zf.read(f"records/{MESSAGE_KIND}.jsonl").splitlines()]
    assert sorted(m["text"] for m in messages) == ["Antwort von c1", "Text für c1"]
    places = [json.loads(x) for x in zf.read(f"records/{PLACE_KIND}.jsonl").splitlines()]
    assert sorted(p["name"] for p in places) == ["Ordner c1", "Post c1"]
    assert b"Bescheid-c2" not in zf.read(f"records/{SHARE_KIND}.jsonl")
    assert len(zf.read(f"records/{DOWNLOAD_KIND}.jsonl").splitlines()) == 1


async def test_key_rotation_rewraps_the_sharing_kinds(app: ClientComm) -> None:
    ids = await fill(app)
    await app.rotate_client_key("f1", "c1")
    await app.drain()
    async with app.store.transaction("f1") as tx:
        for kind in (SHARE_KIND, PLACE_KIND, MESSAGE_KIND):
            for record in await tx.list(kind, parent="c1"):
                assert record.body is not None
                assert sealed_key_version(record.body) == 2, kind
    shown = await app.shares.list_documents(C1, ids["c1.folder"])
    assert len(shown) == 2  # the share and the upload
    stream = await app.shares.download(C1, ids["c1.share"])
    assert b"".join([p async for p in stream]) == PDF
    assert [m.text for m in await app.shares.list_messages(C1, ids["c1.channel"])] == [
        "Text für c1",
        "Antwort von c1",
    ]


async def test_erasure_reaches_shares_places_messages_and_blobs(app: ClientComm) -> None:
    ids = await fill(app)
    before = len(blob_ids(app))
    assert before == 5  # c1: share, message share, upload; c2: share, message share
    await app.compliance.erase("f1", "c1", actor="admin", override=True)
    await app.drain()
    for kind in (SHARE_KIND, PLACE_KIND, MESSAGE_KIND, DOWNLOAD_KIND):
        assert await count(app, kind, parent="c1") == 0, kind
    assert len(blob_ids(app)) == 2  # c2's stay
    with pytest.raises(NotFoundError):
        await app.shares.list_documents(C1, ids["c1.folder"])
    [left] = await app.shares.list_documents(C2, ids["c2.folder"])
    stream = await app.shares.download(C2, left.id)
    assert b"".join([p async for p in stream]) == PDF


async def test_every_state_change_is_audited(app: ClientComm) -> None:
    ids = await fill(app)
    await app.shares.end(SHARER, ids["c2.share"])
    await app.audit.chain("f1")
    page = await app.audit.query("f1", limit=1000)
    ops = [e.operation for e in page.entries]
    for op, n in {
        "portal.place_created": 4,
        "share.created": 4,
        "portal.message_sent": 3,
        "share.uploaded": 1,
        "share.downloaded": 1,
        "share.ended": 1,
    }.items():
        assert ops.count(op) == n, op
    assert (await app.audit.verify("f1")).ok
