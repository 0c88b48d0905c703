"""The small SQL interface the SQL backends expose to clientcomm's SQL-backed Directory.

SQL text uses ``?`` placeholders; a PostgreSQL backend converts them. Not a
public seam for integrators: it exists so one Directory implementation serves
both SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["SqlBackend"]


@runtime_checkable
class SqlBackend(Protocol):
    dialect: str  # "sqlite" or "postgres"

    async def sql_read(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one query and return all rows."""
        ...

    async def sql_write(self, statements: Sequence[tuple[str, Sequence[Sequence[object]]]]) -> None:
        """Run each statement over its parameter rows (executemany), all in one
        transaction.

        Raises:
            ConflictError: a unique or foreign-key constraint was violated.
            StorageError: the backend failed.
        """
        ...
