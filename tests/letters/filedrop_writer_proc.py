"""Child process for the file-drop crash test: orders batches until killed."""

from __future__ import annotations

import asyncio
import sys

import attrs

from clientcomm.postal import FileDropProvider
from clientcomm.postal.base import PostalCapabilities
from clientcomm.testing.postal import sample_batch


async def main(root: str) -> None:
    provider = FileDropProvider(root, capabilities=PostalCapabilities(max_pages_per_letter=500))
    batch = sample_batch("template", pages=200)
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        await provider.order(attrs.evolve(batch, batch_id=f"b{n}"))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
