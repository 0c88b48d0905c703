"""The access matrix (hardening items 4 and 5): every public service method ×
every kind of actor that must be refused × an object that exists out of the
actor's reach and an id that does not exist. Every refusal answers the same
for both: the same error class, message and context (ids aside), so nobody
learns whether an object they may not reach exists.

The methods are enumerated from the services of a ``ClientComm`` instance
(every attribute whose class has public methods taking an ``actor``), so a new
method or a new service is covered by default; a new required parameter must
be added to :data:`IDS` or :data:`VALUES` (the test says so).

Beside the matrix: staff are restricted unless the host says otherwise
(item 4), and the mailing reports are scoped to the clients the actor may see,
with cancel needing the whole mailing (item 5).
"""

from __future__ import annotations

import inspect
import re
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from clientcomm import (
    Audience,
    CaseFile,
    Contact,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    Role,
    RoleAccessPolicy,
    Staff,
    WritableDirectory,
)
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.attachments import AttachmentInput
from clientcomm.directory.memory import MemoryDirectory
from clientcomm.directory.sql import SqlDirectory
from clientcomm.errors import ClientCommError
from clientcomm.letters.run_models import PageRange
from clientcomm.letters.selection import Selection
from clientcomm.mailing import PAGE_KIND, MailingState
from clientcomm.mailing.ledger import Ledger
from clientcomm.sharing import PortalDocument
from clientcomm.storage.migrations import load_migrations
from clientcomm.storage.sqlite import SQLiteStore
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.conftest import pg_admin_url
from tests.letters.hostile import letter
from tests.mailing_support import make_app

ADMIN = StaffActor("f1", "admin")
FRESH_ID = re.compile(r"\b[0-9a-f]{32}\b")
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"


def restricted_may_mail(staff: Staff, client_id: str | None) -> bool:
    """The host rule of docs/mailing.md: restricted staff may mail their clients."""
    if not staff.active or staff.role is Role.ASSISTANT:
        return False
    return client_id is None or staff.can_access(client_id)


RESTRICTED_MAY_MAIL = {
    "mailing.send": restricted_may_mail,
    "mailing.view": restricted_may_mail,
    "mailing.cancel": restricted_may_mail,
}
POLICIES = {"default": None, "restricted-may-mail": RESTRICTED_MAY_MAIL}


class NotAnActor:
    """Looks like both kinds of actor, is neither."""

    firm_id = "f1"
    staff_id = "admin"
    client_id = "c3"
    contact_id = None


# Every actor that must not reach client c3 of firm f1 (the seed of
# tests/mailing_support.py): "restricted" reaches c1 and c2 only, the assistant
# has default flags (no client), "gone" is an inactive admin, "admin2" is the
# admin of firm f2.
ACTORS: dict[str, object] = {
    "client-of-another-client": ClientActor("f1", "c1", "k1"),
    "restricted-clerk": StaffActor("f1", "restricted"),
    "assistant": StaffActor("f1", "assistant"),
    "inactive-staff": StaffActor("f1", "gone"),
    "unknown-staff": StaffActor("f1", "nobody"),
    "other-firm-staff": StaffActor("f2", "admin2"),
    "not-an-actor": NotAnActor(),
}

