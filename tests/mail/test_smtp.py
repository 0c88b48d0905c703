"""SMTPTransport against real aiosmtpd servers on loopback."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from clientcomm.clock import ManualClock
from clientcomm.errors import ConfigurationError, PermanentDeliveryError, TemporaryDeliveryError
from clientcomm.mail.smtp import SMTPConfig, SMTPTransport, TLSMode
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.models import (
    NotificationEvent,
    NotificationKind,
    Recipient,
    RecipientPlan,
)
from clientcomm.notifications.outbox import (
    MailSettings,
    NotificationComposer,
    RetryPolicy,
    delivery_status,
    enqueue,
    prepare,
    run_worker,
)
from clientcomm.notifications.records import JobStatus, NotifyJob
from clientcomm.records import Records
from clientcomm.storage.memory import MemoryStore
from clientcomm.testing.smtpd import Fault, FaultyHandler, RecordingHandler, smtp_server
from clientcomm.testing.transport import sample_mail


async def expect_temporary(transport: SMTPTransport, reason: str, **kw: Any) -> None:
    with pytest.raises(TemporaryDeliveryError) as info:
        await transport.send(sample_mail(**kw))
    assert info.value.context["reason"] == reason, info.value.context


# -- TLS, certificates, authentication --------------------------------------------


async def test_starttls_is_required_unless_plaintext_is_chosen(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with smtp_server() as server:  # offers no STARTTLS
        async with SMTPTransport(server.config(tls="starttls")) as transport:
            await expect_temporary(transport, "tls_unavailable")
        with caplog.at_level(logging.WARNING, "clientcomm.mail.smtp"):
            async with SMTPTransport(server.config(tls="none")) as transport:
                await transport.send(sample_mail())
        assert "plaintext" in caplog.text
        assert len(server.handler.messages) == 1 and not server.handler.messages[0].tls


async def test_implicit_tls_to_a_plain_server_fails() -> None:
    async with (
        smtp_server() as server,
        SMTPTransport(server.config(tls="implicit", timeout=2)) as transport,
    ):
        with pytest.raises(TemporaryDeliveryError):
            await transport.send(sample_mail())
    assert server.handler.messages == []


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
async def test_tls_with_auth_delivers_encrypted_and_authenticated(tls: str) -> None:
    async with (
        smtp_server(tls=tls, auth={"portal": "pässwort"}) as server,
        SMTPTransport(server.config()) as transport,
    ):
        await transport.send(sample_mail())
    (received,) = server.handler.messages
    assert received.tls and received.login == "portal"


async def test_untrusted_certificate_is_refused_and_opt_out_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with smtp_server(tls="starttls") as server:
        async with SMTPTransport(server.config(ca_file=None)) as transport:
            await expect_temporary(transport, "certificate")
        with caplog.at_level(logging.WARNING, "clientcomm.mail.smtp"):
            unverified = SMTPTransport(server.config(ca_file=None, verify_certificates=False))
        assert "verification is OFF" in caplog.text
        async with unverified:
            await unverified.send(sample_mail())
    assert len(server.handler.messages) == 1


async def test_wrong_or_missing_credentials() -> None:
    async with smtp_server(tls="starttls", auth={"portal": "right"}) as server:
        async with SMTPTransport(server.config(password="wrong")) as transport:
            await expect_temporary(transport, "auth")
        async with SMTPTransport(server.config(username=None, password=None)) as transport:
            with pytest.raises(TemporaryDeliveryError) as info:
                await transport.send(sample_mail())
            assert info.value.context["code"] == 530  # authentication required
    assert server.handler.messages == []


def test_config_validation() -> None:
    with pytest.raises(ConfigurationError):
        SMTPConfig(host="smtp.example.com", tls="none", username="u", password="p")
    SMTPConfig(host="127.0.0.1", tls="none", username="u", password="p")  # loopback relay
    with pytest.raises(ConfigurationError):
        SMTPConfig(host="smtp.example.com", username="u")
    with pytest.raises(ConfigurationError):
        SMTPConfig(host="smtp.example.com\r\nX")
    for bad in (
        {"port": 0},
        {"pool_size": 0},
        {"timeout": 0},
        {"rate_limit": 0},
        {"max_messages_per_connection": 0},
    ):
        with pytest.raises(ConfigurationError):
            SMTPConfig(host="smtp.example.com", **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SMTPConfig(host="smtp.example.com", tls="ssl")
    config = SMTPConfig(host="smtp.example.com", username="u", password="hunter2")
    assert "hunter2" not in repr(config) and "hunter2" not in repr(SMTPTransport(config))
    assert config.effective_port == 587
    assert SMTPConfig(host="h.example", tls=TLSMode.IMPLICIT).effective_port == 465
    with pytest.raises(ConfigurationError):
        SMTPTransport(SMTPConfig(host="h.example", ca_file="/nonexistent/ca.pem"))


# -- pool, reuse, rate limit, timeouts ------------------------------------------------


class _ConcurrencyHandler(RecordingHandler):
    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.peak = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(0.005)
        self.active -= 1
        return await super().handle_DATA(server, session, envelope)


async def test_pool_bounds_concurrency_and_reuses_connections() -> None:
    handler = _ConcurrencyHandler()
    async with smtp_server(handler) as server:
        async with SMTPTransport(server.config(tls="none", pool_size=3)) as transport:
            mails = [sample_mail(i, to=f"k{i}@example.com") for i in range(40)]
            await asyncio.gather(*(transport.send(m) for m in mails))
            assert transport.open_connections <= 3
            assert transport.connections_opened == 3
        assert transport.open_connections == 0
    assert server.connections == 3
    assert handler.peak == 3
    assert len(handler.messages) == 40


async def test_connections_are_recycled_after_max_messages() -> None:
    async with smtp_server() as server:
        config = server.config(tls="none", pool_size=1, max_messages_per_connection=4)
        async with SMTPTransport(config) as transport:
            for i in range(10):
                await transport.send(sample_mail(i))
    assert server.connections == 3 and len(server.handler.messages) == 10


async def test_stale_pooled_connection_is_replaced_transparently() -> None:
    async with smtp_server() as server:
        async with SMTPTransport(server.config(tls="none", pool_size=1)) as transport:
            await transport.send(sample_mail(1))
            # the server hangs up on the idle connection, and we notice
            assert server.hang_up() == 1
            await asyncio.sleep(0.05)
            await transport.send(sample_mail(2))
            assert transport.connections_opened == 2
            # ... and again, but the send starts before we can notice: MAIL fails on
            # the dead connection, and the transport retries once on a fresh one
            assert server.hang_up() == 1
            await transport.send(sample_mail(5))
            assert transport.connections_opened == 3
        async with SMTPTransport(server.config(tls="none", idle_timeout=0.01)) as transport:
            await transport.send(sample_mail(3))
            await asyncio.sleep(0.05)
            await transport.send(sample_mail(4))  # idle too long: a fresh connection
            assert transport.connections_opened == 2
    assert len(server.handler.messages) == 5


async def test_rate_limit() -> None:
    async with (
        smtp_server() as server,
        SMTPTransport(server.config(tls="none", rate_limit=40, pool_size=4)) as t,
    ):
        start = time.monotonic()
        await asyncio.gather(*(t.send(sample_mail(i)) for i in range(60)))
        elapsed = time.monotonic() - start
    assert elapsed >= 0.45  # a burst of 40, then 20 more at 40/s
    assert len(server.handler.messages) == 60


async def test_timeouts() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)  # never greets

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        config = SMTPConfig(host="127.0.0.1", port=port, tls="none", timeout=0.2)
        async with SMTPTransport(config) as transport:
            start = time.monotonic()
            await expect_temporary(transport, "timeout")
            assert time.monotonic() - start < 2
    finally:
        server.close()
    config = SMTPConfig(host="127.0.0.1", port=port, tls="none", timeout=0.5)
    async with SMTPTransport(config) as transport:
        await expect_temporary(transport, "connect")  # nobody listens any more


async def test_smtputf8_needs_server_support() -> None:
    async with (
        smtp_server(smtputf8=False) as server,
        SMTPTransport(server.config(tls="none")) as transport,
    ):
        with pytest.raises(PermanentDeliveryError) as info:
            await transport.send(sample_mail(to="jürgen@example.com"))
        assert info.value.context["reason"] == "smtputf8_unsupported"
        await transport.send(sample_mail(to="info@bücher.example"))  # IDN is plain ASCII
    (received,) = server.handler.messages
    assert received.rcpt_tos == ("info@xn--bcher-kva.example",)


async def test_smtputf8_is_used_when_needed() -> None:
    async with smtp_server() as server, SMTPTransport(server.config(tls="none")) as transport:
        await transport.send(sample_mail(to="jürgen@example.com"))
    (received,) = server.handler.messages
    assert received.rcpt_tos == ("jürgen@example.com",)
    assert "SMTPUTF8" in [o.upper() for o in received.mail_options]


@pytest.mark.parametrize(
    "fault, error, code",
    [
        (Fault.CLOSE_421, TemporaryDeliveryError, 421),
        (Fault.DEFER_451, TemporaryDeliveryError, 451),
        (Fault.REJECT_550, PermanentDeliveryError, 550),
        (Fault.DROP_BEFORE_ACCEPT, TemporaryDeliveryError, None),
        (Fault.DROP_AFTER_ACCEPT, TemporaryDeliveryError, None),
    ],
)
async def test_each_fault_is_classified(
    fault: Fault, error: type[Exception], code: int | None
) -> None:
    handler = FaultyHandler(script=[fault])
    async with (
        smtp_server(handler) as server,
        SMTPTransport(server.config(tls="none", pool_size=1)) as transport,
    ):
        with pytest.raises(error) as info:
            await transport.send(sample_mail(1))
        assert info.value.context["code"] == code  # type: ignore[attr-defined]
        await transport.send(sample_mail(2))  # the transport recovers
    arrived = 2 if fault is Fault.DROP_AFTER_ACCEPT else 1
    assert len(handler.messages) == arrived


async def test_refused_recipient_at_rcpt() -> None:
    handler = FaultyHandler(refuse_rcpt={"nobody@example.com": 550, "later@example.com": 450})
    async with (
        smtp_server(handler) as server,
        SMTPTransport(server.config(tls="none", pool_size=1)) as transport,
    ):
        with pytest.raises(PermanentDeliveryError) as perm:
            await transport.send(sample_mail(1, to="nobody@example.com"))
        assert perm.value.context["reason"] == "recipient_refused"
        with pytest.raises(TemporaryDeliveryError) as temp:
            await transport.send(sample_mail(2, to="later@example.com"))
        assert temp.value.context["code"] == 450
        await transport.send(sample_mail(3))
        assert transport.connections_opened == 1  # RSET kept the connection usable
    assert len(handler.messages) == 1


# -- the whole path under faults ------------------------------------------------------


async def test_outbox_over_faulty_smtp_loses_nothing(tmp_path: Path) -> None:
    """Every deliverable notification arrives or is recorded failed; a message
    arrives twice only where the server accepted its data and then hung up, and
    then every copy carries the same Message-ID."""
    weights = {
        Fault.ACCEPT: 0.5,
        Fault.CLOSE_421: 0.08,
        Fault.DEFER_451: 0.1,
        Fault.REJECT_550: 0.06,
        Fault.DROP_BEFORE_ACCEPT: 0.1,
        Fault.DROP_AFTER_ACCEPT: 0.16,
    }
    handler = FaultyHandler.random(seed=20260101, weights=weights)
    handler._refuse = {"bounce1@example.com": 550, "bounce2@example.com": 550}
    clock = ManualClock()
    retry = RetryPolicy(max_attempts=5, initial_delay=1, factor=2, max_delay=8, jitter=0.5)
    composer = NotificationComposer(
        MailSettings(sender="portal@kanzlei.example", message_id_domain="notify.kanzlei.example")
    )
    links = LinkTemplates(default="https://portal.example/{firm_id}/clients/{client_id}/messages")
    n = 80
    recipients = [
        Recipient(
            ref=f"contact:{i}",
            role="contact",
            name=f"Kontakt {i}",
            email=f"k{i}@example.com" if i >= 2 else f"bounce{i + 1}@example.com",
        )
        for i in range(n)
    ]
    event = NotificationEvent(
        kind=NotificationKind.NEW_DOCUMENTS,
        firm_id="f1",
        firm_name="Kanzlei Ärger & Söhne",
        event_id="mailing-9",
        client_id="c1",
        count=2,
    )
    async with MemoryStore() as store, smtp_server(handler) as server:
        records = Records(store)
        async with records.transaction("f1") as tx:
            await enqueue(
                tx, prepare(event, RecipientPlan(tuple(recipients)), links), now=clock.now()
            )
        async with SMTPTransport(server.config(tls="none", pool_size=4, timeout=2)) as t:
            for _ in range(40):
                await run_worker(store, t, composer, clock=clock, retry=retry, stop_when_idle=True)
                async with records.transaction("f1") as tx:
                    if not await tx.count(NotifyJob, parent="mailing-9", status="pending"):
                        break
                clock.advance(timedelta(seconds=10))
        async with records.transaction("f1") as tx:
            status = await delivery_status(tx, "mailing-9")
            jobs = {j.message_id: j for j in await tx.list(NotifyJob, parent="mailing-9")}

    assert status.pending == 0 and status.sent + status.failed == n
    arrivals = Counter(m.message_id for m in handler.messages)
    by_id: dict[str | None, list[Fault]] = {}
    for attempt in handler.attempts:
        by_id.setdefault(attempt.message_id, []).append(attempt.fault)
    assert set(by_id) <= set(jobs)

    duplicates = 0
    for message_id, job in jobs.items():
        faults = by_id.get(message_id, [])
        accepted = sum(f in (Fault.ACCEPT, Fault.DROP_AFTER_ACCEPT) for f in faults)
        assert arrivals[message_id] == accepted  # arrived exactly when the server accepted
        if job.status is JobStatus.SENT:
            assert faults[-1] is Fault.ACCEPT and accepted >= 1
            assert accepted - 1 == faults.count(Fault.DROP_AFTER_ACCEPT)
        else:
            assert job.error is not None and job.to.email is not None
            reason = job.error.reason
            if reason == "recipient_refused":
                assert job.to.email.startswith("bounce") and faults == []
            elif reason == "data_refused":
                assert faults[-1] is Fault.REJECT_550 and job.error.code == 550
            else:
                assert reason == "max_attempts" and len(faults) == retry.max_attempts
                assert all(f not in (Fault.ACCEPT, Fault.REJECT_550) for f in faults)
        duplicates += max(0, arrivals[message_id] - 1)

    # copies of one message are identical apart from nothing: same Message-ID, same bytes
    for message_id, count in arrivals.items():
        if count > 1:
            copies = {m.data for m in handler.messages if m.message_id == message_id}
            assert len(copies) == 1

    counts = handler.counts()
    reasons = status.reasons()
    # every case was exercised, and counted
    assert all(counts[f] > 0 for f in Fault), counts
    assert reasons["recipient_refused"] == 2
    assert reasons.get("data_refused", 0) > 0
    # duplicates come only from data accepted and then cut off: never two ACCEPTs
    assert all(faults.count(Fault.ACCEPT) <= 1 for faults in by_id.values())
    assert duplicates == sum(
        faults.count(Fault.DROP_AFTER_ACCEPT) - (Fault.ACCEPT not in faults)
        for faults in by_id.values()
        if Fault.DROP_AFTER_ACCEPT in faults
    )
    assert duplicates > 0
    assert status.sent == sum(1 for j in jobs.values() if j.status is JobStatus.SENT)
    # what arrived parses, and carries no content beyond the notice and the link
    sample = next(m for m in handler.messages).parse()
    assert sample["Subject"] == "Neue Dokumente von Kanzlei Ärger & Söhne"
    text = sample.get_body(("plain",))
    assert text is not None and "2 neue Dokumente" in text.get_content()
    assert "https://portal.example/f1/clients/c1/messages" in text.get_content()
    print(
        f"faults: {dict(counts)}; reasons: {reasons}; duplicates: {duplicates}; "
        f"sent: {status.sent}; failed: {status.failed}"
    )
