"""Concurrent sends of one staff member to one client: the sender's read cursor
is created or moved by both, and the loser's transaction conflicts at commit.
The send writes everything again instead of failing (found by the sync API's
threaded test on PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.errors import ConflictError
from clientcomm.messages import MESSAGE_KIND
from clientcomm.messages.service import _SEND_ATTEMPTS, MessageService
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import make_app

ADMIN = StaffActor("f1", "admin")


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path) as application:
            yield application


async def counts(app: ClientComm) -> tuple[int, int]:
    async with app.store.transaction("f1") as tx:
        messages = await tx.count(MESSAGE_KIND)
    await app.run_step("audit.chain")  # pending entries join the trail
    page = await app.audit.query("f1", operation="message.sent")
    return messages, len(page.entries)


def conflicting(times: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The first ``times`` cursor writes conflict, as a concurrent send's would."""
    calls: list[int] = []
    real = MessageService._advance_cursor

    async def advance(self: MessageService, tx: Any, *args: Any) -> None:
        calls.append(1)
        if len(calls) <= times:
            raise ConflictError("the read cursor was written concurrently")
        await real(self, tx, *args)

    monkeypatch.setattr(MessageService, "_advance_cursor", advance)
    return calls


async def test_a_send_whose_cursor_write_conflicts_is_written_again(
    app: ClientComm, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = conflicting(2, monkeypatch)
    mid = await app.messages.send(ADMIN, "c1", "Hallo")
    assert len(calls) == 3
    assert await counts(app) == (1, 1)  # one message, one audit record
    [msg] = await app.messages.list_for_staff(ADMIN, "c1")
    assert msg.id == mid and msg.text == "Hallo"
    assert await app.messages.unread_count(ADMIN, "c1") == 0  # the sender has read it


async def test_a_send_that_keeps_conflicting_fails_and_writes_nothing(
    app: ClientComm, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = conflicting(_SEND_ATTEMPTS, monkeypatch)
    with pytest.raises(ConflictError):
        await app.messages.send(ADMIN, "c1", "Hallo")
    assert len(calls) == _SEND_ATTEMPTS
    assert await counts(app) == (0, 0)


async def test_concurrent_sends_of_one_sender_all_land(app: ClientComm) -> None:
    ids = await asyncio.gather(*(app.messages.send(ADMIN, "c2", f"Nr. {i}") for i in range(8)))
    await asyncio.gather(
        *(app.messages.send(ClientActor("f1", "c2"), "c2", f"Antwort {i}") for i in range(4))
    )
    assert len(set(ids)) == 8
    texts = [m.text for m in await app.messages.list_for_staff(ADMIN, "c2")]
    assert sorted(t for t in texts if t.startswith("Nr.")) == sorted(f"Nr. {i}" for i in range(8))
