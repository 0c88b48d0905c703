"""Personalised mailings and mailing subjects (issue 10 items 16 and 17), pure
rules and over every Store backend."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clientcomm import (
    ConfigurationError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    StaticClientFields,
)
from clientcomm.actors import ClientActor, StaffActor
from clientcomm.app import ClientComm
from clientcomm.crypto.context import SealContext
from clientcomm.mailing import MAILING_KIND, PAGE_KIND, MailingRecord, MailingState
from clientcomm.mailing.personalise import (
    BUILTIN_FIELDS,
    CopyTemplate,
    Unrenderable,
    is_template,
    known_fields,
    parse_template,
)
from clientcomm.mailing.records import staging_owner
from clientcomm.mailing.rules import decode_staged, encode_staged
from clientcomm.messages import MESSAGE_KIND, MessageRecord, decode_body, text_context
from clientcomm.records import Records, bound
from clientcomm.rules.audience import Audience
from clientcomm.storage.base import Store
from tests.conformance.conftest import STORE_BACKENDS, open_backend
from tests.mailing_support import make_app

ADMIN = StaffActor("f1", "admin")
NAMES = {"c1": "Anna Alt", "c2": "Bernd Bau", "c3": "Carla Chor", "c4": "Dora Dach"}
FIELDS = StaticClientFields(
    {
        "f1": {
            "c1": {"steuernummer": "12/345/67890", "salutation": "Liebe Frau Alt"},
            "c2": {"steuernummer": "98/765/43210"},
        }
    },
    names={"f1": {"steuernummer", "salutation"}},
)


@pytest.fixture(params=STORE_BACKENDS)
async def app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path, fields=FIELDS) as application:
            yield application


@pytest.fixture(params=STORE_BACKENDS)
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async for store in open_backend(request.param, tmp_path):
        yield store


@pytest.fixture(params=STORE_BACKENDS)
async def plain_app(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ClientComm]:
    """An app without host fields."""
    async for store in open_backend(request.param, tmp_path):
        async with make_app(store, tmp_path) as application:
            yield application


async def count(store: Store, kind: str, firm: str = "f1", **kw: object) -> int:
    async with store.transaction(firm) as tx:
        return await tx.count(kind, **kw)  # type: ignore[arg-type]


async def copy_of(app: ClientComm, client_id: str) -> tuple[str | None, str]:
    [msg] = await app.messages.list_for_client(ClientActor("f1", client_id))
    return msg.subject, msg.text


async def ledger(app: ClientComm, mailing_id: str) -> dict[str, tuple[str, str | None]]:
    return {e.client_id: (e.state, e.reason) async for e in app.mailings.ledger(ADMIN, mailing_id)}


# -- the template language (pure) ---------------------------------------------------
def test_parse_and_render() -> None:
    t = parse_template("Hallo {{client_name}}, {{ salutation }}!{{ client_name }}")
    assert t.names == ("client_name", "salutation", "client_name")
    assert t.literals == ("Hallo ", ", ", "!", "")
    assert t.render({"client_name": "A", "salutation": "S"}) == "Hallo A, S!A"
    assert t.fields == {"client_name", "salutation"}
    assert parse_template("kein Platzhalter }} {").literal == "kein Platzhalter }} {"


def test_escape_writes_literal_braces() -> None:
    t = parse_template(r"Vorlage: \{{ client_name }} und {{ client_name }}")
    assert t.render({"client_name": "Anna"}) == "Vorlage: {{ client_name }} und Anna"
    assert parse_template(r"\{{\{{").literal == "{{{{"


@pytest.mark.parametrize(
    "source",
    [
        "{{ client.name }}",  # attribute access
        "{{ client_name.__class__ }}",
        "{{ client_name() }}",  # a call
        "{{ 7*7 }}",  # an expression
        "{{ client_name | upper }}",  # a filter
        "{{ client_name['x'] }}",
        "{{ client_name",  # unclosed
        "{{}}",
        "{{ }}",
        "{{{ client_name }}}",
        "{% for x in y %}{{ x }}{% endfor %}",
        "{{ client\nname }}",
    ],
)
def test_malformed_placeholders_are_refused(source: str) -> None:
    with pytest.raises(InvalidInputError) as err:
        parse_template(source, known=BUILTIN_FIELDS)
    assert err.value.field == "text"
    assert "malformed placeholder" in err.value.message or "unknown placeholder" in str(err.value)


def test_unknown_placeholder_is_named() -> None:
    with pytest.raises(InvalidInputError) as err:
        parse_template("Hallo {{ client_name }}, {{ steuernr }}", known=BUILTIN_FIELDS)
    assert err.value.field == "text" and err.value.value == "steuernr"
    assert "{{ steuernr }}" in str(err.value)
    with pytest.raises(InvalidInputError) as err:
        CopyTemplate.parse("{{ client_name }}", "{{ nope }}").check_known(BUILTIN_FIELDS)
    assert err.value.field == "subject" and err.value.value == "nope"


def test_values_are_never_parsed_again() -> None:
    t = CopyTemplate.parse("Hallo {{ client_name }}")
    body = t.render({"client_name": "{{ salutation }} {% x %} \\{{"})
    assert decode_body(body) == (None, "Hallo {{ salutation }} {% x %} \\{{")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("a\x00b", "unrenderable:client_name"),
        ("Hallo \ud800", "unrenderable:client_name"),
        ("x" * 1001, "unrenderable:client_name"),
        (42, "unrenderable:client_name"),
        (None, "unrenderable:client_name"),
    ],
)
def test_bad_values_cannot_render(value: object, reason: str) -> None:
    with pytest.raises(Unrenderable) as err:
        CopyTemplate.parse("Hallo {{ client_name }}").render({"client_name": value})
    assert err.value.reason == reason


def test_rendered_text_and_subject_are_checked() -> None:
    t = CopyTemplate.parse("{{ salutation }}", "Betreff {{ client_name }}")
    with pytest.raises(Unrenderable, match="unrenderable:salutation"):
        t.render({"client_name": "A"})
    with pytest.raises(Unrenderable, match="unrenderable:text"):
        t.render({"client_name": "A", "salutation": "   "})
    with pytest.raises(Unrenderable, match="unrenderable:subject"):
        t.render({"client_name": "A\nBcc: x", "salutation": "S"})
    with pytest.raises(Unrenderable, match="unrenderable:subject"):
        t.render({"client_name": "x" * 195, "salutation": "S"})
    assert decode_body(t.render({"client_name": "A", "salutation": "S"})) == ("Betreff A", "S")


def test_staged_content_round_trips() -> None:
    assert encode_staged("Text") == b"Text"  # a plain mailing stages as before
    assert decode_staged(b"Text") == (None, "Text", False)
    assert decode_staged(encode_staged("T", "S")) == ("S", "T", False)
    assert decode_staged(encode_staged("{{ a }}", "S", template=True)) == ("S", "{{ a }}", True)
    assert decode_staged(encode_staged("{{ a }}", template=True)) == (None, "{{ a }}", True)
    assert not is_template("Hallo { x }") and is_template("a {{")


async def test_host_field_names_are_checked() -> None:
    bad = StaticClientFields({}, names={"f1": {"client_name"}})
    with pytest.raises(ConfigurationError):
        await known_fields(bad, "f1")
    with pytest.raises(ConfigurationError):
        await known_fields(StaticClientFields({}, names={"f1": {"a.b"}}), "f1")
    assert await known_fields(None, "f1") == BUILTIN_FIELDS
    assert await known_fields(FIELDS, "f1") == BUILTIN_FIELDS | {"steuernummer"}


_NAME = st.sampled_from(["client_name", "salutation", "x", "tax_id"])
_LIT = st.text(alphabet=st.sampled_from("ab{}\\ \n$%é"), max_size=8)


@given(st.lists(st.tuples(_LIT, _NAME), max_size=5), _LIT, st.data())
def test_property_parse_render(
    pairs: list[tuple[str, str]], tail: str, data: st.DataObject
) -> None:
    """Escaped literals and placeholders, joined, parse back to the same parts;
    rendering equals joining the literals with the values."""
    values = {n: data.draw(_LIT, label=n) for n in ("client_name", "salutation", "x", "tax_id")}
    source, expected = [], []
    for lit, name in pairs:
        if lit.endswith(("\\", "{")):  # it would merge with the placeholder's braces
            lit += "."
        source += [lit.replace("{{", "\\{{"), "{{ " + name + " }}"]
        expected += [lit, values[name]]
    source.append(tail.replace("{{", "\\{{"))
    expected.append(tail)
    template = parse_template("".join(source), known=values.keys())
    assert template.names == tuple(n for _, n in pairs)
    assert template.render(values) == "".join(expected)


@given(st.text(alphabet=st.sampled_from("ab{}\\ ._|(1"), max_size=30))
def test_property_parse_fails_only_with_invalid_input(source: str) -> None:
    try:
        template = parse_template(source)
    except InvalidInputError as exc:
        assert exc.field == "text"
    else:
        assert template.render(dict.fromkeys(template.names, "")) is not None


# -- submit and fan-out (every backend) ---------------------------------------------
async def test_personalised_copies(app: ClientComm) -> None:
    text = "{{ salutation }},\nIhre Steuernummer {{ steuernummer }}, {{ client_name }}."
    receipt = await app.mailings.submit(
        ADMIN, Audience.clients("c1", "c2"), text, subject="Frist für {{ client_name }}"
    )
    await app.drain()
    assert await copy_of(app, "c1") == (
        "Frist für Anna Alt",
        "Liebe Frau Alt,\nIhre Steuernummer 12/345/67890, Anna Alt.",
    )
    assert await copy_of(app, "c2") == (
        "Frist für Bernd Bau",
        "Sehr geehrte Damen und Herren,\nIhre Steuernummer 98/765/43210, Bernd Bau.",
    )
    status = await app.mailings.status(ADMIN, receipt.id)
    assert (status.delivered, status.failed, status.state) == (2, 0, MailingState.COMPLETED)
    [staff_view] = await app.messages.list_for_staff(ADMIN, "c1")
    assert staff_view.subject == "Frist für Anna Alt" and staff_view.mailing_id == receipt.id


async def test_a_copy_without_a_value_fails_alone(
    app: ClientComm, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "clientcomm.mailing")
    receipt = await app.mailings.submit(
        ADMIN, Audience.clients("c1", "c2", "c3", "c4"), "Nr. {{ steuernummer }}"
    )
    await app.drain()
    status = await app.mailings.status(ADMIN, receipt.id)
    assert (status.delivered, status.failed, status.pending) == (2, 2, 0)
    assert status.state is MailingState.COMPLETED
    rows = await ledger(app, receipt.id)
    assert rows["c3"] == ("failed", "unrenderable:steuernummer")
    assert rows["c4"] == ("failed", "unrenderable:steuernummer")
    assert rows["c1"][0] == rows["c2"][0] == "delivered"
    assert await count(app.store, MESSAGE_KIND, parent="c3") == 0
    assert (await copy_of(app, "c2"))[1] == "Nr. 98/765/43210"
    assert "2 copies cannot be rendered" in caplog.text
    assert "98/765" not in caplog.text  # no values in the log


@pytest.mark.parametrize(
    "bad",
    ["a\x00b", "Hallo \ud800", "x" * 1001, "Zeile\numbruch"],
)
async def test_poison_values_fail_alone(tmp_path: Path, any_store: Store, bad: str) -> None:
    fields = StaticClientFields(
        {"f1": {"c1": {"nr": bad}, "c2": {"nr": "ok"}}}, names={"f1": {"nr"}}
    )
    async with make_app(any_store, tmp_path, fields=fields) as app:
        receipt = await app.mailings.submit(
            ADMIN, Audience.clients("c1", "c2"), "Nr. {{ nr }}", subject="Betreff {{ nr }}"
        )
        await app.drain()
        rows = await ledger(app, receipt.id)
        assert rows["c2"] == ("delivered", None)
        reason = "unrenderable:subject" if bad == "Zeile\numbruch" else "unrenderable:nr"
        assert rows["c1"] == ("failed", reason)
        assert await copy_of(app, "c2") == ("Betreff ok", "Nr. ok")


async def test_unknown_placeholder_refused_at_submit(app: ClientComm) -> None:
    for text, subject, name, field in [
        ("Hallo {{ vorname }}", None, "vorname", "text"),
        ("Hallo", "Für {{ kundennr }}", "kundennr", "subject"),
    ]:
        with pytest.raises(InvalidInputError) as err:
            await app.mailings.submit(ADMIN, Audience.everyone(), text, subject=subject)
        assert (err.value.field, err.value.value) == (field, name)
        assert f"{{{{ {name} }}}}" in str(err.value)
    with pytest.raises(InvalidInputError) as err:
        await app.mailings.submit(ADMIN, Audience.everyone(), "Hallo {{ client.name }}")
    assert err.value.field == "text" and "malformed" in str(err.value)
    assert await count(app.store, MAILING_KIND) == 0
    assert await count(app.store, PAGE_KIND) == 0


async def test_host_fields_need_a_provider(plain_app: ClientComm) -> None:
    with pytest.raises(InvalidInputError) as err:
        await plain_app.mailings.submit(ADMIN, Audience.everyone(), "Nr. {{ steuernummer }}")
    assert err.value.value == "steuernummer"
    # the built-in names work without one
    await plain_app.mailings.submit(
        ADMIN, Audience.clients("c4"), "{{ salutation }}, {{ client_name }}"
    )
    await plain_app.drain()
    assert (await copy_of(plain_app, "c4"))[1] == "Sehr geehrte Damen und Herren, Dora Dach"
    assert await count(plain_app.store, MAILING_KIND) == 1


async def test_refused_sender_learns_no_field_names(app: ClientComm) -> None:
    with pytest.raises(PermissionDeniedError):
        await app.mailings.submit(StaffActor("f1", "assistant"), Audience.everyone(), "{{ zz }}")
    with pytest.raises(PermissionDeniedError):
        await app.mailings.preview(StaffActor("f1", "assistant"), Audience.everyone(), "{{ zz }}")


async def test_worker_without_the_hook_leaves_copies_queued(
    app: ClientComm, tmp_path: Path
) -> None:
    receipt = await app.mailings.submit(ADMIN, Audience.clients("c1"), "Nr. {{ steuernummer }}")
    other = ClientComm(
        store=app.store,
        directory=app.directory,
        keys=app.sealer.provider,
        blobs=app.blobs,
        transport=app.transport,
        links=app.links,
        mail=app.composer.settings,
        clock=app.clock,
    )
    with pytest.raises(ConfigurationError):
        await other.mailings.step()
    assert await count(app.store, MESSAGE_KIND) == 0
    status = await app.mailings.status(ADMIN, receipt.id)
    assert (status.pending, status.failed) == (1, 0)
    app.clock.advance(app.lease * 2)  # type: ignore[attr-defined]
    await app.drain()
    assert (await copy_of(app, "c1"))[1] == "Nr. 12/345/67890"


async def test_plain_text_takes_the_fast_path(app: ClientComm) -> None:
    """A text without placeholders is staged and sealed exactly as before
    personalisation: the UTF-8 text, one body for every copy."""
    text = "Keine Platzhalter { hier } }}"
    receipt = await app.mailings.submit(ADMIN, Audience.clients("c1", "c2"), text)
    mailing = await Records(app.store).get(MailingRecord, "f1", receipt.id)
    owner = staging_owner(receipt.id)
    staged = await app.sealer.open(
        SealContext("f1", owner, MAILING_KIND, receipt.id, "text"), mailing.sealed_text
    )
    assert bound.unpack(staged)[1] == text.encode()  # after the bound metadata
    await app.drain()
    async for m in Records(app.store).iterate(MessageRecord, "f1"):
        body = await app.sealer.open(text_context("f1", m.client_id, m.id), m.sealed_text)
        assert bound.unpack(body)[1] == text.encode()


async def test_escaped_braces_are_plain_text(app: ClientComm) -> None:
    """Only escapes: staged as plain text, so a worker never reads the
    resulting ``{{ client_name }}`` as a placeholder (as for a mailing staged
    before personalisation)."""
    await app.mailings.submit(ADMIN, Audience.clients("c1"), r"Schreiben Sie \{{ client_name }}")
    await app.drain()
    assert (await copy_of(app, "c1"))[1] == "Schreiben Sie {{ client_name }}"


# -- subject -----------------------------------------------------------------------
async def test_subject_is_shown_with_the_copy(app: ClientComm) -> None:
    await app.mailings.submit(ADMIN, Audience.clients("c1", "c2"), "Text", subject="Neue Fristen")
    await app.drain()
    actor = ClientActor("f1", "c1")
    [msg] = await app.messages.list_for_client(actor)
    assert (msg.subject, msg.text) == ("Neue Fristen", "Text")
    again = await app.messages.get_for_client(actor, msg.id)
    assert again.subject == "Neue Fristen"
    assert "Neue Fristen" not in repr(msg)
    [staff] = await app.messages.list_for_staff(ADMIN, "c2")
    assert staff.subject == "Neue Fristen"
    # the subject is sealed: it is nowhere in the stored rows
    async with app.store.transaction("f1") as tx:
        rows = [*await tx.list(MESSAGE_KIND), *await tx.list(MAILING_KIND)]
    assert rows and all(b"Neue Fristen" not in repr(r).encode() for r in rows)


@pytest.mark.parametrize(
    "subject",
    ["Zeile\nzwei", "a\rb", "x" * 201, "Hallo \ud800", "tab\there", "a\u2028b", 42],
)
async def test_bad_subject_refused(app: ClientComm, subject: object) -> None:
    with pytest.raises(InvalidInputError) as err:
        await app.mailings.submit(ADMIN, Audience.everyone(), "Text", subject=subject)  # type: ignore[arg-type]
    assert err.value.field == "subject"
    assert await count(app.store, MAILING_KIND) == 0


async def test_blank_subject_is_none(app: ClientComm) -> None:
    await app.mailings.submit(ADMIN, Audience.clients("c1"), "Text", subject="  ")
    await app.drain()
    assert await copy_of(app, "c1") == (None, "Text")


# -- preview -----------------------------------------------------------------------
async def test_preview_renders_for_a_chosen_client(app: ClientComm) -> None:
    text = "{{ salutation }}, Nr. {{ steuernummer }}"
    audience = Audience.clients("c1", "c2")
    preview = await app.mailings.preview(
        ADMIN, audience, text, subject="An {{ client_name }}", for_client="c2"
    )
    assert preview.count == 2 and preview.copy is not None
    assert preview.copy.client_id == "c2"
    assert preview.copy.subject == "An Bernd Bau"
    assert preview.copy.text == "Sehr geehrte Damen und Herren, Nr. 98/765/43210"
    first = await app.mailings.preview(ADMIN, audience, text)
    assert first.copy is not None and first.copy.client_id == "c1"
    assert first.copy.text == "Liebe Frau Alt, Nr. 12/345/67890"
    plain = await app.mailings.preview(ADMIN, audience, "Nur Text", subject="S")
    assert plain.copy is not None and (plain.copy.subject, plain.copy.text) == ("S", "Nur Text")
    assert (await app.mailings.preview(ADMIN, audience)).copy is None
    assert await count(app.store, MAILING_KIND) == 0


async def test_preview_refusals(app: ClientComm) -> None:
    audience = Audience.clients("c1", "c3")
    for other in ("c4", "nobody", "x1"):  # not a recipient, unknown, other firm: alike
        with pytest.raises(NotFoundError) as nf:
            await app.mailings.preview(ADMIN, audience, "Hallo", for_client=other)
        assert nf.value.id == other and str(nf.value) == f"client {other!r} not found"
    with pytest.raises(InvalidInputError) as err:
        await app.mailings.preview(ADMIN, audience, "Nr. {{ steuernummer }}", for_client="c3")
    assert err.value.field == "steuernummer" and err.value.value == "c3"
    with pytest.raises(InvalidInputError) as err:
        await app.mailings.preview(ADMIN, audience, "{{ nope }}")
    assert err.value.value == "nope"
    with pytest.raises(InvalidInputError) as err:
        await app.mailings.preview(ADMIN, audience, for_client="c1")
    assert err.value.field == "text"


class CountingFields:
    """A :class:`ClientFields` that counts its calls (one per fan-out batch)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def field_names(self, firm_id: str) -> Collection[str]:
        return {"nr"}

    async def field_values(
        self, firm_id: str, client_ids: Sequence[str]
    ) -> Mapping[str, Mapping[str, str]]:
        self.calls.append(len(client_ids))
        return {c: {"nr": c.upper()} for c in client_ids}


