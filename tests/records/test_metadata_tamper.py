"""The metadata tamper suite (hardening item 10.2), over memory, SQLite and PostgreSQL.

Every attribute of every stored kind is declared in the record registry
(``Kind.integrity``) as protected (sealed, in the associated data, bound into
the sealed value, MACed, a wrapped key) or as deciding neither who receives
nor what is shown. For each kind with protected attributes the cases are
enumerated from that declaration: each protected attribute's stored value is
edited, swapped with the value of another record of the same client (or
mailing) and with the value of another client's record, directly in the store.
Every case must be refused: the reader gets an ``IntegrityError``, or the
tampered record alone fails (the others are still shown and delivered); no
tampered value is ever shown, no copy reaches a client it was not meant for.
"""

from __future__ import annotations

import copy
import enum
import functools
import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest

from clientcomm import (
    Audience,
    ClientActor,
    ClientComm,
    Contact,
    ManualClock,
    StaffActor,
    WritableDirectory,
    directory_for,
)
from clientcomm.attachments import (
    AttachmentInfo,
    AttachmentInput,
    AttachmentMode,
    StoredAttachment,
)
from clientcomm.blobs.memory import MemoryBlobStore
from clientcomm.crypto import LocalKeyProvider, MasterKey
from clientcomm.crypto.context import SealContext
from clientcomm.crypto.envelope import SealRequest, sealed_key_version
from clientcomm.errors import IntegrityError, NotFoundError
from clientcomm.mail.memory import MemoryTransport
from clientcomm.mailing.records import MAILING_KIND, PAGE_KIND, RecipientPage, staging_owner
from clientcomm.messages.records import MESSAGE_KIND, MessageRecord
from clientcomm.messages.rules import authenticated, encode_body, sealed_plaintext, text_context
from clientcomm.notifications import (
    FANOUT_KIND,
    INAPP_KIND,
    JOB_KIND,
    NOTICE_KEY_KIND,
    FanoutBatch,
    FanoutStatus,
    InAppNotification,
    InAppRecord,
    JobStatus,
    LinkTemplates,
    NoticeKey,
    NoticeKeys,
    NotificationEvent,
    NotificationKind,
    NotifyJob,
    client_contact_recipients,
    delivery_status,
    enqueue,
    fanout_batch,
    list_inapp,
    prepare,
)
from clientcomm.notifications.inapp import inapp_records
from clientcomm.notifications.keys import NOTICE_KEY_ID, NOTICE_KEY_OWNER
from clientcomm.records import INTEGRITY, REGISTRY, Kind, Records, bound, converter
from clientcomm.records.docs import load_all
from clientcomm.rules.readstate import Author, UnreadFor
from clientcomm.storage.base import Record, Store
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import MAIL, T0, make_app, seed

ADMIN = StaffActor("f1", "admin")
MANAGER = StaffActor("f1", "manager")
PDF = b"%PDF-1.4\n" + b"k" * 300
PDF2 = b"%PDF-1.4\n" + b"v" * 700
PROTECTED = {"sealed", "aad", "bound", "mac", "key"}
NEW = NotificationKind.NEW_MESSAGE
SCENARIOS = {
    MESSAGE_KIND,
    MAILING_KIND,
    PAGE_KIND,
    FANOUT_KIND,
    JOB_KIND,
    INAPP_KIND,
    NOTICE_KEY_KIND,
    # conversations: their scenarios are in tests/conversations/test_tamper.py
    "conversation",
    "conversation.comment",
    # sharing: the scenario is tests/sharing/test_tamper.py
    "share",
    "portal.place",
    "portal.message",
    # serial-letter runs: scenarios in tests/letters_run/test_tamper.py
    "letters.run",
    "letters.doc",
    "letters.download",
}
"""The kinds with protected attributes, each with its scenario below."""


def protected(kind: Kind[Any]) -> list[str]:
    return [
        f.name
        for f in attrs.fields(kind.cls)
        if f.name != "meta" and (kind.integrity_of(f.name) or "").partition(":")[0] in PROTECTED
    ]


# -- the declarations ---------------------------------------------------------------------


def test_every_attribute_of_every_kind_declares_its_integrity() -> None:
    registry = load_all()
    for kind in registry:
        for f in attrs.fields(kind.cls):
            if f.name == "meta":
                continue
            how = kind.integrity_of(f.name)
            assert how is not None, f"{kind.name}.{f.name} declares no integrity"
            assert how.partition(":")[0] in INTEGRITY


def test_every_kind_with_protected_attributes_has_a_tamper_scenario() -> None:
    registry = load_all()
    assert {k.name for k in registry if protected(k)} == SCENARIOS


# -- raw tampering ------------------------------------------------------------------------

Location = tuple[Any, ...]
"""("column", name) | ("data", key) | ("item", key, index, sub) | ("field", key, sub)"""


def location_of(kind: Kind[Any], attr: str) -> Location:
    for column, name in kind.columns.items():
        if name == attr:
            return ("column", column)
    return ("data", attr)


def read_at(record: Record, loc: Location) -> Any:
    if loc[0] == "column":
        return getattr(record, loc[1])
    if loc[0] == "data":
        return record.data.get(loc[1])
    if loc[0] == "field":
        return (record.data.get(loc[1]) or {}).get(loc[2])
    items = record.data.get(loc[1]) or []
    return items[loc[2]].get(loc[3]) if loc[2] < len(items) else None


def write_at(record: Record, loc: Location, value: Any) -> Record:
    if loc[0] == "column":
        return record.evolve(**{loc[1]: value})
    data = copy.deepcopy(dict(record.data))
    if loc[0] == "data":
        if value is None:
            data.pop(loc[1], None)
        else:
            data[loc[1]] = value
    elif loc[0] == "field":
        data[loc[1]][loc[2]] = value
    else:
        data[loc[1]][loc[2]][loc[3]] = value
    return record.evolve(data=data)


