"""An optional subject line on single messages (issue 10 item 16), over every
Store backend: sealed with the text, shown in every view, validated."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from clientcomm import InvalidInputError
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.messages import (
    MESSAGE_KIND,
    MessageRecord,
    decode_body,
    encode_body,
    text_context,
    validate_subject,
)
from clientcomm.records import Records, bound
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import make_app

ADMIN = StaffActor("f1", "admin")
CLIENT = ClientActor("f1", "c1")


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path) as application:
            yield application


async def stored_count(app: ClientComm) -> int:
    async with app.store.transaction("f1") as tx:
        return await tx.count(MESSAGE_KIND)


async def test_subject_in_every_view(app: ClientComm) -> None:
    mid = await app.messages.send(ADMIN, "c1", "Bitte Belege schicken.", subject="Belege 2025")
    reply = await app.messages.send(CLIENT, "c1", "Anbei.", subject="Re: Belege 2025")
    [r, m] = await app.messages.list_for_client(CLIENT)
    assert (m.id, m.subject, m.text) == (mid, "Belege 2025", "Bitte Belege schicken.")
    assert (r.id, r.subject) == (reply, "Re: Belege 2025")
    assert (await app.messages.get_for_client(CLIENT, mid)).subject == "Belege 2025"
    [sr, sm] = await app.messages.list_for_staff(ADMIN, "c1")
    assert (sm.subject, sr.subject) == ("Belege 2025", "Re: Belege 2025")
    assert "Belege" not in repr(m) + repr(sm)


async def test_no_subject_is_sealed_as_before(app: ClientComm) -> None:
    mid = await app.messages.send(ADMIN, "c1", "Nur Text")
    m = await Records(app.store).get(MessageRecord, "f1", mid)
    body = await app.sealer.open(text_context("f1", "c1", mid), m.sealed_text)
    # after the bound metadata, what every message stored before subjects holds
    assert bound.unpack(body)[1] == b"Nur Text"
    [msg] = await app.messages.list_for_client(CLIENT)
    assert msg.subject is None and msg.text == "Nur Text"
    blank = await app.messages.send(ADMIN, "c1", "Noch einer", subject=" ")
    assert (await app.messages.get_for_client(CLIENT, blank)).subject is None


async def test_subject_is_sealed(app: ClientComm) -> None:
    await app.messages.send(ADMIN, "c1", "Text", subject="Kündigung Mietvertrag")
    async with app.store.transaction("f1") as tx:
        [row] = await tx.list(MESSAGE_KIND)
    assert (
        row.body is not None
        and "Kündigung".encode() not in row.body
        and "Kündigung" not in repr(row.data)
    )


@pytest.mark.parametrize(
    "subject",
    ["a\nb", "a\r\nBcc: x", "x" * 201, "Hallo \ud800", "\x00", "a\u2029b", b"bytes", 1],
)
async def test_bad_subject_refused_nothing_written(app: ClientComm, subject: object) -> None:
    for actor in (ADMIN, CLIENT):
        with pytest.raises(InvalidInputError) as err:
            await app.messages.send(actor, "c1", "Text", subject=subject)  # type: ignore[arg-type]
        assert err.value.field == "subject"
        assert "Hallo" not in str(err.value)  # the value is never echoed
    assert await stored_count(app) == 0


def test_body_framing() -> None:
    assert encode_body("T") == b"T"
    assert decode_body(encode_body("T", "S")) == ("S", "T")
    assert decode_body(encode_body("Zeile\n\nzwei", "Ä")) == ("Ä", "Zeile\n\nzwei")
    assert decode_body(b"legacy text") == (None, "legacy text")
    with pytest.raises(ValueError):
        decode_body(b"\x00Sno text")
    assert validate_subject(None) is None and validate_subject("") is None
    assert validate_subject("x" * 200) == "x" * 200
