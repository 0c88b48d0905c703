"""Per-test PostgreSQL isolation for clientcomm's and integrators' tests.

Given the URL of a server you may create schemas on (an "admin" URL, e.g. the
throwaway cluster from ``scripts/pg-cluster.sh``, exported as
``CLIENTCOMM_TEST_PG_URL``), each test gets a fresh, empty schema of its own;
connections made through the yielded URL see only that schema (its
``search_path`` names nothing else), and the schema is dropped afterwards::

    from clientcomm.testing.postgres import isolated_store

    async def test_something() -> None:
        async with isolated_store(os.environ["CLIENTCOMM_TEST_PG_URL"]) as store:
            async with store.transaction("f1") as tx:
                ...

A schema costs a few milliseconds to create and drop (a database per test costs
far more), and tests can run in parallel against one server.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from clientcomm.errors import ConfigurationError, StorageError
from clientcomm.storage.postgres import PostgresStore

__all__ = [
    "PG_URL_ENV",
    "REQUIRE_PG_ENV",
    "admin_url_from_env",
    "isolated_schema",
    "isolated_store",
    "url_with_search_path",
]

PG_URL_ENV = "CLIENTCOMM_TEST_PG_URL"
REQUIRE_PG_ENV = "CLIENTCOMM_REQUIRE_PG"

_SCHEMA_PREFIX = "cc_test_"


def admin_url_from_env() -> str | None:
    """``$CLIENTCOMM_TEST_PG_URL``, or None when unset or empty."""
    return os.environ.get(PG_URL_ENV) or None


def url_with_search_path(url: str, schema: str) -> str:
    """A conninfo string for ``url`` whose sessions use only ``schema``
    (``options=-c search_path=...``, merged with any options already given).

    Raises:
        ConfigurationError: ``url`` is not a valid libpq URL/conninfo, or
            ``schema`` is not a plain lower-case identifier.
    """
    if not schema or not all(c.isascii() and (c.isalnum() or c == "_") for c in schema):
        raise ConfigurationError(f"schema name must be a plain identifier: {schema!r}")
    try:
        params: dict[str, Any] = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigurationError(f"invalid PostgreSQL URL: {exc}") from None
    options = str(params.get("options") or "")
    params["options"] = f"{options} -c search_path={schema}".strip()
    return make_conninfo("", **params)


@asynccontextmanager
async def isolated_schema(admin_url: str) -> AsyncIterator[str]:
    """Create a fresh empty schema, yield a conninfo string bound to it, and
    drop the schema (with everything in it) on exit.

    Close every connection you opened through the URL before leaving the
    block: the drop waits (at most 30 s) for their locks.

    Raises:
        StorageError: the server is unreachable or refuses the schema.
    """
    schema = _SCHEMA_PREFIX + secrets.token_hex(6)
    ident = sql.Identifier(schema)
    try:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
            await conn.execute(sql.SQL("CREATE SCHEMA {}").format(ident))
    except psycopg.Error as exc:
        raise StorageError(f"cannot create test schema: {exc}") from exc
    try:
        yield url_with_search_path(admin_url, schema)
    finally:
        try:
            async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
                await conn.execute("SET lock_timeout = '30s'")
                await conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(ident))
        except psycopg.Error as exc:
            raise StorageError(f"cannot drop test schema {schema}: {exc}") from exc


@asynccontextmanager
async def isolated_store(
    admin_url: str | None = None,
    *,
    migrate: bool = True,
    **store_kwargs: Any,
) -> AsyncIterator[PostgresStore]:
    """An opened :class:`PostgresStore` on a fresh schema (migrated unless
    ``migrate=False``); closed and dropped on exit.

    Args:
        admin_url: server URL; default ``$CLIENTCOMM_TEST_PG_URL``.
        migrate: apply the migrations when opening (default).
        store_kwargs: passed to :class:`PostgresStore` (``max_size``...).

    Raises:
        ConfigurationError: no URL given and ``$CLIENTCOMM_TEST_PG_URL`` unset.
        StorageError: the server is unreachable.
    """
    url = admin_url or admin_url_from_env()
    if not url:
        raise ConfigurationError(f"no PostgreSQL URL: pass one or set ${PG_URL_ENV}")
    async with isolated_schema(url) as schema_url:
        store = PostgresStore(schema_url, migrate=migrate, **store_kwargs)
        try:
            await store.open()
            yield store
        finally:
            await store.aclose()