def edits(value: Any, enum_type: type[enum.Enum] | None = None) -> list[Any]:
    """Plausible edits of a stored value (never the value itself)."""
    out: list[Any]
    if enum_type is not None:
        out = [m.value for m in enum_type if m.value != value]
    elif isinstance(value, bool):
        out = [not value]
    elif isinstance(value, int):
        out = [value + 1, max(0, value - 1)]
    elif isinstance(value, bytes):
        flipped = bytearray(value)
        if flipped:
            flipped[len(flipped) // 2] ^= 1
        out = [bytes(flipped)]
    elif isinstance(value, str):
        out = [value + "x", value[:-1]] if value else ["x"]
    elif isinstance(value, list):
        out = [[], value + value[:1], list(reversed(value))] if value else [["x"]]
    elif isinstance(value, dict):
        out = [{}]
    elif hasattr(value, "isoformat"):
        out = [value + timedelta(seconds=1), value - timedelta(days=1)]
    else:
        out = ["x"]
    return [v for v in out if v != value]


async def rewrite(store: Store, record: Record, change: Callable[[Record], Record]) -> None:
    """Replace a stored record by ``change(record)``, as a database editor would
    (delete and insert, so even ``id`` and ``created_at`` can change)."""
    new = change(record).evolve(seq=0, version=0, lease_owner=None, lease_until=None)
    async with store.transaction(record.firm_id) as tx:
        await tx.delete(record.kind, [record.id])
        await tx.insert([new])


async def apply(store: Store, case: Case, target: Record, same: Record, other: Record) -> None:
    """Tamper with ``target`` as ``case`` says. Ids are unique, so an id is
    swapped by exchanging the two records' ids (both are rewritten)."""
    source = same if case.how == "swap-same" else other
    if (
        case.loc == ("column", "id")
        and case.how.startswith("swap")
        and source.firm_id == target.firm_id
    ):
        async with store.transaction(target.firm_id) as tx:
            await tx.delete(target.kind, [target.id, source.id])
            await tx.insert(
                [
                    r.evolve(id=new_id, seq=0, version=0, lease_owner=None, lease_until=None)
                    for r, new_id in ((target, source.id), (source, target.id))
                ]
            )
        return
    await rewrite(store, target, lambda r: write_at(r, case.loc, case.value))


async def raw(store: Store, kind: str, id: str) -> Record:
    async with store.transaction("f1") as tx:
        return await tx.get(kind, id)


@attrs.frozen
class Case:
    attr: str
    how: str  # "edit" | "swap-same" | "swap-other"
    loc: Location
    value: Any

    def __str__(self) -> str:
        return f"{self.attr} {self.how} at {self.loc[1:]}: {self.value!r:.60}"


def cases_for(
    kind: Kind[Any],
    target: Record,
    same: Record,
    other: Record,
    *,
    extra: Callable[[str, Location], list[Location]] = lambda a, loc: [loc],
) -> list[Case]:
    """Every case for ``target``: each protected attribute's locations edited,
    and swapped with ``same`` (same client/mailing) and ``other`` (another)."""
    out: list[Case] = []
    for attr in protected(kind):
        enum_type = kind.status if location_of(kind, attr) == ("column", "status") else None
        field_type = attrs.fields_dict(kind.cls)[attr].type
        if isinstance(field_type, type) and issubclass(field_type, enum.Enum):
            enum_type = field_type
        if attr == "author":
            enum_type = Author
        default = attrs.fields_dict(kind.cls)[attr].default
        for loc in extra(attr, location_of(kind, attr)):

            def effective(record: Record, loc: Location = loc, default: Any = default) -> Any:
                # data omits a default value: an edit or swap must differ from it
                value = read_at(record, loc)
                plain_default = default not in (None, attrs.NOTHING) and not isinstance(
                    default,
                    attrs.Factory,  # type: ignore[arg-type]
                )
                if value is None and loc[0] == "data" and plain_default:
                    return converter.unstructure(default)
                return value

            value = effective(target)
            if value is None and "datetime" in str(field_type):
                # an unset time gets set ones (typed columns take no other value)
                soon, past = T0 + timedelta(hours=1), T0 - timedelta(hours=1)
                times: list[Any] = [soon, past] if loc[0] == "column" else [soon.isoformat()]
                out += [Case(attr, "set", loc, v) for v in times]
            if not (value is None and loc[0] == "column"):
                out += [Case(attr, "edit", loc, v) for v in edits(value, enum_type)]
            for how, source in (("swap-same", same), ("swap-other", other)):
                swapped = read_at(source, loc)
                if swapped != value and effective(source) != value:
                    out.append(Case(attr, how, loc, swapped))
    covered = {c.attr for c in out}
    assert covered == set(protected(kind)), f"no case for {set(protected(kind)) - covered}"
    return out


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path, mailing_batch=2) as application:
            yield application


# -- messages ---------------------------------------------------------------------------------

VIEWS: list[tuple[str, Any, str]] = [
    ("staff", ADMIN, "c1"),
    ("staff", ADMIN, "c2"),
    ("client", ClientActor("f1", "c1"), "c1"),
    ("client", ClientActor("f1", "c2"), "c2"),
]


def _shown(message: Any) -> Any:
    return attrs.evolve(message, seq=0)  # a rewritten record gets a new seq


async def views(app: ClientComm) -> list[dict[str, Any] | IntegrityError]:
    """What each reader is shown: messages by id, or the error of the page."""
    out: list[dict[str, Any] | IntegrityError] = []
    for side, actor, client_id in VIEWS:
        page: list[Any]
        try:
            if side == "staff":
                page = await app.messages.list_for_staff(actor, client_id, mark_read=False)
            else:
                page = await app.messages.list_for_client(actor, mark_read=False)
        except IntegrityError as exc:
            out.append(exc)
            continue
        out.append({m.id: _shown(m) for m in page})
    return out


async def opened(app: ClientComm, message_id: str, attachment_id: str) -> bytes | None:
    """The attachment's bytes as its client opens it, or None when refused."""
    for client in ("c1", "c2"):
        try:
            chunks = await app.messages.open_attachment(
                ClientActor("f1", client), message_id, attachment_id
            )
            return b"".join([c async for c in chunks])
        except (IntegrityError, NotFoundError):
            continue
    return None


def attachment_locations(attr: str, loc: Location) -> list[Location]:
    if attr != "attachments":
        return [loc]
    subs = ["id", "blob_id", "mode", "stream_key"]
    return [loc] + [("item", "attachments", 0, s) for s in subs]


