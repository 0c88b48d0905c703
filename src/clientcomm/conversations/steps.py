"""The background step of conversations: escalation of conversations that
wait on the firm too long (only when the host configures it)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clientcomm.steps import Step

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = ["STEPS"]


async def _escalate(app: ClientComm, limit: int) -> int:
    return await app.conversations.escalate_due(owner=app.worker_id, lease=app.lease, limit=limit)


STEPS = (
    Step(
        "conversations.escalate",
        _escalate,
        "re-notify conversations waiting on the firm too long: assignee, then all admins",
    ),
)