MISSING = {
    "client_id": "c-none",
    "message_id": "m-none",
    "attachment_id": "a-none",
    "mailing_id": "ml-none",
    "announcement_id": "an-none",
    # conversations (seed 002)
    "conversation_id": "cv-none",
    "comment_id": "cm-none",
    # sharing
    "case_id": "akte-none",
    "folder_id": "fld-none",
    "channel_id": "chn-none",
    "share_id": "shr-none",
    # serial-letter runs
    "run_id": "run-none",
    "document_id": "doc-none",
    "download_id": "dl-none",
    "unit_id": "u-none",
    "contact_id": "k-none",
    "property_id": "g-none",
}
IDS = (*MISSING, "client_ids", "audience", "conversation_ids", "notification_ids")
"""Parameters naming objects: an existing-out-of-reach and a missing value each."""
VALUES: dict[str, Any] = {
    "text": "Hallo",
    "up_to_seq": 1,
    # announcements (seed 004)
    "title": "Hallo",
    "description": "Text",
    # conversations (seed 002)
    "subject": "Betreff",
    "status": "answered",
    "assignee_id": "admin",
    # sharing
    "name": "Ordner",
    "documents": [PortalDocument("Beleg.pdf", PDF, "application/pdf", "h1")],
    "document_ids": ["h1"],
    # serial-letter runs
    "filename": "a.pdf",
    "pdf": letter(),
    "ranges": [PageRange("c3", 1, 1)],
    "selection": Selection(),
    "colour": False,
    "duplex": False,
    "case_files": {"c3": "akte-c3"},
    "token": "cc1.e30.AAAA",
}
"""Other required parameters: the same value in both calls."""


def services(app: ClientComm) -> list[tuple[str, object]]:
    """Every service of ``app``: attributes with public methods taking an actor."""
    out = []
    for attr, value in sorted(vars(app).items()):
        if attr.startswith("_") or not public_methods(type(value)):
            continue
        out.append((attr, value))
    return out


def public_methods(cls: type) -> list[str]:
    """Public methods taking an ``actor`` typed as an actor (a ``StaffActor``
    or ``ClientActor``; not a host API's ``actor: str`` filter, as in
    ``app.audit.query``)."""
    out = []
    for name, fn in inspect.getmembers(cls, inspect.isfunction):
        param = inspect.signature(fn).parameters.get("actor")
        if not name.startswith("_") and param is not None and "Actor" in str(param.annotation):
            out.append(name)
    return out


async def seed(app: ClientComm) -> dict[str, Any]:
    """Objects of client c3 (out of every actor's reach): a message with an
    attachment, and a mailing to c3."""
    message_id = await app.messages.send(
        ADMIN,
        "c3",
        "Ihre Unterlagen",
        attachments=[AttachmentInput.from_bytes("Bescheid.pdf", PDF, "application/pdf")],
    )
    [stored] = await app.messages.list_for_staff(ADMIN, "c3", mark_read=False)
    [attachment] = stored.attachments
    mailing = await app.mailings.submit(ADMIN, Audience.clients("c3"), "Rundschreiben")
    # sharing: a case file of c3 (its handler: the admin), a contact with portal access,
    # a folder, a channel, a share, a message
    assert isinstance(app.directory, WritableDirectory)
    await app.directory.put_contact(
        Contact("k3p", "f1", "c3", "Carla Portal", email="carla.p@example.com", registered=True)
    )
    await app.directory.put_case_file(CaseFile("akte-c3", "f1", "c3", "Chor", handler_id="admin"))
    folder = await app.shares.create_folder(ADMIN, "akte-c3", "Bescheide")
    channel = await app.shares.create_channel(ADMIN, "akte-c3", "Post")
    doc = PortalDocument("Bescheid.pdf", PDF, "application/pdf", "h1")
    shared = await app.shares.share(ADMIN, "akte-c3", [doc], folder_id=folder.id)
    await app.shares.post(ADMIN, channel.id, "Hallo")
    # serial letters: a run of group g2 for unit c3, with a document and a download
    run = await app.letter_runs.create(ADMIN, property_id="g2", title="R", unit_ids=["c3"])
    [run_doc] = await app.letter_runs.upload(
        ADMIN, run.id, filename="r.pdf", pdf=letter(), ranges=[PageRange("c3", 1, 1)]
    )
    await app.letter_runs.aclose()  # refused calls never reach the intake
    await app.drain()
    announcement = await app.announcements.create(  # for group g2: c3 (and c2), not c1
        ADMIN, "Für GmbHs", "Text", audience=Audience.groups("g2")
    )
    conversation_id = await app.conversations.create(
        ADMIN,
        "c3",
        "Belege",
        "Bitte senden",
        attachments=[AttachmentInput.from_bytes("Liste.pdf", PDF, "application/pdf")],
        assignee_id="admin",
    )
    [comment] = await app.conversations.comments(ADMIN, conversation_id, mark_read=False)
    await app.conversations.comment(ClientActor("f1", "c3"), conversation_id, "Anbei")
    [notice] = await app.conversations.notifications(ADMIN)  # the assignee's in-app notice
    return {
        "conversation_id": conversation_id,
        "conversation_ids": [conversation_id],
        "comment_id": comment.id,
        "notification_id": notice.id,
        "notification_ids": [notice.id],
        "run_id": run.id,
        "document_id": run_doc.id,
        "download_id": "dl-none",  # a download needs a mailed link: opened only by token
        "unit_id": "c3",
        "contact_id": "k3",
        "property_id": "g2",
        "case_id": "akte-c3",
        "folder_id": folder.id,
        "channel_id": channel.id,
        "share_id": shared.share_ids[0],
        "client_id": "c3",
        "client_ids": ["c3"],
        "message_id": message_id,
        "attachment_id": attachment.id,
        "mailing_id": mailing.id,
        "announcement_id": announcement.id,
        "audience": Audience.clients("c3"),
    }


