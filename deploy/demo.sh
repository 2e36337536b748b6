#!/usr/bin/env bash
# demo.sh - krbouncer in front of a Kerberized PostgreSQL, end to end, on one machine.
#
#   bash deploy/demo.sh [--once] [--no-install] [--debug]
#
# 1. installs what is missing (Debian/Ubuntu, apt, noninteractive): MIT Kerberos KDC and
#    client tools, PostgreSQL server, build dependencies of libgssapi (libkrb5-dev, libclang)
# 2. builds krbouncer (cargo build --release; --debug: cargo build)
# 3. starts a throw-away lab (tests/fixtures/krblab.sh): realm TEST.LOCAL with a KDC on a
#    loopback port, PostgreSQL with TLS and pg_hba `host`/`hostssl ... gss` rules, a client
#    principal astro_user@TEST.LOCAL in a keytab, role "astro_user@TEST.LOCAL", database airflow
# 4. writes pgbouncer.ini + users.txt, starts krbouncer with KRB5_CLIENT_KTNAME pointing at the
#    keytab, and queries pg_stat_gssapi / pg_stat_ssl through it with psql
# 5. waits for Ctrl-C (or exits right away with --once) and removes everything it started.
# Nothing is written outside the repo's target/ dir and one temp dir; only 127.0.0.1 is used.
set -euo pipefail

ONCE=0 INSTALL=1 PROFILE=release
for a in "$@"; do
    case $a in
        --once) ONCE=1 ;;
        --no-install) INSTALL=0 ;;
        --debug) PROFILE=debug ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown option $a (see --help)" >&2; exit 2 ;;
    esac
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LABSH=$REPO/tests/fixtures/krblab.sh
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# ---------------------------------------------------------------- 1. packages
need_pkgs() {
    local missing=() p
    for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
    echo "${missing[@]:-}"
}
if [[ $INSTALL == 1 ]] && command -v apt-get >/dev/null; then
    PG_PKG=postgresql-15
    apt-cache show postgresql-15 >/dev/null 2>&1 || PG_PKG=postgresql
    pkgs=(krb5-kdc krb5-admin-server krb5-user libkrb5-dev pkg-config libclang-dev "$PG_PKG" openssl gcc libc6-dev)
    missing=$(need_pkgs "${pkgs[@]}")
    if [[ -n $missing ]]; then
        say "installing: $missing"
        SUDO=; [[ $EUID -eq 0 ]] || SUDO=sudo
        # don't let the postgresql package create and start a default cluster on :5432
        $SUDO mkdir -p /etc/postgresql-common
        [[ -f /etc/postgresql-common/createcluster.conf ]] \
            || echo 'create_main_cluster = false' | $SUDO tee /etc/postgresql-common/createcluster.conf >/dev/null
        $SUDO apt-get update -qq
        # shellcheck disable=SC2086
        $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing
    fi
fi
command -v cargo >/dev/null || {
    echo "cargo not found: install Rust first (https://rustup.rs: curl -sSf https://sh.rustup.rs | sh)" >&2
    exit 1
}

# ---------------------------------------------------------------- 2. build
say "building krbouncer ($PROFILE)"
if [[ $PROFILE == release ]]; then
    (cd "$REPO" && cargo build --release --bin krbouncer)
else
    (cd "$REPO" && cargo build --bin krbouncer)
fi
BIN=$REPO/target/$PROFILE/krbouncer

