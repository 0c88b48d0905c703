"""The mail transport seam: hand one finished e-mail to a mail system.

* :mod:`~clientcomm.mail.base` - the :class:`MailTransport` Protocol and
  :class:`OutgoingMail`;
* :mod:`~clientcomm.mail.memory` - :class:`MemoryTransport` (records what was
  sent, can be told to fail), for tests;
* :mod:`~clientcomm.mail.smtp` - :class:`SMTPTransport` (aiosmtplib, TLS required
  by default);
* :mod:`~clientcomm.mail.addresses` - strict address and header-text checks.

Integrators add their own transport by passing
:func:`clientcomm.testing.transport.check_transport`.
"""

from __future__ import annotations

from clientcomm.mail.addresses import EmailAddress, check_header_text, validate_address
from clientcomm.mail.base import MailTransport, OutgoingMail, SendResult
from clientcomm.mail.memory import MemoryTransport
from clientcomm.mail.smtp import SMTPConfig, SMTPTransport, TLSMode

__all__ = [
    "EmailAddress",
    "MailTransport",
    "MemoryTransport",
    "OutgoingMail",
    "SMTPConfig",
    "SMTPTransport",
    "SendResult",
    "TLSMode",
    "check_header_text",
    "validate_address",
]
