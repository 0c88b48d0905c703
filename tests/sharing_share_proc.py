"""A process for the sharing crash test: on a SQLite store and a FileBlobStore,
creates a portal folder, then shares two documents into it and SIGKILLs itself
after both blobs are completely written, before the transaction that commits
the shares. Prints the folder id first.

Usage: python tests/sharing_share_proc.py DB_PATH TMP_PATH
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from clientcomm import SQLiteStore
from clientcomm.sharing import PortalDocument
from tests.sharing.support import CRASH_MASTER, SHARER, sharing_app

PDF = b"%PDF-1.7\n" + os.urandom(3 * 1024 * 1024) + b"\n%%EOF\n"


async def main(db: str, tmp: str) -> None:
    async with (
        SQLiteStore(db) as store,
        sharing_app(store, Path(tmp), master=CRASH_MASTER, blobs_on_disk=True) as app,
    ):
        folder = await app.shares.create_folder(SHARER, "akte3", "Bescheide")
        print(folder.id, flush=True)
        seal = app.shares._seal_shares

        async def seal_and_die(*args: Any, **kwargs: Any) -> Any:
            out = await seal(*args, **kwargs)  # every blob is written by now
            os.kill(os.getpid(), signal.SIGKILL)
            return out

        app.shares._seal_shares = seal_and_die  # type: ignore[method-assign]
        docs = [
            PortalDocument("a.pdf", PDF, "application/pdf", "h1"),
            PortalDocument("b.pdf", PDF, "application/pdf", "h2"),
        ]
        await app.shares.share(SHARER, "akte3", docs, folder_id=folder.id)
    print("not killed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