def message_cases(kind: Kind[Any], t: Record, s: Record, o: Record) -> list[Case]:
    cases = cases_for(kind, t, s, o, extra=attachment_locations)
    atts = ("data", "attachments")
    moved = s.data["attachments"][0]
    # the reference moved from one of the client's messages to another: instead
    # of the target's own, and beside it
    cases.append(Case("attachments", "move-in", atts, [moved]))
    cases.append(Case("attachments", "add", atts, [*t.data["attachments"], moved]))
    # a clear descriptor put beside the sealed one
    leaked = {
        **t.data["attachments"][0],
        "filename": "Harmlos.pdf",
        "size": 1,
        "content_type": "application/pdf",
    }
    cases.append(Case("attachments", "clear-name", atts, [leaked]))
    return cases


async def test_message_metadata_tampering_is_refused(app: ClientComm) -> None:
    kind = REGISTRY.kind(MESSAGE_KIND)
    pdf = [AttachmentInput.from_bytes("Kündigung.pdf", PDF, "application/pdf")]
    reply = [AttachmentInput.from_bytes("Antwort.pdf", PDF2, "application/pdf")]
    # the file name and media type are not stored in clear any more
    probe = await raw(
        app.store, MESSAGE_KIND, await app.messages.send(ADMIN, "c1", "P", attachments=pdf)
    )
    assert "Kündigung" not in repr(probe.data) and "application/pdf" not in repr(probe.data)

    refusals = 0
    done: set[str] = set()
    i = 0
    total = 1
    while i < total:
        # fresh records every round: the target (staff to c1), another message
        # of the same client (its reply) and another client's message
        target = await app.messages.send(ADMIN, "c1", f"Ihre Kündigung {i}", attachments=pdf)
        same = await app.messages.send(
            ClientActor("f1", "c1"), "c1", f"Antwort {i}", attachments=reply
        )
        other = await app.messages.send(MANAGER, "c2", f"Vertrag {i}", attachments=reply)
        t, s, o = [await raw(app.store, MESSAGE_KIND, m) for m in (target, same, other)]
        cases = message_cases(kind, t, s, o)
        total = len(cases)
        case = cases[i]
        i += 1
        before = await views(app)
        att_id = t.data["attachments"][0]["id"]
        await apply(app.store, case, t, s, o)
        after = await views(app)
        label = f"{case} on {type(app.store).__name__}"
        refused = False
        for shown_before, shown_after in zip(before, after, strict=True):
            assert isinstance(shown_before, dict)
            if isinstance(shown_after, IntegrityError):
                refused = True
                continue
            for mid, shown in shown_after.items():
                # nothing tampered is shown: every message shown, as it was
                assert shown_before.get(mid) == shown, f"{label}: a tampered value is shown"
            missing = set(shown_before) - set(shown_after)
            # only the tampered record fails (an id swap tampers with both)
            tampered = {target, *([case.value] if case.loc == ("column", "id") else [])}
            assert missing <= tampered, f"{label}: another message is not shown"
            refused = refused or target in missing
        try:
            one = await app.messages.get_for_client(ClientActor("f1", "c1"), target)
        except (IntegrityError, NotFoundError):
            refused = True
        else:
            first_view = before[2]
            assert isinstance(first_view, dict)
            assert _shown(one) == attrs.evolve(first_view[target], unread=False), (
                f"{label}: get_for_client shows a tampered value"
            )
        got = await opened(app, target, att_id)
        assert got in (None, PDF), f"{label}: the attachment opened as something else"
        refused = refused or got is None
        assert refused, f"{label}: not refused"
        refusals += 1
        async with app.store.transaction("f1") as tx:  # the next round reads clean chats
            ids = [target, same, other, *([case.value] if case.loc == ("column", "id") else [])]
            await tx.delete(MESSAGE_KIND, ids)
        done.add(case.attr)
    assert done == set(protected(kind))
    assert refusals == total


# -- mailings and their recipient pages -----------------------------------------------------

M1_CLIENTS = ("c1", "c2", "c3")  # pages of two: [c1, c2] and [c3]
M2_CLIENTS = ("c4", "c6")
EVERYONE = ("c1", "c2", "c3", "c4", "c6")


async def submit_pair(app: ClientComm, i: int) -> tuple[str, str, str]:
    pdf = [AttachmentInput.from_bytes("Kündigung.pdf", PDF, "application/pdf")]
    other_pdf = [AttachmentInput.from_bytes("Anlage.pdf", PDF2, "application/pdf")]
    m1 = await app.mailings.submit(
        ADMIN, Audience.clients(*M1_CLIENTS), f"Rundschreiben {i}", attachments=pdf
    )
    m2 = await app.mailings.submit(
        MANAGER,
        Audience.clients(*M2_CLIENTS),
        f"Anderes {i}",
        attachments=other_pdf,
        attachment_mode=AttachmentMode.SHARED,
        notify=False,
    )
    m3 = await app.mailings.submit(StaffActor("f2", "admin2"), Audience.clients("x1"), f"F2 {i}")
    return m1.id, m2.id, m3.id


async def copies_of(app: ClientComm, text: str) -> dict[str, Any]:
    """Each client's copy with ``text`` as the client and as staff see it."""
    out: dict[str, Any] = {}
    for client in EVERYONE:
        mine = [
            m
            for m in await app.messages.list_for_client(ClientActor("f1", client), mark_read=False)
            if m.text == text
        ]
        staff = [
            m
            for m in await app.messages.list_for_staff(ADMIN, client, mark_read=False)
            if m.text == text
        ]
        assert len(mine) <= 1 and len(staff) == len(mine)
        if mine:
            out[client] = (mine[0], staff[0])
    return out


def _check_copy(label: str, shown: Any, sender: str, name: str, data: bytes) -> None:
    client_view, staff_view = shown
    assert client_view.from_firm and staff_view.author_id == sender, f"{label}: author"
    for view in (client_view, staff_view):
        [att] = view.attachments
        assert (att.filename, att.size, att.content_type) == (
            name,
            len(data),
            "application/pdf",
        ), f"{label}: attachment descriptor"


async def _deliver_all(app: ClientComm) -> None:
    await app.drain()
    clock = app.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(hours=3))  # a send time moved into the future is due now
    await app.drain()