def missing_args() -> dict[str, Any]:
    return {
        **MISSING,
        "conversation_ids": [MISSING["conversation_id"]],
        "notification_id": "n-none",
        "notification_ids": ["n-none"],
        "client_ids": [MISSING["client_id"]],
        "audience": Audience.clients(MISSING["client_id"]),
    }


async def outcome(call: Callable[[], Any], names: list[str]) -> tuple[str, ...]:
    """What the caller sees, with the ids in ``names`` replaced by ``<id>``."""

    def scrub(text: str) -> str:
        fresh = [i for i in FRESH_ID.findall(text) if not any(i in name for name in names)]
        for made in fresh:  # an id made by the call (a client's new conversation)
            text = text.replace(made, "<new>")
        for name in sorted(names, key=len, reverse=True):
            text = text.replace(name, "<id>")
        return text

    try:
        result = call()
        if inspect.isawaitable(result):
            result = await result
        elif hasattr(result, "__anext__"):  # ledger, exports, follow
            stream = result
            try:
                result = await stream.__anext__()
            finally:
                await stream.aclose()
        return ("ok", scrub(repr(result)))
    except ClientCommError as exc:
        context = sorted((k, scrub(repr(v))) for k, v in exc.context.items())
        return (type(exc).__name__, scrub(str(exc)), repr(context))


