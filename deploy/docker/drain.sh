#!/usr/bin/env bash
# krbouncer-drain - a Kubernetes preStop hook: stop taking new clients, let transactions
# finish, exit. Blocks until krbouncer has exited, so the kubelet's SIGTERM that follows the
# hook never arrives at a running krbouncer (a second TERM/INT means "exit at once").
#
#   krbouncer-drain [PID] [DELAY]    PID: krbouncer's pid (default 1, the container's init)
#                                    DELAY: seconds to keep serving first, so endpoint
#                                    controllers and kube-proxy drop the pod before the
#                                    listener closes (default $KRBOUNCER_DRAIN_DELAY, else 5)
#
# SIGINT is PgBouncer's "safe shutdown" (SHUTDOWN WAIT_FOR_SERVERS): like PAUSE, every client
# keeps its server until its transaction (transaction mode) or session ends, waiting clients
# get "server shutting down", and the process exits when no server is in use. /readyz answers
# 503 from the first moment. terminationGracePeriodSeconds bounds the whole hook.
set -euo pipefail
pid=${1:-1}
delay=${2:-${KRBOUNCER_DRAIN_DELAY:-5}}
sleep "$delay"
kill -INT "$pid"
while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
