#!/usr/bin/env bash
# krbouncer-healthcheck - exit 0 when krbouncer's metrics endpoint answers 200 on a path.
#
#   krbouncer-healthcheck [PATH] [PORT]     PATH: /healthz (default) or /readyz
#                                           PORT: $KRBOUNCER_METRICS_PORT, else 9127
#
# The runtime image has no curl or wget; bash's /dev/tcp is enough for one HTTP/1.0 GET to
# 127.0.0.1 (krbouncer's metrics server answers and closes). `timeout` bounds a hung endpoint.
set -euo pipefail
path=${1:-/healthz}
port=${2:-${KRBOUNCER_METRICS_PORT:-9127}}
# shellcheck disable=SC2016  # $0/$1/$2 expand in the inner bash
exec timeout 3 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$2" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n" "$1" >&3
    IFS= read -r status <&3 || exit 1
    case $status in "HTTP/1."?" 200 "*) exit 0 ;; *) echo "$1: $status" >&2; exit 1 ;; esac
' healthcheck "$path" "$port"