def kwargs_for(fn: Callable[..., Any], ids: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, p in inspect.signature(fn).parameters.items():
        if name == "actor":
            continue
        if name in IDS:
            out[name] = ids[name]
        elif name in VALUES:
            out[name] = VALUES[name]
        elif p.default is inspect.Parameter.empty and p.kind is not p.VAR_KEYWORD:
            raise AssertionError(f"{fn.__qualname__}: add parameter {name!r} to IDS or VALUES")
    return out


@pytest.fixture(params=STORE_BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async for store in open_backend(request.param, tmp_path):
        yield store, tmp_path


async def test_every_service_method_is_enumerated(tmp_path: Path) -> None:
    async for store in open_backend("memory", tmp_path):
        async with make_app(store, tmp_path) as app:
            found = {
                (attr, name) for attr, svc in services(app) for name in public_methods(type(svc))
            }
    assert {attr for attr, _ in found} == {
        "messages",
        "mailings",
        "announcements",
        "conversations",
        "shares",
        "letter_runs",
    }
    for name in ("create", "upload", "overview", "release", "order", "cancel", "delete"):
        assert ("letter_runs", name) in found
    for expected in [
        ("messages", "send"),
        ("messages", "unread_counts"),
        ("messages", "open_attachment"),
        ("messages", "delete"),
        ("messages", "get_for_client"),
        ("messages", "evidence"),
        ("mailings", "submit"),
        ("mailings", "preview"),
        ("mailings", "status"),
        ("mailings", "follow"),
        ("mailings", "ledger"),
        ("mailings", "export_csv"),
        ("mailings", "export_jsonl"),
        ("mailings", "cancel"),
        ("announcements", "create"),
        ("announcements", "edit"),
        ("announcements", "delete"),
        ("announcements", "read_report"),
        ("announcements", "page_view"),
        ("announcements", "close"),
        ("announcements", "read_more"),
        ("conversations", "create"),
        ("conversations", "start"),
        ("conversations", "comment"),
        ("conversations", "set_status"),
        ("conversations", "assign"),
        ("conversations", "notify_admins"),
        ("conversations", "get"),
        ("conversations", "get_for_client"),
        ("conversations", "list_for_staff"),
        ("conversations", "list_for_client"),
        ("conversations", "comments"),
        ("conversations", "mark_read"),
        ("conversations", "open_attachment"),
        ("conversations", "notifications"),
        ("conversations", "mark_notifications_read"),
        ("conversations", "mark_all_notifications_read"),
        ("shares", "share"),
        ("shares", "share_with_message"),
        ("shares", "download"),
        ("shares", "end"),
        ("shares", "upload"),
        ("shares", "visibility"),
        ("shares", "post"),
    ]:
        assert expected in found
    assert len(found) >= 18


@pytest.mark.parametrize("policy", list(POLICIES))
async def test_every_refusal_answers_as_a_missing_id(backend: Any, policy: str) -> None:
    store, tmp_path = backend
    rules = POLICIES[policy]
    access = None if rules is None else RoleAccessPolicy(rules)
    async with make_app(store, tmp_path, access=access) as app:
        existing = await seed(app)
        missing = missing_args()
        names = [str(v) for v in (*existing.values(), *missing.values()) if isinstance(v, str)]
        names.append("c3")
        before = await app.mailings.status(ADMIN, existing["mailing_id"])
        problems: list[str] = []
        checked = 0
        for attr, svc in services(app):
            for name in public_methods(type(svc)):
                fn = getattr(svc, name)
                takes_ids = any(p in IDS for p in inspect.signature(fn).parameters)
                for who, actor in ACTORS.items():
                    there = await outcome(partial(fn, actor, **kwargs_for(fn, existing)), names)
                    gone = await outcome(partial(fn, actor, **kwargs_for(fn, missing)), names)
                    checked += 1
                    where = f"{attr}.{name} as {who}"
                    if there != gone:
                        problems.append(f"{where}: existing {there} != missing {gone}")
                    elif takes_ids and there[0] not in ("NotFoundError", "PermissionDeniedError"):
                        problems.append(f"{where}: not refused: {there}")
        assert not problems, "\n".join(problems)
        assert checked >= 18 * len(ACTORS)
        # nothing was written or cancelled by the refused calls
        after = await app.mailings.status(ADMIN, existing["mailing_id"])
        assert after == before and after.state is MailingState.COMPLETED
        chat = await app.messages.list_for_staff(ADMIN, "c3", mark_read=False)
        assert [m.id for m in chat if m.mailing_id is None] == [existing["message_id"]]
        [shared] = await app.shares.list_documents(ADMIN, existing["folder_id"])
        assert shared.id == existing["share_id"] and shared.active
        assert len(await app.shares.list_messages(ADMIN, existing["channel_id"])) == 1


async def test_the_matrix_sees_a_leak(backend: Any) -> None:
    """The comparison is not vacuous: an admin reaches c3 (existing: answered;
    missing: NotFoundError), so the two outcomes differ."""
    store, tmp_path = backend
    async with make_app(store, tmp_path) as app:
        existing = await seed(app)
        fn = app.messages.list_for_staff
        names = ["c3", "c-none"]
        there = await outcome(lambda: fn(ADMIN, **kwargs_for(fn, existing)), names)
        gone = await outcome(lambda: fn(ADMIN, **kwargs_for(fn, missing_args())), names)
        assert there[0] == "ok" and gone[0] == "NotFoundError"


# -- item 4: restricted unless the host says otherwise ----------------------------------
def test_staff_is_restricted_by_default() -> None:
    clerk = Staff("s1", "f1", "Cleo", Role.CLERK, client_ids={"c004"})
    assert not clerk.unrestricted
    assert clerk.can_access("c004") and not clerk.can_access("c001")
    assistant = Staff("s2", "f1", "Asta", Role.ASSISTANT)
    assert not assistant.unrestricted and not assistant.can_access("c001")
    assert Staff("s3", "f1", "Uwe", Role.CLERK, unrestricted=True).can_access("c001")


@pytest.mark.parametrize("flag", [1, "yes", None])
def test_contradictory_or_odd_flags_are_refused(flag: object) -> None:
    with pytest.raises(InvalidInputError) as info:
        Staff("s1", "f1", "Cleo", Role.CLERK, unrestricted=True, client_ids={"c004"})
    assert info.value.field == "client_ids"
    with pytest.raises(InvalidInputError) as odd:
        Staff("s1", "f1", "Cleo", Role.CLERK, unrestricted=flag)  # type: ignore[arg-type]
    assert odd.value.field == "unrestricted"


async def test_default_staff_reach_only_their_clients(backend: Any) -> None:
    store, tmp_path = backend
    async with make_app(store, tmp_path) as app:
        directory = app.directory
        assert isinstance(directory, MemoryDirectory | SqlDirectory)
        await directory.put_staff(Staff("c004", "f1", "Clara", Role.CLERK, client_ids={"c4"}))
        await directory.put_staff(Staff("asta", "f1", "Asta", Role.ASSISTANT))
        stored = await directory.get_staff("f1", "c004")
        assert not stored.unrestricted and stored.client_ids == {"c4"}
        await app.messages.send(ADMIN, "c1", "Nur für Anna")
        clara, asta = StaffActor("f1", "c004"), StaffActor("f1", "asta")
        assert await app.messages.list_for_staff(clara, "c4") == []
        for actor in (clara, asta):
            with pytest.raises(NotFoundError):
                await app.messages.list_for_staff(actor, "c1")
        with pytest.raises(PermissionDeniedError):  # a restricted clerk may not mail
            await app.mailings.submit(clara, Audience.everyone(), "An alle")


async def test_migration_makes_legacy_client_lists_restricted(tmp_path: Path) -> None:
    """A 0.1 row (client list, ``unrestricted=1`` from the old default) is read as
    restricted after migration 3; a row without a list keeps its flag; a row
    written without the column is restricted."""
    path = tmp_path / "v2.db"
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at INTEGER NOT NULL)"
    )
    for m in load_migrations("sqlite")[:2]:
        conn.executescript(m.sql)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (m.version, m.name))
    conn.execute("INSERT INTO dir_firms (id, name) VALUES ('f1', 'Kanzlei')")
    conn.executemany(
        "INSERT INTO dir_staff (firm_id, id, name, role, unrestricted, client_ids)"
        " VALUES ('f1', ?, ?, 'clerk', ?, ?)",
        [("legacy", "Lea", 1, '["c004"]'), ("all", "Uwe", 1, "[]"), ("few", "Fee", 0, '["c1"]')],
    )
    conn.commit()
    conn.close()
    async with SQLiteStore(path) as store:
        directory = SqlDirectory(store)
        legacy = await directory.get_staff("f1", "legacy")
        assert not legacy.unrestricted and legacy.client_ids == {"c004"}
        assert (await directory.get_staff("f1", "all")).unrestricted
        assert not (await directory.get_staff("f1", "few")).unrestricted
        await store.sql_write(
            [
                (
                    "INSERT INTO dir_staff (firm_id, id, name, role) VALUES (?, ?, ?, ?)",
                    [("f1", "plain", "Paul", "clerk")],
                )
            ]
        )
        assert not (await directory.get_staff("f1", "plain")).unrestricted