async def test_mailing_and_page_tampering_is_refused(app: ClientComm) -> None:
    mailing_kind = REGISTRY.kind(MAILING_KIND)
    page_kind = REGISTRY.kind(PAGE_KIND)
    # no file name of a staged attachment in clear either
    m1, _, _ = await submit_pair(app, -1)
    staged = await raw(app.store, MAILING_KIND, m1)
    assert "Kündigung" not in repr(staged.data)
    await _deliver_all(app)

    i = 0
    total = 1
    refusals = 0
    done: set[tuple[str, str]] = set()
    while i < total:
        m1, m2, m3 = await submit_pair(app, i)
        mailing = [await raw(app.store, MAILING_KIND, m) for m in (m1, m2)]
        async with app.store.transaction("f2") as tx:
            mailing.append(await tx.get(MAILING_KIND, m3))
        pages = [
            await raw(app.store, PAGE_KIND, RecipientPage.id_for(m, n))
            for m, n in ((m1, 0), (m1, 1), (m2, 0))
        ]
        cases = [
            ("mailing", c) for c in cases_for(mailing_kind, *mailing, extra=attachment_locations)
        ]
        moved = mailing[1].data["attachments"][0]
        cases.append(("mailing", Case("attachments", "move-in", ("data", "attachments"), [moved])))
        page_cases = cases_for(page_kind, *pages)
        for clients in (["c1", "c2", "c4"], ["c1", "c4"], ["c4", "c6"], ["c2", "c1"], ["c1"]):
            body = json.dumps(clients, separators=(",", ":")).encode()
            page_cases.append(Case("clients", "recipients", ("column", "body"), body))
        cases += [("page", c) for c in page_cases]
        total = len(cases)
        which, case = cases[i]
        i += 1
        both = case.loc == ("column", "id") and case.how.startswith("swap")
        if which == "mailing":
            await apply(app.store, case, *mailing)
        else:
            await apply(app.store, case, *pages)
        await _deliver_all(app)
        label = f"{which} {case} on {type(app.store).__name__}"
        got = await copies_of(app, f"Rundschreiben {i - 1}")
        # none delivered where not meant, none shown with a tampered value
        assert set(got) <= set(M1_CLIENTS), f"{label}: a copy reached a non-recipient"
        for client, shown in got.items():
            _check_copy(f"{label} ({client})", shown, "admin", "Kündigung.pdf", PDF)
            assert shown[1].mailing_id == m1
        # refused: the tampered mailing delivers nothing, a tampered page alone fails
        if which == "mailing":
            assert not got, f"{label}: the tampered mailing was delivered"
        else:
            # the other page of the mailing is delivered (unless an id swap
            # tampered with it too), and the failure is visible in the status
            untouched = set() if both and case.how == "swap-same" else {"c3"}
            assert set(got) == untouched, f"{label}: delivered to {sorted(got)}"
            try:
                progress = await app.mailings.status(ADMIN, m1)
            except IntegrityError:
                pass  # a page that does not decode at all: the status says so
            else:
                reached = sum(
                    (progress.delivered, progress.failed, progress.cancelled, progress.pending)
                )
                # failed visibly, or (a page moved away) missing from the count
                assert progress.failed > 0 or reached < progress.total, f"{label}: not visible"
        # the other mailings went out as they were (an id swap tampered with
        # the other record too: it may fail, never deliver wrongly)
        others = await copies_of(app, f"Anderes {i - 1}")
        hurt = both and case.how == ("swap-same" if which == "mailing" else "swap-other")
        if hurt:
            assert set(others) <= set(M2_CLIENTS), f"{label}: a copy reached a non-recipient"
        else:
            assert set(others) == set(M2_CLIENTS), f"{label}: the other mailing was hurt"
        for client, shown in others.items():
            _check_copy(f"{label} ({client})", shown, "manager", "Anlage.pdf", PDF2)
        [f2_copy] = [
            m
            for m in await app.messages.list_for_client(ClientActor("f2", "x1"), mark_read=False)
            if m.text == f"F2 {i - 1}"
        ]
        assert f2_copy.from_firm
        refusals += 1
        done.add((which, case.attr))
    assert {a for w, a in done if w == "mailing"} == set(protected(mailing_kind))
    assert {a for w, a in done if w == "page"} == set(protected(page_kind))
    assert refusals == total


# -- records written before 0.2 ----------------------------------------------------------------


async def test_records_written_before_bound_metadata_are_read_as_before(app: ClientComm) -> None:
    """A message whose sealed text has no bound header and whose attachment
    descriptor is in clear, and a mailing whose staged text is plain and whose
    pages carry no MAC (the layout before 0.2), read and deliver as before."""
    firm = "f1"
    prepared = await app.attachments.intake(
        [AttachmentInput.from_bytes("Alt.pdf", PDF, "application/pdf")]
    )
    mid = "0" * 32
    copies = await app.attachments.store_copies(firm, "c1", mid, prepared)
    [sealed] = await app.sealer.seal_many(
        [SealRequest(text_context(firm, "c1", mid), b"Alte Nachricht")]
    )
    old = MessageRecord(
        id=mid,
        client_id="c1",
        unread_for=UnreadFor.CLIENT,
        sealed_text=sealed,
        sent_at=T0,
        author=Author.STAFF,
        author_id="admin",
        attachments=copies.stored["c1"],
    )
    async with Records(app.store).transaction(firm) as tx:
        await tx.insert([old])
        await app.attachments.settle(tx, copies.reservation)
    stored = await raw(app.store, MESSAGE_KIND, mid)
    assert stored.data["attachments"][0]["filename"] == "Alt.pdf"  # the old, clear layout
    [shown] = await app.messages.list_for_client(ClientActor(firm, "c1"), mark_read=False)
    assert shown.text == "Alte Nachricht" and shown.from_firm
    assert [(a.filename, a.size) for a in shown.attachments] == [("Alt.pdf", len(PDF))]
    chunks = await app.messages.open_attachment(
        ClientActor(firm, "c1"), mid, shown.attachments[0].id
    )
    assert b"".join([c async for c in chunks]) == PDF

    # a mailing staged the old way: plain staged text, pages without a MAC
    receipt = await app.mailings.submit(ADMIN, Audience.clients(*M1_CLIENTS), "Altes Rundschreiben")
    [plain] = await app.sealer.seal_many(
        [
            SealRequest(
                SealContext(firm, staging_owner(receipt.id), MAILING_KIND, receipt.id, "text"),
                b"Altes Rundschreiben",
            )
        ]
    )
    await rewrite(
        app.store, await raw(app.store, MAILING_KIND, receipt.id), lambda r: r.evolve(body=plain)
    )
    for n in (0, 1):
        page = await raw(app.store, PAGE_KIND, RecipientPage.id_for(receipt.id, n))
        await rewrite(
            app.store,
            page,
            lambda r: r.evolve(data={k: v for k, v in r.data.items() if k != "mac"}),
        )
    await app.drain()
    got = await copies_of(app, "Altes Rundschreiben")
    assert set(got) == set(M1_CLIENTS)
    progress = await app.mailings.status(ADMIN, receipt.id)
    assert progress.delivered == 3 and progress.failed == 0


