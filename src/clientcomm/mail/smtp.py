"""SMTPTransport: delivery over SMTP with aiosmtplib.

Secure by default:

* **TLS is required.** ``TLSMode.STARTTLS`` (default, port 587) upgrades every
  connection and *fails* if the server does not offer STARTTLS (aiosmtplib on
  its own would silently continue in plaintext); ``TLSMode.IMPLICIT`` (port 465)
  speaks TLS from the first byte. Plaintext (``TLSMode.NONE``) must be chosen
  explicitly, e.g. for a relay on loopback; credentials are refused over
  plaintext to anything but a loopback host.
* **Certificates are verified** (system trust store, or ``ca_file``/``tls_context``).
  Turning verification off is explicit (``verify_certificates=False``) and is
  logged as a warning.
* **Envelope addresses are validated by us** before aiosmtplib sees them (it
  would silently trim what :func:`email.utils.parseaddr` does not understand).

Connections are reused (up to ``max_messages_per_connection`` messages, closed
after ``idle_timeout`` seconds unused) from a pool of at most ``pool_size``
concurrent connections; ``rate_limit`` caps messages per second for the whole
transport; ``timeout`` bounds connecting and every SMTP command.

Errors are translated: connection problems, TLS/authentication failures and
4xx replies raise :class:`~clientcomm.errors.TemporaryDeliveryError`; 5xx
replies to MAIL/RCPT/DATA raise :class:`~clientcomm.errors.PermanentDeliveryError`.
A reused connection that turns out to be dead before any data was sent is
replaced once, transparently.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import ssl
import time
from typing import Any

import aiosmtplib
import attrs

from clientcomm.errors import (
    ConfigurationError,
    DeliveryError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from clientcomm.mail.base import OutgoingMail, SendResult

__all__ = ["SMTPConfig", "SMTPTransport", "TLSMode"]

log = logging.getLogger("clientcomm.mail.smtp")

_DETAIL_MAX = 300
# 5xx replies that mean "this client is not allowed" rather than "this message is bad":
# treated as temporary so a configuration fix does not leave every job failed.
_AUTH_CODES = frozenset({530, 534, 535, 538})


class TLSMode(enum.StrEnum):
    """How the SMTP connection is secured."""

    STARTTLS = "starttls"  # plain connect, then STARTTLS (required)
    IMPLICIT = "implicit"  # TLS from the start (SMTPS, port 465)
    NONE = "none"  # plaintext: only when explicitly chosen


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@attrs.frozen
class SMTPConfig:
    """Settings of an :class:`SMTPTransport`.

    Attributes:
        host: SMTP server host name or IP.
        port: server port; default 587 (STARTTLS), 465 (implicit TLS), 25 (none).
        tls: :class:`TLSMode`; TLS is required unless ``TLSMode.NONE``.
        username, password: credentials for AUTH (password hidden from ``repr``).
        verify_certificates: verify the server certificate and host name.
        ca_file: PEM bundle of trusted CAs instead of the system store.
        tls_context: a ready SSLContext (overrides ``ca_file``/``verify_certificates``).
        timeout: seconds for connecting and for each SMTP command.
        pool_size: most connections open at once (and concurrent sends).
        rate_limit: most messages per second for this transport (``None``: no limit).
        max_messages_per_connection: reconnect after this many messages.
        idle_timeout: close a pooled connection unused for this many seconds.
        local_hostname: name sent in EHLO (default: the machine's FQDN).

    Raises:
        ConfigurationError: (on construction) inconsistent settings, e.g.
            credentials over plaintext to a non-loopback host.
    """

    host: str
    port: int | None = None
    tls: TLSMode = attrs.field(default=TLSMode.STARTTLS, converter=TLSMode)
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    verify_certificates: bool = True
    ca_file: str | None = None
    tls_context: ssl.SSLContext | None = attrs.field(default=None, repr=False, eq=False)
    timeout: float = 30.0
    pool_size: int = 4
    rate_limit: float | None = None
    max_messages_per_connection: int = 100
    idle_timeout: float = 30.0
    local_hostname: str | None = None

    def __attrs_post_init__(self) -> None:
        if not self.host or any(c in self.host for c in "\r\n\x00 /"):
            raise ConfigurationError("SMTP host must be a host name or IP address")
        if self.port is not None and not 0 < self.port < 65536:
            raise ConfigurationError("SMTP port must be between 1 and 65535", port=self.port)
        if (self.username is None) != (self.password is None):
            raise ConfigurationError("SMTP username and password go together")
        if self.tls is TLSMode.NONE and self.username is not None and not _is_loopback(self.host):
            raise ConfigurationError(
                "refusing to send SMTP credentials over plaintext to a non-loopback host",
                host=self.host,
            )
        if self.timeout <= 0 or self.idle_timeout <= 0:
            raise ConfigurationError("timeouts must be positive")
        if self.pool_size < 1 or self.max_messages_per_connection < 1:
            raise ConfigurationError("pool_size and max_messages_per_connection must be >= 1")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ConfigurationError("rate_limit must be positive or None")

    @property
    def effective_port(self) -> int:
        if self.port is not None:
            return self.port
        return {TLSMode.STARTTLS: 587, TLSMode.IMPLICIT: 465, TLSMode.NONE: 25}[self.tls]


class _RateLimiter:
    """Token bucket: ``rate`` tokens per second, burst of ``max(1, rate)``."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:
            while True:
                now = time.monotonic()
                self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self._rate)


