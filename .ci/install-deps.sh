#!/usr/bin/env bash
# install-deps.sh - system packages the krbouncer test suite needs (Debian/Ubuntu, as root).
#
# Idempotent: installs only what is missing, runs `apt-get update` at most once, and is a fast
# no-op when everything is present. PostgreSQL is installed without creating the default
# cluster, so nothing starts on :5432 (the tests run their own clusters on free ports).
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
PACKAGES=(
    "postgresql-$PG_MAJOR"      # initdb, pg_ctl, postgres (tests/common/pg.rs)
    postgresql-contrib          # pgbench
    postgresql-client           # psql
    krb5-kdc krb5-admin-server  # the KDC lab (tests/common/kdc.rs)
    krb5-user                   # kinit, klist
    libkrb5-dev pkg-config      # building libgssapi-sys
    libclang-dev                # bindgen for libgssapi-sys
    procps                      # pkill (tests/process_name.rs signals by process name)
    python3-venv                # the libpq 18 client venv below (tests/common/python.rs)
    openssl                     # X.509 v1 test certificates (tests/compat_tls.rs)
)

# psycopg's binary wheel bundles libpq 18 (protocol 3.2 requests, tests/compat_protocol.rs).
# Debian's own libpq is older, so a venv holds it; KRBOUNCER_TEST_VENV overrides the place.
VENV=${KRBOUNCER_TEST_VENV:-/opt/krbouncer-test-venv}
install_venv() {
    if "$VENV/bin/python" -c 'import psycopg, sys; sys.exit(psycopg.pq.version() < 180000)' 2>/dev/null; then
        return 0
    fi
    if [[ $EUID -ne 0 && ! -w "$(dirname "$VENV")" ]]; then
        echo "install-deps: no libpq 18 venv at $VENV (run as root to create it)" >&2
        return 1
    fi
    echo "install-deps: creating $VENV with psycopg[binary]"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q 'psycopg[binary]>=3.2.10'
}

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    install_venv
    echo "install-deps: all packages present"
    exit 0
fi

if [[ $EUID -ne 0 ]]; then
    echo "install-deps: missing packages (run as root to install): ${missing[*]}" >&2
    exit 1
fi

# No default cluster on :5432 when postgresql-common sets up a new server package.
mkdir -p /etc/postgresql-common
conf=/etc/postgresql-common/createcluster.conf
if ! grep -Eq '^[[:space:]]*create_main_cluster[[:space:]]*=[[:space:]]*false' "$conf" 2>/dev/null; then
    if grep -Eq '^[[:space:]]*#?[[:space:]]*create_main_cluster' "$conf" 2>/dev/null; then
        sed -i -E 's/^[[:space:]]*#?[[:space:]]*create_main_cluster.*/create_main_cluster = false/' "$conf"
    else
        echo "create_main_cluster = false" >>"$conf"
    fi
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_venv