def test_bound_plaintexts_refuse_damaged_headers() -> None:
    assert bound.unpack(b"plain text") == (None, b"plain text")
    meta = {"a": 1, "name": "K\u00fcndigung.pdf"}
    assert bound.unpack(bound.pack(meta, b"\x00text")) == (meta, b"\x00text")
    for damaged in (bound.MAGIC, bound.MAGIC + b"[1]\x00x", bound.MAGIC + b"{\x00x"):
        with pytest.raises(IntegrityError):
            bound.unpack(damaged)


def test_each_bound_message_field_edited_is_refused() -> None:
    """The checks themselves, pure: each bound field edited is refused."""
    info = AttachmentInfo("a1", "K\u00fcndigung.pdf", 10, "application/pdf")
    att = StoredAttachment(info, "att-1", AttachmentMode.PER_COPY, b"k")
    m = MessageRecord("m1", "c1", UnreadFor.CLIENT, b"", T0, Author.STAFF, "admin", (att,))
    plain = sealed_plaintext(m, b"Text")
    stored = attrs.evolve(m, attachments=(att.stripped(),))
    assert authenticated(stored, plain) == (m, None, "Text")
    with_subject = sealed_plaintext(m, encode_body("Text", "Betreff"))
    assert authenticated(stored, with_subject) == (m, "Betreff", "Text")
    for edited in (
        attrs.evolve(stored, author=Author.CLIENT),
        attrs.evolve(stored, author_id="clerk"),
        attrs.evolve(stored, sent_at=T0 + timedelta(microseconds=1)),
        attrs.evolve(stored, unread_for=UnreadFor.STAFF),
        attrs.evolve(stored, mailing_id="x"),
        attrs.evolve(stored, attachments=()),
        attrs.evolve(stored, attachments=(att.stripped(), att.stripped())),
        attrs.evolve(stored, attachments=(attrs.evolve(att.stripped(), blob_id="att-2"),)),
        attrs.evolve(stored, attachments=(attrs.evolve(att, info=attrs.evolve(info, size=11)),)),
    ):
        with pytest.raises(IntegrityError):
            authenticated(edited, plain)


# -- notifications: fan-out batches, outbox jobs, in-app records, the notice key -----------

NOTICE_LINKS = LinkTemplates(
    default="https://portal.example/{firm_id}/{kind}/{event_id}/{client_id}/{cause_id}"
)
NOTICE_CONTACTS = (
    Contact("k2", "f1", "c2", "Bernd Bau", email="bernd@example.com", registered=True),
    Contact("k1b", "f1", "c1", "Armin Alt", email="armin@example.com", registered=True),
    Contact("k3b", "f1", "c3", "Carla Chor", email="carla.chor@example.com", registered=True),
    Contact("k4", "f1", "c4", "Dora Dach", email="dora@example.com", registered=True),
    Contact("k5", "f1", "c5", "Emil Ehemalig", email="emil@example.com", registered=True),
    Contact("k6", "f1", "c6", "Frieda Fink", email="frieda@example.com", registered=True),
    Contact("kx", "f2", "x1", "Xaver Fremd", email="xaver@example.com", registered=True),
)
Notice = tuple[str, str, str]
"""What a sent notice says: (address, display name, link)."""


@pytest.fixture(params=STORE_BACKENDS)
async def notice_app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    """An app whose links name everything a notice is about (firm, kind,
    event, client, cause), and a registered contact with an address for
    every client."""
    async for store in open_backend(request.param, tmp_path):
        directory = directory_for(store)
        await seed(directory)
        for contact in NOTICE_CONTACTS:
            await directory.put_contact(contact)
        clock = ManualClock(T0)
        yield ClientComm(
            store=store,
            directory=directory,
            keys=LocalKeyProvider(store, MasterKey.generate(), clock=clock),
            blobs=MemoryBlobStore(),
            transport=MemoryTransport(),
            links=NOTICE_LINKS,
            mail=MAIL,
            clock=clock,
        )


def sent_notices(app: ClientComm) -> list[Notice]:
    transport = app.transport
    assert isinstance(transport, MemoryTransport)
    out: list[Notice] = []
    for message in transport.messages():
        to = message["To"].addresses[0]
        body = message.get_body(("plain",))
        assert body is not None
        found = re.search(r"https://portal\.example/\S+", body.get_content())
        assert found is not None
        out.append((to.addr_spec, to.display_name, found.group(0)))
    return out


def clear_sent(app: ClientComm) -> None:
    transport = app.transport
    assert isinstance(transport, MemoryTransport)
    transport.clear()


def _event(kind: NotificationKind, event_id: str, client: str, cause: str) -> NotificationEvent:
    return NotificationEvent(
        kind=kind,
        firm_id="f1",
        firm_name="Kanzlei Müller",
        event_id=event_id,
        cause_id=cause,
        client_id=client,
    )


async def batch_notices(app: ClientComm, batch: FanoutBatch) -> set[Notice]:
    """The notices an untampered ``batch`` gives (through the recipient rules)."""
    contacts = await app.directory.list_contacts("f1", list(batch.client_ids))
    out: set[Notice] = set()
    for client, cause in batch.items:
        link = NOTICE_LINKS.link(_event(batch.kind, batch.event_id, client, cause))
        for r in client_contact_recipients(contacts.get(client, ())).recipients:
            out.add((r.email, r.name, link))
    return out


def decodes(record: Record) -> bool:
    try:
        REGISTRY.decode(record)
    except IntegrityError:
        return False
    return True


def job_notice(job: NotifyJob) -> Notice:
    assert job.to.email is not None and job.to.name is not None and job.link is not None
    return (job.to.email, job.to.name, job.link)


