"""Background work of the audit trail: the ``audit.chain`` step."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clientcomm.steps import Step

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = ["STEPS"]


async def _chain(app: ClientComm, limit: int) -> int:
    return await app.audit.step(limit=limit)


STEPS = (Step("audit.chain", _chain, "link appended audit records into their firm's hash chain"),)
