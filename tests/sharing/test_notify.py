"""Sharing without the e-mail notice (issue 16 item 4: "an optional e-mail
notice"), against every Store backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clientcomm import InvalidInputError
from clientcomm.actors import ClientActor
from clientcomm.app import ClientComm
from clientcomm.mail.memory import MemoryTransport
from clientcomm.notifications.records import JOB_KIND
from clientcomm.sharing import SHARE_KIND, PortalDocument
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.sharing.support import PDF, SHARER, count, sharing_app

C4 = ClientActor("f1", "c4", "k4")


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with sharing_app(store, tmp_path) as application:
            yield application


def doc(document_id: str) -> PortalDocument:
    return PortalDocument(f"{document_id}.pdf", PDF, "application/pdf", document_id)


def sent(app: ClientComm) -> list[str]:
    assert isinstance(app.transport, MemoryTransport)
    return sorted(a.addr_spec for m in app.transport.messages() for a in m["To"].addresses)


async def notified(app: ClientComm) -> list[object]:
    await app.audit.chain("f1")
    page = await app.audit.query("f1", client="c4", limit=1000)
    return [e.details.get("notified") for e in page.entries if e.operation == "share.created"]


async def test_a_share_notifies_by_default_and_not_with_notify_false(app: ClientComm) -> None:
    folder = await app.shares.create_folder(SHARER, "akte3", "Bescheide")
    await app.shares.share(SHARER, "akte3", [doc("d1")], folder_id=folder.id)
    assert await count(app, JOB_KIND) == 1
    quiet = await app.shares.share(SHARER, "akte3", [doc("d2")], folder_id=folder.id, notify=False)
    assert await count(app, JOB_KIND) == 1  # no job, no batch for the quiet one
    # the share itself is the same: shown to the client at once
    shown = await app.shares.list_documents(C4, folder.id)
    assert sorted(d.filename for d in shown) == ["d1.pdf", "d2.pdf"]
    assert quiet.share_ids[0] in {d.id for d in shown}
    await app.drain()
    assert sent(app) == ["dora@example.com"]  # one e-mail: the first share's
    assert await notified(app) == [True, False]


async def test_a_share_with_a_message_can_go_without_the_notice(app: ClientComm) -> None:
    channel = await app.shares.create_channel(SHARER, "akte3", "Steuer")
    await app.shares.share_with_message(
        SHARER, "akte3", [doc("d1")], "Zur Kenntnis.", channel_id=channel.id, notify=False
    )
    [message] = await app.shares.list_messages(C4, channel.id)
    assert message.text == "Zur Kenntnis."
    await app.drain()
    assert sent(app) == [] and await count(app, JOB_KIND) == 0
    await app.shares.share_with_message(
        SHARER, "akte3", [doc("d2")], "Bitte prüfen.", channel_id=channel.id
    )
    await app.drain()
    assert sent(app) == ["dora@example.com"]


async def test_notify_must_be_a_bool_and_nothing_is_written(app: ClientComm) -> None:
    folder = await app.shares.create_folder(SHARER, "akte3", "Bescheide")
    with pytest.raises(InvalidInputError) as err:
        await app.shares.share(
            SHARER,
            "akte3",
            [doc("d1")],
            folder_id=folder.id,
            notify="no",  # type: ignore[arg-type]
        )
    assert err.value.field == "notify"
    assert await count(app, SHARE_KIND) == 0 and await count(app, JOB_KIND) == 0
