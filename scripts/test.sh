#!/usr/bin/env bash
# The whole test run behind `make test`: a throwaway PostgreSQL 15 cluster, then
# ruff, mypy --strict, the strict docs-site build and pytest. The cluster is stopped
# at the end, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

# Debian tools the tests use, installed from the Debian archive when missing (like
# PostgreSQL's binaries): Ghostscript makes the serial letters' PDF/A downloads
# (clientcomm.letters.pdfa), qpdf checks the print files.
need=()
command -v gs >/dev/null 2>&1 || need+=(ghostscript)
command -v qpdf >/dev/null 2>&1 || need+=(qpdf)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]} (apt-get)"
    if [ "$(id -u)" = 0 ]; then SUDO=(); else SUDO=(sudo); fi
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
        || { "${SUDO[@]}" apt-get update -qq >/dev/null 2>&1 \
             && "${SUDO[@]}" apt-get install -y -qq "${need[@]}" >/dev/null; } \
        || { echo "cannot install ${need[*]}: install them (Debian: apt-get install ${need[*]})" >&2; exit 1; }
fi

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
echo "== docs site (mkdocs build --strict)"
SITE=$(mktemp -d /tmp/clientcomm-site.XXXXXX)
NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --quiet -d "$SITE"
rm -rf "$SITE"
echo "== pytest"
"$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
