"""Background steps of attachments: sweeping the blobs of writers that died."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clientcomm.steps import Step

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = ["STEPS"]


async def sweep(app: ClientComm, limit: int) -> int:
    """Delete the blobs of reservations whose writer died (see
    :meth:`~clientcomm.attachments.service.AttachmentStore.sweep`)."""
    return await app.attachments.sweep(limit=max(1, limit // 5))


STEPS = (
    Step(
        "attachments.sweep",
        sweep,
        "delete blobs reserved by writers that died before committing",
    ),
)
