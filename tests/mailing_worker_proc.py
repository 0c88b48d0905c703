"""A worker process for the crash test: runs mailing steps on a SQLite store until idle.

Usage: python tests/mailing_worker_proc.py DB_PATH BLOB_DIR MASTER_KEY_B64 LEASE_SECONDS
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from clientcomm.app import ClientComm
from clientcomm.blobs.filesystem import FileBlobStore
from clientcomm.crypto import LocalKeyProvider, MasterKey
from clientcomm.directory.sql import SqlDirectory
from clientcomm.mail.memory import MemoryTransport
from clientcomm.storage.sqlite import SQLiteStore
from tests.mailing_support import LINKS, MAIL


async def main(db: str, blob_dir: str, key: str, lease: float) -> None:
    async with SQLiteStore(db) as store:
        app = ClientComm(
            store=store,
            directory=SqlDirectory(store),
            keys=LocalKeyProvider(store, MasterKey.from_text(key)),
            blobs=FileBlobStore(Path(blob_dir)),
            transport=MemoryTransport(),
            links=LINKS,
            mail=MAIL,
            lease=timedelta(seconds=lease),
        )
        print("ready", flush=True)
        while await app.mailings.step(limit=5):
            await asyncio.sleep(0.005)  # spread the run so kills land at many points
        print("idle", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])))
