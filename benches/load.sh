#!/usr/bin/env bash
# load.sh - pgbench through krbouncer and through PgBouncer, same ini, side by side.
#
# Starts a throwaway PostgreSQL in a temp dir, initialises pgbench tables, then for each pooler
# (krbouncer release build; PgBouncer if installed) and each query mode runs
#   pgbench -M <mode> -c $CLIENTS -j $THREADS -T $DURATION
# in transaction pooling with default_pool_size=$POOL, and prints tps, failed transactions and
# the pooler's peak RSS. Nothing here is a pass/fail test: the numbers are for notes and
# regressions, on a quiet machine.
#
#   bash benches/load.sh                       # defaults: 50 clients, 2 threads, 30 s, pool 5
#   DURATION=10 MODES="prepared" POOLERS=krbouncer bash benches/load.sh
#   PGBENCH_ARGS=-S bash benches/load.sh          # select-only: loads the pooler, not the disk
set -euo pipefail

DURATION=${DURATION:-30}
CLIENTS=${CLIENTS:-50}
THREADS=${THREADS:-2}
POOL=${POOL:-5}
POOL_MODE=${POOL_MODE:-transaction}
MODES=${MODES:-"simple extended prepared"}
POOLERS=${POOLERS:-"krbouncer pgbouncer"}
PGBENCH_ARGS=${PGBENCH_ARGS:-}   # e.g. "-S" for select-only, which loads the pooler more than the database
ROOT=$(cd "$(dirname "$0")/.." && pwd)

pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x "$pg_bin/initdb" ]] || { echo "load.sh: PostgreSQL server binaries not found" >&2; exit 1; }
command -v pgbench >/dev/null || { echo "load.sh: pgbench not found" >&2; exit 1; }

free_port() {
    local p
    while :; do
        p=$(( (RANDOM % 20000) + 20000 ))
        (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
}

work=$(mktemp -d /tmp/krbouncer-load.XXXXXX)
as_user=()
if [[ $EUID -eq 0 ]]; then
    chown postgres "$work"
    as_user=(runuser -u postgres --)
fi
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    "${as_user[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "building krbouncer (release)..."
(cd "$ROOT" && cargo build --release --quiet)
bin="$ROOT/target/release/krbouncer"

pg_port=$(free_port)
"${as_user[@]}" "$pg_bin/initdb" -D "$work/pg" -A trust -U postgres >/dev/null
"${as_user[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w \
    -o "-p $pg_port -k $work -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
psql -h 127.0.0.1 -p "$pg_port" -U postgres -qc "CREATE ROLE bench LOGIN PASSWORD 'bench'" \
    -c "CREATE DATABASE bench OWNER bench" >/dev/null
PGPASSWORD=bench pgbench -h 127.0.0.1 -p "$pg_port" -U bench -i -q -s 10 bench >/dev/null 2>&1

write_ini() { # $1 = port, $2 = file, $3 = extra settings
    cat >"$2" <<EOF
[databases]
bench = host=127.0.0.1 port=$pg_port dbname=bench
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $1
unix_socket_dir =
auth_type = md5
auth_file = $work/users.txt
pool_mode = $POOL_MODE
default_pool_size = $POOL
max_client_conn = $((CLIENTS * 2 + 10))
$3
log_connections = 0
log_disconnections = 0
logfile = ${2%.ini}.log
EOF
}
echo '"bench" "bench"' >"$work/users.txt"
chmod a+r "$work/users.txt"

run_pooler() { # $1 = name, $2 = extra ini lines, $3... = command
    local name=$1 extra=$2; shift 2
    local port; port=$(free_port)
    write_ini "$port" "$work/$name.ini" "$extra"
    [[ $EUID -eq 0 ]] && chown postgres "$work/$name.ini"
    "${as_user[@]}" "$@" "$work/$name.ini" &
    local pid=$!
    pids+=("$pid")
    local pooler_pid=$pid
    if [[ $EUID -eq 0 ]]; then
        for _ in $(seq 50); do pooler_pid=$(pgrep -P "$pid" | head -1) && break; sleep 0.1; done
    fi
    for _ in $(seq 50); do (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    for mode in $MODES; do
        # shellcheck disable=SC2086
        out=$(PGPASSWORD=bench pgbench -h 127.0.0.1 -p "$port" -U bench -n -M "$mode" $PGBENCH_ARGS \
            -c "$CLIENTS" -j "$THREADS" -T "$DURATION" bench 2>&1 || true)
        tps=$(grep -oP 'tps = \K[0-9.]+' <<<"$out" | head -1)
        failed=$(grep -oP 'number of failed transactions: \K[0-9]+' <<<"$out" || echo "?")
        errors=$(grep -c 'error' <<<"$out" || true)
        rss=$(grep -oP 'VmHWM:\s*\K[0-9]+' "/proc/$pooler_pid/status" 2>/dev/null || echo "?")
        printf '%-10s %-9s tps=%-10s failed=%-4s errors=%-3s peak_rss_kb=%s\n' \
            "$name" "$mode" "${tps:-?}" "$failed" "$errors" "$rss"
    done
    # runuser does not pass signals on: stop the pooler itself (SIGINT: wait for servers)
    pkill -INT -P "$pid" 2>/dev/null || true
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    pkill -KILL -P "$pid" 2>/dev/null || true
}

echo "pgbench $PGBENCH_ARGS -c $CLIENTS -j $THREADS -T $DURATION, pool_mode=$POOL_MODE, default_pool_size=$POOL"
if [[ " $POOLERS " == *" krbouncer "* ]]; then
    run_pooler krbouncer "max_prepared_statements = 200" "$bin"
fi
if [[ " $POOLERS " != *" pgbouncer "* ]]; then
    :
elif command -v pgbouncer >/dev/null; then
    # max_prepared_statements exists since PgBouncer 1.21; older ones cannot run -M prepared
    # in transaction pooling at all.
    ver=$(pgbouncer -V | grep -oP 'PgBouncer \K[0-9.]+' | head -1)
    extra=""
    if printf '1.21\n%s\n' "$ver" | sort -V -C; then extra="max_prepared_statements = 200"; fi
    echo "PgBouncer $ver"
    run_pooler pgbouncer "$extra" pgbouncer
else
    echo "pgbouncer not installed: no comparison (apt-get install pgbouncer)"
fi
