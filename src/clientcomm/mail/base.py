"""The MailTransport port: hand one finished message to a mail system.

A transport knows nothing about notifications, templates or the outbox; it
takes an :class:`OutgoingMail` (envelope plus the complete RFC 5322 message as
bytes) and either delivers it or raises

* :class:`~clientcomm.errors.TemporaryDeliveryError` (connection problems, TLS
  or authentication trouble, SMTP 4xx): the outbox retries later, or
* :class:`~clientcomm.errors.PermanentDeliveryError` (SMTP 5xx for this
  message, a refused address): the outbox stops and records the reason.

Both carry ``context`` with ``code`` (SMTP reply code or ``None``), ``reason``
(a short machine-readable word) and ``detail`` (the server's reply text).

Backends: :class:`~clientcomm.mail.memory.MemoryTransport` (records what was
sent, can be told to fail) and :class:`~clientcomm.mail.smtp.SMTPTransport`.
Integrators write their own by passing
:func:`clientcomm.testing.transport.check_transport`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import attrs

from clientcomm.errors import InvalidInputError
from clientcomm.mail.addresses import validate_address

__all__ = ["MailTransport", "OutgoingMail", "SendResult"]


def _recipients(value: str | Iterable[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    return tuple(value)


@attrs.frozen
class OutgoingMail:
    """One message ready for the wire.

    Attributes:
        sender: envelope sender (bare address, ``MAIL FROM``).
        recipients: envelope recipients (bare addresses, ``RCPT TO``).
        message: the complete message (headers and body, CRLF line ends) as bytes;
            hidden from ``repr``.
        message_id: the ``Message-ID`` header's value (with angle brackets), for logs.
        smtputf8: the envelope or headers need the SMTPUTF8 extension.
    """

    sender: str
    recipients: tuple[str, ...] = attrs.field(converter=_recipients)
    message: bytes = attrs.field(repr=False)
    message_id: str
    smtputf8: bool = False

    def validate(self) -> None:
        """Check the envelope before anything is sent.

        Raises:
            InvalidInputError: no recipients, an invalid or injected envelope
                address, or a message that is not bytes.
        """
        validate_address(self.sender, "sender")
        if not self.recipients:
            raise InvalidInputError("recipients", "at least one recipient is required")
        for recipient in self.recipients:
            validate_address(recipient, "recipients")
        if not isinstance(self.message, bytes | bytearray):
            raise InvalidInputError("message", "must be bytes")


@attrs.frozen
class SendResult:
    """What the mail system said when it accepted a message.

    Attributes:
        message_id: the message's ``Message-ID``.
        accepted: recipients the server accepted.
        refused: recipients the server refused while accepting others, with the
            reply, e.g. ``("b@example.org: 550 no such user",)``.
        response: the server's reply to the message data (e.g. a queue id).
    """

    message_id: str
    accepted: tuple[str, ...]
    refused: tuple[str, ...] = ()
    response: str = ""


@runtime_checkable
class MailTransport(Protocol):
    """Delivers finished messages. Safe to call :meth:`send` concurrently: a
    backend bounds its own concurrency and rate."""

    async def send(self, mail: OutgoingMail) -> SendResult:
        """Deliver ``mail`` to every recipient, or raise.

        Raises:
            InvalidInputError: the envelope is invalid (nothing was sent).
            TemporaryDeliveryError: try again later; the message may or may not
                have reached the server (a lost reply after the data was
                accepted), so a retry may deliver it twice with the same
                Message-ID.
            PermanentDeliveryError: the message was refused for good.
        """
        ...

    async def aclose(self) -> None:
        """Close connections; further sends raise TemporaryDeliveryError."""
        ...

    async def __aenter__(self) -> MailTransport: ...

    async def __aexit__(self, *exc: object) -> None: ...
