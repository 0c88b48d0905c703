"""The client data export (GDPR Art. 15 and 20): everything stored for one
client, decrypted, as a zip, streamed with bounded memory.

The zip holds

* ``messages/<n>-<id>.json``: each message of the client's chat, opened: time,
  author (``staff`` / ``client`` and the author's id), subject, text, whether
  it is a mailing copy, and its attachments' descriptors with their path in
  the zip;
* ``attachments/<message id>/<attachment id>-<file name>``: each attachment's
  bytes, streamed from the BlobStore and opened frame by frame;
* ``records/<kind>.jsonl``: the records of every other kind the record
  registry declares as client data (``Kind.client``: read cursors, e-mail
  notices with the address they went to, in-app notices, a host-set retention
  date, and whatever later capabilities declare), one JSON object per line;
* ``audit.jsonl``: the client's audit records with their verification data
  (as :meth:`~clientcomm.audit.AuditTrail.export_jsonl`);
* ``manifest.json`` (last): firm, client, time, the files with their size and
  SHA-256, what could not be opened (ids only), and the client kinds whose
  sealed values no exporter opens (``not_opened``; see :func:`register_exporter`).

Memory stays bounded: the zip is written to a sink that hands its bytes out as
they come (zip entries with data descriptors, ZIP64 for large files), messages
are read a page at a time, attachments a frame at a time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from clientcomm.audit import append as audit
from clientcomm.crypto.envelope import OpenRequest
from clientcomm.crypto.keys import validate_key_owner
from clientcomm.errors import ClientCommError, ConfigurationError, IntegrityError
from clientcomm.messages.records import MessageRecord
from clientcomm.messages.rules import authenticated, text_context
from clientcomm.records import Records
from clientcomm.records.registry import Kind, converter

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = ["EXPORT_FORMAT", "Exporter", "export_client", "opened_kinds", "register_exporter"]

log = logging.getLogger("clientcomm.compliance")

EXPORT_FORMAT = "clientcomm.client-export.v1"
_PAGE = 100
_UNSAFE = re.compile(r"[^\w.\- ]+")


Exporter = Callable[["ClientComm", str, Any], Awaitable[dict[str, Any]]]
"""``async (app, firm_id, value) -> JSON object``: a record of a client kind as
the export shows it, its sealed values opened (raise a ClientCommError when it
does not open: the record is then named in ``unreadable``)."""

_EXPORTERS: dict[str, Exporter] = {}


def register_exporter(kind: str, exporter: Exporter) -> None:
    """Let the export open the records of a client kind whose values are
    sealed (a capability calls this next to its kind's declaration; messages
    are opened by the export itself). A client kind without an exporter is
    exported as stored (sealed values as base64) and listed in the manifest's
    ``not_opened``.

    Raises:
        ConfigurationError: the kind has an exporter already.
    """
    if kind in _EXPORTERS or kind == "message":
        raise ConfigurationError(f"kind {kind!r} has an exporter already")
    _EXPORTERS[kind] = exporter


def opened_kinds() -> set[str]:
    """The client kinds whose sealed values the export opens."""
    return {"message", *_EXPORTERS}


class _Sink:
    """An unseekable file for :class:`zipfile.ZipFile`: collects what it is
    given until :meth:`take` hands it out."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, b: bytes, /) -> int:
        self._parts.append(bytes(b))
        return len(b)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def _safe_name(name: str) -> str:
    cleaned = _UNSAFE.sub("_", name).strip(" .") or "file"
    return cleaned[:120]


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True).encode("utf-8")


def _plain_record(kind: Kind[Any], value: Any) -> dict[str, Any]:
    data = converter.unstructure(value)
    data.pop("meta", None)
    return {"kind": kind.name, "id": kind.id_of(value), **data}


