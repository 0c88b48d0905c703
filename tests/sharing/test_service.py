"""Portal sharing (seed 001, issue 12) against every Store backend."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from clientcomm import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.attachments import BLOB_INTENT_KIND
from clientcomm.mail.memory import MemoryTransport
from clientcomm.notifications.inapp import list_inapp
from clientcomm.records import Records
from clientcomm.sharing import (
    DOWNLOAD_KIND,
    MESSAGE_KIND,
    PLACE_KIND,
    SHARE_KIND,
    PortalDocument,
    ShareOrigin,
)
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.sharing.support import (
    ASSIST,
    PDF,
    SHARER,
    VIEWER,
    blob_ids,
    clock_of,
    count,
    sharing_app,
)

C1 = ClientActor("f1", "c1", "k1")
C2 = ClientActor("f1", "c2", "k2")
C4 = ClientActor("f1", "c4", "k4")


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with sharing_app(store, tmp_path) as application:
            yield application


def doc(name: str = "Bescheid.pdf", data: bytes = PDF, document_id: str = "d1") -> PortalDocument:
    return PortalDocument(name, data, "application/pdf", document_id)


async def read(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([piece async for piece in stream])


def mails(app: ClientComm) -> MemoryTransport:
    assert isinstance(app.transport, MemoryTransport)
    return app.transport


async def operations(app: ClientComm, client: str) -> list[str]:
    await app.audit.chain("f1")
    page = await app.audit.query("f1", client=client, limit=1000)
    return [e.operation for e in page.entries]


async def nothing_written(app: ClientComm) -> None:
    for kind in (SHARE_KIND, MESSAGE_KIND, BLOB_INTENT_KIND, DOWNLOAD_KIND):
        assert await count(app, kind) == 0, kind
    assert blob_ids(app) == []


async def folder_of(app: ClientComm, case_id: str = "akte3", client_id: str | None = None) -> str:
    folder = await app.shares.create_folder(SHARER, case_id, "Bescheide", client_id=client_id)
    return folder.id


# -- 1. who may share ---------------------------------------------------------------------
@pytest.mark.parametrize("staff_id", ["sharer", "assist"])
async def test_handler_and_assistant_with_portal_permission_may_share(
    app: ClientComm, staff_id: str
) -> None:
    actor = StaffActor("f1", staff_id)
    folder = await app.shares.create_folder(actor, "akte1", "Ordner", client_id="c1")
    receipt = await app.shares.share(actor, "akte1", [doc()], folder_id=folder.id, client_id="c1")
    assert receipt.client_id == "c1" and len(receipt.share_ids) == 1
    [shown] = await app.shares.list_documents(C1, folder.id)
    assert shown.filename == "Bescheid.pdf" and shown.shared_by == staff_id


@pytest.mark.parametrize(
    ("staff_id", "why"),
    [
        ("noperm", "may not do share.create"),  # handler of akte2, no portal permission
        ("restricted", "may not do share.create"),  # no portal permission
        ("gone", "inactive staff member"),
        ("nobody", "unknown staff member"),
    ],
)
async def test_actor_refusals_come_first_and_say_why(
    app: ClientComm, staff_id: str, why: str
) -> None:
    folder = await app.shares.create_folder(SHARER, "akte2", "Ordner")
    for case_id in ("akte2", "no-such-case"):  # the same answer for a missing file
        with pytest.raises(PermissionDeniedError, match=why):
            await app.shares.share(
                StaffActor("f1", staff_id), case_id, [doc()], folder_id=folder.id
            )
    assert await count(app, SHARE_KIND) == 0 and blob_ids(app) == []


async def test_a_staff_member_who_reaches_the_file_but_is_no_handler_is_told_why(
    app: ClientComm,
) -> None:
    folder = await folder_of(app, "akte1", "c1")
    for actor in (VIEWER, StaffActor("f1", "admin")):  # every role: handler or assistant
        with pytest.raises(PermissionDeniedError, match="neither the handler nor an assistant"):
            await app.shares.share(actor, "akte1", [doc()], folder_id=folder, client_id="c1")
        with pytest.raises(PermissionDeniedError, match="neither the handler"):
            await app.shares.create_folder(actor, "akte1", "X", client_id="c1")
    assert await count(app, SHARE_KIND) == 0 and blob_ids(app) == []
    # but she may look: the folder list of the file she reaches
    assert [f.id for f in await app.shares.list_folders(VIEWER, "akte1")] == [folder]


async def test_a_file_out_of_reach_answers_as_a_missing_one(app: ClientComm) -> None:
    folder = await folder_of(app)
    outsider = StaffActor("f1", "outsider")  # reaches c4, not c3 of akte3
    for case_id in ("akte3", "missing"):
        with pytest.raises(NotFoundError) as err:
            await app.shares.share(outsider, case_id, [doc()], folder_id=folder)
        assert (err.value.context["kind"], err.value.context["id"]) == ("case_file", case_id)
    with pytest.raises(NotFoundError):
        await app.shares.share(StaffActor("f2", "admin2"), "akte3", [doc()], folder_id=folder)
    with pytest.raises(PermissionDeniedError):  # a client is no sharer
        await app.shares.share(C4, "akte3", [doc()], folder_id=folder)  # type: ignore[arg-type]
    assert await count(app, SHARE_KIND) == 0 and blob_ids(app) == []


# -- 2. which client ---------------------------------------------------------------------
async def test_the_client_is_required_when_several_have_portal_access(app: ClientComm) -> None:
    with pytest.raises(InvalidInputError) as err:
        await app.shares.create_folder(SHARER, "akte1", "Ordner")
    assert err.value.field == "client_id" and "2 clients" in str(err.value)
    f2 = await app.shares.create_folder(SHARER, "akte1", "Ordner B", client_id="c2")
    with pytest.raises(InvalidInputError) as err:
        await app.shares.share(SHARER, "akte1", [doc()], folder_id=f2.id)
    assert err.value.field == "client_id"
    receipt = await app.shares.share(SHARER, "akte1", [doc()], folder_id=f2.id, client_id="c2")
    assert receipt.client_id == "c2"
    assert await app.shares.list_documents(C1, (await folder_of(app, "akte1", "c1"))) == []


async def test_the_only_client_with_portal_access_is_chosen_and_others_refused(
    app: ClientComm,
) -> None:
    folder = await app.shares.create_folder(SHARER, "akte3", "Bescheide")
    assert folder.client_id == "c4"  # c3 has no registered contact
    with pytest.raises(InvalidInputError, match="no portal access") as err:
        await app.shares.share(SHARER, "akte3", [doc()], folder_id=folder.id, client_id="c3")
    assert err.value.field == "client_id"
    with pytest.raises(InvalidInputError, match="not a client of the case file"):
        await app.shares.share(SHARER, "akte3", [doc()], folder_id=folder.id, client_id="c2")
    with pytest.raises(InvalidInputError, match="no client of the case file has portal access"):
        await app.shares.create_folder(SHARER, "akte-c6", "X")
    await nothing_written(app)


# -- 2./5./6. documents without a message ----------------------------------------------------
async def test_documents_without_a_message_appear_at_once_and_the_notice_follows(
    app: ClientComm,
) -> None:
    folder = await folder_of(app)
    big = b"%PDF-1.7\n" + bytes(range(256)) * 9000  # several stream frames
    receipt = await app.shares.share(
        SHARER,
        "akte3",
        [doc("Bescheid 2025.pdf", big, "host-17"), doc("Anlage.pdf", PDF, "host-18")],
        folder_id=folder,
    )
    shown = await app.shares.list_documents(C4, folder)
    assert [d.filename for d in shown] == ["Bescheid 2025.pdf", "Anlage.pdf"]
    assert all(d.document_id is None and d.first_downloaded_at is None for d in shown)
    assert await read(await app.shares.download(C4, receipt.share_ids[0])) == big
    assert not mails(app).sent  # the notice is background work
    await app.drain()
    [mail] = mails(app).messages()
    assert mail["To"].addresses[0].addr_spec == "dora@example.com"
    body = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "2 neue Dokumente" in body and "https://portal.example/" in body
    assert "Bescheid" not in body and "Anlage" not in body and "pdf" not in mail.as_string()
    assert await count(app, BLOB_INTENT_KIND) == 0


async def test_streams_and_file_objects_are_accepted(app: ClientComm) -> None:
    folder = await folder_of(app)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(PDF), 1000):
            yield PDF[i : i + 1000]

    receipt = await app.shares.share(
        SHARER,
        "akte3",
        [
            PortalDocument("a.pdf", chunks(), "application/pdf", "h1"),
            PortalDocument("b.pdf", io.BytesIO(PDF), "application/pdf", "h2"),
            PortalDocument("c.txt", [b"Hallo ", b"Welt"], "text/plain", "h3"),
        ],
        folder_id=folder,
    )
    got = [await read(await app.shares.download(C4, s)) for s in receipt.share_ids]
    assert got == [PDF, PDF, b"Hallo Welt"]
    assert [d.size for d in await app.shares.list_documents(SHARER, folder)] == [
        len(PDF),
        len(PDF),
        10,
    ]


async def test_folders_and_channels_are_per_client_and_case_file(app: ClientComm) -> None:
    f1 = await app.shares.create_folder(SHARER, "akte1", "Bescheide", client_id="c1")
    f2 = await app.shares.create_folder(SHARER, "akte1", "Bescheide", client_id="c2")
    ch = await app.shares.create_channel(SHARER, "akte1", "Allgemein", client_id="c1")
    await app.shares.create_folder(SHARER, "akte2", "Miete")
    assert [f.id for f in await app.shares.list_folders(SHARER, "akte1")] == [f1.id, f2.id]
    assert [f.id for f in await app.shares.list_folders(SHARER, "akte1", client_id="c2")] == [f2.id]
    assert [f.id for f in await app.shares.list_folders(C1, "akte1")] == [f1.id]
    assert [c.id for c in await app.shares.list_channels(C1, "akte1")] == [ch.id]
    assert await app.shares.list_channels(C2, "akte1") == []
    with pytest.raises(NotFoundError):
        await app.shares.list_folders(C4, "akte1")  # not a client of the file
    with pytest.raises(InvalidInputError):
        await app.shares.create_folder(SHARER, "akte1", "a\nb", client_id="c1")
    with pytest.raises(InvalidInputError):
        await app.shares.create_folder(SHARER, "akte1", "  ", client_id="c1")


async def test_visibility_answers_a_list_of_host_ids_in_one_call(app: ClientComm) -> None:
    f1 = await folder_of(app, "akte1", "c1")
    f2 = await folder_of(app, "akte1", "c2")
    ch = await app.shares.create_channel(SHARER, "akte1", "Post", client_id="c2")
    t0 = clock_of(app).now()
    a = await app.shares.share(
        SHARER, "akte1", [doc(document_id="h1")], folder_id=f1, client_id="c1"
    )
    b = await app.shares.share(
        ASSIST, "akte1", [doc(document_id="h1")], folder_id=f2, client_id="c2"
    )
    c = await app.shares.share_with_message(
        SHARER, "akte1", [doc(document_id="h2")], "Anbei", channel_id=ch.id, client_id="c2"
    )
    seen = await app.shares.visibility(VIEWER, "akte1", ["h1", "h2", "h3"])
    assert set(seen) == {"h1", "h2", "h3"} and seen["h3"] == ()
    h1 = {(m.client_id, m.folder_id, m.shared_by, m.share_id) for m in seen["h1"]}
    assert h1 == {("c1", f1, "sharer", a.share_ids[0]), ("c2", f2, "assist", b.share_ids[0])}
    [m2] = seen["h2"]
    assert (m2.channel_id, m2.folder_id, m2.message_id) == (ch.id, None, c.message_id)
    assert all(m.shared_at == t0 for ms in seen.values() for m in ms)
    # another case file's shares of the same host id are not this file's
    other = await folder_of(app, "akte2")
    await app.shares.share(SHARER, "akte2", [doc(document_id="h1")], folder_id=other)
    assert len((await app.shares.visibility(SHARER, "akte1", ["h1"]))["h1"]) == 2
    with pytest.raises(NotFoundError):
        await app.shares.visibility(StaffActor("f1", "outsider"), "akte1", ["h1"])


async def test_a_client_sees_only_its_own_by_any_id(app: ClientComm) -> None:
    f1 = await folder_of(app, "akte1", "c1")
    f2 = await folder_of(app, "akte1", "c2")
    [s1] = (
        await app.shares.share(SHARER, "akte1", [doc()], folder_id=f1, client_id="c1")
    ).share_ids
    with pytest.raises(NotFoundError):
        await app.shares.list_documents(C2, f1)
    with pytest.raises(NotFoundError):
        await app.shares.download(C2, s1)
    with pytest.raises(NotFoundError):
        await app.shares.get_document(C2, s1)
    with pytest.raises(NotFoundError):  # a folder id is no channel id
        await app.shares.list_messages(C1, f1)
    with pytest.raises(NotFoundError):  # the other client's folder is not the target's
        await app.shares.share(SHARER, "akte1", [doc()], folder_id=f2, client_id="c1")
    await app.shares.list_documents(C2, f2)


# -- 3./4. messages ----------------------------------------------------------------------------
async def test_documents_with_a_message_and_replies(app: ClientComm) -> None:
    channel = await app.shares.create_channel(SHARER, "akte3", "Steuer 2025")
    receipt = await app.shares.share_with_message(
        SHARER, "akte3", [doc()], "Ihr Bescheid, bitte prüfen.", channel_id=channel.id
    )
    [message] = await app.shares.list_messages(C4, channel.id)
    assert message.text == "Ihr Bescheid, bitte prüfen." and message.share_ids == receipt.share_ids
    [shared] = await app.shares.list_channel_documents(C4, channel.id)
    assert shared.message_id == receipt.message_id and shared.channel_id == channel.id
    assert await app.shares.unread_count(SHARER, channel.id) == 0
    reply = await app.shares.post(C4, channel.id, "Danke, erledigt.", reply_to=message.id)
    assert await app.shares.unread_count(SHARER, channel.id) == 1
    with pytest.raises(NotFoundError):  # she does not reach c4
        await app.shares.unread_count(VIEWER, channel.id)
    msgs = await app.shares.list_messages(SHARER, channel.id)
    assert [m.id for m in msgs] == [message.id, reply] and msgs[1].reply_to == message.id
    assert await app.shares.unread_count(SHARER, channel.id) == 0
    with pytest.raises(NotFoundError):
        await app.shares.post(C4, channel.id, "x", reply_to="pm-none")
    with pytest.raises(ConflictError, match="with a message"):
        await app.shares.end(SHARER, receipt.share_ids[0])
    await app.drain()
    to = sorted(a.addr_spec for m in mails(app).messages() for a in m["To"].addresses)
    assert to == ["dora@example.com", "sina@kanzlei.example"]  # client notice; handler notice
    async with Records(app.store).transaction("f1") as tx:
        [inapp] = await list_inapp(tx, "sharer", key=await app.notice_keys.get("f1"))
    assert inapp.kind.value == "client_message" and inapp.client_id == "c4"


async def test_messages_only_from_the_firm_notify_the_clients_contacts(app: ClientComm) -> None:
    channel = await app.shares.create_channel(SHARER, "akte3", "Allgemein")
    await app.shares.post(SHARER, channel.id, "Bitte Unterlagen nachreichen.")
    await app.drain()
    [mail] = mails(app).messages()
    assert mail["To"].addresses[0].addr_spec == "dora@example.com"
    assert "Unterlagen" not in mail.as_string()
    with pytest.raises(NotFoundError):
        await app.shares.post(VIEWER, channel.id, "x")  # she does not reach c4
    with pytest.raises(InvalidInputError):
        await app.shares.post(SHARER, channel.id, "   ")


# -- 7. ending a share --------------------------------------------------------------------------
async def test_only_the_sharer_ends_a_share_and_the_end_stays_recorded(app: ClientComm) -> None:
    folder = await folder_of(app, "akte1", "c1")
    [sid] = (
        await app.shares.share(SHARER, "akte1", [doc()], folder_id=folder, client_id="c1")
    ).share_ids
    with pytest.raises(PermissionDeniedError, match="only the staff member who shared"):
        await app.shares.end(ASSIST, sid)
    ended = await app.shares.end(SHARER, sid)
    assert ended.ended_by == "sharer" and ended.ended_at is not None
    assert await app.shares.list_documents(C1, folder) == []
    with pytest.raises(NotFoundError):
        await app.shares.download(C1, sid)
    [kept] = await app.shares.list_documents(SHARER, folder, include_ended=True)
    assert kept.ended_at is not None and await app.shares.list_documents(SHARER, folder) == []
    with pytest.raises(ConflictError, match="ended already"):
        await app.shares.end(SHARER, sid)
    [marker] = (await app.shares.visibility(SHARER, "akte1", ["d1"]))["d1"]
    assert not marker.active
    ops = await operations(app, "c1")
    assert "share.created" in ops and "share.ended" in ops


async def test_administrators_may_end_others_shares(app: ClientComm) -> None:
    folder = await folder_of(app)
    [sid] = (await app.shares.share(SHARER, "akte3", [doc()], folder_id=folder)).share_ids
    ended = await app.shares.end(StaffActor("f1", "portal-admin"), sid)
    assert ended.ended_by == "portal-admin"
    assert await app.shares.list_documents(C4, folder) == []


# -- 8. expiry, reminder, download log ------------------------------------------------------------
async def test_expiry_reminder_and_notice(app: ClientComm) -> None:
    folder = await folder_of(app)
    clock = clock_of(app)
    expires = clock.now() + timedelta(days=5)
    [sid] = (
        await app.shares.share(SHARER, "akte3", [doc()], folder_id=folder, expires_at=expires)
    ).share_ids
    await app.drain()
    [notice] = mails(app).messages()
    assert expires.strftime("%d.%m.%Y") in notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    mails(app).clear()
    clock.advance(timedelta(days=1))
    await app.drain()
    assert not mails(app).sent  # the reminder is due 3 days before the expiry
    clock.advance(timedelta(days=1, hours=1))
    await app.drain()
    [reminder] = mails(app).messages()
    assert reminder["To"].addresses[0].addr_spec == "sina@kanzlei.example"
    async with Records(app.store).transaction("f1") as tx:
        kinds = [n.kind.value for n in await list_inapp(tx, "sharer")]
    assert kinds == ["share_expiring"]
    assert len(await app.shares.list_documents(C4, folder)) == 1
    clock.advance(timedelta(days=3))
    # expired: gone for the client even before the step has run
    assert await app.shares.list_documents(C4, folder) == []
    assert len(await app.shares.list_documents(SHARER, folder)) == 1
    with pytest.raises(NotFoundError):
        await app.shares.download(C4, sid)
    await app.drain()
    assert await app.shares.list_documents(C4, folder) == []
    [kept] = await app.shares.list_documents(SHARER, folder, include_ended=True)
    assert kept.ended_by == "system"
    ops = await operations(app, "c4")
    assert "share.reminded" in ops and "share.expired" in ops
    with pytest.raises(InvalidInputError) as err:
        await app.shares.share(SHARER, "akte3", [doc()], folder_id=folder, expires_at=clock.now())
    assert err.value.field == "expires_at"


async def test_download_log_keeps_first_and_last_only_for_staff(app: ClientComm) -> None:
    folder = await folder_of(app)
    [sid] = (await app.shares.share(SHARER, "akte3", [doc()], folder_id=folder)).share_ids
    clock = clock_of(app)
    t1 = clock.now()
    await read(await app.shares.download(C4, sid))
    clock.advance(timedelta(hours=2))
    await read(await app.shares.download(C4, sid))
    await read(await app.shares.download(SHARER, sid))  # staff downloads are not the log
    [staff_view] = await app.shares.list_documents(SHARER, folder)
    assert staff_view.first_downloaded_at == t1
    assert staff_view.last_downloaded_at == t1 + timedelta(hours=2)
    [client_view] = await app.shares.list_documents(C4, folder)
    assert client_view.first_downloaded_at is None
    async with app.store.transaction("f1") as tx:
        [entry] = await tx.list(DOWNLOAD_KIND)
    assert set(entry.data) <= {"last_at"}  # no address, no count
    ops = await operations(app, "c4")
    assert ops.count("share.downloaded") == 2


# -- 9. client uploads -----------------------------------------------------------------------------
async def test_client_uploads_notify_the_handler_and_staff_download_them(app: ClientComm) -> None:
    folder = await folder_of(app)
    [uid] = await app.shares.upload(
        C4, folder, [PortalDocument("Beleg.pdf", PDF, "application/pdf")]
    )
    [seen] = await app.shares.list_documents(SHARER, folder)
    assert seen.origin is ShareOrigin.CLIENT and seen.shared_by == "client:k4"
    assert await read(await app.shares.download(SHARER, uid)) == PDF
    with pytest.raises(ConflictError):
        await app.shares.end(SHARER, uid)
    with pytest.raises(NotFoundError):
        await app.shares.upload(C2, folder, [PortalDocument("x.pdf", PDF, "application/pdf")])
    with pytest.raises(PermissionDeniedError):
        await app.shares.upload(SHARER, folder, [PortalDocument("x.pdf", PDF)])  # type: ignore[arg-type]
    await app.drain()
    [mail] = mails(app).messages()
    assert mail["To"].addresses[0].addr_spec == "sina@kanzlei.example"
    assert "Beleg" not in mail.as_string()
    async with Records(app.store).transaction("f1") as tx:
        [inapp] = await list_inapp(tx, "sharer")
    assert inapp.kind.value == "client_upload"
    async with app.store.transaction("f1") as tx:
        assert await tx.count(SHARE_KIND) == 1
        assert await tx.count(PLACE_KIND) == 1


# -- 10. bad input -------------------------------------------------------------------------
BAD: list[tuple[str, Any, str]] = [
    ("empty", PortalDocument("a.pdf", b"", "application/pdf", "d1"), "documents[0]"),
    ("empty stream", PortalDocument("a.pdf", iter([b""]), "application/pdf", "d1"), "documents[0]"),
    ("separator", PortalDocument("a/b.pdf", PDF, "application/pdf", "d1"), "documents[0].filename"),
    (
        "backslash",
        PortalDocument("a\\b.pdf", PDF, "application/pdf", "d1"),
        "documents[0].filename",
    ),
    ("control", PortalDocument("a\x07.pdf", PDF, "application/pdf", "d1"), "documents[0].filename"),
    (
        "long",
        PortalDocument("ä" * 130 + ".pdf", PDF, "application/pdf", "d1"),
        "documents[0].filename",
    ),
    ("type", PortalDocument("a.pdf", b"MZ\x90\x00" * 200, "application/pdf", "d1"), "documents[0]"),
    ("no host id", PortalDocument("a.pdf", PDF, "application/pdf"), "documents[0].document_id"),
]


@pytest.mark.parametrize(("what", "bad", "field"), BAD, ids=[b[0] for b in BAD])
async def test_bad_documents_are_refused_naming_the_field_and_leave_nothing(
    app: ClientComm, what: str, bad: PortalDocument, field: str
) -> None:
    folder = await folder_of(app)
    with pytest.raises(InvalidInputError) as err:
        await app.shares.share(SHARER, "akte3", [doc(), bad], folder_id=folder)
    assert err.value.field == field.replace("[0]", "[1]")
    await nothing_written(app)


async def test_the_size_limit_is_configurable_and_counted_on_the_bytes_read(
    tmp_path: Path,
) -> None:
    async for store in open_backend("sqlite", tmp_path):
        async with sharing_app(store, tmp_path, max_document_size=len(PDF)) as app:
            folder = await folder_of(app)
            too_big = PDF + b"x"
            for content in (too_big, iter([too_big[:5000], too_big[5000:]])):
                with pytest.raises(InvalidInputError, match="limit") as err:
                    await app.shares.share(
                        SHARER, "akte3",
                        [doc(), PortalDocument("b.pdf", content, "application/pdf", "d2")],
                        folder_id=folder,
                    )  # fmt: skip
                assert err.value.field == "documents[1]"
                await nothing_written(app)
            await app.shares.share(SHARER, "akte3", [doc()], folder_id=folder)


async def test_unknown_or_foreign_places_and_files_are_refused(app: ClientComm) -> None:
    folder = await folder_of(app)
    channel = await app.shares.create_channel(SHARER, "akte3", "Post")
    other = await folder_of(app, "akte1", "c1")
    for folder_id in ("fld-none", channel.id, other):
        with pytest.raises(NotFoundError) as err:
            await app.shares.share(SHARER, "akte3", [doc()], folder_id=folder_id)
        assert err.value.context["kind"] == "folder"
    with pytest.raises(NotFoundError) as err:
        await app.shares.share_with_message(SHARER, "akte3", [doc()], "x", channel_id=folder)
    assert err.value.context["kind"] == "channel"
    with pytest.raises(NotFoundError):  # another firm's case file
        await app.shares.share(SHARER, "x-akte", [doc()], folder_id=folder)
    with pytest.raises(InvalidInputError) as ierr:
        await app.shares.share(SHARER, "akte3", [], folder_id=folder)
    assert ierr.value.field == "documents"
    await nothing_written(app)


async def test_a_scanner_refusal_leaves_no_blob(tmp_path: Path) -> None:
    async def scanner(filename: str, content_type: str, chunks: AsyncIterator[bytes]) -> None:
        data = b"".join([c async for c in chunks])
        if b"EICAR" in data:
            raise ValueError("infected")

    async for store in open_backend("memory", tmp_path):
        async with sharing_app(store, tmp_path, scanner=scanner) as app:
            folder = await folder_of(app)
            bad = PortalDocument("v.pdf", PDF + b"EICAR", "application/pdf")
            with pytest.raises(InvalidInputError, match="scanner") as err:
                await app.shares.upload(
                    C4, folder, [PortalDocument("ok.pdf", PDF, "application/pdf"), bad]
                )
            assert err.value.field == "documents[1]"
            await nothing_written(app)


async def test_a_timer_that_fails_does_not_block_the_others(
    app: ClientComm, monkeypatch: pytest.MonkeyPatch
) -> None:
    # one expiry timer raises an unexpected error: it fails alone (logged, left
    # to its lease) and the other share still expires in the same step
    folder = await folder_of(app)
    clock = clock_of(app)
    expires = clock.now() + timedelta(hours=1)
    first, second = [
        (
            await app.shares.share(
                SHARER, "akte3", [doc(document_id=d)], folder_id=folder, expires_at=expires
            )
        ).share_ids[0]
        for d in ("d1", "d2")
    ]
    await app.drain()
    clock.advance(timedelta(hours=2))
    service = type(app.shares)
    real = service._run_timer

    async def flaky(self: Any, timer: Any) -> None:
        if timer.share_id == first:
            raise RuntimeError("a bug in one timer")
        await real(self, timer)

    monkeypatch.setattr(service, "_run_timer", flaky)
    assert await app.run_step("sharing.timers") == 1
    kept = {d.id: d for d in await app.shares.list_documents(SHARER, folder, include_ended=True)}
    assert kept[second].ended_by == "system"
    assert kept[first].ended_by is None