async def test_fanout_batch_tampering_is_refused(notice_app: ClientComm) -> None:
    app = notice_app
    kind = REGISTRY.kind(FANOUT_KIND)
    key = await app.notice_keys.get("f1")
    i = 0
    total = 1
    done: set[str] = set()
    while i < total:
        # the target and another batch of the same event, and another event's
        # batch for other clients
        made = [
            fanout_batch(f"ev{i}", NEW, [("c1", f"m1-{i}"), ("c2", f"m2-{i}")], now=T0, key=key),
            fanout_batch(f"ev{i}", NEW, [("c3", f"m3-{i}")], now=T0, key=key),
            fanout_batch(f"other{i}", NEW, [("c4", f"m4-{i}"), ("c6", f"m6-{i}")], now=T0, key=key),
        ]
        async with Records(app.store).transaction("f1") as tx:
            await tx.insert(made)
        t, s, o = [await raw(app.store, FANOUT_KIND, b.id) for b in made]
        cases = cases_for(kind, t, s, o)
        # a MAC stripped (as if written before 0.2), and a client added with
        # a cause, both lists edited together
        cases.append(Case("mac", "strip", ("data", "mac"), None))
        for add in ("c5", "c4"):
            cases.append(Case("client_ids", f"add {add}", ("data", "client_ids"), add))
        total = len(cases)
        case = cases[i]
        i += 1
        label = f"{case} on {type(app.store).__name__}"
        if case.how.startswith("add "):
            extra = case.value

            def both(r: Record, extra: str = extra) -> Record:
                data = {
                    **r.data,
                    "client_ids": [*r.data["client_ids"], extra],
                    "cause_ids": [*r.data["cause_ids"], f"m-{extra}"],
                }
                return r.evolve(data=data)

            await rewrite(app.store, t, both)
        else:
            await apply(app.store, case, t, s, o)
        await app.drain()
        expected = {b.id: await batch_notices(app, b) for b in made}
        legit = set().union(*expected.values())
        sent = sent_notices(app)
        assert set(sent) <= legit, f"{label}: a notice to {set(sent) - legit}"
        assert len(sent) == len(set(sent)), f"{label}: a notice sent twice"
        # the tampered batch notifies nobody; the others (unless an id swap
        # tampered with them too) are notified in full
        swapped = case.loc == ("column", "id") and case.how.startswith("swap")
        hurt = {made[1 if case.how == "swap-same" else 2].id} if swapped else set()
        assert not expected[made[0].id] & set(sent), f"{label}: the tampered batch notified"
        for b in made[1:]:
            if b.id not in hurt:
                assert expected[b.id] <= set(sent), f"{label}: batch {b.id} was hurt"
        # ... and fails visibly: marked failed, nothing left pending
        async with app.store.transaction("f1") as rtx:
            rows = await rtx.list(FANOUT_KIND)  # this round's (each round removes its own)
        assert all(r.status != FanoutStatus.PENDING.value for r in rows), f"{label}: pending"
        failed = [r for r in rows if r.status == FanoutStatus.FAILED.value]
        assert any(r.data.get("reason") == "integrity" or not decodes(r) for r in failed), (
            f"{label}: not failed for integrity"
        )
        async with app.store.transaction("f1") as rtx:
            await rtx.delete(FANOUT_KIND, [r.id for r in rows])
        clear_sent(app)
        done.add(case.attr)
    assert done == set(protected(kind))


async def test_a_mailing_with_a_tampered_batch_shows_the_failed_notices(
    notice_app: ClientComm,
) -> None:
    """A client added to a queued mailing's fan-out batch: the copies were
    delivered as frozen, no notice goes out from that batch (nobody at c4 is
    notified), and the status and ledger show the notices failed."""
    app = notice_app
    receipt = await app.mailings.submit(ADMIN, Audience.clients(*M1_CLIENTS), "Rundschreiben")
    await app.run_step("mailing.fanout")
    async with app.store.transaction("f1") as rtx:
        [batch] = await rtx.list(FANOUT_KIND, parent=receipt.id)

    def add_c4(r: Record) -> Record:
        data = {
            **r.data,
            "client_ids": [*r.data["client_ids"], "c4"],
            "cause_ids": [*r.data["cause_ids"], "0" * 32],
        }
        return r.evolve(data=data)

    await rewrite(app.store, batch, add_c4)
    await app.drain()
    assert sent_notices(app) == []
    progress = await app.mailings.status(ADMIN, receipt.id)
    assert progress.delivered == 3 and progress.notifications_sent == 0
    assert progress.notifications_failed >= 3 and progress.notifications_pending == 0
    rows = [e async for e in app.mailings.ledger(ADMIN, receipt.id)]
    assert [r.client_id for r in rows] == list(M1_CLIENTS)
    assert all(r.notification_errors == ("integrity",) for r in rows)


async def enqueue_jobs(app: ClientComm, i: int) -> list[NotifyJob]:
    """The target (to Anna for c1), another notice of the same event to
    another contact of c1 (Armin), and another client's (Dora for c4)."""
    key = await app.notice_keys.get("f1")
    contacts = await app.directory.list_contacts("f1", ["c1", "c4"])
    out: list[NotifyJob] = []
    async with Records(app.store).transaction("f1") as tx:
        for client, event_id in (("c1", f"ev{i}"), ("c4", f"other{i}")):
            plan = client_contact_recipients(contacts[client])
            event = _event(NEW, event_id, client, f"m-{client}-{i}")
            out += await enqueue(tx, prepare(event, plan, NOTICE_LINKS), now=T0, key=key)
    [anna] = [j for j in out if j.to.email == "anna@example.com"]
    [armin] = [j for j in out if j.to.email == "armin@example.com"]
    [dora] = [j for j in out if j.to.email == "dora@example.com"]
    return [anna, armin, dora]


def recipient_locations(attr: str, loc: Location) -> list[Location]:
    if attr != "to":
        return [loc]
    return [("field", "to", sub) for sub in ("ref", "role", "name", "email", "language")]


