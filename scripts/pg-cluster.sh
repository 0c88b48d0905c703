#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL 15 cluster for clientcomm's tests.
#
#   scripts/pg-cluster.sh start DIR   start a cluster; writes its URL to DIR/url and prints it
#   scripts/pg-cluster.sh stop DIR    stop it (immediate shutdown) and remove DIR
#   scripts/pg-cluster.sh url DIR     print the URL of the running cluster (exit 1 if none)
#
# Typical use (this is what `make test` does):
#
#   export CLIENTCOMM_TEST_PG_URL="$(scripts/pg-cluster.sh start .pgtmp/cluster)"
#   trap 'scripts/pg-cluster.sh stop .pgtmp/cluster' EXIT
#
# The server listens on 127.0.0.1 only, on a free port, with its unix socket inside
# the cluster's own directory; authentication is `trust` for the superuser `postgres`.
# PostgreSQL refuses to run as root: when run as root the cluster runs as the `postgres`
# system user (created as `clientcomm-pg` if there is no `postgres` user). The data
# directory lives in a private mktemp directory (DIR/pgroot names it) so the server user
# never needs access to DIR's parents. If the PostgreSQL 15 binaries are missing they
# are installed from the Debian archive (root only).
#
# THIS IS A TEST CLUSTER: fsync, full_page_writes and synchronous_commit are off, so a
# machine crash loses data. Never point anything you care about at it.
set -euo pipefail

PG_VERSION=15
PG_BINDIR="${PG_BINDIR:-/usr/lib/postgresql/${PG_VERSION}/bin}"

die() {
    echo "pg-cluster: $*" >&2
    exit 1
}

usage() {
    echo "usage: $0 start|stop|url DIR" >&2
    exit 2
}

find_bindir() {
    if [[ -x "${PG_BINDIR}/initdb" && -x "${PG_BINDIR}/pg_ctl" ]]; then
        return 0
    fi
    local initdb
    if initdb="$(command -v initdb 2>/dev/null)" && [[ -n "${initdb}" ]]; then
        PG_BINDIR="$(dirname "$(readlink -f "${initdb}")")"
        [[ -x "${PG_BINDIR}/pg_ctl" ]] && return 0
    fi
    return 1
}

install_binaries() {
    [[ "$(id -u)" -eq 0 ]] || die "PostgreSQL ${PG_VERSION} binaries not found; install postgresql-${PG_VERSION}"
    command -v apt-get >/dev/null || die "PostgreSQL ${PG_VERSION} binaries not found and no apt-get"
    echo "pg-cluster: installing postgresql-${PG_VERSION} from the Debian archive" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # The package's own cluster/service is not used; policy-rc.d keeps it from starting.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "${policy}" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"${policy}"
        chmod 755 "${policy}"
        created_policy=1
    fi
    apt-get install -y -qq --no-install-recommends "postgresql-${PG_VERSION}" >&2 || {
        [[ "${created_policy}" -eq 1 ]] && rm -f "${policy}"
        die "apt-get install postgresql-${PG_VERSION} failed"
    }
    [[ "${created_policy}" -eq 1 ]] && rm -f "${policy}"
    find_bindir || die "postgresql-${PG_VERSION} installed but initdb/pg_ctl not found"
}

# The user the server runs as, and a prefix to run commands as that user.
RUN_AS=()
PG_USER=""
setup_user() {
    if [[ "$(id -u)" -ne 0 ]]; then
        PG_USER="$(id -un)"
        RUN_AS=()
        return
    fi
    if id -u postgres >/dev/null 2>&1; then
        PG_USER=postgres
    else
        PG_USER=clientcomm-pg
        if ! id -u "${PG_USER}" >/dev/null 2>&1; then
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin "${PG_USER}" >&2 ||
                id -u "${PG_USER}" >/dev/null 2>&1 || die "cannot create user ${PG_USER}"
        fi
    fi
    if command -v runuser >/dev/null; then
        RUN_AS=(runuser -u "${PG_USER}" --)
    elif command -v setpriv >/dev/null; then
        RUN_AS=(setpriv --reuid="${PG_USER}" --regid="$(id -g "${PG_USER}")" --init-groups --)
    else
        die "need runuser or setpriv to drop root privileges"
    fi
}

free_port() {
    local py
    for py in python3 python; do
        if command -v "${py}" >/dev/null; then
            "${py}" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
            return
        fi
    done
    # No python: pick a random high port; a clash makes pg_ctl fail and we retry.
    echo $((20000 + RANDOM % 30000))
}

# Is the cluster recorded in DIR running and accepting connections?
# (pg_ctl status alone is fooled by a killed postmaster left as a zombie.)
is_running() {
    local dir="$1" root
    [[ -f "${dir}/pgroot" && -f "${dir}/port" ]] || return 1
    root="$(cat "${dir}/pgroot")"
    [[ -f "${root}/data/postmaster.pid" ]] || return 1
    "${RUN_AS[@]}" "${PG_BINDIR}/pg_ctl" status -D "${root}/data" >/dev/null 2>&1 || return 1
    "${PG_BINDIR}/pg_isready" -q -t 5 -h 127.0.0.1 -p "$(cat "${dir}/port")" -U postgres
}

