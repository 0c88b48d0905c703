"""Background steps of attachments: sweeping what writers that died left behind."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clientcomm.steps import Step

if TYPE_CHECKING:
    from clientcomm.app import ClientComm

__all__ = ["STEPS"]


async def sweep(app: ClientComm, limit: int) -> int:
    """Clean up after writers that died: the blobs and staging keys of their
    reservations, the partial files of their puts (see
    :meth:`~clientcomm.attachments.service.AttachmentStore.sweep`)."""
    return await app.attachments.sweep(limit=max(1, limit // 5))


STEPS = (
    Step(
        "attachments.sweep",
        sweep,
        "delete blobs, staging keys and partial files of writers that died before committing",
    ),
)
