"""MemoryTransport: records sent mail in memory and fails on request (for tests)."""

from __future__ import annotations

import email.message
import email.parser
import email.policy
from collections import deque
from collections.abc import Sequence
from typing import Literal

import attrs

from clientcomm.errors import DeliveryError, PermanentDeliveryError, TemporaryDeliveryError
from clientcomm.mail.addresses import validate_address
from clientcomm.mail.base import OutgoingMail, SendResult

__all__ = ["MemoryTransport"]

_PARSER = email.parser.BytesParser(policy=email.policy.default)


@attrs.define
class _Fault:
    remaining: int
    permanent: bool
    code: int
    after_accept: bool
    recipient: str | None

    def matches(self, mail: OutgoingMail) -> bool:
        return self.recipient is None or self.recipient in {r.casefold() for r in mail.recipients}


class MemoryTransport:
    """A faithful in-memory :class:`~clientcomm.mail.base.MailTransport`.

    Every accepted message is appended to :attr:`sent`; :meth:`messages` parses
    them with the stdlib parser for assertions. Faults are scripted with
    :meth:`fail_next` (temporary or permanent, optionally only for one
    recipient, optionally *after* accepting the data, which is how a lost
    server reply produces a legitimate duplicate) and :meth:`refuse` (a mailbox
    that never exists). The envelope is validated like the SMTP backend does.
    """

    def __init__(self) -> None:
        self._sent: list[OutgoingMail] = []
        self._faults: deque[_Fault] = deque()
        self._refused: set[str] = set()
        self._closed = False
        self.attempts = 0

    @property
    def sent(self) -> Sequence[OutgoingMail]:
        """Every message accepted so far, in order (duplicates included)."""
        return tuple(self._sent)

    def messages(self) -> list[email.message.EmailMessage]:
        """The accepted messages parsed with ``email.policy.default``."""
        out: list[email.message.EmailMessage] = []
        for mail in self._sent:
            parsed = _PARSER.parsebytes(mail.message)
            assert isinstance(parsed, email.message.EmailMessage)
            out.append(parsed)
        return out

    def clear(self) -> None:
        """Forget sent messages (scripted faults stay)."""
        self._sent.clear()

    def fail_next(
        self,
        count: int = 1,
        *,
        kind: Literal["temporary", "permanent"] = "temporary",
        code: int | None = None,
        after_accept: bool = False,
        recipient: str | None = None,
    ) -> None:
        """Make the next ``count`` matching sends fail.

        Args:
            count: how many sends fail.
            kind: ``"temporary"`` (TemporaryDeliveryError, default code 451) or
                ``"permanent"`` (PermanentDeliveryError, default code 550).
            code: the SMTP code to report.
            after_accept: record the message as delivered, then raise a
                TemporaryDeliveryError as if the server's reply was lost.
            recipient: only sends to this address fail.

        Raises:
            InvalidInputError: ``count`` < 1, or a bad ``recipient``.
        """
        if count < 1:
            from clientcomm.errors import InvalidInputError

            raise InvalidInputError("count", "must be at least 1")
        permanent = kind == "permanent"
        self._faults.append(
            _Fault(
                remaining=count,
                permanent=permanent,
                code=code if code is not None else (550 if permanent else 451),
                after_accept=after_accept,
                recipient=(
                    None if recipient is None else validate_address(recipient).envelope.casefold()
                ),
            )
        )

    def refuse(self, address: str) -> None:
        """Refuse every message to ``address`` with a permanent 550.

        Raises:
            InvalidInputError: ``address`` is invalid.
        """
        self._refused.add(validate_address(address).envelope.casefold())

    def _take_fault(self, mail: OutgoingMail) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(mail):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    async def send(self, mail: OutgoingMail) -> SendResult:
        """Record ``mail`` as sent, or raise a scripted fault.

        Raises:
            InvalidInputError: invalid envelope.
            TemporaryDeliveryError: transport closed, or a scripted temporary fault.
            PermanentDeliveryError: a scripted permanent fault or a refused address.
        """
        self.attempts += 1
        if self._closed:
            raise TemporaryDeliveryError("transport is closed", code=None, reason="closed")
        mail.validate()
        refused = [r for r in mail.recipients if r.casefold() in self._refused]
        if refused and len(refused) == len(mail.recipients):
            raise PermanentDeliveryError(
                "recipient refused: 550 mailbox unavailable",
                code=550,
                reason="recipient_refused",
                detail="mailbox unavailable",
                recipients=tuple(refused),
            )
        fault = self._take_fault(mail)
        if fault is not None:
            if fault.after_accept:
                self._sent.append(mail)
                raise TemporaryDeliveryError(
                    "connection lost after the message data was sent",
                    code=None,
                    reason="disconnected",
                    detail="connection lost awaiting the reply to DATA",
                )
            error: type[DeliveryError] = (
                PermanentDeliveryError if fault.permanent else TemporaryDeliveryError
            )
            raise error(
                f"scripted failure {fault.code}",
                code=fault.code,
                reason="data_refused" if fault.permanent else "temporary",
                detail="scripted failure",
            )
        self._sent.append(mail)
        accepted = tuple(r for r in mail.recipients if r not in refused)
        return SendResult(
            message_id=mail.message_id,
            accepted=accepted,
            refused=tuple(f"{r}: 550 mailbox unavailable" for r in refused),
            response=f"250 queued as mem-{len(self._sent)}",
        )

    async def aclose(self) -> None:
        """Mark the transport closed (sent mail stays readable)."""
        self._closed = True

    async def __aenter__(self) -> MemoryTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
