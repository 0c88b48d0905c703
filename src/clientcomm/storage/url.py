"""Open a Store from a URL: ``memory://``, ``sqlite:///path``, ``postgresql://...``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from clientcomm.errors import ConfigurationError
from clientcomm.storage.base import Store

__all__ = ["open_store", "sqlite_path_from_url"]


def sqlite_path_from_url(url: str) -> Path:
    """``sqlite:///relative.db`` -> ``relative.db``; ``sqlite:////abs/x.db`` -> ``/abs/x.db``.

    Raises:
        ConfigurationError: not a sqlite URL, or no path.
    """
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc not in ("", "localhost"):
        raise ConfigurationError(f"not a sqlite URL: {url!r} (use sqlite:///path/to/file.db)")
    path = unquote(parts.path)
    if path.startswith("/"):
        path = path[1:]
    if not path or path == ":memory:":
        raise ConfigurationError("sqlite URL needs a file path (use memory:// for memory)")
    return Path(path)


async def open_store(url: str, *, migrate: bool = True) -> Store:
    """Open (and by default migrate) the Store named by ``url``.

    * ``memory://`` — :class:`~clientcomm.storage.memory.MemoryStore`
    * ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` —
      :class:`~clientcomm.storage.sqlite.SQLiteStore`
    * ``postgresql://user:pass@host:port/db`` (or ``postgres://``) —
      :class:`~clientcomm.storage.postgres.PostgresStore` (needs ``clientcomm[postgres]``)

    Close it with ``await store.aclose()`` (or use ``async with``).

    Raises:
        ConfigurationError: unknown scheme, malformed URL, missing extra.
        StorageError: the database cannot be opened or migrated.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from clientcomm.storage.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from clientcomm.storage.sqlite import SQLiteStore

        return await SQLiteStore(sqlite_path_from_url(url), migrate=migrate).open()
    if scheme in ("postgresql", "postgres"):
        try:
            from clientcomm.storage.postgres import PostgresStore
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigurationError(
                "PostgreSQL support needs the extra: pip install 'clientcomm[postgres]'"
            ) from exc
        pg = PostgresStore(url, migrate=migrate)
        await pg.open()
        return pg
    raise ConfigurationError(
        f"unknown store URL scheme {scheme!r}: use memory://, sqlite:///path or postgresql://"
    )
