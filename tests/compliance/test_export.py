"""The client data export (issue 11 part 5) on every Store backend: the zip of
a client holds exactly that client's data, decrypted, and is streamed with
bounded memory."""

from __future__ import annotations

import gc
import hashlib
import io
import json
import os
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import pytest

from clientcomm.app import ClientComm
from clientcomm.attachments import AttachmentInput
from clientcomm.compliance import export
from clientcomm.compliance.export import EXPORT_FORMAT, opened_kinds
from clientcomm.errors import ConfigurationError, IntegrityError, InvalidInputError
from clientcomm.records import REGISTRY
from tests.compliance.support import ADMIN, FILES, dump, fill, owned_by, world
from tests.mailing_support import World

__all__ = ["world"]  # the fixture


async def export_bytes(app: ClientComm, client_id: str) -> bytes:
    return b"".join(
        [chunk async for chunk in app.compliance.export("f1", client_id, actor="admin")]
    )


async def test_the_zip_holds_exactly_the_clients_data(world: World) -> None:
    app = world.app()
    await fill(app)
    data = await export_bytes(app, "c1")
    zf = zipfile.ZipFile(io.BytesIO(data))
    assert zf.testzip() is None
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["format"] == EXPORT_FORMAT
    assert (manifest["firm_id"], manifest["client_id"]) == ("f1", "c1")
    assert manifest["unreadable"] == [] and manifest["not_opened"] == []
    names = zf.namelist()
    assert names[-1] == "manifest.json"
    # every file is listed with its hash
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(names) - {"manifest.json"}
    for path, f in listed.items():
        assert hashlib.sha256(zf.read(path)).hexdigest() == f["sha256"], path

    messages = [json.loads(zf.read(n)) for n in names if n.startswith("messages/")]
    assert sorted(m["text"] for m in messages) == sorted(
        [
            "Hallo Anna",
            "Annas Geheimnis",
            "Danke von Anna",
            "Rundschreiben per_copy",
            "Rundschreiben shared",
        ]
    )
    secret = next(m for m in messages if m["text"] == "Annas Geheimnis")
    assert secret["subject"] == "Vertraulich" and secret["author"] == "staff"
    reply = next(m for m in messages if m["text"] == "Danke von Anna")
    assert reply["author"] == "client"
    assert sum(m["mailing_copy"] for m in messages) == 2
    attached = [a for m in messages for a in m["attachments"]]
    assert sorted(a["filename"] for a in attached) == ["a.txt", "a.txt", "anna.txt", "b.pdf"]
    for a in attached:
        assert zf.read(a["path"]) == FILES[a["filename"]]
    # every other kind declared as c1's data, and only c1's records of it
    rows = await dump(world.store, "f1")
    mine = owned_by(rows, "c1")
    for kind in REGISTRY.client_kinds():
        if kind.name == "message":
            continue
        lines = zf.read(f"records/{kind.name}.jsonl").decode().splitlines()
        exported = [json.loads(line) for line in lines]
        assert {e["id"] for e in exported} == {i for (k, i) in mine if k == kind.name}, kind.name
    jobs = zf.read("records/notify.job.jsonl").decode()
    assert "anna@example.com" in jobs and "Bernd" not in jobs
    # the audit records: exactly the client's
    audit = [json.loads(line) for line in zf.read("audit.jsonl").decode().splitlines()]
    assert audit and all(e["client"] == "c1" or "c1" in e["clients"] for e in audit)
    await app.audit.chain("f1")
    expected = (await app.audit.query("f1", client="c1", limit=1000)).entries
    assert [e["id"] for e in audit] == [e.id for e in expected]  # the export's own one too
    # nothing of c2 or of the other firm is in the zip
    for other in (b"Hallo Bernd", b"Fremde Kanzlei", b"Bernd Bau"):
        for n in names:
            assert other not in zf.read(n), (other, n)
    # the export itself is audited
    ops = [e.operation for e in expected]
    assert "client.exported" in ops

    # c2's export has c2's messages only
    other_zip = zipfile.ZipFile(io.BytesIO(await export_bytes(app, "c2")))
    texts = sorted(
        json.loads(other_zip.read(n))["text"]
        for n in other_zip.namelist()
        if n.startswith("messages/")
    )
    assert texts == ["Hallo Bernd", "Rundschreiben per_copy", "Rundschreiben shared"]


