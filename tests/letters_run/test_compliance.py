"""Key rotation, the client data export and erasure reach a run's documents
(declared sealed fields and client column); on every Store backend."""

from __future__ import annotations

import base64
import io
import json
import zipfile

from clientcomm.app import ClientComm
from clientcomm.letters.run_records import DocRecord
from clientcomm.records import Records
from tests.letters_run.support import CLERK
from tests.letters_run.test_runs import new_run, texts


async def _doc_records(app: ClientComm, unit: str) -> list[DocRecord]:
    async with Records(app.store).transaction("f1") as tx:
        return [d for d in await tx.list(DocRecord) if d.unit_id == unit]


async def test_export_opens_the_units_documents(app: ClientComm) -> None:
    run_id = await new_run(app)
    docs = {d.unit_id: d for d in await app.letter_runs.documents(CLERK, run_id)}
    data = b"".join([c async for c in app.compliance.export("f1", "u1", actor="admin")])
    zf = zipfile.ZipFile(io.BytesIO(data))
    manifest = json.loads(zf.read("manifest.json"))
    assert "letters.doc" not in manifest["not_opened"] and manifest["unreadable"] == []
    [line] = zf.read("records/letters.doc.jsonl").decode().splitlines()
    shown = json.loads(line)
    assert (shown["id"], shown["unit_id"], shown["doc_type"]) == (docs["u1"].id, "u1", "Abrechnung")
    pdf = base64.b64decode(shown["content_base64"])
    assert texts(pdf) == ["Einheit 1 Seite 1", "Einheit 1 Seite 2"]
    # another unit's document is not in u1's export
    assert docs["u2"].id not in zf.read("records/letters.doc.jsonl").decode()


async def test_key_rotation_rewraps_the_documents(app: ClientComm) -> None:
    run_id = await new_run(app)
    [before] = await _doc_records(app, "u1")
    await app.rotate_client_key("f1", "u1", actor="admin")
    for _ in range(40):
        await app.run_step("keys.rewrap")
    [after] = await _doc_records(app, "u1")
    assert after.sealed_info != before.sealed_info
    assert after.stored[0].stream_key != before.stored[0].stream_key
    doc = next(d for d in await app.letter_runs.documents(CLERK, run_id) if d.unit_id == "u1")
    assert texts(await app.letter_runs.download_document(CLERK, run_id, doc.id))


async def test_erasure_removes_the_units_documents_only(app: ClientComm) -> None:
    run_id = await new_run(app)
    await app.compliance.erase("f1", "u1", actor="admin", override=True)
    for _ in range(20):
        await app.run_step("clients.erase")
    assert await _doc_records(app, "u1") == []
    left = {d.unit_id for d in await app.letter_runs.documents(CLERK, run_id)}
    assert left == {"u2", "u3", "u4", None}
