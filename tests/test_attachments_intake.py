"""Attachment intake on every Store: the size limit on the bytes read, the content
matching its declared type, the host's scanner; a refusal names the field and
leaves nothing behind (no blob, no reservation, no mailing, no live key)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clientcomm import InvalidInputError
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.attachments import BLOB_INTENT_KIND, AttachmentInput, AttachmentScanner
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.crypto.local import KEY_RECORD_KIND
from clientcomm.mailing import MAILING_KIND
from clientcomm.messages import MESSAGE_KIND
from clientcomm.rules.audience import Audience
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import make_app

ADMIN = StaffActor("f1", "admin")
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00" + bytes(4000)
HTML = b"<!doctype html><html><body><script>steal()</script></body></html>"
LIMIT = 64 * 1024


class Scanner:
    """A host's scanner: records what it saw; can refuse, read nothing, or
    run a side effect while it reads."""

    def __init__(
        self,
        *,
        refuse: BaseException | None = None,
        read: bool = True,
        during: Any = None,
        after: Any = None,
        swallow: bool = False,
    ) -> None:
        self.refuse = refuse
        self.read = read
        self.during = during
        self.after = after
        self.swallow = swallow
        self.seen: list[tuple[str, str, bytes]] = []

    async def __call__(
        self, filename: str, content_type: str, chunks: AsyncIterator[bytes]
    ) -> None:
        data = b""
        try:
            if self.read:
                async for chunk in chunks:
                    if self.during is not None:
                        self.during()
                    data += chunk
        except InvalidInputError:
            if not self.swallow:
                raise
        finally:
            self.seen.append((filename, content_type, data))
        if self.after is not None:
            self.after()
        if self.refuse is not None:
            raise self.refuse


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path, max_attachment_size=LIMIT) as application:
            yield application


def use(app: ClientComm, scanner: AttachmentScanner | None) -> None:
    app.attachments.scanner = scanner


async def nothing_stored(app: ClientComm) -> None:
    """No blob, no reservation, no mailing or message, no live staging key."""
    assert isinstance(app.blobs, MemoryBlobStore)
    assert app.blobs.blob_ids("f1") == []
    async with app.store.transaction("f1") as tx:
        assert await tx.count(BLOB_INTENT_KIND) == 0
        assert await tx.count(MAILING_KIND) == 0
        assert await tx.count(MESSAGE_KIND) == 0
        keys = await tx.list(KEY_RECORD_KIND, limit=1000)
    assert [k.id for k in keys if k.id.startswith("mailing:") and k.data.get("keys")] == []


async def refused(app: ClientComm, attachments: list[AttachmentInput]) -> InvalidInputError:
    """Submitting a mailing and sending a message with ``attachments``: both refused."""
    with pytest.raises(InvalidInputError) as mailing:
        await app.mailings.submit(
            ADMIN, Audience.clients("c1", "c2"), "Anbei", attachments=attachments
        )
    with pytest.raises(InvalidInputError) as message:
        await app.messages.send(ADMIN, "c1", "Anbei", attachments=attachments)
    assert mailing.value.field == message.value.field
    await nothing_stored(app)
    return mailing.value


# -- the size limit, on the bytes read ---------------------------------------------------


async def test_a_file_that_grows_past_the_limit_while_read_is_refused(
    app: ClientComm, tmp_path: Path
) -> None:
    path = tmp_path / "wächst.pdf"
    path.write_bytes(PDF)  # small when it is looked at

    def grow() -> None:
        with path.open("ab") as fh:
            fh.write(bytes(LIMIT))

    scanner = Scanner(during=grow)
    use(app, scanner)
    pdf = AttachmentInput.from_path(path, content_type="application/pdf")
    with pytest.raises(InvalidInputError, match=f"the limit is {LIMIT} bytes") as info:
        await app.mailings.submit(ADMIN, Audience.clients("c1"), "Anbei", attachments=[pdf])
    assert info.value.field == "attachments[0]"
    assert len(scanner.seen[0][2]) <= LIMIT  # the scanner never got more than the limit
    await nothing_stored(app)


async def test_a_file_grown_after_its_size_was_taken_is_refused(
    app: ClientComm, tmp_path: Path
) -> None:
    path = tmp_path / "a.pdf"
    path.write_bytes(PDF)
    [prepared] = app.attachments.prepare([AttachmentInput.from_path(path)])
    assert prepared.info.size == len(PDF)
    path.write_bytes(PDF + bytes(LIMIT))  # grows before it is read
    with pytest.raises(InvalidInputError, match="limit") as info:
        await app.attachments.store_copies("f1", "c1", "m1", [prepared])
    assert info.value.field == "attachments[0]"
    await nothing_stored(app)


@pytest.mark.parametrize("change", ["grow", "shrink", "rewrite"])
async def test_a_file_changed_after_its_check_is_refused_and_nothing_kept(
    app: ClientComm, tmp_path: Path, change: str
) -> None:
    path = tmp_path / "a.pdf"
    path.write_bytes(PDF)

    def modify() -> None:  # after the scanner saw it, before it is sealed
        if change == "grow":
            path.write_bytes(PDF + b"appended")
        elif change == "shrink":
            path.write_bytes(PDF[:-10])
        else:
            path.write_bytes((b"%PDF-" + bytes(len(PDF)))[: len(PDF)])  # same size, other bytes

    use(app, Scanner(after=modify))
    pdf = AttachmentInput.from_path(path, content_type="application/pdf")
    with pytest.raises(InvalidInputError, match="changed while being stored") as info:
        await app.mailings.submit(ADMIN, Audience.clients("c1"), "Anbei", attachments=[pdf])
    assert info.value.field == "attachments[0]"
    await nothing_stored(app)
    path.write_bytes(PDF)
    with pytest.raises(InvalidInputError, match="changed while being stored"):
        await app.messages.send(ADMIN, "c1", "Anbei", attachments=[pdf])
    await nothing_stored(app)


async def test_the_recorded_size_is_the_size_read(app: ClientComm, tmp_path: Path) -> None:
    path = tmp_path / "Info.pdf"
    path.write_bytes(PDF)
    await app.messages.send(
        ADMIN,
        "c1",
        "Anbei",
        attachments=[AttachmentInput.from_path(path, content_type="application/pdf")],
    )
    [message] = await app.messages.list_for_client(ClientActor("f1", "c1"))
    assert [a.size for a in message.attachments] == [len(PDF)]


# -- the content matches its declared type -----------------------------------------------


@pytest.mark.parametrize(
    ("data", "content_type", "reason"),
    [
        (EXE, "application/pdf", "Windows executable"),
        (HTML, "application/pdf", "HTML"),
        (EXE, "image/png", "Windows executable"),
        (b"Name;Betrag\n\x00\x00", "text/csv", "NUL"),
    ],
)
async def test_content_that_is_not_its_declared_type_is_refused(
    app: ClientComm, tmp_path: Path, data: bytes, content_type: str, reason: str
) -> None:
    good = AttachmentInput.from_bytes("ok.pdf", PDF, "application/pdf")
    path = tmp_path / "Rechnung.pdf"
    path.write_bytes(data)
    for bad in (
        AttachmentInput.from_bytes("Rechnung.pdf", data, content_type),
        AttachmentInput.from_path(path, content_type=content_type),
    ):
        error = await refused(app, [good, bad])
        assert error.field == "attachments[1]" and reason in str(error)


async def test_octet_stream_is_accepted_as_it_is(app: ClientComm) -> None:
    blob = AttachmentInput.from_bytes("daten.bin", EXE)  # application/octet-stream
    await app.messages.send(ADMIN, "c1", "Anbei", attachments=[blob])
    [message] = await app.messages.list_for_client(ClientActor("f1", "c1"))
    assert message.attachments[0].content_type == "application/octet-stream"


@pytest.mark.parametrize(
    "name", ["..", "Rechnung\u202efdp.exe", "a\u2066b.pdf", "a\u200fb.pdf", "x\ud800.pdf", "a/b"]
)
async def test_deceptive_file_names_are_refused(app: ClientComm, name: str) -> None:
    error = await refused(app, [AttachmentInput.from_bytes(name, PDF, "application/pdf")])
    assert error.field == "attachments[0].filename"


# -- the scanner -------------------------------------------------------------------------


async def test_the_scanner_sees_every_file_before_anything_is_stored(
    app: ClientComm, tmp_path: Path
) -> None:
    path = tmp_path / "Checkliste.txt"
    path.write_bytes(b"1. Belege\n2. Fristen\n")
    stored_before_scan: list[int] = []
    scanner = Scanner(after=lambda: stored_before_scan.append(len(blobs(app))))
    use(app, scanner)
    files = [
        AttachmentInput.from_bytes("Info.pdf", PDF, "application/pdf"),
        AttachmentInput.from_path(path, content_type="text/plain"),
    ]
    await app.mailings.submit(ADMIN, Audience.clients("c1", "c2"), "Anbei", attachments=files)
    assert scanner.seen == [
        ("Info.pdf", "application/pdf", PDF),
        ("Checkliste.txt", "text/plain", path.read_bytes()),
    ]
    assert stored_before_scan == [0, 0]
    await app.drain()
    [message] = await app.messages.list_for_client(ClientActor("f1", "c2"))
    assert [a.filename for a in message.attachments] == ["Info.pdf", "Checkliste.txt"]


def blobs(app: ClientComm) -> list[str]:
    assert isinstance(app.blobs, MemoryBlobStore)
    return app.blobs.blob_ids("f1")


@pytest.mark.parametrize(
    "refusal",
    [ValueError("Eicar-Test-Signature FOUND"), ConnectionError("clamd unreachable")],
    ids=["infected", "scanner-down"],
)
async def test_a_scanner_refusal_names_the_field_and_stores_nothing(
    app: ClientComm, refusal: Exception
) -> None:
    use(app, Scanner(refuse=refusal))
    error = await refused(app, [AttachmentInput.from_bytes("eicar.pdf", PDF, "application/pdf")])
    assert error.field == "attachments[0]"
    assert "refused by the scanner" in str(error) and type(refusal).__name__ in str(error)
    assert error.__cause__ is refusal


async def test_only_the_refused_file_is_named(app: ClientComm) -> None:
    async def scan(filename: str, content_type: str, chunks: AsyncIterator[bytes]) -> None:
        if filename == "virus.pdf":
            raise ValueError("infected")

    use(app, scan)  # a plain async function is a scanner
    files = [
        AttachmentInput.from_bytes("ok.pdf", PDF, "application/pdf"),
        AttachmentInput.from_bytes("virus.pdf", PDF, "application/pdf"),
    ]
    error = await refused(app, files)
    assert error.field == "attachments[1]"


@pytest.mark.parametrize("swallow", [False, True])
async def test_checks_hold_whatever_the_scanner_does(app: ClientComm, swallow: bool) -> None:
    # a scanner that reads nothing, or swallows the refusal it is handed while
    # reading, does not let an oversized or mislabelled file through
    use(app, Scanner(read=swallow, swallow=swallow))
    error = await refused(app, [AttachmentInput.from_bytes("a.pdf", EXE, "application/pdf")])
    assert error.field == "attachments[0]" and "Windows executable" in str(error)
    big = AttachmentInput.from_bytes("big.pdf", b"%PDF-" + bytes(LIMIT), "application/pdf")
    error = await refused(app, [big])
    assert "limit" in str(error)


async def test_clientcomm_passes_the_scanner_on(tmp_path: Path) -> None:
    scanner = Scanner(refuse=ValueError("no"))
    async for store in open_backend("memory", tmp_path):
        async with make_app(store, tmp_path, scanner=scanner) as app:
            assert app.attachments.scanner is scanner
            await refused(app, [AttachmentInput.from_bytes("a.pdf", PDF, "application/pdf")])
            assert len(scanner.seen) == 2  # submit and send