def test_every_sealed_client_kind_is_opened_by_the_export() -> None:
    """A capability that declares a client kind holding sealed values must
    give the export its opened form (register_exporter)."""
    sealed = {k.name for k in REGISTRY.client_kinds() if k.sealed}
    assert sealed and sealed <= opened_kinds()


async def test_a_registered_exporter_shows_its_kind(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = world.app()
    await fill(app)
    monkeypatch.setattr(export, "_EXPORTERS", {})

    async def cursor(app_: ClientComm, firm_id: str, value: Any) -> dict[str, Any]:
        if value.id.endswith("|client"):
            raise IntegrityError("does not open")
        return {"reader": value.id.partition("|")[2], "opened": True}

    export.register_exporter("chat.read", cursor)
    with pytest.raises(ConfigurationError):
        export.register_exporter("chat.read", cursor)
    with pytest.raises(ConfigurationError):
        export.register_exporter("message", cursor)
    zf = zipfile.ZipFile(io.BytesIO(await export_bytes(app, "c1")))
    lines = [json.loads(x) for x in zf.read("records/chat.read.jsonl").decode().splitlines()]
    assert lines == [{"kind": "chat.read", "reader": "staff:admin", "opened": True}]
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["unreadable"] == [{"kind": "chat.read", "id": "c1|client"}]
    assert manifest["not_opened"] == []


async def test_an_erased_client_exports_its_audit_records_only(world: World) -> None:
    app = world.app()
    await fill(app)
    await app.compliance.erase("f1", "c1")
    await app.drain()
    zf = zipfile.ZipFile(io.BytesIO(await export_bytes(app, "c1")))
    assert not [n for n in zf.namelist() if n.startswith(("messages/", "attachments/"))]
    assert all(not zf.read(n) for n in zf.namelist() if n.startswith("records/"))
    ops = {json.loads(line)["operation"] for line in zf.read("audit.jsonl").decode().splitlines()}
    assert {"client.erased", "client.forgotten", "message.sent"} <= ops


async def test_a_tampered_message_fails_alone(world: World) -> None:
    app = world.app()
    await fill(app)
    async with world.store.transaction("f1") as tx:
        [reply] = [r for r in await tx.list("message", parent="c1") if r.data["author"] == "client"]
        body = bytearray(reply.body or b"")
        body[-1] ^= 1
        await tx.update([reply.evolve(body=bytes(body))])
    zf = zipfile.ZipFile(io.BytesIO(await export_bytes(app, "c1")))
    manifest = json.loads(zf.read("manifest.json"))
    assert manifest["unreadable"] == [{"kind": "message", "id": reply.id}]
    assert manifest["messages"] == 4


async def test_export_streams_with_bounded_memory(world: World, tmp_path: Path) -> None:
    """The peak is bounded by the stream's frame size (1 MiB), not the file's:
    a 24 MiB attachment costs no more than a 4 MiB one."""
    app = world.app()
    digests = {}
    for client_id, size in (("c1", 4), ("c2", 24)):
        big = os.urandom(size * 1024 * 1024)  # incompressible: the zip is as large
        source = tmp_path / f"{client_id}.bin"
        source.write_bytes(big)
        digests[client_id] = hashlib.sha256(big).hexdigest()
        del big
        await app.messages.send(
            ADMIN, client_id, "Großer Anhang", attachments=[AttachmentInput(source.name, source)]
        )
    peaks = {}
    for client_id in digests:
        gc.collect()
        out = tmp_path / f"export-{client_id}.zip"
        tracemalloc.start()
        try:
            with out.open("wb") as fh:
                async for chunk in app.compliance.export("f1", client_id):
                    assert len(chunk) < 2 * 1024 * 1024
                    fh.write(chunk)
            _, peaks[client_id] = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        with zipfile.ZipFile(out) as zf:
            [path] = [n for n in zf.namelist() if n.startswith("attachments/")]
            h = hashlib.sha256()
            with zf.open(path) as fh:
                while piece := fh.read(1 << 20):
                    h.update(piece)
            assert h.hexdigest() == digests[client_id]
    assert peaks["c2"] < 8 * 1024 * 1024, peaks  # a third of the file, at most
    assert peaks["c2"] < peaks["c1"] * 1.25 + 512 * 1024, peaks  # does not grow with it


async def test_bad_ids(world: World) -> None:
    app = world.app()
    for bad in ("", None, "x" * 500):
        with pytest.raises(InvalidInputError):
            await export_bytes(app, bad)  # type: ignore[arg-type]
