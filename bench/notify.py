"""Notification throughput: clientcomm's outbox path against raw aiosmtplib loops.

Sends N notifications (default 2,000) to a local aiosmtpd sink that runs in a
separate process, and measures messages per second for

* ``clientcomm``: jobs in a MemoryStore, delivered by ``deliver_due`` (claim,
  render the templates, build MIME bytes, send through ``SMTPTransport`` with a
  pool of 8 connections, record the outcome);
* ``raw_reused``: the plainest correct code - for each message build a stdlib
  ``EmailMessage`` (``set_content`` + ``add_alternative``, same subject, text and
  HTML sizes as ours) and ``send_message`` it over one reused aiosmtplib
  connection, in a plain loop;
* ``raw_new_connection``: the same, but ``aiosmtplib.send`` opens a new
  connection per message;
* ``raw_8_concurrent`` (for reference): the raw loop split over 8 reused
  connections.

Prints one JSON object per figure to stdout, human-readable notes to stderr.
Run: ``python bench/notify.py [--count N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.message import EmailMessage

import aiosmtplib

from clientcomm.mail.smtp import SMTPConfig, SMTPTransport
from clientcomm.notifications.links import LinkTemplates
from clientcomm.notifications.models import NotificationEvent, Recipient, RecipientPlan
from clientcomm.notifications.outbox import (
    MailSettings,
    NotificationComposer,
    RetryPolicy,
    deliver_due,
    enqueue,
    notification_jobs,
    prepare,
)
from clientcomm.records import Records
from clientcomm.storage.memory import MemoryStore

POOL = 8


# -- the sink (separate process) -----------------------------------------------------


def run_sink() -> None:
    """An aiosmtpd server that accepts and counts; prints its port, serves until
    stdin closes."""
    from aiosmtpd.smtp import SMTP

    class Sink:
        count = 0

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            Sink.count += 1
            return "250 OK"

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Sink(), hostname="sink", enable_SMTPUTF8=True, loop=loop),
            host="127.0.0.1",
            port=0,
            backlog=512,
        )
        print(server.sockets[0].getsockname()[1], flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(main())


# -- workloads -----------------------------------------------------------------------


def sample_parts(composer: NotificationComposer, job: object) -> tuple[str, str, str]:
    """Subject, text and HTML exactly as ours renders them (same sizes for the raw code)."""
    rendered = composer.templates.render(
        job.kind,  # type: ignore[attr-defined]
        job.to.language,  # type: ignore[attr-defined]
        firm_name=job.firm_name,  # type: ignore[attr-defined]
        recipient_name=job.to.name,  # type: ignore[attr-defined]
        link=job.link,  # type: ignore[attr-defined]
        count=job.count,  # type: ignore[attr-defined]
    )
    return rendered.subject, rendered.text, rendered.html


def raw_message(i: int, subject: str, text: str, html: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Kanzlei Müller & Partner <portal@kanzlei.example>"
    msg["To"] = f"Kontakt {i} <k{i}@example.com>"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<raw-{i}@notify.kanzlei.example>"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


async def raw_reused(port: int, n: int, parts: tuple[str, str, str]) -> None:
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
    await smtp.connect()
    for i in range(n):
        await smtp.send_message(raw_message(i, *parts))
    await smtp.quit()


async def raw_new_connection(port: int, n: int, parts: tuple[str, str, str]) -> None:
    for i in range(n):
        await aiosmtplib.send(
            raw_message(i, *parts), hostname="127.0.0.1", port=port, start_tls=False
        )


async def raw_concurrent(port: int, n: int, parts: tuple[str, str, str]) -> None:
    async def worker(k: int) -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        for i in range(k, n, POOL):
            await smtp.send_message(raw_message(i, *parts))
        await smtp.quit()

    await asyncio.gather(*(worker(k) for k in range(POOL)))


def make_event_batch(n: int):  # type: ignore[no-untyped-def]
    links = LinkTemplates(default="https://portal.example/{firm_id}/clients/{client_id}/messages")
    recipients = tuple(
        Recipient(
            ref=f"contact:{i}",
            role="contact",
            name=f"Kontakt {i}",
            email=f"k{i}@example.com",
            language="de",
        )
        for i in range(n)
    )
    event = NotificationEvent(
        kind="new_documents",
        firm_id="f1",
        firm_name="Kanzlei Müller & Partner",
        event_id="mailing-1",
        client_id="c1",
        count=3,
    )
    return prepare(event, RecipientPlan(recipients), links)


async def ours(port: int, n: int, composer: NotificationComposer) -> None:
    now = datetime.now(UTC)
    async with MemoryStore() as store:
        async with Records(store).transaction("f1") as tx:
            await enqueue(tx, make_event_batch(n), now=now)
        config = SMTPConfig(
            host="127.0.0.1",
            port=port,
            tls="none",
            pool_size=POOL,
            max_messages_per_connection=100_000,
        )
        async with SMTPTransport(config) as transport:
            sent = 0
            while sent < n:
                report = await deliver_due(
                    store,
                    transport,
                    composer,
                    now=now,
                    owner="bench",
                    limit=500,
                    retry=RetryPolicy(),
                )
                if report.sent != report.claimed:
                    raise RuntimeError(f"delivery failed: {report}")
                sent += report.sent


async def timed(fn: Callable[[], Awaitable[None]], n: int) -> float:
    start = time.perf_counter()
    await fn()
    return n / (time.perf_counter() - start)


async def bench(port: int, n: int, rounds: int) -> None:
    import logging

    logging.getLogger("clientcomm.mail.smtp").setLevel(logging.ERROR)
    composer = NotificationComposer(
        MailSettings(sender="portal@kanzlei.example", message_id_domain="notify.kanzlei.example")
    )
    job = notification_jobs(make_event_batch(1), now=datetime.now(UTC))[0]
    parts = sample_parts(composer, job)
    ours_bytes = len(composer.compose(job).message)
    raw_bytes = len(bytes(raw_message(0, *parts)))
    print(
        f"message sizes: ours {ours_bytes} B, raw {raw_bytes} B; "
        f"subject {len(parts[0])}, text {len(parts[1])}, html {len(parts[2])} chars",
        file=sys.stderr,
    )

    # build cost alone, per message
    t0 = time.perf_counter()
    for _ in range(500):
        raw_message(0, *parts).as_bytes()
    raw_build = (time.perf_counter() - t0) / 500
    t0 = time.perf_counter()
    for _ in range(500):
        composer.compose(job)
    ours_build = (time.perf_counter() - t0) / 500
    print(
        f"build per message: stdlib EmailMessage {raw_build * 1e3:.3f} ms, "
        f"ours (render + MIME) {ours_build * 1e3:.3f} ms",
        file=sys.stderr,
    )

    # warm up connections and code paths
    await raw_reused(port, 50, parts)
    await ours(port, 50, composer)

    results: dict[str, list[float]] = {"ours": [], "raw_reused": [], "raw_new": [], "raw_8": []}
    for r in range(rounds):
        results["ours"].append(await timed(lambda: ours(port, n, composer), n))
        results["raw_reused"].append(await timed(lambda: raw_reused(port, n, parts), n))
        results["raw_new"].append(await timed(lambda: raw_new_connection(port, n, parts), n))
        results["raw_8"].append(await timed(lambda: raw_concurrent(port, n, parts), n))
        print(
            f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} msg/s" for k, v in results.items()),
            file=sys.stderr,
        )
    med = {k: statistics.median(v) for k, v in results.items()}
    figures = [
        {
            "name": "notify_outbox_vs_raw_reused",
            "value": round(med["ours"], 1),
            "unit": "msg/s",
            "baseline": round(med["raw_reused"], 1),
            "ratio": round(med["ours"] / med["raw_reused"], 2),
            "target": 2.0,
        },
        {
            "name": "notify_outbox_vs_raw_new_connection",
            "value": round(med["ours"], 1),
            "unit": "msg/s",
            "baseline": round(med["raw_new"], 1),
            "ratio": round(med["ours"] / med["raw_new"], 2),
            "target": 4.0,
        },
        {
            "name": "notify_raw_8_concurrent_vs_raw_reused",
            "value": round(med["raw_8"], 1),
            "unit": "msg/s",
            "baseline": round(med["raw_reused"], 1),
            "ratio": round(med["raw_8"] / med["raw_reused"], 2),
            "target": None,
        },
        {
            "name": "notify_build_per_message",
            "value": round(ours_build * 1e6, 1),
            "unit": "us",
            "baseline": round(raw_build * 1e6, 1),
            "ratio": round(ours_build / raw_build, 3),
            "target": None,
        },
    ]
    for figure in figures:
        print(json.dumps(figure))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink()
        return
    env = dict(os.environ)
    sink = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--sink"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert sink.stdout is not None
        port = int(sink.stdout.readline())
        print(
            f"sink pid {sink.pid} on 127.0.0.1:{port}; {args.count} messages x "
            f"{args.rounds} rounds",
            file=sys.stderr,
        )
        asyncio.run(bench(port, args.count, args.rounds))
    finally:
        if sink.stdin is not None:
            sink.stdin.close()
        try:
            sink.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sink.kill()


if __name__ == "__main__":
    main()