async def test_values_are_fetched_once_per_batch(any_store: Store, tmp_path: Path) -> None:
    fields = CountingFields()
    async with make_app(any_store, tmp_path, fields=fields) as app:
        await app.mailings.submit(ADMIN, Audience.everyone(), "{{ nr }}")
        await app.drain()
        assert fields.calls == [5]
        assert (await copy_of(app, "c6"))[1] == "C6"


class FailingFields(CountingFields):
    """The host's field lookup is down until ``up`` is set."""

    up = False

    async def field_values(
        self, firm_id: str, client_ids: Sequence[str]
    ) -> Mapping[str, Mapping[str, str]]:
        if not self.up:
            raise ConnectionError("host database unreachable")
        return await super().field_values(firm_id, client_ids)


async def test_a_failing_lookup_fails_no_copy(any_store: Store, tmp_path: Path) -> None:
    fields = FailingFields()
    async with make_app(any_store, tmp_path, fields=fields) as app:
        receipt = await app.mailings.submit(ADMIN, Audience.clients("c1", "c2"), "{{ nr }}")
        with pytest.raises(ConnectionError):
            await app.mailings.step()
        status = await app.mailings.status(ADMIN, receipt.id)
        assert (status.pending, status.failed, status.delivered) == (2, 0, 0)
        fields.up = True
        app.clock.advance(app.lease * 2)  # type: ignore[attr-defined]
        await app.drain()
        assert (await copy_of(app, "c2"))[1] == "C2"
        status = await app.mailings.status(ADMIN, receipt.id)
        assert (status.delivered, status.state) == (2, MailingState.COMPLETED)


PDF = b"%PDF-1.7\n" + b"x" * 200 + b"\n%%EOF\n"


async def test_attachments_go_only_with_rendered_copies(app: ClientComm) -> None:
    from clientcomm.attachments import AttachmentInput

    receipt = await app.mailings.submit(
        ADMIN,
        Audience.clients("c1", "c3"),
        "Anbei, {{ steuernummer }}",
        attachments=[AttachmentInput.from_bytes("Info.pdf", PDF, "application/pdf")],
    )
    await app.drain()
    rows = await ledger(app, receipt.id)
    assert rows == {"c1": ("delivered", None), "c3": ("failed", "unrenderable:steuernummer")}
    [msg] = await app.messages.list_for_client(ClientActor("f1", "c1"))
    assert [a.filename for a in msg.attachments] == ["Info.pdf"]
    chunks = [
        c
        async for c in await app.messages.open_attachment(
            ClientActor("f1", "c1"), msg.id, msg.attachments[0].id
        )
    ]
    assert b"".join(chunks) == PDF
    assert await count(app.store, MESSAGE_KIND) == 1
