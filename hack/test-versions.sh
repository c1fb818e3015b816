#!/usr/bin/env bash
# Run the API-server suites (test/integration, test/chart) against every
# Kubernetes version podgrace supports: `make test-versions`.
#
#   hack/test-versions.sh RUN...
#       RUN: KUBE_VERSION/ETCD_VERSION[/FLAGS], FLAGS being extra
#       kube-apiserver flags joined with '+' (e.g.
#       1.30.14/3.5.24/--feature-gates=PodLifecycleSleepAction=false)
#
# Each version's kube-apiserver and etcd are built with hack/build-kube.sh
# into bin/k8s/<version>-linux-amd64 (a no-op once built). The suites read
# the server's version and the flags (PODGRACE_TEST_APISERVER_FLAGS) and
# assert what that server must do (internal/testkube): hookAction auto is
# exec where the sleep action is off, sleep elsewhere.
#
# Both suites run on every version and decide from the server what applies
# (its version, its flags and its discovery): the policy-mode tests need
# MutatingAdmissionPolicy v1 (1.36), where it is not served the chart's
# refusal of admission: policy is asserted instead; the chart's tests that
# install it need the chart's kubeVersion (>=1.30) and the native sleep
# action its own pod stops with (TestChartNeedsSleepAction in
# test/integration proves a server without it rejects or drops that hook).
# A test that does not apply writes one "not applicable on SERVER: TEST:
# REASON" line to the file PODGRACE_TEST_REPORT names
# (internal/testkube.NotApplicable); the summary prints them per run.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
GO=${GO:-go}
[ $# -gt 0 ] || { sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT
summary=() failed=0 n=0
for run in "$@"; do
  IFS=/ read -r kube etcd flags <<<"$run"
  flags=${flags//+/ }
  assets=$ROOT/bin/k8s/$kube-linux-amd64
  hack/build-kube.sh "$kube" "$etcd" "$assets" kube-apiserver etcd
  pkgs=(./test/integration/ ./test/chart/)
  n=$((n + 1)) report=$reports/$n
  : >"$report"
  echo "=== Kubernetes $kube, etcd $etcd${flags:+, kube-apiserver $flags}: ${pkgs[*]}"
  start=$SECONDS
  if KUBEBUILDER_ASSETS=$assets PODGRACE_TEST_APISERVER_FLAGS=$flags PODGRACE_TEST_REPORT=$report \
      "$GO" test "${pkgs[@]}" -count=1 -timeout 30m; then
    result=PASS
  else
    result=FAIL failed=1
  fi
  summary+=("$result  $kube${flags:+ ($flags)}  ${pkgs[*]}  $((SECONDS - start))s")
  while IFS= read -r line; do summary+=("      $line"); done < <(sort -u "$report")
done
echo "=== test-versions summary (tests that do not apply to a server say so below it)"
printf '%s\n' "${summary[@]}"
exit $failed
