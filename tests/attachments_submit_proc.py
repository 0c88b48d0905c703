"""A process for the sweep's crash test: submits a mailing with an attachment on
a SQLite store and a FileBlobStore, and SIGKILLs itself in the middle of writing
the attachment's blob (after the staging key was made, before the mailing's
transaction).

Usage: python tests/attachments_submit_proc.py DB_PATH TMP_PATH
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from clientcomm import SQLiteStore
from clientcomm.actors import StaffActor
from clientcomm.attachments import AttachmentInput
from clientcomm.blobs.base import ByteChunks
from clientcomm.rules.audience import Audience
from tests.mailing_support import make_app

PDF = b"%PDF-1.7\n" + os.urandom(3 * 1024 * 1024) + b"\n%%EOF\n"


async def main(db: str, tmp: str) -> None:
    async with SQLiteStore(db) as store, make_app(store, Path(tmp), blobs_on_disk=True) as app:
        put = app.blobs.put

        async def put_and_die(firm_id: str, blob_id: str, chunks: ByteChunks) -> int:
            async def frames() -> AsyncIterator[bytes]:
                sent = 0
                async for frame in chunks:  # type: ignore[union-attr]
                    yield frame
                    sent += len(frame)
                    if sent > 1024 * 1024:  # a batch is on disk, in the .partial file
                        os.kill(os.getpid(), signal.SIGKILL)

            return await put(firm_id, blob_id, frames())

        app.blobs.put = put_and_die  # type: ignore[method-assign]
        pdf = AttachmentInput.from_bytes("Rundschreiben.pdf", PDF, "application/pdf")
        await app.mailings.submit(
            StaffActor("f1", "admin"), Audience.clients("c1", "c2"), "Hallo", attachments=[pdf]
        )
    print("not killed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
