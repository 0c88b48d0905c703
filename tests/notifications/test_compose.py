"""MIME construction: what the stdlib parser makes of our bytes."""

from __future__ import annotations

import email.header
import email.message
import email.parser
import email.policy
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clientcomm.errors import InvalidInputError
from clientcomm.mail.base import OutgoingMail
from clientcomm.notifications.compose import (
    Mailbox,
    build_message,
    encode_header,
    format_mailbox,
    make_message_id,
    validate_domain,
)

PARSER = email.parser.BytesParser(policy=email.policy.default)
DATE = datetime(2026, 3, 1, 8, 15, tzinfo=UTC)
MID = make_message_id("firm-1", "job-1", "notify.example.org")
SAFE_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=300
)


def parse(data: bytes) -> email.message.EmailMessage:
    msg = PARSER.parsebytes(data)
    assert isinstance(msg, email.message.EmailMessage)
    return msg


def to_name(data: bytes) -> str:
    """The To display name as an RFC 2047 decoder sees it.

    The stdlib's structured-header parser keeps the folding whitespace between
    two adjacent encoded words inside a display name (RFC 2047 6.2 says to drop
    it; Python's own generator output does not round-trip either), so names
    that need several encoded words are checked with ``email.header``.
    """
    parsed = parse(data)
    name = parsed["To"].addresses[0].display_name
    raw = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data)["To"]
    phrase = str(raw).rsplit("<", 1)[0].strip()
    if phrase.startswith("=?"):
        return str(email.header.make_header(email.header.decode_header(phrase)))
    return str(name)


def build(**overrides: object) -> OutgoingMail:
    args: dict[str, object] = {
        "sender": Mailbox.parse("portal@example.org", "Kanzlei Müller"),
        "to": Mailbox.parse("kunde@example.com", "Jörg Übermann"),
        "subject": "Neue Nachricht von Kanzlei Müller",
        "text": "Guten Tag,\nes liegt etwas bereit.\n",
        "html": "<p>Guten Tag,</p>",
        "message_id": MID,
        "date": DATE,
        "language": "de",
    }
    args.update(overrides)
    return build_message(**args)  # type: ignore[arg-type]


def test_multipart_structure_and_headers() -> None:
    mail = build()
    msg = parse(mail.message)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Message-ID"] == MID
    assert msg["Subject"] == "Neue Nachricht von Kanzlei Müller"
    assert msg["From"].addresses[0].display_name == "Kanzlei Müller"
    assert msg["From"].addresses[0].addr_spec == "portal@example.org"
    assert msg["To"].addresses[0].display_name == "Jörg Übermann"
    assert msg["Date"].datetime == DATE
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Content-Language"] == "de"
    assert msg["MIME-Version"] == "1.0"
    text, html = msg.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert text.get_content_charset() == "utf-8"
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert text.get_content().replace("\r\n", "\n") == "Guten Tag,\nes liegt etwas bereit.\n"
    assert html.get_content_type() == "text/html"
    assert html.get_content().strip() == "<p>Guten Tag,</p>"
    assert not msg.defects and not text.defects and not html.defects
    # 7-bit clean on the wire, CRLF everywhere, short lines
    assert mail.message.isascii()
    assert b"\n" not in mail.message.replace(b"\r\n", b"")
    assert all(len(line) <= 78 for line in mail.message.split(b"\r\n"))
    assert mail.sender == "portal@example.org" and mail.recipients == ("kunde@example.com",)


def test_text_only_message() -> None:
    msg = parse(build(html=None).message)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().replace("\r\n", "\n") == "Guten Tag,\nes liegt etwas bereit.\n"


def test_same_inputs_give_same_bytes() -> None:
    assert build().message == build().message
    other = make_message_id("firm-1", "job-2", "notify.example.org")
    assert build(message_id=other).message != build().message


@pytest.mark.parametrize(
    "name",
    [
        'Kanzlei "Müller" & Söhne',
        'Quote " and backslash \\ in ASCII',
        "Plain Name",
        "Dr. Ä. Ö-Ü, Steuerberater (Partner)",
        "ß" * 120,
        "=?utf-8?q?not_an_encoded_word?=",
        "",
    ],
)
def test_display_names_round_trip(name: str) -> None:
    data = build(to=Mailbox.parse("kunde@example.com", name)).message
    msg = parse(data)
    (address,) = msg["To"].addresses
    assert to_name(data) == name
    if len(name.encode()) <= 42 or name.isascii():
        assert address.display_name == name  # one encoded word: the stdlib agrees
    assert address.addr_spec == "kunde@example.com"
    assert not msg["To"].defects


@pytest.mark.parametrize(
    "subject",
    [
        "Plain ASCII subject",
        "Neue Dokumente für Sie – „Kanzlei Müller“ & 'Söhne'",
        "A long ASCII subject " * 12,
        "Umlaute " + "äöüÄÖÜß" * 40,
        "Emoji 📬 and CJK 新しい",
        "x" * 200,
        "  leading and trailing  ",
    ],
)
def test_subjects_round_trip(subject: str) -> None:
    mail = build(subject=subject)
    msg = parse(mail.message)
    assert msg["Subject"] == subject
    assert all(len(line) <= 78 for line in mail.message.split(b"\r\n"))