@attrs.define
class _Connection:
    smtp: aiosmtplib.SMTP
    sent: int = 0
    last_used: float = attrs.field(factory=time.monotonic)


class _Stale(Exception):
    """A reused connection died before any message data was sent."""


def _detail(message: object) -> str:
    text = " ".join(str(message).split())
    return text[:_DETAIL_MAX]


def _reply_error(code: int, message: str, stage: str, **context: Any) -> DeliveryError:
    detail = _detail(message)
    if 400 <= code < 500 or code in _AUTH_CODES or not 500 <= code < 600:
        return TemporaryDeliveryError(
            f"SMTP {stage} deferred: {code} {detail}",
            code=code,
            reason=f"{stage}_deferred",
            detail=detail,
            **context,
        )
    return PermanentDeliveryError(
        f"SMTP {stage} refused: {code} {detail}",
        code=code,
        reason=f"{stage}_refused",
        detail=detail,
        **context,
    )


class SMTPTransport:
    """A pooled, rate-limited :class:`~clientcomm.mail.base.MailTransport`
    over SMTP (see module docs). Use as ``async with SMTPTransport(config) as t:``
    or call :meth:`aclose` when done.

    Raises:
        ConfigurationError: (on construction) the TLS settings cannot be used
            (e.g. an unreadable ``ca_file``).
    """

    def __init__(self, config: SMTPConfig) -> None:
        self.config = config
        self._tls_context = self._make_tls_context(config)
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(config.pool_size)
        self._limiter = _RateLimiter(config.rate_limit) if config.rate_limit else None
        self._closed = False
        self._open = 0
        self.connections_opened = 0
        if config.tls is TLSMode.NONE:
            log.warning(
                "SMTP transport to %s:%s uses plaintext (TLSMode.NONE)",
                config.host,
                config.effective_port,
            )

    def __repr__(self) -> str:
        return f"SMTPTransport({self.config!r})"

    @staticmethod
    def _make_tls_context(config: SMTPConfig) -> ssl.SSLContext | None:
        if config.tls is TLSMode.NONE:
            return None
        if config.tls_context is not None:
            context = config.tls_context
        else:
            try:
                context = ssl.create_default_context(cafile=config.ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ConfigurationError(
                    f"cannot load SMTP CA file: {exc}", ca_file=config.ca_file
                ) from None
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            if not config.verify_certificates:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        if context.verify_mode == ssl.CERT_NONE or not context.check_hostname:
            log.warning(
                "SMTP certificate verification is OFF for %s:%s (verify_certificates=False)",
                config.host,
                config.effective_port,
            )
        return context

    @property
    def open_connections(self) -> int:
        """Connections currently open (idle or in use)."""
        return self._open

    # -- connections -------------------------------------------------------------

    async def _connect(self) -> _Connection:
        cfg = self.config
        smtp = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.effective_port,
            timeout=cfg.timeout,
            use_tls=cfg.tls is TLSMode.IMPLICIT,
            start_tls=cfg.tls is TLSMode.STARTTLS,
            tls_context=self._tls_context,
            local_hostname=cfg.local_hostname,
            username=cfg.username,
            password=cfg.password,
        )
        try:
            await smtp.connect()
            if smtp.is_ehlo_or_helo_needed:
                await smtp.ehlo()
        except aiosmtplib.SMTPAuthenticationError as exc:
            smtp.close()
            raise TemporaryDeliveryError(
                f"SMTP authentication failed: {exc.code}",
                code=exc.code,
                reason="auth",
                detail=_detail(exc.message),
            ) from None
        except aiosmtplib.SMTPResponseException as exc:
            smtp.close()
            raise TemporaryDeliveryError(
                f"SMTP server refused the connection: {exc.code} {_detail(exc.message)}",
                code=exc.code,
                reason="connect_refused",
                detail=_detail(exc.message),
            ) from None
        except ssl.SSLCertVerificationError as exc:
            smtp.close()
            raise TemporaryDeliveryError(
                "SMTP server certificate could not be verified",
                code=None,
                reason="certificate",
                detail=_detail(exc.verify_message or exc),
            ) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            smtp.close()
            text = str(getattr(exc, "message", exc))
            if "STARTTLS extension not supported" in text:
                raise TemporaryDeliveryError(
                    "SMTP server does not offer STARTTLS and TLS is required",
                    code=None,
                    reason="tls_unavailable",
                    detail=_detail(text),
                ) from None
            if "authentication" in text.lower():
                reason = "auth"
            elif isinstance(exc, ssl.SSLError):
                reason = "tls"
            elif isinstance(exc, TimeoutError):
                reason = "timeout"
            else:
                reason = "connect"
            raise TemporaryDeliveryError(
                f"cannot connect to SMTP server {cfg.host}:{cfg.effective_port}: {_detail(text)}",
                code=None,
                reason=reason,
                detail=_detail(text),
            ) from None
        self._open += 1
        self.connections_opened += 1
        return _Connection(smtp)

    def _discard(self, conn: _Connection) -> None:
        if self._open > 0:
            self._open -= 1
        conn.smtp.close()

    async def _quit(self, conn: _Connection) -> None:
        if self._open > 0:
            self._open -= 1
        try:
            if conn.smtp.is_connected:
                await asyncio.wait_for(conn.smtp.quit(), timeout=min(2.0, self.config.timeout))
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            pass
        finally:
            conn.smtp.close()

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.smtp.is_connected and now - conn.last_used < self.config.idle_timeout:
                return conn
            self._discard(conn)
        return None

    async def _release(self, conn: _Connection) -> None:
        conn.sent += 1
        conn.last_used = time.monotonic()
        if self._closed or conn.sent >= self.config.max_messages_per_connection:
            await self._quit(conn)
        elif conn.smtp.is_connected:
            self._idle.append(conn)
        else:
            self._discard(conn)

    # -- sending ---------------------------------------------------------------

    async def send(self, mail: OutgoingMail) -> SendResult:
        """Deliver ``mail`` (see :class:`~clientcomm.mail.base.MailTransport`).

        Raises:
            InvalidInputError: invalid envelope (nothing sent).
            TemporaryDeliveryError: connection, TLS, auth or timeout problems,
                4xx replies, a lost reply after DATA (may duplicate on retry).
            PermanentDeliveryError: 5xx replies to MAIL, RCPT or DATA, or a
                message needing SMTPUTF8 that the server does not support.
        """
        mail.validate()
        if self._closed:
            raise TemporaryDeliveryError("SMTP transport is closed", code=None, reason="closed")
        async with self._slots:
            if self._limiter is not None:
                await self._limiter.acquire()
            conn = self._take_idle()
            if conn is not None:
                try:
                    return await self._send_on(conn, mail, reused=True)
                except _Stale:
                    log.debug("pooled SMTP connection was stale; reconnecting")
            conn = await self._connect()
            try:
                return await self._send_on(conn, mail, reused=False)
            except _Stale:  # pragma: no cover - only raised for reused connections
                raise TemporaryDeliveryError(
                    "SMTP connection lost", code=None, reason="disconnected"
                ) from None

    async def _send_on(self, conn: _Connection, mail: OutgoingMail, *, reused: bool) -> SendResult:
        smtp = conn.smtp
        stage = "mail"
        try:
            encoding = "utf-8" if mail.smtputf8 else "ascii"
            options: list[str] = []
            if mail.smtputf8:
                if not smtp.supports_extension("smtputf8"):
                    await self._release(conn)
                    raise PermanentDeliveryError(
                        "the SMTP server does not support SMTPUTF8, needed for this address",
                        code=None,
                        reason="smtputf8_unsupported",
                        detail="SMTPUTF8 not offered",
                    )
                options.append("SMTPUTF8")
            if smtp.supports_extension("size"):
                options.append(f"SIZE={len(mail.message)}")
            await smtp.mail(mail.sender, options=options, encoding=encoding)
            stage = "rcpt"
            accepted: list[str] = []
            refused: list[tuple[str, int, str]] = []
            for recipient in mail.recipients:
                try:
                    await smtp.rcpt(recipient, encoding=encoding)
                    accepted.append(recipient)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    if exc.code == 421:
                        raise
                    refused.append((recipient, exc.code, exc.message))
            if not accepted:
                await self._reset(conn)
                # The most hopeful verdict wins: any 4xx means "try again later".
                code = min((c for _, c, _ in refused), key=lambda c: (c >= 500, c))
                message = next(m for _, c, m in refused if c == code)
                raise _reply_error(
                    code, message, "recipient", recipients=tuple(r for r, _, _ in refused)
                )
            stage = "data"
            response = await smtp.data(mail.message)
        except DeliveryError:
            raise  # decided above; the connection was already released or dropped
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == 421 or not smtp.is_connected:
                # "Service not available, closing channel": drop the connection.
                self._discard(conn)
                if reused and stage != "data":
                    raise _Stale from None
                raise TemporaryDeliveryError(
                    f"SMTP server closing the connection: {exc.code} {_detail(exc.message)}",
                    code=exc.code,
                    reason="service_unavailable",
                    detail=_detail(exc.message),
                ) from None
            await self._reset(conn)
            raise _reply_error(
                exc.code, exc.message, "sender" if stage == "mail" else stage
            ) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            self._discard(conn)
            if reused and stage != "data":
                raise _Stale from None
            after = " awaiting the reply to DATA" if stage == "data" else f" during {stage.upper()}"
            reason = "timeout" if isinstance(exc, TimeoutError) else "disconnected"
            raise TemporaryDeliveryError(
                f"SMTP connection lost{after}",
                code=None,
                reason=reason,
                detail=_detail(getattr(exc, "message", exc)),
                stage=stage,
            ) from None
        except BaseException:
            # Cancellation or a bug mid-transaction: the connection state is unknown.
            self._discard(conn)
            raise
        await self._release(conn)
        return SendResult(
            message_id=mail.message_id,
            accepted=tuple(accepted),
            refused=tuple(f"{r}: {c} {_detail(m)}" for r, c, m in refused),
            response=_detail(f"{response.code} {response.message}"),
        )

    async def _reset(self, conn: _Connection) -> None:
        """RSET after a refused transaction so the connection can be reused."""
        try:
            await conn.smtp.rset()
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            self._discard(conn)
            return
        await self._release(conn)

    # -- lifecycle -------------------------------------------------------------

    async def aclose(self) -> None:
        """QUIT every pooled connection; later sends raise TemporaryDeliveryError."""
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._quit(conn) for conn in idle))

    async def __aenter__(self) -> SMTPTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
