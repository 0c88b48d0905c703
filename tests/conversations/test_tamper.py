"""The metadata tamper suite's scenarios for conversations and comments
(``tests/records/test_metadata_tamper.py`` enumerates the cases from the
kinds' integrity declarations), over memory, SQLite and PostgreSQL: every
protected value of a stored conversation or comment edited, or swapped with
another record of the same client or of another client, is refused; the
tampered record alone fails; nothing tampered is ever shown."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clientcomm.actors import ClientActor
from clientcomm.app import ClientComm
from clientcomm.attachments import AttachmentInput
from clientcomm.conversations import COMMENT_KIND, CONVERSATION_KIND
from clientcomm.conversations.records import FEED_KIND, INBOX_KIND
from clientcomm.errors import IntegrityError, NotFoundError
from clientcomm.records import REGISTRY
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.conversations.support import ADMIN, conversation_app
from tests.records.test_metadata_tamper import (
    PDF,
    PDF2,
    apply,
    cases_for,
    message_cases,
    protected,
    raw,
)

C1 = ClientActor("f1", "c1")
C2 = ClientActor("f1", "c2")


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with conversation_app(store, tmp_path) as application:
            yield application


async def list_views(app: ClientComm) -> list[tuple[dict[str, Any], tuple[str, ...]]]:
    """What the lists show (by id) and leave out as unreadable."""
    out = []
    for page in (
        await app.conversations.list_for_staff(ADMIN, limit=500),
        await app.conversations.list_for_staff(ADMIN, assignee_id="boss", limit=500),
        await app.conversations.list_for_client(C1, limit=500),
        await app.conversations.list_for_client(C2, limit=500),
    ):
        out.append(({x.id: x for x in page}, page.unreadable))
    return out


async def forget(app: ClientComm, ids: list[str]) -> None:
    async with app.store.transaction("f1") as tx:
        for kind in (CONVERSATION_KIND, INBOX_KIND, FEED_KIND):
            await tx.delete(kind, ids)


async def test_conversation_metadata_tampering_is_refused(app: ClientComm) -> None:
    kind = REGISTRY.kind(CONVERSATION_KIND)
    probe = await raw(
        app.store, CONVERSATION_KIND, await app.conversations.create(ADMIN, "c1", "Geheim", "x")
    )
    assert "Geheim" not in repr(probe.data)
    await forget(app, [probe.id])
    i, total, done = 0, 1, set()
    while i < total:
        target = await app.conversations.create(
            ADMIN, "c1", f"Kündigung {i}", "Text", assignee_id="boss", notify_admins=True
        )
        same = await app.conversations.start(C1, f"Frage {i}", "Wann?")
        other = await app.conversations.create(ADMIN, "c2", f"Vertrag {i}", "Text")
        await app.conversations.comment(C1, target, "Antwort")
        t, s, o = [await raw(app.store, CONVERSATION_KIND, c) for c in (target, same, other)]
        cases = cases_for(kind, t, s, o)
        total = len(cases)
        case = cases[i]
        i += 1
        before = await list_views(app)
        await apply(app.store, case, t, s, o)
        after = await list_views(app)
        label = f"{case} on {type(app.store).__name__}"
        tampered = {target, *([case.value] if case.loc == ("column", "id") else [])}
        refused = False
        for (shown_before, _), (shown_after, unreadable) in zip(before, after, strict=True):
            for cid, shown in shown_after.items():
                assert shown_before.get(cid) == shown, f"{label}: a tampered value is shown"
            missing = set(shown_before) - set(shown_after)
            assert missing <= tampered, f"{label}: another conversation is not shown"
            refused = refused or target in missing or target in unreadable
        for call in (
            functools.partial(app.conversations.get, ADMIN, target),
            functools.partial(app.conversations.get_for_client, C1, target),
        ):
            try:
                got = await call()
            except (IntegrityError, NotFoundError):
                refused = True
            else:
                first = before[0][0][target]
                assert got.subject == first.subject and got.status == first.status, label
        assert refused, f"{label}: not refused"
        await forget(app, [target, same, other])
        done.add(case.attr)
    assert done == set(protected(kind))


async def test_comment_metadata_tampering_is_refused(app: ClientComm) -> None:
    kind = REGISTRY.kind(COMMENT_KIND)
    pdf = [AttachmentInput.from_bytes("Kündigung.pdf", PDF, "application/pdf")]
    reply = [AttachmentInput.from_bytes("Antwort.pdf", PDF2, "application/pdf")]
    a = await app.conversations.create(ADMIN, "c1", "A", "Erste")
    b = await app.conversations.create(ADMIN, "c2", "B", "Erste")
    i, total, done = 0, 1, set()
    while i < total:
        target = await app.conversations.comment(ADMIN, a, f"Kündigung {i}", attachments=pdf)
        same = await app.conversations.comment(C1, a, f"Antwort {i}", attachments=reply)
        other = await app.conversations.comment(C2, b, f"Vertrag {i}", attachments=reply)
        t, s, o = [await raw(app.store, COMMENT_KIND, c) for c in (target, same, other)]
        if i == 0:
            assert "Kündigung" not in repr(t.data)
        cases = message_cases(kind, t, s, o)
        total = len(cases)
        case = cases[i]
        i += 1

        async def views() -> list[tuple[dict[str, Any], tuple[str, ...]]]:
            out = []
            for actor, conv in ((ADMIN, a), (ADMIN, b), (C1, a), (C2, b)):
                page = await app.conversations.comments(actor, conv, mark_read=False)
                out.append(({c.id: c for c in page}, page.unreadable))
            return out

        before = await views()
        att = t.data["attachments"][0]["id"]
        await apply(app.store, case, t, s, o)
        after = await views()
        label = f"{case} on {type(app.store).__name__}"
        tampered = {target, *([case.value] if case.loc == ("column", "id") else [])}
        refused = False
        for (shown_before, _), (shown_after, unreadable) in zip(before, after, strict=True):
            for cid, shown in shown_after.items():
                assert shown_before.get(cid) == shown, f"{label}: a tampered value is shown"
            missing = set(shown_before) - set(shown_after)
            assert missing <= tampered, f"{label}: another comment is not shown"
            refused = refused or target in missing or target in unreadable
        try:
            chunks = await app.conversations.open_attachment(C1, target, att)
            got: bytes | None = b"".join([c async for c in chunks])
        except (IntegrityError, NotFoundError):
            got = None
        assert got in (None, PDF), f"{label}: the attachment opened as something else"
        assert refused or got is None, f"{label}: not refused"
        async with app.store.transaction("f1") as tx:
            await tx.delete(COMMENT_KIND, [target, same, other, *tampered])
        done.add(case.attr)
    assert done == set(protected(kind))
