"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os

import pytest

PG_ENV = "CLIENTCOMM_TEST_PG_URL"


def pg_admin_url() -> str:
    """The URL of the throwaway PostgreSQL server started by ``make test``.

    Skips when unset, unless CLIENTCOMM_REQUIRE_PG=1 (as ``make test`` sets), in
    which case the test fails: PostgreSQL tests are never silently skipped there.
    """
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get("CLIENTCOMM_REQUIRE_PG") == "1":
            pytest.fail(f"{PG_ENV} is not set but CLIENTCOMM_REQUIRE_PG=1")
        pytest.skip(f"{PG_ENV} not set (run `make test` to start a PostgreSQL server)")
    return url