cmd_start() {
    local dir="$1"
    find_bindir || install_binaries
    setup_user
    mkdir -p "${dir}"
    dir="$(cd "${dir}" && pwd)"
    if is_running "${dir}" && [[ -f "${dir}/url" ]]; then
        # Idempotent: the cluster is already up.
        cat "${dir}/url"
        return 0
    fi
    # Left-overs of a crashed run: stop whatever is there and start afresh.
    cmd_stop_inner "${dir}"
    mkdir -p "${dir}"

    local root data sock log port attempt
    root="$(mktemp -d "${TMPDIR:-/tmp}/clientcomm-pg.XXXXXXXX")"
    echo "${root}" >"${dir}/pgroot"
    data="${root}/data"
    sock="${root}/sock"
    log="${root}/server.log"
    mkdir -p "${sock}"
    if [[ -n "${RUN_AS[*]}" ]]; then
        chown -R "${PG_USER}:" "${root}"
    fi
    chmod 700 "${root}"

    "${RUN_AS[@]}" "${PG_BINDIR}/initdb" -D "${data}" -A trust -U postgres \
        --no-sync -E UTF8 --locale=C >"${root}/initdb.log" 2>&1 || {
        cat "${root}/initdb.log" >&2
        die "initdb failed"
    }
    # Test-cluster settings: durability off for speed (see the header).
    cat >>"${data}/postgresql.conf" <<EOF

# --- clientcomm test cluster (scripts/pg-cluster.sh) ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '${sock}'
max_connections = 100
fsync = off
full_page_writes = off
synchronous_commit = off
shared_buffers = 128MB
max_locks_per_transaction = 256
logging_collector = off
log_min_messages = warning
timezone = 'UTC'
EOF

    for attempt in 1 2 3 4 5; do
        port="$(free_port)"
        if "${RUN_AS[@]}" "${PG_BINDIR}/pg_ctl" start -D "${data}" -l "${log}" -w -t 60 \
            -o "-p ${port}" >/dev/null 2>&1; then
            break
        fi
        if [[ "${attempt}" -eq 5 ]]; then
            cat "${log}" >&2 || true
            die "server did not start"
        fi
        echo "pg-cluster: start on port ${port} failed, retrying" >&2
        "${RUN_AS[@]}" "${PG_BINDIR}/pg_ctl" stop -D "${data}" -m immediate >/dev/null 2>&1 || true
    done

    local ready=0
    for _ in $(seq 1 100); do
        if "${PG_BINDIR}/pg_isready" -q -h 127.0.0.1 -p "${port}" -U postgres; then
            ready=1
            break
        fi
        sleep 0.1
    done
    if [[ "${ready}" -ne 1 ]]; then
        cat "${log}" >&2 || true
        die "server not ready on port ${port}"
    fi

    local url="postgresql://postgres@127.0.0.1:${port}/postgres"
    echo "${port}" >"${dir}/port"
    echo "${url}" >"${dir}/url"
    echo "${url}"
}

cmd_stop_inner() {
    local dir="$1" root
    if [[ -f "${dir}/pgroot" ]]; then
        root="$(cat "${dir}/pgroot")"
        if [[ -n "${root}" && -d "${root}" ]]; then
            if [[ -f "${root}/data/postmaster.pid" ]]; then
                "${RUN_AS[@]}" "${PG_BINDIR}/pg_ctl" stop -D "${root}/data" -m immediate -w -t 30 \
                    >/dev/null 2>&1 || {
                    # pg_ctl could not do it: kill the postmaster by its recorded pid.
                    local pid
                    pid="$(head -n 1 "${root}/data/postmaster.pid" 2>/dev/null || true)"
                    if [[ "${pid}" =~ ^[0-9]+$ ]]; then
                        kill -QUIT "${pid}" 2>/dev/null || true
                    fi
                }
            fi
            case "${root}" in
            */clientcomm-pg.*) rm -rf -- "${root}" ;;
            *) echo "pg-cluster: not removing unexpected path ${root}" >&2 ;;
            esac
        fi
    fi
    rm -rf -- "${dir}"
}

cmd_stop() {
    local dir="$1"
    [[ -e "${dir}" ]] || return 0
    find_bindir || die "PostgreSQL binaries not found"
    setup_user
    cmd_stop_inner "${dir}"
}

cmd_url() {
    local dir="$1"
    find_bindir || die "PostgreSQL binaries not found"
    setup_user
    is_running "${dir}" && [[ -f "${dir}/url" ]] || die "no cluster running in ${dir}"
    cat "${dir}/url"
}

[[ $# -eq 2 ]] || usage
[[ -n "$2" ]] || usage
case "$1" in
start) cmd_start "$2" ;;
stop) cmd_stop "$2" ;;
url) cmd_url "$2" ;;
*) usage ;;
esac
