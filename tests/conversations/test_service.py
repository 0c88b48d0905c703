"""Conversations (seed 002) over every Store backend: creating, commenting,
the state machine through the service, whose turn, lists and unread counts,
files, isolation, bad input, audit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from clientcomm import (
    ConversationSettings,
    ConversationStatus,
    IllegalTransitionError,
    IntegrityError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    Role,
    RoleAccessPolicy,
    Turn,
)
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.attachments import AttachmentInput
from clientcomm.conversations import COMMENT_KIND, CONVERSATION_KIND
from clientcomm.errors import ConflictError
from clientcomm.rules.readstate import Author
from clientcomm.testing.counting import CountingStore
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.conversations.support import (
    ADMIN,
    ANNA,
    BERND,
    BOSS,
    CARLA,
    CLERK,
    PDF,
    RITA,
    clock_of,
    conversation_app,
)

S = ConversationStatus


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with conversation_app(store, tmp_path) as application:
            yield application


async def audit_ops(app: ClientComm, subject: str) -> list[str]:
    await app.audit.chain("f1")
    page = await app.audit.query("f1", subject=subject)
    return [e.operation for e in page.entries]


# -- creating -----------------------------------------------------------------------------
async def test_staff_create_shows_subject_first_message_and_files(app: ClientComm) -> None:
    cid = await app.conversations.create(
        ADMIN,
        "c1",
        "Jahresabschluss 2025",
        "Bitte senden Sie uns die Belege.",
        attachments=[AttachmentInput.from_bytes("Liste.pdf", PDF, "application/pdf")],
        assignee_id="boss",
        notify_admins=True,
    )
    c = await app.conversations.get(ADMIN, cid)
    assert (c.subject, c.status, c.assignee_id, c.notify_admins) == (
        "Jahresabschluss 2025",
        S.OPEN,
        "boss",
        True,
    )
    assert (c.turn, c.turn_since, c.comments, c.created_by) == (
        Turn.CLIENT,
        app.clock.now(),
        1,
        "staff:admin",
    )
    [first] = await app.conversations.comments(ANNA, cid)
    assert (first.text, first.author, first.author_id, first.number) == (
        "Bitte senden Sie uns die Belege.",
        Author.STAFF,
        "admin",
        1,
    )
    [info] = first.attachments
    assert info.filename == "Liste.pdf"
    chunks = [b async for b in await app.conversations.open_attachment(ANNA, first.id, info.id)]
    assert b"".join(chunks) == PDF
    staff_chunks = await app.conversations.open_attachment(ADMIN, first.id, info.id)
    assert b"".join([b async for b in staff_chunks]) == PDF
    assert await audit_ops(app, f"conversation:{cid}") == ["conversation.created"]


async def test_client_starts_a_conversation_waiting_on_the_firm(app: ClientComm) -> None:
    cid = await app.conversations.start(ANNA, "Frage zur Steuer", "Wann ist die Frist?")
    c = await app.conversations.get(ADMIN, cid)
    assert (c.turn, c.status, c.assignee_id, c.created_by) == (
        Turn.FIRM,
        S.OPEN,
        None,
        "client:c1",
    )
    assert c.unread == 1
    mine = await app.conversations.list_for_client(ANNA)
    assert [(x.id, x.from_firm_last, x.unread) for x in mine] == [(cid, False, 0)]


async def test_client_start_uses_the_hosts_default_assignee(tmp_path: Path) -> None:
    async for store in open_backend("memory", tmp_path):
        settings = ConversationSettings(default_assignee="boss")
        async with conversation_app(store, tmp_path, conversations=settings) as app:
            cid = await app.conversations.start(ANNA, "Frage", "Text")
            assert (await app.conversations.get(ADMIN, cid)).assignee_id == "boss"
    # a default that is no administrator is not assigned (the office still hears)
    async for store in open_backend("memory", tmp_path):
        bad = ConversationSettings(default_assignee="clerk")
        async with conversation_app(store, tmp_path, conversations=bad) as app:
            cid = await app.conversations.start(ANNA, "Frage", "Text")
            assert (await app.conversations.get(ADMIN, cid)).assignee_id is None


# -- the state machine through the service ------------------------------------------------
ALLOWED = [
    (S.OPEN, S.NEEDS_ATTENTION),
    (S.OPEN, S.ANSWERED),
    (S.NEEDS_ATTENTION, S.OPEN),
    (S.NEEDS_ATTENTION, S.ANSWERED),
    (S.ANSWERED, S.OPEN),
]
REFUSED = [
    (a, b) for a in S for b in S if (a, b) not in ALLOWED
]  # the same state, and answered -> needs_attention


async def _in_state(app: ClientComm, state: ConversationStatus) -> str:
    cid = await app.conversations.create(ADMIN, "c1", "Betreff", "Text")
    if state is S.NEEDS_ATTENTION:
        await app.conversations.set_status(ADMIN, cid, S.NEEDS_ATTENTION)
    elif state is S.ANSWERED:
        await app.conversations.set_status(ADMIN, cid, S.ANSWERED)
    return cid


async def test_every_allowed_transition_records_actor_and_time(app: ClientComm) -> None:
    for start, to in ALLOWED:
        cid = await _in_state(app, start)
        clock_of(app).advance(60)
        done = await app.conversations.set_status(BOSS, cid, to)
        assert done.status is to
        assert (done.status_changed_by, done.status_changed_at) == ("staff:boss", app.clock.now())
        await app.audit.chain("f1")
        page = await app.audit.query("f1", subject=f"conversation:{cid}")
        last = page.entries[-1]
        assert last.operation == "conversation.status_changed"
        assert (last.details["from_state"], last.details["to_state"]) == (start.value, to.value)
        assert last.actor == "boss"


async def test_every_refused_transition_names_the_states_and_writes_nothing(
    app: ClientComm,
) -> None:
    for start, to in REFUSED:
        cid = await _in_state(app, start)
        before = await app.conversations.get(ADMIN, cid)
        n_audit = len(await audit_ops(app, f"conversation:{cid}"))
        with pytest.raises(IllegalTransitionError) as info:
            await app.conversations.set_status(ADMIN, cid, to)
        assert isinstance(info.value, ConflictError)
        assert (info.value.context["from_state"], info.value.context["to_state"]) == (
            start.value,
            to.value,
        )
        assert start.value in str(info.value) and to.value in str(info.value)
        assert await app.conversations.get(ADMIN, cid) == before
        assert len(await audit_ops(app, f"conversation:{cid}")) == n_audit


async def test_comments_move_the_state_and_the_turn(app: ClientComm) -> None:
    clock = clock_of(app)
    cid = await app.conversations.create(ADMIN, "c1", "Belege", "Bitte Belege senden")
    await app.conversations.set_status(ADMIN, cid, S.NEEDS_ATTENTION)
    t1 = clock.advance(3600)
    await app.conversations.comment(ANNA, cid, "Anbei die Belege")
    c = await app.conversations.get(ADMIN, cid)
    assert (c.status, c.turn, c.turn_since, c.last_activity_at) == (S.OPEN, Turn.FIRM, t1, t1)
    assert c.status_changed_by == "client:c1"
    clock.advance(60)
    await app.conversations.comment(ANNA, cid, "Noch etwas")  # still the firm's turn, since t1
    assert (await app.conversations.get(ADMIN, cid)).turn_since == t1
    t3 = clock.advance(60)
    await app.conversations.comment(ADMIN, cid, "Danke")
    c = await app.conversations.get(ADMIN, cid)
    assert (c.status, c.turn, c.turn_since) == (S.OPEN, Turn.CLIENT, t3)
    await app.conversations.set_status(ADMIN, cid, S.ANSWERED)
    await app.conversations.comment(ADMIN, cid, "Noch ein Hinweis")  # staff: stays answered
    assert (await app.conversations.get(ADMIN, cid)).status is S.ANSWERED
    await app.conversations.comment(ANNA, cid, "Eine Rückfrage")  # the client reopens it
    assert (await app.conversations.get(ADMIN, cid)).status is S.OPEN
    ops = await audit_ops(app, f"conversation:{cid}")
    assert ops.count("conversation.commented") == 5


async def test_reopening_on_a_client_comment_can_be_turned_off(tmp_path: Path) -> None:
    async for store in open_backend("sqlite", tmp_path):
        settings = ConversationSettings(reopen_on_client_comment=False)
        async with conversation_app(store, tmp_path, conversations=settings) as app:
            cid = await app.conversations.create(ADMIN, "c1", "Belege", "Text")
            await app.conversations.set_status(ADMIN, cid, S.ANSWERED)
            await app.conversations.comment(ANNA, cid, "Danke!")
            c = await app.conversations.get(ADMIN, cid)
            assert (c.status, c.turn) == (S.ANSWERED, Turn.FIRM)


# -- history, unread counts ---------------------------------------------------------------
async def test_history_in_order_and_unread_counts_per_reader(app: ClientComm) -> None:
    clock = clock_of(app)
    cid = await app.conversations.create(ADMIN, "c1", "Belege", "eins")
    writers: list[tuple[str, StaffActor | ClientActor]] = [
        ("zwei", ANNA),
        ("drei", ANNA),
        ("vier", CLERK),
        ("fünf", ANNA),
    ]
    for text, who in writers:
        clock.advance(10)
        await app.conversations.comment(who, cid, text)
    assert (await app.conversations.get(ADMIN, cid)).unread == 3
    assert (await app.conversations.get(BOSS, cid)).unread == 3
    assert (await app.conversations.get_for_client(ANNA, cid)).unread == 2  # "eins", "vier"
    page = await app.conversations.comments(ADMIN, cid, limit=2)
    assert [c.text for c in page] == ["eins", "zwei"] and page.next_cursor is not None
    assert (await app.conversations.get(ADMIN, cid)).unread == 2  # read up to "zwei"
    rest = await app.conversations.comments(ADMIN, cid, after=page.next_cursor)
    assert [(c.text, c.number) for c in rest] == [("drei", 3), ("vier", 4), ("fünf", 5)]
    assert [c.created_at for c in [*page, *rest]] == sorted(c.created_at for c in [*page, *rest])
    assert rest.next_cursor is None
    assert (await app.conversations.get(ADMIN, cid)).unread == 0
    assert (await app.conversations.get(BOSS, cid)).unread == 3  # per staff member
    await app.conversations.mark_read(BOSS, cid)
    assert (await app.conversations.get(BOSS, cid)).unread == 0
    await app.conversations.comments(ANNA, cid, mark_read=False)
    assert (await app.conversations.get_for_client(ANNA, cid)).unread == 2
    await app.conversations.mark_read(ANNA, cid)
    assert (await app.conversations.get_for_client(ANNA, cid)).unread == 0


# -- lists --------------------------------------------------------------------------------
async def test_staff_lists_filter_order_by_activity_and_page(app: ClientComm) -> None:
    clock = clock_of(app)
    a = await app.conversations.create(ADMIN, "c1", "A", "a", assignee_id="boss")
    b = await app.conversations.create(ADMIN, "c2", "B", "b", assignee_id="admin")
    c = await app.conversations.start(BERND, "C", "c")  # unassigned, waits on the firm
    d = await app.conversations.create(ADMIN, "c3", "D", "d", assignee_id="boss")
    clock.advance(10)
    await app.conversations.comment(ANNA, a, "Antwort")  # a: newest activity, firm's turn
    await app.conversations.set_status(ADMIN, d, S.NEEDS_ATTENTION)  # not activity
    lists = app.conversations.list_for_staff
    assert [x.id for x in await lists(ADMIN)] == [a, d, c, b]
    assert [x.id for x in await lists(ADMIN, assignee_id="boss")] == [a, d]
    assert [x.id for x in await lists(ADMIN, unassigned=True)] == [c]
    assert [x.id for x in await lists(ADMIN, turn=Turn.FIRM)] == [a, c]
    assert [x.id for x in await lists(ADMIN, turn=Turn.FIRM, assignee_id="boss")] == [a]
    assert [x.id for x in await lists(ADMIN, status=S.NEEDS_ATTENTION)] == [d]
    assert [x.id for x in await lists(ADMIN, status=[S.OPEN], turn=Turn.CLIENT)] == [b]
    waiting = await lists(ADMIN, status=[S.OPEN, S.NEEDS_ATTENTION], turn=Turn.FIRM)
    assert [(x.id, x.unread) for x in waiting] == [(a, 1), (c, 1)]
    # paging by cursor: every conversation once, in order
    seen: list[str] = []
    cursor = None
    while True:
        page = await lists(ADMIN, limit=1, cursor=cursor)
        seen += [x.id for x in page]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [a, d, c, b]
    # a restricted clerk sees the clients she reaches only
    assert [x.id for x in await lists(RITA)] == [a, c, b]
    # clients list their own only
    assert [x.id for x in await app.conversations.list_for_client(ANNA)] == [a]
    assert [x.id for x in await app.conversations.list_for_client(CARLA)] == [d]
    await app.conversations.assign(ADMIN, d, None)
    assert [x.id for x in await lists(ADMIN, assignee_id="boss")] == [a]
    assert [x.id for x in await lists(ADMIN, unassigned=True)] == [d, c]
    assert [x.id for x in await lists(ADMIN)] == [a, d, c, b]  # assigning is not activity


async def test_a_tampered_conversation_fails_alone_in_the_list(app: ClientComm) -> None:
    a = await app.conversations.create(ADMIN, "c1", "A", "a", assignee_id="boss")
    b = await app.conversations.create(ADMIN, "c2", "B", "b", assignee_id="boss")
    async with app.store.transaction("f1") as tx:
        raw = await tx.get(CONVERSATION_KIND, a)
        await tx.update([raw.evolve(ref="admin")])  # moved to another assignee, in the database
    page = await app.conversations.list_for_staff(ADMIN, assignee_id="boss")
    assert [x.id for x in page] == [b] and page.unreadable == (a,)
    with pytest.raises(IntegrityError):
        await app.conversations.get(ADMIN, a)
    with pytest.raises(IntegrityError):
        await app.conversations.comment(ANNA, a, "Hallo")


async def test_a_tampered_comment_fails_alone_in_the_history(app: ClientComm) -> None:
    cid = await app.conversations.create(ADMIN, "c1", "A", "erste")
    second = await app.conversations.comment(ANNA, cid, "zweite")
    await app.conversations.comment(ANNA, cid, "dritte")
    async with app.store.transaction("f1") as tx:
        raw = await tx.get(COMMENT_KIND, second)
        await tx.update([raw.evolve(data={**raw.data, "author": "staff"})])
    page = await app.conversations.comments(ADMIN, cid)
    assert [c.text for c in page] == ["erste", "dritte"] and page.unreadable == (second,)


# -- isolation and bad input --------------------------------------------------------------
async def test_other_clients_and_firms_get_the_answer_of_a_missing_id(app: ClientComm) -> None:
    cid = await app.conversations.create(ADMIN, "c3", "Nur Carla", "Text")
    [first] = await app.conversations.comments(ADMIN, cid)

    async def answer(actor: Any, conversation_id: str) -> tuple[str, object]:
        with pytest.raises(NotFoundError) as info:
            await app.conversations.comment(actor, conversation_id, "Hallo")
        return str(info.value).replace(conversation_id, "<id>"), info.value.context["kind"]

    for actor in [ANNA, RITA, ClientActor("f2", "x1"), StaffActor("f2", "admin2")]:
        assert await answer(actor, cid) == await answer(actor, "no-such-id")
        with pytest.raises(NotFoundError):
            await app.conversations.comments(actor, cid)  # type: ignore[arg-type]
        with pytest.raises(NotFoundError):
            await app.conversations.open_attachment(actor, first.id, "x")  # type: ignore[arg-type]
    assert await app.conversations.list_for_client(ANNA) == []
    assert await app.conversations.list_for_staff(StaffActor("f2", "admin2")) == []
    with pytest.raises(PermissionDeniedError):
        await app.conversations.list_for_staff(ANNA)  # type: ignore[arg-type]
    with pytest.raises(PermissionDeniedError):
        await app.conversations.set_status(ANNA, cid, S.ANSWERED)  # type: ignore[arg-type]
    assert len(await app.conversations.comments(ADMIN, cid)) == 1  # nothing was written


async def test_bad_input_is_refused_with_a_typed_error(app: ClientComm) -> None:
    cid = await app.conversations.create(ADMIN, "c1", "Betreff", "Text")
    cases = [
        (app.conversations.create(ADMIN, "c1", "Betreff", "   "), "text"),
        (app.conversations.create(ADMIN, "c1", "", "Text"), "subject"),
        (app.conversations.create(ADMIN, "c1", "a\nb", "Text"), "subject"),
        (app.conversations.create(ADMIN, "c1", "B", "T", assignee_id="nobody"), "assignee_id"),
        (app.conversations.create(ADMIN, "c1", "B", "T", assignee_id="clerk"), "assignee_id"),
        (app.conversations.create(ADMIN, "c1", "B", "T", assignee_id="manager"), "assignee_id"),
        (app.conversations.create(ADMIN, "c1", "B", "T", assignee_id="gone"), "assignee_id"),
        (app.conversations.comment(ANNA, cid, ""), "text"),
        (app.conversations.comment(ADMIN, cid, "x" * 100_001), "text"),
        (app.conversations.assign(ADMIN, cid, "admin2"), "assignee_id"),  # another firm's
        (app.conversations.set_status(ADMIN, cid, "closed"), "status"),  # type: ignore[arg-type]
        (app.conversations.list_for_staff(ADMIN, limit=0), "limit"),
        (app.conversations.list_for_staff(ADMIN, status="x"), "status"),  # type: ignore[arg-type]
        (app.conversations.notify_admins(ADMIN, []), "conversation_ids"),
    ]
    for call, field in cases:
        with pytest.raises(InvalidInputError) as info:
            await call
        assert info.value.context["field"] == field
    with pytest.raises(NotFoundError):
        await app.conversations.create(ADMIN, "c-none", "Betreff", "Text")
    assert len(await app.conversations.list_for_staff(ADMIN)) == 1
    assert len(await app.conversations.comments(ADMIN, cid)) == 1


async def test_an_assignee_must_reach_the_client(tmp_path: Path) -> None:
    # a host policy without the administrators' bypass: "limited" reaches c1 only
    access = RoleAccessPolicy(full_access_roles=[Role.MANAGER])
    async for store in open_backend("memory", tmp_path):
        async with conversation_app(store, tmp_path, access=access) as app:
            manager = StaffActor("f1", "manager")
            ok = await app.conversations.create(manager, "c1", "B", "T", assignee_id="limited")
            assert (await app.conversations.get(manager, ok)).assignee_id == "limited"
            with pytest.raises(InvalidInputError) as info:
                await app.conversations.create(manager, "c3", "B", "T", assignee_id="limited")
            assert "access" in str(info.value)


async def test_an_edited_index_entry_lists_nothing_where_it_does_not_belong(
    app: ClientComm,
) -> None:
    from clientcomm.conversations import INBOX_KIND

    a = await app.conversations.create(ADMIN, "c1", "A", "a", assignee_id="boss")
    async with app.store.transaction("f1") as tx:
        raw = await tx.get(INBOX_KIND, a)
        await tx.update([raw.evolve(ref="admin")])  # the unbound entry, edited
    page = await app.conversations.list_for_staff(ADMIN, assignee_id="admin")
    assert list(page) == [] and page.unreadable == ()
    assert (await app.conversations.get(ADMIN, a)).assignee_id == "boss"  # the truth
    await app.conversations.comment(ANNA, a, "Hallo")  # activity writes the entries anew
    assert [x.id for x in await app.conversations.list_for_staff(ADMIN, assignee_id="boss")] == [a]
    assert list(await app.conversations.list_for_staff(ADMIN, assignee_id="admin")) == []


# -- the cost of a comment ------------------------------------------------------------------
@pytest.mark.parametrize("backend", STORE_BACKENDS)
async def test_a_client_comment_is_one_transaction_with_one_read(
    backend: str, tmp_path: Path
) -> None:
    """A client's comment reads its conversation inside its one write
    transaction (keys and the directory are asked before it opens); another
    client's conversation id answers as missing and writes nothing."""
    async for inner in open_backend(backend, tmp_path):
        store = CountingStore(inner)
        async with conversation_app(store, tmp_path) as app:
            cid = await app.conversations.create(ADMIN, "c1", "Belege", "Bitte", assignee_id="boss")
            await app.conversations.create(ADMIN, "c2", "Vollmacht", "Bitte")  # c2's key exists
            await app.conversations.comment(ANNA, cid, "warm")  # keys and notice key cached
            store.reset()
            await app.conversations.comment(ANNA, cid, "Anbei die Belege")
            assert store.calls["transaction"] == 1
            assert store.reads() == 1  # the conversation, nothing else
            assert store.calls["update"] == 1 and store.calls["replace"] == 1
            before = await comment_count(app, cid)
            store.reset()
            with pytest.raises(NotFoundError):
                await app.conversations.comment(BERND, cid, "nicht meins")
            assert store.writes() == 0, store.calls
            assert await comment_count(app, cid) == before
            with pytest.raises(NotFoundError):
                await app.conversations.comment(BERND, "no-such-id", "nichts")


async def comment_count(app: ClientComm, cid: str) -> int:
    async with app.store.transaction("f1") as tx:
        return await tx.count(COMMENT_KIND, parent=cid)
