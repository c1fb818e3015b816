#!/usr/bin/env bash
# `make e2e`: bring the cluster up, publish a release to its node registry
# (hack/cluster/publish.sh), run the e2e tests (which install podgrace from
# it), tear the cluster down (always). A failing run says why before the
# teardown: the whole output of each failed test (hack/e2ereport) and the
# tail of every component log.
# The test output is also kept in $E2E_DIR/log/e2e-test.log (down.sh keeps
# the logs).
#
#   hack/cluster/e2e.sh [go test flags...]      e.g. -run TestTrafficPaths
set -euo pipefail
# shellcheck source=hack/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

component_tails() {
  echo "==================== COMPONENT LOGS (last 25 lines each, $LOG) ===================="
  local f
  for f in "$LOG"/*.log; do
    [ -f "$f" ] || continue
    case "$f" in */e2e-test.log) continue ;; esac
    echo "--- $f"
    tail -n 25 "$f"
  done
}

finish() {
  local rc=$?
  trap - EXIT
  if [ "$rc" -ne 0 ] && [ -d "$LOG" ] && [ "${UP_DONE:-}" = 1 ]; then component_tails || true; fi
  "$ROOT/hack/cluster/down.sh" || rc=1
  [ "$rc" -ne 0 ] && echo "[e2e] FAILED (exit $rc)" >&2
  exit "$rc"
}
trap finish EXIT

"$ROOT/hack/cluster/up.sh" # a failed bring-up prints its own log tails
UP_DONE=1
# make release + make publish to the node registry: the e2e installs podgrace
# from that release (test/e2e installPodgrace). Says why when it fails.
"$ROOT/hack/cluster/publish.sh"
mkdir -p "$E2E_BIN"
(cd "$ROOT" && "$GO" build -o "$E2E_BIN/e2ereport" ./hack/e2ereport)
cd "$ROOT"
# -parallel 2: parallel tests (the traffic-path arms, the shell-form cases)
# run two at a time whatever the machine's core count, so that the load the
# arms put on the node is the same everywhere (the default is GOMAXPROCS).
E2E_DIR="$E2E_DIR" "$GO" test -tags e2e -count=1 -timeout 40m -parallel 2 -json ./test/e2e/... "$@" 2>&1 |
  "$E2E_BIN/e2ereport" -log "$LOG/e2e-test.log"
