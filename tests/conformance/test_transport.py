"""The MailTransport conformance suite over every bundled backend."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from clientcomm.mail.memory import MemoryTransport
from clientcomm.mail.smtp import SMTPTransport
from clientcomm.testing.smtpd import FaultyHandler, smtp_server
from clientcomm.testing.transport import TransportConformance, TransportHarness


class TestMemoryTransport(TransportConformance):
    @pytest.fixture
    async def harness(self) -> AsyncIterator[TransportHarness]:
        async with MemoryTransport() as transport:
            yield TransportHarness(
                transport=transport,
                received=lambda: [m.message for m in transport.sent],
                refuse=transport.refuse,
            )


class _RefusingHandler(FaultyHandler):
    def refuse(self, address: str) -> None:
        self._refuse[address.casefold()] = 550


@pytest.mark.parametrize("tls", ["none", "starttls", "implicit"])
class TestSMTPTransport(TransportConformance):
    @pytest.fixture
    async def harness(self, tls: str) -> AsyncIterator[TransportHarness]:
        handler = _RefusingHandler()
        auth = None if tls == "none" else {"portal": "s3cret-pässword"}
        async with (
            smtp_server(handler, tls=tls, auth=auth) as server,
            SMTPTransport(server.config(pool_size=4)) as transport,
        ):
            yield TransportHarness(
                transport=transport,
                received=lambda: [m.data for m in handler.messages],
                refuse=handler.refuse,
            )