# ---------------------------------------------------------------- 3. lab
say "starting KDC + Kerberized PostgreSQL"
LAB=
BOUNCER_PID=
cleanup() {
    trap - EXIT INT TERM
    if [[ -n $BOUNCER_PID ]] && kill -0 "$BOUNCER_PID" 2>/dev/null; then
        kill -INT "$BOUNCER_PID" 2>/dev/null || true   # PgBouncer meaning: stop after servers
        for _ in $(seq 50); do kill -0 "$BOUNCER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$BOUNCER_PID" 2>/dev/null || true
    fi
    if [[ -n $LAB && -d $LAB ]]; then bash "$LABSH" down "$LAB" || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ENVFILE=$(PGLAB_USER_PRINC=astro_user PGLAB_HBA=mixed \
    PGLAB_INITDB_CACHE="$REPO/target/krblab-initdb-cache" bash "$LABSH" up)
LAB=$(dirname "$ENVFILE")
# shellcheck disable=SC1090
source "$ENVFILE"
as_pg_psql() {  # superuser SQL over the lab's unix socket (as the cluster's OS user)
    local owner; owner=$(stat -c %U "$LAB/pg/data")
    if [[ $EUID -eq 0 ]]; then
        setpriv --reuid="$owner" --regid="$(id -g "$owner")" --init-groups -- \
            "$PGLAB_PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGLAB_PG_SOCKDIR" -p "$PGLAB_PG_PORT" -U postgres -d postgres "$@"
    else
        "$PGLAB_PG_BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGLAB_PG_SOCKDIR" -p "$PGLAB_PG_PORT" -U postgres -d postgres "$@"
    fi
}
as_pg_psql -c "CREATE DATABASE airflow OWNER \"$PGLAB_USER_PRINC\""

# ---------------------------------------------------------------- 4. krbouncer
free_port() {
    local used p h
    used=" "
    while read -r h; do used+="$((16#$h)) "; done < <(
        awk '$2 ~ /:/ { n = split($2, a, ":"); print a[n] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
    for _ in $(seq 500); do
        p=$(( 20000 + RANDOM % 12000 ))
        [[ $used == *" $p "* ]] || { echo "$p"; return; }
    done
    echo "no free port" >&2; exit 1
}
LISTEN_PORT=$(free_port)
CLIENT_USER=airflow
CLIENT_PASSWORD=airflow-demo
MD5=$(printf '%s%s' "$CLIENT_PASSWORD" "$CLIENT_USER" | md5sum | cut -d' ' -f1)
CONF=$LAB/krbouncer
mkdir -p "$CONF"
printf '"%s" "md5%s"\n' "$CLIENT_USER" "$MD5" >"$CONF/users.txt"
chmod 0600 "$CONF/users.txt"
cat >"$CONF/pgbouncer.ini" <<EOF
[databases]
airflow = host=localhost port=$PGLAB_PG_PORT dbname=airflow user=$PGLAB_USER_PRINC
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $LISTEN_PORT
auth_type = md5
auth_file = $CONF/users.txt
server_gssauth_negotiate = allow
server_krb_spn = $PGLAB_SPN
server_tls_sslmode = prefer
EOF
echo "pgbouncer.ini ($CONF/pgbouncer.ini):"; sed 's/^/    /' "$CONF/pgbouncer.ini"

say "starting krbouncer on 127.0.0.1:$LISTEN_PORT"
# The pooler's Kerberos identity: the client keytab (MIT refreshes tickets from it by itself).
env KRB5_CONFIG="$KRB5_CONFIG" KRB5_CLIENT_KTNAME="$KRB5_CLIENT_KTNAME" KRB5CCNAME="MEMORY:" \
    "$BIN" "$CONF/pgbouncer.ini" >"$CONF/krbouncer.log" 2>&1 &
BOUNCER_PID=$!
up=0
for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$LISTEN_PORT") 2>/dev/null; then up=1; break; fi
    kill -0 "$BOUNCER_PID" 2>/dev/null || break
    sleep 0.1
done
if [[ $up != 1 ]]; then
    echo "krbouncer did not start listening; its log ($CONF/krbouncer.log):" >&2
    sed 's/^/    /' "$CONF/krbouncer.log" >&2
    exit 1
fi

say "querying PostgreSQL through krbouncer"
CONN="host=127.0.0.1 port=$LISTEN_PORT dbname=airflow user=$CLIENT_USER sslmode=disable gssencmode=disable"
run_q() { PGPASSWORD=$CLIENT_PASSWORD psql -X "$CONN" -c "$1"; }
run_q "SELECT current_user, gss_authenticated, principal, encrypted FROM pg_stat_gssapi WHERE pid = pg_backend_pid()"
run_q "SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()"

cat <<EOF

Connect yourself (password: $CLIENT_PASSWORD):
    PGPASSWORD=$CLIENT_PASSWORD psql "$CONN"
krbouncer log: $CONF/krbouncer.log    lab: $LAB
EOF
if [[ $ONCE == 1 ]]; then exit 0; fi
say "running; press Ctrl-C to stop and clean up"
while kill -0 "$BOUNCER_PID" 2>/dev/null; do sleep 1; done
echo "krbouncer exited; log:" >&2
tail -n 20 "$CONF/krbouncer.log" >&2
exit 1
