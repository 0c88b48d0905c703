"""Real SMTP servers on loopback for tests (aiosmtpd), public for users' tests.

:func:`smtp_server` starts an `aiosmtpd`_ server on ``127.0.0.1`` (a free port)
inside the running event loop and stops it on exit::

    from clientcomm.testing.smtpd import smtp_server

    async def test_notifications_arrive():
        async with smtp_server(tls="starttls", auth={"user": "secret"}) as server:
            async with SMTPTransport(server.config()) as transport:
                ...
            (message,) = server.handler.parsed()
            assert message["Subject"] == "..."

* ``tls="none" | "starttls" | "implicit"``: STARTTLS servers *require* it (530
  before STARTTLS); certificates come from a throwaway CA made with `trustme`_
  (:meth:`SMTPTestServer.config` trusts it; :attr:`SMTPTestServer.ca_file`
  names its PEM file).
* ``auth={"login": "password"}``: AUTH PLAIN/LOGIN required before MAIL, only
  offered over TLS.
* :class:`FaultyHandler` injects faults per message: 421 (and hang up), 451,
  550, dropping the connection before the data is accepted, or *after*
  accepting it without replying - the one case where a correct client sends a
  message twice. Every attempt is logged in :attr:`FaultyHandler.attempts`.

Needs the ``aiosmtpd`` and ``trustme`` packages (test extras).

.. _aiosmtpd: https://aiosmtpd.aio-libs.org/
.. _trustme: https://trustme.readthedocs.io/
"""

from __future__ import annotations

import asyncio
import email.message
import email.parser
import email.policy
import enum
import os
import random
import ssl
import tempfile
import warnings
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import attrs
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from clientcomm.mail.smtp import SMTPConfig, TLSMode

__all__ = [
    "Attempt",
    "Fault",
    "FaultyHandler",
    "ReceivedMessage",
    "RecordingHandler",
    "SMTPTestServer",
    "smtp_server",
]

_PARSER = email.parser.BytesParser(policy=email.policy.default)


@attrs.frozen
class ReceivedMessage:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes = attrs.field(repr=False)
    tls: bool
    login: str | None
    mail_options: tuple[str, ...] = ()

    def parse(self) -> email.message.EmailMessage:
        """The message parsed with ``email.policy.default``."""
        parsed = _PARSER.parsebytes(self.data)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed

    @property
    def message_id(self) -> str | None:
        parsed = _PARSER.parsebytes(self.data, headersonly=True)
        value = parsed["Message-ID"]
        return None if value is None else str(value).strip()


def _received(server: SMTP, session: Session, envelope: Envelope) -> ReceivedMessage:
    transport = server.transport
    tls = transport is not None and transport.get_extra_info("sslcontext") is not None
    auth = session.auth_data
    login = auth.login if isinstance(auth, LoginPassword) else None
    content = envelope.original_content or envelope.content or b""
    if isinstance(content, str):
        content = content.encode("utf-8")
    return ReceivedMessage(
        mail_from=envelope.mail_from or "",
        rcpt_tos=tuple(envelope.rcpt_tos),
        data=bytes(content),
        tls=tls,
        login=login.decode() if isinstance(login, bytes) else login,
        mail_options=tuple(envelope.mail_options),
    )