@pytest.mark.postgres
async def test_postgres_migration_makes_legacy_client_lists_restricted() -> None:
    from clientcomm.testing.postgres import isolated_store

    async with isolated_store(pg_admin_url()) as store:
        directory = SqlDirectory(store)
        write = store.sql_write
        await write([("INSERT INTO dir_firms (id, name) VALUES (?, ?)", [("f1", "Kanzlei")])])
        await write(
            [
                (
                    "INSERT INTO dir_staff (firm_id, id, name, role, unrestricted, client_ids)"
                    " VALUES (?, ?, ?, 'clerk', ?, ?)",
                    [("f1", "legacy", "Lea", 1, '["c004"]'), ("f1", "all", "Uwe", 1, "[]")],
                )
            ]
        )
        [migration] = [m for m in load_migrations("postgres") if m.name == "staff_restricted"]
        await write([(stmt, [()]) for stmt in migration.sql.split(";") if stmt.strip(" \n-")])
        legacy = await directory.get_staff("f1", "legacy")
        assert not legacy.unrestricted and legacy.client_ids == {"c004"}
        assert (await directory.get_staff("f1", "all")).unrestricted
        await write(
            [
                (
                    "INSERT INTO dir_staff (firm_id, id, name, role) VALUES (?, ?, ?, ?)",
                    [("f1", "plain", "Paul", "clerk")],
                )
            ]
        )
        assert not (await directory.get_staff("f1", "plain")).unrestricted


