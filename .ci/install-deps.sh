#!/usr/bin/env bash
# install-deps.sh - system packages the krbouncer test suite needs (Debian/Ubuntu, as root).
#
# Idempotent: installs only what is missing, runs `apt-get update` at most once, and is a fast
# no-op when everything is present. Also makes the Python venv with kubernetes-validate that
# tests/deploy.rs uses (KRBOUNCER_CI_VENV, default /opt/krbouncer-ci/venv).
# PostgreSQL is installed without creating the default
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
    iproute2                    # ss (tests/tcp_options.rs reads socket options back)
    python3-venv                # the kubernetes-validate venv (tests/deploy.rs)
    openssl                     # X.509 v1 test certificates (tests/compat_tls.rs)
)
# kubectl (tests/deploy.rs renders deploy/k8s with `kubectl kustomize`): Debian's package only
# if none is installed. Note: bookworm's kubernetes-client is 1.20, whose kustomize (v2.0.3)
# cannot read the overlays; tests/deploy.rs says so. Install kubectl >= 1.21 instead there.
command -v kubectl >/dev/null || PACKAGES+=(kubernetes-client)

KRBOUNCER_CI_VENV=${KRBOUNCER_CI_VENV:-/opt/krbouncer-ci/venv}
# Pinned: the wheel carries the Kubernetes JSON schemas (1.25 ... 1.37), so validation is offline.
KUBERNETES_VALIDATE=kubernetes-validate==1.37.0

ensure_venv() {
    if "$KRBOUNCER_CI_VENV/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null; then
        echo "install-deps: $KRBOUNCER_CI_VENV has kubernetes-validate"
        return
    fi
    if [[ $EUID -ne 0 && ! -w $(dirname "$KRBOUNCER_CI_VENV") ]]; then
        echo "install-deps: $KRBOUNCER_CI_VENV missing (run as root to create it)" >&2
        exit 1
    fi
    echo "install-deps: creating $KRBOUNCER_CI_VENV with $KUBERNETES_VALIDATE"
    /usr/bin/python3 -m venv "$KRBOUNCER_CI_VENV"
    "$KRBOUNCER_CI_VENV/bin/pip" install --quiet --disable-pip-version-check "$KUBERNETES_VALIDATE"
}

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
    ensure_venv
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
ensure_venv
install_venv