class RecordingHandler:
    """An aiosmtpd handler that accepts everything and records it in order."""

    def __init__(self) -> None:
        self.messages: list[ReceivedMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages.append(_received(server, session, envelope))
        return f"250 OK queued as test-{len(self.messages)}"

    def parsed(self) -> list[email.message.EmailMessage]:
        """Every accepted message, parsed with ``email.policy.default``."""
        return [m.parse() for m in self.messages]

    def message_ids(self) -> Counter[str | None]:
        """How often each Message-ID arrived."""
        return Counter(m.message_id for m in self.messages)


class Fault(enum.StrEnum):
    """What :class:`FaultyHandler` does with one message (at end of DATA)."""

    ACCEPT = "accept"
    CLOSE_421 = "421"  # reply 421 and hang up (not accepted)
    DEFER_451 = "451"  # reply 451 (not accepted)
    REJECT_550 = "550"  # reply 550 (not accepted)
    DROP_BEFORE_ACCEPT = "drop_before_accept"  # hang up, message discarded
    DROP_AFTER_ACCEPT = "drop_after_accept"  # keep the message, hang up without replying


@attrs.frozen
class Attempt:
    """One DATA attempt seen by :class:`FaultyHandler`."""

    message_id: str | None
    fault: Fault


def _hang_up(server: SMTP, *, flush: bool) -> None:
    transport = server.transport
    if transport is None:
        return
    if flush:
        # Let the reply out first, then close (a real server's 421 behaviour).
        asyncio.get_running_loop().call_soon(transport.close)
    elif isinstance(transport, asyncio.Transport):
        transport.abort()
    else:
        transport.close()


class FaultyHandler(RecordingHandler):
    """A recording handler that injects faults.

    Args:
        decide: called with the attempt's Message-ID (or ``None``) and the
            number of earlier attempts with that Message-ID; returns the
            :class:`Fault` to apply. Default: take the next fault from
            ``script``, then accept.
        script: faults applied to the next messages in order.
        refuse_rcpt: addresses answered with the given code at RCPT
            (e.g. ``{"nobody@example.com": 550}``).

    ``attempts`` logs every DATA attempt with its fault; ``messages`` holds what
    was accepted (``ACCEPT`` and ``DROP_AFTER_ACCEPT``).
    """

    def __init__(
        self,
        decide: Callable[[str | None, int], Fault] | None = None,
        *,
        script: Iterable[Fault] = (),
        refuse_rcpt: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        self._script: deque[Fault] = deque(script)
        self._decide = decide
        self._refuse = {k.casefold(): v for k, v in (refuse_rcpt or {}).items()}
        self._seen: Counter[str | None] = Counter()
        self.attempts: list[Attempt] = []

    @classmethod
    def random(cls, seed: int, weights: Mapping[Fault, float]) -> FaultyHandler:
        """Faults drawn at random (reproducibly, from ``seed``) with ``weights``."""
        rng = random.Random(seed)
        faults = list(weights)
        values = [weights[f] for f in faults]
        return cls(lambda _mid, _n: rng.choices(faults, values)[0])

    def counts(self) -> Counter[Fault]:
        """How many attempts met each fault."""
        return Counter(a.fault for a in self.attempts)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        code = self._refuse.get(address.casefold())
        if code is not None:
            return f"{code} 5.1.1 <{address}>: recipient refused by test server"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        received = _received(server, session, envelope)
        message_id = received.message_id
        if self._decide is not None:
            fault = self._decide(message_id, self._seen[message_id])
        else:
            fault = self._script.popleft() if self._script else Fault.ACCEPT
        self._seen[message_id] += 1
        self.attempts.append(Attempt(message_id, fault))
        if fault is Fault.ACCEPT:
            self.messages.append(received)
            return f"250 OK queued as test-{len(self.messages)}"
        if fault is Fault.DROP_AFTER_ACCEPT:
            self.messages.append(received)
            _hang_up(server, flush=False)
            return "250 OK (never seen by the client)"
        if fault is Fault.DROP_BEFORE_ACCEPT:
            _hang_up(server, flush=False)
            return "451 dropped (never seen by the client)"
        if fault is Fault.CLOSE_421:
            _hang_up(server, flush=True)
            return "421 4.3.2 test server shutting down"
        if fault is Fault.DEFER_451:
            return "451 4.3.0 temporary test failure"
        return "550 5.7.1 message refused by test server"


class _Authenticator:
    def __init__(self, credentials: Mapping[str, str]) -> None:
        self._credentials = dict(credentials)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        ok = self._credentials.get(login) == password
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


@attrs.define
class SMTPTestServer:
    """A running test server; see :func:`smtp_server`."""

    host: str
    port: int
    handler: RecordingHandler
    tls: TLSMode
    ca_file: str | None
    credentials: Mapping[str, str] | None = attrs.field(repr=False)
    connections: int = 0
    protocols: list[SMTP] = attrs.field(factory=list, repr=False)

    def hang_up(self) -> int:
        """Abort every open server-side connection (as a server restart or an
        idle timeout would); returns how many were open."""
        count = 0
        for protocol in self.protocols:
            transport = protocol.transport
            if transport is not None and not transport.is_closing():
                _hang_up(protocol, flush=False)
                count += 1
        return count

    def client_tls_context(self) -> ssl.SSLContext:
        """An SSL context that trusts this server's throwaway CA."""
        context = ssl.create_default_context(cafile=self.ca_file)
        return context

    def config(self, **overrides: Any) -> SMTPConfig:
        """An :class:`SMTPConfig` for this server (trusting its CA, logging in
        with the first credentials, short timeouts); ``overrides`` win."""
        settings: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "tls": self.tls,
            "ca_file": self.ca_file,
            "timeout": 5.0,
        }
        if self.credentials:
            login, password = next(iter(self.credentials.items()))
            settings["username"], settings["password"] = login, password
        settings.update(overrides)
        return SMTPConfig(**settings)


@asynccontextmanager
async def smtp_server(
    handler: RecordingHandler | None = None,
    *,
    tls: str | TLSMode = "none",
    auth: Mapping[str, str] | None = None,
    host: str = "127.0.0.1",
    smtputf8: bool = True,
) -> AsyncIterator[SMTPTestServer]:
    """Run an aiosmtpd server on ``host`` (free port) in the current event loop.

    Args:
        handler: the aiosmtpd handler (default: a new :class:`RecordingHandler`).
        tls: ``"none"``, ``"starttls"`` (required by the server) or ``"implicit"``.
        auth: ``{login: password}``; when given, AUTH is required before MAIL.
        host: address to listen on.
        smtputf8: advertise SMTPUTF8.
    """
    import trustme

    mode = TLSMode(tls)
    handler = handler if handler is not None else RecordingHandler()
    server_ctx: ssl.SSLContext | None = None
    ca_file: str | None = None
    tmpdir: tempfile.TemporaryDirectory[str] | None = None
    if mode is not TLSMode.NONE:
        ca = trustme.CA()
        cert = ca.issue_cert(host, "localhost")
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(server_ctx)
        tmpdir = tempfile.TemporaryDirectory(prefix="clientcomm-smtpd-")
        ca_file = os.path.join(tmpdir.name, "ca.pem")
        ca.cert_pem.write_to_path(ca_file)
    loop = asyncio.get_running_loop()
    state = SMTPTestServer(
        host=host, port=0, handler=handler, tls=mode, ca_file=ca_file, credentials=auth
    )
    kwargs: dict[str, Any] = {
        "hostname": "clientcomm-test",
        "enable_SMTPUTF8": smtputf8,
        "timeout": 30,
        "loop": loop,
    }
    if mode is TLSMode.STARTTLS:
        kwargs.update(tls_context=server_ctx, require_starttls=True)
    if auth is not None:
        kwargs.update(
            authenticator=_Authenticator(auth),
            auth_required=True,
            # With implicit TLS the whole socket is encrypted; aiosmtpd only
            # knows about STARTTLS, so it must not insist on it.
            auth_require_tls=mode is TLSMode.STARTTLS,
        )

    protocols = state.protocols

    def factory() -> SMTP:
        state.connections += 1
        with warnings.catch_warnings():
            # aiosmtpd warns about AUTH without STARTTLS even on implicit TLS.
            warnings.simplefilter("ignore", UserWarning)
            protocol = SMTP(handler, **kwargs)
        protocols.append(protocol)
        return protocol

    server = await loop.create_server(
        factory, host=host, port=0, ssl=server_ctx if mode is TLSMode.IMPLICIT else None
    )
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        server.close()
        for protocol in protocols:
            if protocol.transport is not None and not protocol.transport.is_closing():
                protocol.transport.close()
        await server.wait_closed()
        if tmpdir is not None:
            tmpdir.cleanup()
