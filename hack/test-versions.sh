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
# The chart's suite runs only where the chart installs: its kubeVersion is
# >=1.30, and podgrace's own pod uses the native sleep action (its image has
# no shell): a server with the sleep action off rejects its Deployment (1.29)
# or drops the hook (1.30 with the gate off; TestChartNeedsSleepAction in
# test/integration proves both). The summary says what ran on which version.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
GO=${GO:-go}
[ $# -gt 0 ] || { sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

summary=() failed=0
for run in "$@"; do
  IFS=/ read -r kube etcd flags <<<"$run"
  flags=${flags//+/ }
  assets=$ROOT/bin/k8s/$kube-linux-amd64
  hack/build-kube.sh "$kube" "$etcd" "$assets" kube-apiserver etcd
  # The chart needs the native sleep action (see above).
  chart=yes
  minor=${kube#*.}; minor=${minor%%.*}
  if [ "$minor" -lt 30 ] || [[ $flags == *PodLifecycleSleepAction=false* ]]; then chart=no; fi
  pkgs=(./test/integration/)
  [ $chart = yes ] && pkgs+=(./test/chart/)
  echo "=== Kubernetes $kube, etcd $etcd${flags:+, kube-apiserver $flags}: ${pkgs[*]}"
  start=$SECONDS
  if KUBEBUILDER_ASSETS=$assets PODGRACE_TEST_APISERVER_FLAGS=$flags \
      "$GO" test "${pkgs[@]}" -count=1 -timeout 30m; then
    result=PASS
  else
    result=FAIL failed=1
  fi
  summary+=("$result  $kube${flags:+ ($flags)}  ${pkgs[*]}  $((SECONDS - start))s")
done
echo "=== test-versions summary"
printf '%s\n' "${summary[@]}"
exit $failed