# -- item 5: reports scoped to what the actor may see; cancel needs the whole ----------
@pytest.fixture
async def strict(backend: Any) -> AsyncIterator[ClientComm]:
    store, tmp_path = backend
    async with make_app(store, tmp_path, access=RoleAccessPolicy(RESTRICTED_MAY_MAIL)) as app:
        yield app


RITA = StaffActor("f1", "restricted")  # reaches c1 and c2


async def test_reports_list_only_the_clients_she_may_see(strict: ClientComm) -> None:
    to_all = await strict.mailings.submit(
        ADMIN, Audience.everyone() | Audience.clients("c5"), "An alle"
    )
    await strict.drain()
    full = await strict.mailings.status(ADMIN, to_all.id)
    assert (full.total, full.delivered, full.skipped) == (5, 5, 1)
    mine = await strict.mailings.status(RITA, to_all.id)
    assert (mine.total, mine.delivered, mine.pending, mine.skipped) == (2, 2, 0, 0)
    assert mine.notifications_sent == 1  # c1's contact; c2's has no address
    assert mine.notifications_sent + mine.notifications_failed <= full.notifications_sent + (
        full.notifications_failed
    )
    rows = [e.client_id async for e in strict.mailings.ledger(RITA, to_all.id)]
    assert rows == ["c1", "c2"]
    csv_lines = [line async for line in strict.mailings.export_csv(RITA, to_all.id)]
    assert [line.split(",")[1] for line in csv_lines] == ["client_id", "c1", "c2"]
    jsonl = [line async for line in strict.mailings.export_jsonl(RITA, to_all.id)]
    assert len(jsonl) == 2
    seen = [p async for p in strict.mailings.follow(RITA, to_all.id, interval=0.01)]
    assert seen[-1] == mine and seen[-1].all_done


async def test_a_mailing_she_sees_none_of_answers_as_missing(strict: ClientComm) -> None:
    other = await strict.mailings.submit(ADMIN, Audience.clients("c3", "c4"), "Nicht für Rita")
    calls: list[Callable[[str], Awaitable[object]]] = [
        partial(strict.mailings.status, RITA),
        partial(strict.mailings.cancel, RITA),
    ]
    for call in calls:
        answers = []
        for mailing_id in (other.id, "ml-none"):
            with pytest.raises(NotFoundError) as info:
                await call(mailing_id)
            answers.append(str(info.value).replace(mailing_id, "<id>"))
        assert answers[0] == answers[1]
    with pytest.raises(NotFoundError):
        await strict.mailings.ledger(RITA, other.id).__anext__()


