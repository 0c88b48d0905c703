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
# Ghostscript makes the serial letters' PDF/A downloads (clientcomm.letters.pdfa);
# installed from the Debian archive when missing (root only), like PostgreSQL.
if ! command -v gs >/dev/null 2>&1; then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "installing ghostscript (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ghostscript >/dev/null \
            || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ghostscript >/dev/null; }
    else
        echo "ghostscript (gs) is missing: install it (Debian: apt-get install ghostscript)" >&2
        exit 1
    fi
fi
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
