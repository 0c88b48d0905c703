"""Background steps of notifications: expanding fan-out batches into outbox
jobs, and delivering due jobs through the mail transport."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clientcomm.notifications.fanout import expand_due
from clientcomm.notifications.outbox import deliver_due
from clientcomm.steps import Step

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = ["STEPS"]


async def expand(app: ClientComm, limit: int) -> int:
    """Expand pending fan-out batches into per-contact jobs (exactly once)."""
    return await expand_due(
        app.store,
        app.directory,
        app.links,
        owner=app.worker_id,
        now=app.clock.now(),
        lease=app.lease,
        limit=max(1, limit // 25),
        keys=app.notice_keys,
    )


async def deliver(app: ClientComm, limit: int) -> int:
    """Send due e-mail notices (at least once, same Message-ID on a resend)."""
    report = await deliver_due(
        app.store,
        app.transport,
        app.composer,
        now=app.clock.now(),
        owner=app.worker_id,
        retry=app.retry,
        limit=max(100, limit // 5),
        keys=app.notice_keys,
        clock=app.clock,
    )
    return report.claimed


STEPS = (
    Step("notifications.expand", expand, "expand fan-out batches into per-contact outbox jobs"),
    Step("notifications.deliver", deliver, "send due e-mail notices through the mail transport"),
)