async def test_follow_ends_for_a_scoped_view(strict: ClientComm) -> None:
    to_all = await strict.mailings.submit(ADMIN, Audience.everyone(), "An alle")
    follow = strict.mailings.follow(RITA, to_all.id, interval=0.01)
    first = await follow.__anext__()
    assert (first.total, first.pending) == (2, 2)
    await strict.drain()
    rest = [p async for p in follow]
    assert rest[-1].state is MailingState.COMPLETED and rest[-1].all_done
    assert rest[-1].delivered == 2


async def test_cancel_needs_authority_over_the_whole_mailing(strict: ClientComm) -> None:
    to_all = await strict.mailings.submit(ADMIN, Audience.everyone(), "An alle")
    with pytest.raises(NotFoundError) as info:
        await strict.mailings.cancel(RITA, to_all.id)
    assert info.value.kind == "mailing"
    progress = await strict.mailings.status(ADMIN, to_all.id)
    assert progress.state is MailingState.SENDING and progress.pending == 5  # untouched
    own = await strict.mailings.submit(RITA, Audience.clients("c1", "c2"), "Nur meine")
    final = await strict.mailings.cancel(RITA, own.id)
    assert final.state is MailingState.CANCELLED and final.cancelled == 2


async def test_unread_counts_refuse_unknown_and_foreign_clients(backend: Any) -> None:
    store, tmp_path = backend
    async with make_app(store, tmp_path) as app:
        assert await app.messages.unread_counts(ADMIN, ["c1"]) == {"c1": 0}
        for client_id in ("c-none", "x1"):  # unknown; firm f2's client
            with pytest.raises(NotFoundError) as info:
                await app.messages.unread_counts(ADMIN, ["c1", client_id])
            assert (info.value.kind, info.value.id) == ("client", client_id)


async def test_a_page_that_does_not_decode_hides_nobody(backend: Any) -> None:
    """A recipient page that cannot be read may hold clients out of her reach:
    she then has no authority over the whole mailing; an admin still has."""
    store, tmp_path = backend
    policy = RoleAccessPolicy(RESTRICTED_MAY_MAIL)
    async with make_app(store, tmp_path, access=policy, mailing_batch=1) as app:
        receipt = await app.mailings.submit(ADMIN, Audience.clients("c1", "c3"), "Zwei Seiten")
        async with store.transaction("f1") as tx:
            pages = await tx.list(PAGE_KIND, parent=receipt.id)
            assert len(pages) == 2
            [hidden] = [p for p in pages if b"c3" in p.body]
            await tx.update([hidden.evolve(body=b"{not json")])
        with pytest.raises(NotFoundError):
            await app.mailings.cancel(RITA, receipt.id)
        assert (await app.mailings.status(RITA, receipt.id)).total == 1  # c1 only
        # an admin reaches every client of the firm, so the unreadable page hides
        # nobody from her (cancel itself then meets the bad page: item 3's matter)
        ledger = Ledger(app.mailings)
        admin = await app.mailings.sender(ADMIN, "mailing.cancel")
        assert (await ledger.reach(admin, "f1", receipt.id, "mailing.cancel")).full
        rita = await app.mailings.sender(RITA, "mailing.cancel")
        assert not (await ledger.reach(rita, "f1", receipt.id, "mailing.cancel")).full


async def test_export_csv_refuses_before_the_header(strict: ClientComm) -> None:
    other = await strict.mailings.submit(ADMIN, Audience.clients("c3"), "Nicht für Rita")
    with pytest.raises(NotFoundError):
        await strict.mailings.export_csv(RITA, other.id).__anext__()