async def test_notify_job_tampering_is_refused(notice_app: ClientComm) -> None:
    app = notice_app
    kind = REGISTRY.kind(JOB_KIND)
    i = 0
    total = 1
    done: set[str] = set()
    while i < total:
        jobs = await enqueue_jobs(app, i)
        t, s, o = [await raw(app.store, JOB_KIND, j.id) for j in jobs]
        cases = cases_for(kind, t, s, o, extra=recipient_locations)
        cases.append(Case("mac", "strip", ("data", "mac"), None))
        cases.append(Case("to", "edit", ("field", "to", "email"), "attacker@evil.example"))
        total = len(cases)
        case = cases[i]
        i += 1
        label = f"{case} on {type(app.store).__name__}"
        await apply(app.store, case, t, s, o)
        await app.drain()
        sent = sent_notices(app)
        legit = {job_notice(j) for j in jobs}
        assert set(sent) <= legit, f"{label}: a notice to {set(sent) - legit}"
        assert len(sent) == len(set(sent)), f"{label}: a notice sent twice"
        assert job_notice(jobs[0]) not in sent, f"{label}: the tampered job was sent"
        swapped = case.loc == ("column", "id") and case.how.startswith("swap")
        hurt = {jobs[1 if case.how == "swap-same" else 2].id} if swapped else set()
        for job in jobs[1:]:
            if job.id not in hurt:
                assert job_notice(job) in sent, f"{label}: job {job.id} was hurt"
        # failed visibly (integrity, or malformed when it does not decode),
        # nothing left pending, and a retry does not send it either
        ids = {t.id, s.id, o.id, *([case.value] if case.loc == ("column", "id") else [])}
        async with Records(app.store).transaction("f1") as tx:
            rows = await tx.raw.get_many(JOB_KIND, ids)
        assert all(r.status != JobStatus.PENDING.value for r in rows.values()), label
        reasons = {(r.data.get("error") or {}).get("reason") for r in rows.values()}
        assert reasons & {"integrity", "malformed"}, f"{label}: failed for {reasons}"
        assert await app.retry_notifications("f1", [r for r in rows]) == 0, f"{label}: requeued"
        await app.drain()
        assert sent_notices(app) == sent, f"{label}: sent after a retry"
        async with app.store.transaction("f1") as rtx:
            await rtx.delete(JOB_KIND, list(ids))
        clear_sent(app)
        done.add(case.attr)
    assert done == set(protected(kind))


async def test_a_retried_job_gets_a_fresh_mac(notice_app: ClientComm) -> None:
    """retry_failed rebuilds a job from the Directory (a fixed address): the
    rebuilt job carries a MAC over what it is now and is delivered."""
    app = notice_app
    directory = app.directory
    assert isinstance(directory, WritableDirectory)
    await directory.put_contact(Contact("k4", "f1", "c4", "Dora Dach", email=None, registered=True))
    [job] = [j for j in await enqueue_jobs_for(app, "c4") if j.status is JobStatus.FAILED]
    await directory.put_contact(
        Contact("k4", "f1", "c4", "Dora Dach", email="dora.neu@example.com", registered=True)
    )
    assert await app.retry_notifications("f1", [job.id]) == 1
    await app.drain()
    assert [n[0] for n in sent_notices(app)] == ["dora.neu@example.com"]


async def enqueue_jobs_for(app: ClientComm, client: str) -> list[NotifyJob]:
    key = await app.notice_keys.get("f1")
    contacts = await app.directory.list_contacts("f1", [client])
    plan = client_contact_recipients(contacts[client])
    async with Records(app.store).transaction("f1") as tx:
        return await enqueue(
            tx, prepare(_event(NEW, "retry", client, "m-r"), plan, NOTICE_LINKS), now=T0, key=key
        )


async def listed(app: ClientComm, staff_id: str) -> dict[str, InAppNotification]:
    key = await app.notice_keys.get("f1", create=False)
    async with Records(app.store).transaction("f1") as tx:
        return {
            n.id: attrs.evolve(n, seq=0) for n in await list_inapp(tx, staff_id, key=key, limit=500)
        }


async def test_inapp_tampering_is_refused(notice_app: ClientComm) -> None:
    app = notice_app
    kind = REGISTRY.kind(INAPP_KIND)
    i = 0
    total = 1
    done: set[str] = set()
    while i < total:
        # the admin's notices: the target (a comment of c1), another of c1,
        # another client's (c4); the manager gets one of c1 too
        key = await app.notice_keys.get("f1")
        made: list[InAppRecord] = []
        for event_id, client, name, staff_ids in (
            (f"conv{i}", "c1", "Anna Alt", ("admin", "manager")),
            (f"conv{i}b", "c1", "Anna Alt", ("admin",)),
            (f"conv{i}c", "c4", "Dora Dach", ("admin",)),
        ):
            event = attrs.evolve(
                _event(NotificationKind.NEW_COMMENT, event_id, client, f"k-{event_id}"),
                client_name=name,
            )
            made += inapp_records(event, staff_ids, now=T0, key=key)
        async with Records(app.store).transaction("f1") as tx:
            await tx.insert(made)
        target, same, other = made[0], made[2], made[3]
        t, s, o = [await raw(app.store, INAPP_KIND, r.id) for r in (target, same, other)]
        before = {staff: await listed(app, staff) for staff in ("admin", "manager")}
        assert set(before["admin"]) == {target.id, same.id, other.id}
        cases = cases_for(kind, t, s, o)
        cases.append(Case("mac", "strip", ("data", "mac"), None))
        total = len(cases)
        case = cases[i]
        i += 1
        label = f"{case} on {type(app.store).__name__}"
        await apply(app.store, case, t, s, o)
        swapped = case.loc == ("column", "id") and case.how.startswith("swap")
        hurt = {(same if case.how == "swap-same" else other).id} if swapped else set()
        for staff in ("admin", "manager"):
            after = await listed(app, staff)
            for nid, shown in after.items():
                # nothing tampered is shown, nothing of another staff member
                assert before[staff].get(nid) == shown, f"{label}: {staff} is shown {shown}"
            assert target.id not in after, f"{label}: the tampered record is shown"
            missing = set(before[staff]) - set(after)
            assert missing <= {target.id, *hurt}, f"{label}: {staff} misses {missing}"
        async with app.store.transaction("f1") as rtx:
            ids = [r.id for r in made] + ([case.value] if case.loc == ("column", "id") else [])
            await rtx.delete(INAPP_KIND, ids)
        done.add(case.attr)
    assert done == set(protected(kind))


