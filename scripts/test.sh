#!/usr/bin/env bash
# The whole test run behind `make test`: a throwaway PostgreSQL 15 cluster, then
# ruff, mypy --strict and pytest. The cluster is stopped at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

PGDIR=$(mktemp -d /tmp/clientcomm-pg.XXXXXX)
cleanup() { bash scripts/pg-cluster.sh stop "$PGDIR" >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM

bash scripts/pg-cluster.sh start "$PGDIR" >/dev/null
CLIENTCOMM_TEST_PG_URL=$(cat "$PGDIR/url")
export CLIENTCOMM_TEST_PG_URL
export CLIENTCOMM_REQUIRE_PG=1
echo "PostgreSQL test server: $CLIENTCOMM_TEST_PG_URL"

echo "== ruff"
"$VENV/bin/ruff" check src tests bench examples
echo "== mypy --strict"
"$VENV/bin/mypy" --strict src tests
echo "== pytest"
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
