"""Bad input (hardening items 3 and 9): refused where it enters, with an
InvalidInputError naming the field, and nothing written."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clientcomm import (
    Client,
    ClientGroup,
    Contact,
    Firm,
    InvalidInputError,
    PostalAddress,
    Role,
    Staff,
    WritableDirectory,
)
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.attachments import AttachmentInput
from clientcomm.crypto.retention import RETAIN_INDEFINITELY, check_retention
from clientcomm.errors import RetentionError
from clientcomm.mailing import PAGE_KIND
from clientcomm.messages import MESSAGE_KIND, READ_KIND
from clientcomm.notifications.models import SkipReason
from clientcomm.notifications.rules import client_contact_recipients
from clientcomm.records import Records
from clientcomm.rules.audience import Audience
from clientcomm.rules.text import check_identifier, check_line, check_storable, is_identifier
from clientcomm.storage.base import Store
from clientcomm.worker import Worker
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import make_app

ADMIN = StaffActor("f1", "admin")
SURROGATE = "Hallo \ud800"


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path) as application:
            yield application


async def count(store: Store, kind: str, firm: str = "f1") -> int:
    async with store.transaction(firm) as tx:
        return await tx.count(kind)


# -- the shared validator ------------------------------------------------------------------
def test_text_rules() -> None:
    assert check_storable("Grüße 👋", "text") == "Grüße 👋"
    assert check_line("Kanzlei Müller & Partner", "name") == "Kanzlei Müller & Partner"
    for bad, words in [("a\x00b", "NUL"), (SURROGATE, "lone surrogate"), (42, "string")]:
        with pytest.raises(InvalidInputError, match=words) as info:
            check_storable(bad, "text")
        assert info.value.field == "text"
    for bad, words in [
        ("a\r\nb", "line break"),
        ("a\nb", "line break"),
        ("a\u2028b", "line break"),
        ("a\x07b", "control character"),
        ("x" * 301, "at most 300"),
        ("   ", "empty"),
    ]:
        with pytest.raises(InvalidInputError, match=words):
            check_line(bad, "name")
    assert is_identifier("c1") and not is_identifier("c\x00") and not is_identifier("c\ud800")
    assert not is_identifier("") and not is_identifier(" ") and not is_identifier("x" * 201)
    with pytest.raises(InvalidInputError):
        check_identifier("x" * 201, "id")


# -- Directory writes ------------------------------------------------------------------------
BAD_ENTRIES: list[tuple[str, Any, str]] = [
    ("firm name LF", Firm("fx", "Kanzlei\nBcc: x"), "name"),
    ("firm name long", Firm("fx", "K" * 301), "name"),
    ("firm name surrogate", Firm("fx", "Kanzlei \ud800"), "name"),
    ("firm id NUL", Firm("f\x00x", "Kanzlei"), "id"),
    (
        "firm office email surrogate",
        Firm("fx", "K", office_email="a\ud800@b.example"),
        "office_email",
    ),
    ("group name surrogate", ClientGroup("gx", "f1", "Gruppe \ud800"), "name"),
    ("client id NUL", Client("c\x00x", "f1", "Name"), "id"),
    ("client id surrogate", Client("c\ud800", "f1", "Name"), "id"),
    ("client name surrogate", Client("cx", "f1", SURROGATE), "name"),
    ("client name CRLF", Client("cx", "f1", "Anna\r\nAlt"), "name"),
    ("contact name surrogate", Contact("kx", "f1", "c1", SURROGATE), "name"),
    ("contact name CRLF", Contact("kx", "f1", "c1", "Anna\r\nBcc: x"), "name"),
    ("contact email surrogate", Contact("kx", "f1", "c1", "A", email="a\ud800@b.example"), "email"),
    ("contact email NUL", Contact("kx", "f1", "c1", "A", email="a\x00@b.example"), "email"),
    (
        "contact address surrogate",
        Contact("kx", "f1", "c1", "A", address=PostalAddress("A", "Weg \ud800", "1", "B")),
        "address.street",
    ),
    ("staff name surrogate", Staff("sx", "f1", SURROGATE, Role.CLERK), "name"),
    (
        "staff client id NUL",
        Staff("sx", "f1", "S", Role.CLERK, unrestricted=False, client_ids={"c\x00"}),
        "client_ids",
    ),
]


@pytest.fixture(params=STORE_BACKENDS)
async def directory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[WritableDirectory]:
    from clientcomm.directory.memory import MemoryDirectory
    from clientcomm.directory.sql import SqlDirectory

    if request.param == "memory":
        d: WritableDirectory = MemoryDirectory()
        await d.put_firm(Firm("f1", "Kanzlei"))
        await d.put_client(Client("c1", "f1", "Anna"))
        yield d
        return
    async for store in open_backend(request.param, tmp_path):
        d = SqlDirectory(store)  # type: ignore[arg-type]
        await d.put_firm(Firm("f1", "Kanzlei"))
        await d.put_client(Client("c1", "f1", "Anna"))
        yield d


@pytest.mark.parametrize(("name", "entry", "field"), BAD_ENTRIES, ids=[b[0] for b in BAD_ENTRIES])
async def test_directory_refuses_values_it_cannot_keep(
    directory: WritableDirectory, name: str, entry: Any, field: str
) -> None:
    puts: dict[type, Callable[[Any], Awaitable[None]]] = {
        Firm: directory.put_firm,
        ClientGroup: directory.put_group,
        Client: directory.put_client,
        Contact: directory.put_contact,
        Staff: directory.put_staff,
    }
    put = puts[type(entry)]
    with pytest.raises(InvalidInputError) as info:
        await put(entry)
    assert info.value.field == field
    # nothing written
    assert [c.id for c in await directory.list_clients("f1")] == ["c1"]
    assert (await directory.list_contacts("f1", ["c1"]))["c1"] == []
    assert await directory.list_staff("f1") == []
    assert await directory.list_groups("f1") == []
    assert (await directory.get_firm("f1")).name == "Kanzlei"


# -- service calls ----------------------------------------------------------------------------
async def test_message_text_with_a_lone_surrogate_is_refused(app: ClientComm) -> None:
    for actor in (ADMIN, ClientActor("f1", "c1")):
        with pytest.raises(InvalidInputError) as info:
            await app.messages.send(actor, "c1", SURROGATE)
        assert info.value.field == "text"
    with pytest.raises(InvalidInputError) as info:
        await app.messages.send(
            ADMIN, "c1", "Hallo", attachments=[AttachmentInput.from_bytes("a\ud800.txt", b"x")]
        )
    assert info.value.field.startswith("attachments[0].filename")
    assert await count(app.store, MESSAGE_KIND) == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"text": SURROGATE}, "text"),
        ({"audience": ["c1"]}, "audience"),
        ({"audience": "everyone"}, "audience"),
        ({"schedule_at": "2030-01-01T00:00:00Z"}, "schedule_at"),
        ({"schedule_at": 1893456000}, "schedule_at"),
        ({"schedule_at": datetime(2030, 1, 1)}, "schedule_at"),  # naive
        (
            {"attachments": [AttachmentInput.from_bytes("b\ud800.pdf", b"%PDF-1.4")]},
            "attachments[0].filename",
        ),
    ],
    ids=["text", "list", "str-audience", "iso", "epoch", "naive", "filename"],
)
async def test_submit_refuses_bad_values_naming_the_field(
    app: ClientComm, kwargs: dict[str, Any], field: str
) -> None:
    args: dict[str, Any] = {"audience": Audience.clients("c1"), "text": "Hallo", **kwargs}
    with pytest.raises(InvalidInputError) as info:
        await app.mailings.submit(ADMIN, args.pop("audience"), args.pop("text"), **args)
    assert info.value.field.startswith(field)
    if "audience" in kwargs:
        with pytest.raises(InvalidInputError) as info:
            await app.mailings.preview(ADMIN, kwargs["audience"])
        assert info.value.field == "audience"
    assert await count(app.store, "mailing") == 0
    assert await count(app.store, PAGE_KIND) == 0


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Audience.clients(42), "audience.client_ids"),  # type: ignore[arg-type]
        (lambda: Audience.groups(None), "audience.group_ids"),  # type: ignore[arg-type]
        (lambda: Audience.clients("c\x00"), "audience.client_ids"),
        (lambda: Audience.clients("c\ud800"), "audience.client_ids"),
        (lambda: Audience(client_ids=42), "audience.client_ids"),  # type: ignore[arg-type]
        (lambda: Audience(all_active="yes"), "audience.all_active"),
    ],
)
def test_audience_refuses_what_is_no_id(build: Any, field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        build()
    assert info.value.field == field


async def test_a_deleted_file_is_refused_and_leaves_no_staging_key(
    app: ClientComm, tmp_path: Path
) -> None:
    path = tmp_path / "brief.pdf"
    path.write_bytes(b"%PDF-1.4 hallo")
    attachment = AttachmentInput.from_path(path, content_type="application/pdf")
    path.unlink()
    with pytest.raises(InvalidInputError) as info:
        await app.mailings.submit(ADMIN, Audience.clients("c1"), "Hallo", attachments=[attachment])
    assert info.value.field.startswith("attachments[0]")
    assert await count(app.store, "mailing") == 0

    # no key was made for the mailing that never was
    async def staging_keys() -> list[str]:
        found = [r.id async for r in app.store.iterate("f1", "key.client")]
        return [k for k in found if "mailing:" in k]

    assert await staging_keys() == []
    await app.mailings.submit(ADMIN, Audience.clients("c1"), "Hallo")  # makes one
    assert len(await staging_keys()) == 1


@pytest.mark.parametrize("seq", [10**30, 2**63, -1, "5", 1.5, True])
async def test_mark_read_bounds(app: ClientComm, seq: Any) -> None:
    await app.messages.send(ADMIN, "c1", "Hallo")
    with pytest.raises(InvalidInputError) as info:
        await app.messages.mark_read(ADMIN, "c1", up_to_seq=seq)
    assert info.value.field == "up_to_seq"
    assert await count(app.store, READ_KIND) == 1  # the sender's own cursor only
    assert await app.messages.unread_count(ClientActor("f1", "c1"), "c1") == 1
    await app.messages.mark_read(ClientActor("f1", "c1"), "c1", up_to_seq=2**63 - 1)
    assert await app.messages.unread_count(ClientActor("f1", "c1"), "c1") == 0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"before_seq": 10**30}, "before_seq"),
        ({"before_seq": -1}, "before_seq"),
        ({"limit": 0}, "limit"),
        ({"limit": "10"}, "limit"),
    ],
)
async def test_list_bounds(app: ClientComm, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        await app.messages.list_for_staff(ADMIN, "c1", **kwargs)
    assert info.value.field == field


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf"), "1", True])
async def test_follow_refuses_a_busy_poll(app: ClientComm, interval: Any) -> None:
    receipt = await app.mailings.submit(ADMIN, Audience.clients("c1"), "Hallo")
    with pytest.raises(InvalidInputError) as info:
        async for _ in app.mailings.follow(ADMIN, receipt.id, interval=interval):
            pass
    assert info.value.field == "interval"


@pytest.mark.parametrize("lease", [timedelta(0), timedelta(seconds=-5), 60, None])
async def test_leases_must_be_positive(app: ClientComm, lease: Any) -> None:
    with pytest.raises(InvalidInputError) as info:
        ClientComm.in_memory(lease=lease)
    assert info.value.field == "lease"
    with pytest.raises(InvalidInputError) as info:
        await Records(app.store).claim(
            Client, status="pending", owner="w", now=datetime.now(UTC), lease=lease, limit=1
        )
    assert info.value.field == "lease"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"batch": 0}, "batch"),
        ({"idle_interval": -1}, "idle_interval"),
    ],
)
def test_worker_refuses_bad_options(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        Worker(ClientComm.in_memory(), **kwargs)
    assert info.value.field == field


# -- error texts -------------------------------------------------------------------------------
def test_a_contact_name_with_a_line_break_is_not_an_invalid_address() -> None:
    plan = client_contact_recipients(
        [Contact("k1", "f1", "c1", "Anna\r\nBcc: x", email="anna@example.com", registered=True)]
    )
    [skip] = plan.skipped
    assert skip.reason is SkipReason.INVALID_NAME
    assert "line break" in skip.detail and "address" not in skip.detail


def test_retention_error_says_indefinitely() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(RetentionError) as info:
        check_retention(RETAIN_INDEFINITELY, now, firm_id="f1", client_id="c1")
    assert "must be kept indefinitely;" in str(info.value)
    with pytest.raises(RetentionError) as info:
        check_retention(datetime(2030, 1, 1, tzinfo=UTC), now, firm_id="f1", client_id="c1")
    assert "must be kept until 2030-01-01" in str(info.value)
