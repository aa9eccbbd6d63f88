#!/usr/bin/env bash
# A throwaway PostgreSQL for the store tests (tests/wire/test_store.py and friends).
#
#   eval "$(.ci/postgres.sh)"          # installs PostgreSQL if missing, starts a cluster, exports its URL
#   .ci/postgres.sh --stop             # stops the cluster named by $VOICEAGENT_TEST_POSTGRES_DIR
#
# stdout carries only the export lines (so that eval works); progress goes to stderr. The cluster lives in
# a temporary directory, listens on 127.0.0.1 only, on a free port, with a random password (SCRAM), and is
# run by a non-root user: PostgreSQL refuses to run as root, so as root (CI) it runs as `postgres`.
set -euo pipefail

say() { echo "postgres.sh: $*" >&2; }

if [[ "${1:-}" == "--stop" ]]; then
    dir="${VOICEAGENT_TEST_POSTGRES_DIR:?VOICEAGENT_TEST_POSTGRES_DIR is not set}"
    bindir="$(cat "$dir/bindir")"
    owner="$(stat -c %U "$dir")"
    if [[ "$(id -u)" == 0 && "$owner" != root ]]; then
        runuser -u "$owner" -- "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >&2
    else
        "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >&2
    fi
    rm -rf "$dir"
    exit 0
fi

find_bindir() {
    local candidate
    for candidate in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [[ -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]]; then
            echo "$candidate"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    return 1
}

if ! bindir="$(find_bindir)"; then
    if [[ "$(id -u)" != 0 ]]; then
        say "PostgreSQL is not installed and we are not root: cannot apt-get install it"
        exit 1
    fi
    say "installing PostgreSQL (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update >&2
    apt-get install -y --no-install-recommends postgresql >&2
    bindir="$(find_bindir)" || { say "PostgreSQL installed, but initdb/pg_ctl not found"; exit 1; }
fi

run_as=()
if [[ "$(id -u)" == 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    run_as=(runuser -u postgres --)
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/voiceagent-pg.XXXXXX")"
chmod 700 "$dir"
[[ ${#run_as[@]} -gt 0 ]] && chown postgres: "$dir"
echo "$bindir" >"$dir/bindir"
password="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
printf '%s\n' "$password" >"$dir/pwfile"
[[ ${#run_as[@]} -gt 0 ]] && chown postgres: "$dir/pwfile" "$dir/bindir"

say "initdb in $dir ($bindir)"
"${run_as[@]}" "$bindir/initdb" -D "$dir/data" -U voiceagent --pwfile="$dir/pwfile" \
    --auth-host=scram-sha-256 --auth-local=scram-sha-256 --no-sync -E UTF8 --locale=C.UTF-8 >&2
rm -f "$dir/pwfile"
say "starting on 127.0.0.1:$port"
"${run_as[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >&2
PGPASSWORD="$password" "$bindir/psql" -h 127.0.0.1 -p "$port" -U voiceagent -d postgres -v ON_ERROR_STOP=1 -q \
    -c "CREATE DATABASE voiceagent_test" >&2

echo "export VOICEAGENT_TEST_POSTGRES_URL=postgresql://voiceagent:$password@127.0.0.1:$port/voiceagent_test"
echo "export VOICEAGENT_TEST_POSTGRES_DIR=$dir"
say "ready; stop it with: .ci/postgres.sh --stop"
