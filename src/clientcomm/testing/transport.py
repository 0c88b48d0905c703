"""Conformance suite for MailTransport backends.

Every bundled transport passes it, and an integrator's own adapter runs the
very same tests::

    # tests/test_my_transport.py
    import pytest
    from clientcomm.testing.transport import TransportConformance, TransportHarness

    class TestMyTransport(TransportConformance):
        @pytest.fixture
        async def harness(self):
            async with MyTransport(...) as transport:
                yield TransportHarness(
                    transport=transport,
                    received=lambda: [...],  # message bytes the far side got, in order
                    refuse=None,             # or a callable making an address bounce (550)
                )

``received`` must return each accepted message's bytes exactly as handed to
:meth:`~clientcomm.mail.base.MailTransport.send`. The tests are
``async`` and need ``pytest-asyncio`` in auto mode (or mark them).
"""

from __future__ import annotations

import asyncio
import email.message
import email.parser
import email.policy
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import attrs
import pytest

from clientcomm.errors import InvalidInputError, PermanentDeliveryError, TemporaryDeliveryError
from clientcomm.mail.base import MailTransport, OutgoingMail
from clientcomm.notifications.compose import Mailbox, build_message, make_message_id

__all__ = ["TransportConformance", "TransportHarness", "sample_mail"]

_PARSER = email.parser.BytesParser(policy=email.policy.default)


@attrs.frozen
class TransportHarness:
    """A transport under test and a view of what arrived.

    Attributes:
        transport: the backend.
        received: returns the bytes of every accepted message so far, in order.
        refuse: makes later sends to an address fail permanently (550), or
            ``None`` if the backend cannot arrange that (the test is skipped).
    """

    transport: MailTransport
    received: Callable[[], Sequence[bytes]]
    refuse: Callable[[str], None] | None = None


def sample_mail(
    n: int = 0,
    *,
    to: str = "kundin@example.com",
    subject: str = "Neue Nachricht von Kanzlei Müller",
    text: str = "Guten Tag,\nes liegt etwas für Sie bereit.\n",
    html: str | None = "<p>Guten Tag,</p>",
) -> OutgoingMail:
    """A small valid notification-like message with a unique Message-ID."""
    return build_message(
        sender=Mailbox.parse("portal@example.org", "Kanzlei Müller & Partner"),
        to=Mailbox.parse(to, "Jörg Übermann"),
        subject=subject,
        text=text,
        html=html,
        message_id=make_message_id("firm", f"conformance-{n}", "example.org"),
        date=datetime(2026, 1, 2, 9, 30, tzinfo=UTC),
        language="de",
    )


def _parse(data: bytes) -> email.message.EmailMessage:
    parsed = _PARSER.parsebytes(data)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


class TransportConformance:
    """The MailTransport contract. Subclass and provide a ``harness`` fixture."""

    @pytest.fixture
    async def harness(self) -> TransportHarness:  # pragma: no cover - overridden
        raise NotImplementedError("provide a `harness` fixture")

    async def test_satisfies_protocol(self, harness: TransportHarness) -> None:
        assert isinstance(harness.transport, MailTransport)

    async def test_send_delivers_exact_bytes_once(self, harness: TransportHarness) -> None:
        mail = sample_mail(1)
        result = await harness.transport.send(mail)
        assert result.message_id == mail.message_id
        assert tuple(result.accepted) == mail.recipients
        received = list(harness.received())
        assert received == [mail.message]
        parsed = _parse(received[0])
        assert parsed["Message-ID"] == mail.message_id
        assert parsed["Subject"] == "Neue Nachricht von Kanzlei Müller"

    async def test_dot_lines_and_long_bodies_survive(self, harness: TransportHarness) -> None:
        text = ".\n..leading dots\n.\n" + ("Zeile mit Umlauten äöü ß " * 40 + "\n") * 200
        mail = sample_mail(2, text=text, html=None)
        await harness.transport.send(mail)
        (data,) = harness.received()
        assert data == mail.message
        body = _parse(data).get_content()
        assert body.replace("\r\n", "\n") == text

    async def test_concurrent_sends_each_arrive_once(self, harness: TransportHarness) -> None:
        mails = [sample_mail(100 + i, to=f"k{i}@example.com") for i in range(25)]
        results = await asyncio.gather(*(harness.transport.send(m) for m in mails))
        assert sorted(r.message_id for r in results) == sorted(m.message_id for m in mails)
        received = list(harness.received())
        assert sorted(received) == sorted(m.message for m in mails)

    async def test_idn_and_utf8_addresses(self, harness: TransportHarness) -> None:
        idn = sample_mail(3, to="info@bücher.example")
        assert idn.recipients == ("info@xn--bcher-kva.example",)
        assert not idn.smtputf8
        utf8 = sample_mail(4, to="jürgen@example.com")
        assert utf8.smtputf8
        await harness.transport.send(idn)
        await harness.transport.send(utf8)
        received = list(harness.received())
        assert received == [idn.message, utf8.message]
        # RFC 6532 headers are UTF-8; the stdlib's bytes parser would surrogate-escape them.
        parsed = email.parser.Parser(policy=email.policy.default).parsestr(
            received[1].decode("utf-8")
        )
        assert parsed["To"].addresses[0].addr_spec == "jürgen@example.com"

    @pytest.mark.parametrize(
        "field, value",
        [
            ("recipients", "victim@example.com\r\nRCPT TO:<x@evil.example>"),
            ("recipients", "victim@example.com>\nDATA"),
            ("recipients", "Name <victim@example.com>"),
            ("recipients", "a@example.com, b@example.com"),
            ("recipients", "not-an-address"),
            ("sender", "portal@example.org\r\nBcc: x@evil.example"),
            ("sender", ""),
        ],
    )
    async def test_invalid_envelope_is_refused_before_sending(
        self, harness: TransportHarness, field: str, value: str
    ) -> None:
        good = sample_mail(5)
        if field == "recipients":
            bad = attrs.evolve(good, recipients=(value,))
        else:
            bad = attrs.evolve(good, sender=value)
        with pytest.raises(InvalidInputError) as info:
            await harness.transport.send(bad)
        assert info.value.field == field
        assert list(harness.received()) == []

    async def test_no_recipients_is_refused(self, harness: TransportHarness) -> None:
        with pytest.raises(InvalidInputError):
            await harness.transport.send(attrs.evolve(sample_mail(6), recipients=()))
        assert list(harness.received()) == []

    async def test_refused_recipient_is_permanent(self, harness: TransportHarness) -> None:
        if harness.refuse is None:
            pytest.skip("backend cannot refuse addresses on request")
        harness.refuse("nobody@example.com")
        with pytest.raises(PermanentDeliveryError) as info:
            await harness.transport.send(sample_mail(7, to="nobody@example.com"))
        assert info.value.context["code"] == 550
        assert info.value.context["reason"]
        # the transport stays usable
        ok = sample_mail(8)
        await harness.transport.send(ok)
        assert list(harness.received()) == [ok.message]

    async def test_closed_transport_refuses_temporarily(self, harness: TransportHarness) -> None:
        await harness.transport.send(sample_mail(9))
        await harness.transport.aclose()
        with pytest.raises(TemporaryDeliveryError):
            await harness.transport.send(sample_mail(10))
        assert len(list(harness.received())) == 1
