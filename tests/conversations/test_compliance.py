"""Compliance hooks of conversations over every Store backend: key rotation
re-wraps their sealed values, the client data export opens them, erasure
deletes them (records and files), and every state change is audited with a
declared operation."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clientcomm import ConversationStatus
from clientcomm.app import ClientComm
from clientcomm.attachments import AttachmentInput
from clientcomm.audit import OPERATIONS
from clientcomm.conversations import COMMENT_KIND, CONVERSATION_KIND
from clientcomm.conversations.operations import OPERATION_NAMES
from clientcomm.crypto.envelope import sealed_key_version
from clientcomm.records import REGISTRY
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.conversations.support import ADMIN, ANNA, BERND, PDF, conversation_app

KINDS = [k for k in REGISTRY if k.capability == "conversations"]


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with conversation_app(store, tmp_path) as application:
            yield application


async def stored(app: ClientComm, kind: str, client_id: str) -> list[object]:
    k = REGISTRY.kind(kind)
    assert k.client_column is not None
    filters: dict[str, Any] = {k.client_column: client_id}
    return [r async for r in app.store.iterate("f1", kind, **filters)]


async def two_conversations(app: ClientComm) -> tuple[str, str]:
    file = AttachmentInput.from_bytes("Beleg.pdf", PDF, "application/pdf")
    a = await app.conversations.create(ADMIN, "c1", "Annas Belege", "Bitte", assignee_id="boss")
    await app.conversations.comment(ANNA, a, "Anbei", attachments=[file])
    b = await app.conversations.start(BERND, "Bernds Frage", "Wann?")
    return a, b


async def test_rotation_rewraps_subjects_comments_and_files(app: ClientComm) -> None:
    a, _ = await two_conversations(app)
    await app.rotate_client_key("f1", "c1")
    await app.drain()
    for kind in (CONVERSATION_KIND, COMMENT_KIND):
        for raw in await stored(app, kind, "c1"):
            value = REGISTRY.decode(raw)  # type: ignore[arg-type]
            for place, sealed in REGISTRY.kind(kind).sealed_values(value):
                assert all(sealed_key_version(s) == 2 for s in sealed), (kind, place.path)
    # everything still opens, the file included
    [_, reply] = await app.conversations.comments(ADMIN, a)
    [info] = reply.attachments
    data = b"".join(
        [c async for c in await app.conversations.open_attachment(ANNA, reply.id, info.id)]
    )
    assert data == PDF and (await app.conversations.get(ADMIN, a)).subject == "Annas Belege"


async def test_the_export_opens_conversations_and_comments(app: ClientComm) -> None:
    a, b = await two_conversations(app)
    data = b"".join([c async for c in app.compliance.export("f1", "c1", actor="admin")])
    zf = zipfile.ZipFile(io.BytesIO(data))
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["unreadable"] == [] and manifest["not_opened"] == []
    [conv] = [json.loads(x) for x in zf.read(f"records/{CONVERSATION_KIND}.jsonl").splitlines()]
    assert (conv["id"], conv["subject"]) == (a, "Annas Belege")
    comments = [json.loads(x) for x in zf.read(f"records/{COMMENT_KIND}.jsonl").splitlines()]
    assert sorted(c["text"] for c in comments) == ["Anbei", "Bitte"]
    assert [c["attachments"][0]["filename"] for c in comments if c["attachments"]] == ["Beleg.pdf"]
    assert "Bernds Frage" not in data.decode("utf-8", "replace") and b not in str(comments)


async def test_erasure_deletes_every_conversation_record_and_file(app: ClientComm) -> None:
    a, b = await two_conversations(app)
    await app.conversations.comments(ADMIN, a)  # a read mark
    for k in KINDS:
        if k.name != "conversation.escalation":  # no escalation configured
            assert await stored(app, k.name, "c1"), k.name
    blob_ids = [
        a_["blob_id"]
        for raw in await stored(app, COMMENT_KIND, "c1")
        for a_ in raw.data.get("attachments", [])  # type: ignore[attr-defined]
    ]
    assert len(blob_ids) == 1 and await app.blobs.exists("f1", blob_ids[0])
    await app.compliance.erase("f1", "c1", override=True)
    await app.drain()
    for k in KINDS:
        assert await stored(app, k.name, "c1") == [], k.name
    assert not await app.blobs.exists("f1", blob_ids[0])
    assert [x.id for x in await app.conversations.list_for_staff(ADMIN)] == [b]


def test_every_operation_is_declared_and_documented() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "compliance.md").read_text()
    for name in OPERATION_NAMES:
        assert name in {op.name for op in OPERATIONS}
        assert f"| `{name}` |" in docs


async def test_every_state_change_is_audited(app: ClientComm) -> None:
    a, _ = await two_conversations(app)
    await app.conversations.set_status(ADMIN, a, ConversationStatus.ANSWERED)
    await app.conversations.assign(ADMIN, a, "admin")
    await app.conversations.notify_admins(ADMIN, [a])
    await app.audit.chain("f1")
    page = await app.audit.query("f1", client="c1")
    ops = [e.operation for e in page.entries if e.operation.startswith("conversation.")]
    assert ops == [
        "conversation.created",
        "conversation.commented",
        "conversation.status_changed",
        "conversation.assigned",
        "conversation.admins_notified",
    ]
