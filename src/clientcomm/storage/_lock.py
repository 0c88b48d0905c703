"""The single-writer lock of the memory and SQLite stores, with nesting detection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from clientcomm.errors import StorageError


class WriterLock:
    """An asyncio lock that refuses (instead of deadlocking) when the task that
    holds it asks again, e.g. by opening a transaction inside a transaction."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        task = asyncio.current_task()
        if task is not None and self._owner is task:
            raise StorageError(
                "nested transaction: this task already holds the store's write transaction;"
                " finish it before opening another"
            )
        async with self._lock:
            self._owner = task
            try:
                yield
            finally:
                self._owner = None