@given(subject=SAFE_TEXT, name=SAFE_TEXT, text=st.text(max_size=2000))
@settings(max_examples=150, deadline=None)
def test_any_safe_text_round_trips(subject: str, name: str, text: str) -> None:
    text = text.replace("\x00", "")
    mail = build(subject=subject, to=Mailbox.parse("kunde@example.com", name), text=text)
    msg = parse(mail.message)
    assert str(msg["Subject"]) == subject
    assert to_name(mail.message) == name
    assert msg["To"].addresses[0].addr_spec == "kunde@example.com"
    assert msg["Message-ID"] == MID
    body = msg.get_body(("plain",))
    assert body is not None
    normalised = text.replace("\r\n", "\n").replace("\r", "\n")
    assert body.get_content().replace("\r\n", "\n") in (normalised, normalised + "\n")
    assert mail.message.isascii()
    assert all(len(line) <= 998 for line in mail.message.split(b"\r\n"))
    assert list(msg.keys()).count("Subject") == 1 and list(msg.keys()).count("To") == 1


@given(
    st.sampled_from(["subject", "name", "sender_name"]),
    SAFE_TEXT,
    st.sampled_from(["\r\n", "\n", "\r", "\x00", "\x85", "\u2028", "\r\nBcc: evil@example.net"]),
    st.integers(min_value=0, max_value=400),
)
def test_header_injection_is_refused(field: str, text: str, evil: str, at: int) -> None:
    at = at % (len(text) + 1)
    value = text[:at] + evil + text[at:]
    with pytest.raises(InvalidInputError):
        if field == "subject":
            build(subject=value)
        elif field == "name":
            build(to=Mailbox.parse("kunde@example.com", value))
        else:
            build(sender=Mailbox.parse("portal@example.org", value))


def test_header_injection_via_extra_headers_and_names() -> None:
    with pytest.raises(InvalidInputError):
        build(extra_headers=[("X-Tag", "ok\r\nBcc: evil@example.net")])
    with pytest.raises(InvalidInputError):
        build(extra_headers=[("Bcc", "evil@example.net")])
    with pytest.raises(InvalidInputError):
        build(extra_headers=[("X-Bad Name", "v")])
    with pytest.raises(InvalidInputError):
        encode_header("Subject\r\nBcc", "x")
    with pytest.raises(InvalidInputError):
        encode_header("Subject\n", "x")  # a trailing newline must not slip past a `$`
    msg = parse(build(extra_headers=[("X-Clientcomm-Kind", "new_message")]).message)
    assert msg["X-Clientcomm-Kind"] == "new_message"


def test_bad_message_id_date_language() -> None:
    with pytest.raises(InvalidInputError):
        build(message_id="<a\r\nb@example.org>")
    with pytest.raises(InvalidInputError):
        build(message_id="no-brackets@example.org")
    with pytest.raises(InvalidInputError):
        build(date=datetime(2026, 1, 1))
    with pytest.raises(InvalidInputError):
        build(language="de\r\nX: y")
    with pytest.raises(InvalidInputError):
        build(language="de\n")
    with pytest.raises(InvalidInputError):
        build(message_id=MID + "\n")
    msg = parse(build(date=datetime(2026, 1, 1, 10, tzinfo=timezone(timedelta(hours=1)))).message)
    assert msg["Date"].datetime.utcoffset() == timedelta(hours=1)


def test_utf8_local_part_needs_smtputf8_and_idn_is_ascii() -> None:
    utf8 = build(to=Mailbox.parse("jürgen@example.com", "Jürgen"))
    assert utf8.smtputf8
    assert "jürgen@example.com".encode() in utf8.message
    idn = build(to=Mailbox.parse("info@bücher.example", "Info"))
    assert not idn.smtputf8
    assert idn.recipients == ("info@xn--bcher-kva.example",)
    assert parse(idn.message)["To"].addresses[0].domain == "xn--bcher-kva.example"


def test_message_id_is_stable_and_safe() -> None:
    a = make_message_id("firm", "job-1", "Notify.Example.ORG")
    assert a == make_message_id("firm", "job-1", "notify.example.org")
    assert a != make_message_id("firm", "job-2", "notify.example.org")
    assert a != make_message_id("firm2", "job-1", "notify.example.org")
    assert a.startswith("<") and a.endswith("@notify.example.org>")
    weird = make_message_id("firm", "job\r\n<evil>@x", "notify.example.org")
    assert "\r" not in weird and "evil" not in weird
    assert make_message_id("f", "j", "bücher.example").endswith("@xn--bcher-kva.example>")
    for bad in ["localhost", "exa mple.org", "-bad.example", "a..b", "x.example\r\n"]:
        with pytest.raises(InvalidInputError):
            validate_domain(bad)


def test_format_mailbox_folds_long_names() -> None:
    line = format_mailbox("To", Mailbox.parse("kunde@example.com", "Sehr langer Name " * 8))
    assert all(len(part) <= 78 for part in line.split("\r\n"))


def test_mailbox_repr_hides_nothing_sensitive_but_is_bounded() -> None:
    mail = build()
    assert "Guten Tag" not in repr(mail)  # the message bytes are hidden
