"""Child process for the file-drop crash test: orders one batch and stops dead
inside its ``fsync`` number ``argv[2]`` (1: the PDF, 2: the manifest, 3: the
batch folder, 4: the outbox folder after the rename), announcing it on stdout so
the test kills it exactly there."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import TYPE_CHECKING

from clientcomm.postal import FileDropProvider
from clientcomm.postal.base import PostalCapabilities
from clientcomm.testing.postal import sample_batch

if TYPE_CHECKING:
    from _typeshed import HasFileno

_fsync = os.fsync
_calls = 0


def stopping_fsync(fd: int | HasFileno) -> None:
    global _calls
    _calls += 1
    if _calls == int(sys.argv[2]):
        print(f"in fsync {_calls}", flush=True)
        time.sleep(60)  # killed here
    _fsync(fd)


async def main(root: str) -> None:
    caps = PostalCapabilities(max_pages_per_letter=500, max_sheets_per_letter=500)
    provider = FileDropProvider(root, capabilities=caps)
    batch = sample_batch(f"b{sys.argv[2]}", pages=50)
    os.fsync = stopping_fsync
    print("ready", flush=True)
    await provider.order(batch)
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