async def export_client(
    app: ClientComm, firm_id: str, client_id: str, *, actor: str = "system"
) -> AsyncIterator[bytes]:
    """Stream the export zip of one client (see module docs). Audited as
    ``client.exported`` before the first byte is produced. A message or an
    attachment that does not open (tampered with, damaged, a forgotten key)
    fails alone: it is named in the manifest's ``unreadable`` and left out
    (an attachment that fails part-way is kept as far as it opened and marked
    ``incomplete``).

    Raises:
        InvalidInputError: a bad id.
        StorageError: a backend failed.
    """
    validate_key_owner("firm_id", firm_id)
    validate_key_owner("client_id", client_id)
    records = Records(app.store)
    message_kind = records.registry.of(MessageRecord)
    async with records.transaction(firm_id) as tx:
        total = await tx.count(MessageRecord, parent=client_id)
        await audit(
            tx,
            subject=f"client:{client_id}",
            operation="client.exported",
            actor=actor,
            at=app.clock.now(),
            client=client_id,
            messages=total,
        )
    sink = _Sink()
    files: list[dict[str, Any]] = []
    unreadable: list[dict[str, str]] = []
    not_opened: list[str] = []
    zf = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED)

    def add(path: str, content: bytes) -> None:
        zf.writestr(path, content)
        files.append({"path": path, "size": len(content), "sha256": _sha(content)})

    # -- messages and their attachments, a page at a time ---------------------------
    number = 0
    after = 0
    while True:
        async with records.transaction(firm_id) as tx:
            raw = await tx.raw.list(
                message_kind.name, parent=client_id, after_seq=after, limit=_PAGE
            )
        if not raw:
            break
        after = raw[-1].seq
        decoded: list[MessageRecord] = []
        for record in raw:
            try:
                decoded.append(message_kind.decode(record))
            except IntegrityError:
                unreadable.append({"kind": "message", "id": record.id})
        plain = await app.sealer.open_many(
            [OpenRequest(text_context(firm_id, m.client_id, m.id), m.sealed_text) for m in decoded],
            return_exceptions=True,
        )
        for m, p in zip(decoded, plain, strict=True):
            try:
                if isinstance(p, BaseException):
                    raise p
                opened, subject, text = authenticated(m, p)
            except IntegrityError:
                log.error("message %s of client %s does not open; not exported", m.id, client_id)
                unreadable.append({"kind": "message", "id": m.id})
                continue
            number += 1
            described = []
            for a in opened.attachments:
                path = f"attachments/{m.id}/{a.info.id}-{_safe_name(a.info.filename)}"
                entry = _Entry(app.attachments.open(firm_id, client_id, a), zf, sink, path)
                async for chunk in entry:
                    yield chunk
                info = entry.result
                files.append(info)
                if info.get("incomplete"):
                    unreadable.append({"kind": "attachment", "id": a.info.id, "message": m.id})
                described.append({**a.info.to_dict(), "path": path})
            add(
                f"messages/{number:06d}-{m.id}.json",
                _json(
                    {
                        "id": m.id,
                        "sent_at": opened.sent_at.isoformat(),
                        "author": opened.author.value,
                        "author_id": opened.author_id,
                        "subject": subject,
                        "text": text,
                        "mailing_copy": opened.mailing_id is not None,
                        "attachments": described,
                    }
                ),
            )
            if chunk := sink.take():
                yield chunk

    # -- every other kind declared as client data -----------------------------------
    for kind in records.registry.client_kinds():
        if kind.cls is MessageRecord:
            continue
        path = f"records/{kind.name}.jsonl"
        count = 0
        digest = hashlib.sha256()
        size = 0
        filters: dict[str, Any] = {}
        if kind.client_column is not None:
            filters[kind.client_column] = client_id
        with zf.open(path, "w", force_zip64=True) as out:
            async for record in app.store.iterate(firm_id, kind.name, batch=_PAGE, **filters):
                try:
                    value = kind.decode(record)
                except IntegrityError:
                    if kind.client_column is not None:
                        unreadable.append({"kind": kind.name, "id": record.id})
                    continue
                if kind.client is None or kind.client(value) != client_id:
                    continue
                exporter = _EXPORTERS.get(kind.name)
                if exporter is None:
                    shown = _plain_record(kind, value)
                else:
                    try:
                        shown = {"kind": kind.name, **await exporter(app, firm_id, value)}
                    except ClientCommError:
                        unreadable.append({"kind": kind.name, "id": record.id})
                        continue
                line = json.dumps(shown, ensure_ascii=False, sort_keys=True)
                data = (line + "\n").encode("utf-8")
                out.write(data)
                digest.update(data)
                size += len(data)
                count += 1
                if chunk := sink.take():
                    yield chunk
        files.append({"path": path, "size": size, "sha256": digest.hexdigest(), "records": count})
        if kind.sealed and kind.name not in _EXPORTERS and count:
            not_opened.append(kind.name)

    # -- the client's audit records ------------------------------------------------------
    await app.audit.chain(firm_id)
    digest = hashlib.sha256()
    size = count = 0
    with zf.open("audit.jsonl", "w", force_zip64=True) as out:
        async for line in app.audit.export_jsonl(firm_id, client=client_id):
            data = line.encode("utf-8")
            out.write(data)
            digest.update(data)
            size += len(data)
            count += 1
            if chunk := sink.take():
                yield chunk
    files.append({"path": "audit.jsonl", "size": size, "sha256": digest.hexdigest()})

    manifest = {
        "format": EXPORT_FORMAT,
        "firm_id": firm_id,
        "client_id": client_id,
        "exported_at": app.clock.now().isoformat(),
        "messages": number,
        "audit_records": count,
        "files": files,
        "unreadable": unreadable,
        "not_opened": not_opened,
    }
    zf.writestr("manifest.json", _json(manifest))
    zf.close()
    if chunk := sink.take():
        yield chunk


def _sha(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class _Entry:
    """One attachment streamed into the zip: iterate it for the zip's bytes;
    ``result`` then describes the file."""

    def __init__(self, source: AsyncIterator[bytes], zf: zipfile.ZipFile, sink: _Sink, path: str):
        self._source = source
        self._zf = zf
        self._sink = sink
        self._path = path
        self.result: dict[str, Any] = {}

    async def __aiter__(self) -> AsyncIterator[bytes]:
        digest = hashlib.sha256()
        size = 0
        incomplete = False
        with self._zf.open(self._path, "w", force_zip64=True) as out:
            try:
                async for piece in self._source:
                    out.write(piece)
                    digest.update(piece)
                    size += len(piece)
                    if chunk := self._sink.take():
                        yield chunk
            except ClientCommError as exc:  # tampered, missing blob, forgotten key
                log.error("attachment %s does not open (%s); incomplete", self._path, type(exc))
                incomplete = True
        self.result = {"path": self._path, "size": size, "sha256": digest.hexdigest()}
        if incomplete:
            self.result["incomplete"] = True
        if chunk := self._sink.take():
            yield chunk