async def test_notice_key_tampering_is_refused(notice_app: ClientComm) -> None:
    """The firm's key record edited, swapped with another firm's, moved or
    deleted: a process that has not cached the key sends none of the firm's
    notices (left leased, or failed for integrity), never to another address;
    another firm's notices go out."""
    app = notice_app
    kind = REGISTRY.kind(NOTICE_KEY_KIND)
    for firm in ("f1", "f2"):
        await app.notice_keys.get(firm)
    f1_key, f2_key = [
        await raw_of(app.store, firm, NOTICE_KEY_KIND, NOTICE_KEY_ID) for firm in ("f1", "f2")
    ]
    cases = [Case("sealed_key", "edit", ("column", "body"), v) for v in edits(f1_key.body)]
    cases.append(Case("sealed_key", "swap-other", ("column", "body"), f2_key.body))
    cases.append(Case("id", "edit", ("column", "id"), "another-key"))
    cases.append(Case("id", "delete", ("column", "id"), None))
    done: set[str] = set()
    for n, case in enumerate(cases):
        label = f"{case} on {type(app.store).__name__}"
        key1 = await app.notice_keys.get("f1")
        key2 = await app.notice_keys.get("f2")
        event1 = _event(NEW, f"ev{n}", "c1", f"m{n}")
        event2 = attrs.evolve(_event(NEW, f"f2ev{n}", "x1", f"x{n}"), firm_id="f2")
        for firm, event, key in (("f1", event1, key1), ("f2", event2, key2)):
            contacts = await app.directory.list_contacts(firm, [event.client_id or ""])
            plan = client_contact_recipients(contacts[event.client_id or ""])
            async with Records(app.store).transaction(firm) as tx:
                await enqueue(tx, prepare(event, plan, NOTICE_LINKS), now=T0, key=key)
        current = await raw_of(app.store, "f1", NOTICE_KEY_KIND, NOTICE_KEY_ID)
        if case.how == "delete":
            async with app.store.transaction("f1") as rtx:
                await rtx.delete(NOTICE_KEY_KIND, [NOTICE_KEY_ID])
        else:
            await rewrite(
                app.store, current, functools.partial(write_at, loc=case.loc, value=case.value)
            )
        app.notice_keys = NoticeKeys(app.store, app.sealer, clock=app.clock)  # a fresh process
        await app.drain()
        sent = sent_notices(app)
        assert [s for s in sent if s[0] != "xaver@example.com"] == [], f"{label}: f1 notified"
        assert [s[0] for s in sent] == ["xaver@example.com"], f"{label}: f2 not notified"
        done.add(case.attr)
        # repair for the next case: the original key record back, leases run out
        async with app.store.transaction("f1") as rtx:
            await rtx.delete(NOTICE_KEY_KIND, [NOTICE_KEY_ID, "another-key"])
            await rtx.insert([f1_key.evolve(seq=0, version=0)])
            pending = await rtx.list(JOB_KIND, status=JobStatus.PENDING.value)
            await rtx.delete(JOB_KIND, [r.id for r in pending])
        app.notice_keys = NoticeKeys(app.store, app.sealer, clock=app.clock)
        clear_sent(app)
    assert done == set(protected(kind))


async def raw_of(store: Store, firm: str, kind: str, id: str) -> Record:
    async with store.transaction(firm) as tx:
        return await tx.get(kind, id)


async def test_notification_records_written_before_the_notice_key(
    notice_app: ClientComm,
) -> None:
    """Batches, jobs and in-app records without a MAC (the layout before 0.2)
    are read as before while the firm has no notice key; when the key is made
    they are adopted (and delivered, listed); after that a record without a
    MAC is refused like an edited one."""
    app = notice_app
    old_batch = fanout_batch("old-mailing", NEW, [("c1", "m-old")], now=T0)
    contacts = await app.directory.list_contacts("f1", ["c4"])
    plan = client_contact_recipients(contacts["c4"])
    comment = attrs.evolve(
        _event(NotificationKind.NEW_COMMENT, "conv-old", "c4", "k-old"), client_name="Dora Dach"
    )
    async with Records(app.store).transaction("f1") as tx:
        await tx.insert([old_batch])
        await enqueue(
            tx, prepare(_event(NEW, "old-job", "c4", "m-old4"), plan, NOTICE_LINKS), now=T0
        )
        await tx.insert(inapp_records(comment, ["admin"], now=T0))
    stored = await raw(app.store, FANOUT_KIND, old_batch.id)
    assert "mac" not in stored.data
    # no key yet: listed as before
    assert await app.notice_keys.get("f1", create=False) == NoticeKey(None)
    assert len(await listed(app, "admin")) == 1
    # the expansion makes the key (adopting the old records) and delivers all
    await app.drain()
    assert {n[0] for n in sent_notices(app)} == {
        "anna@example.com",
        "armin@example.com",
        "dora@example.com",
    }
    assert len(await listed(app, "admin")) == 1
    adopted = await raw(app.store, INAPP_KIND, next(iter(await listed(app, "admin"))))
    assert adopted.data.get("mac")
    clear_sent(app)
    # a record without a MAC written now is refused
    async with Records(app.store).transaction("f1") as tx:
        late = await enqueue(
            tx, prepare(_event(NEW, "late-job", "c4", "m-late"), plan, NOTICE_LINKS), now=T0
        )
        await tx.insert([fanout_batch("late-mailing", NEW, [("c1", "m-late1")], now=T0)])
    await app.drain()
    assert sent_notices(app) == []
    async with Records(app.store).transaction("f1") as tx:
        status = await delivery_status(tx, "late-job")
        [batch] = await tx.list(FanoutBatch, parent="late-mailing")
    assert status.reasons() == {"integrity": len(late)}
    assert batch.status is FanoutStatus.FAILED and batch.reason == "integrity"


async def test_the_notice_key_survives_rotation_and_rewrap(notice_app: ClientComm) -> None:
    """The key record is reached by key rotation and the firm-wide re-wrap
    (its SealedField declaration): re-wrapped to the owner's new key version,
    it opens to the same key, so notices written before and after verify."""
    app = notice_app
    await enqueue_jobs(app, 0)
    before = await raw_of(app.store, "f1", NOTICE_KEY_KIND, NOTICE_KEY_ID)
    assert sealed_key_version(before.body or b"") == 1
    await app.sealer.rotate_client_key("f1", NOTICE_KEY_OWNER)
    job = await app.queue_rewrap("f1")
    await app.drain()
    after = await raw_of(app.store, "f1", NOTICE_KEY_KIND, NOTICE_KEY_ID)
    assert sealed_key_version(after.body or b"") == 2
    done = await app.rewrap_status("f1", job.id)
    assert done.failed == 0 and done.rewrapped >= 1
    old_key = await app.notice_keys.get("f1")
    app.notice_keys = NoticeKeys(app.store, app.sealer, clock=app.clock)  # a fresh process
    assert await app.notice_keys.get("f1") == old_key
    await enqueue_jobs(app, 1)
    await app.drain()
    assert len(sent_notices(app)) == 6
