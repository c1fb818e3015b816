#!/usr/bin/env bash
# Build pinned Kubernetes and etcd binaries from their Go modules (no release
# downloads: only the Go module proxy is needed).
#
#   hack/build-kube.sh KUBE_VERSION ETCD_VERSION OUTDIR BINARY...
#       BINARY: kube-apiserver kube-controller-manager kube-scheduler kubelet
#               kube-proxy kubectl etcd
#       e.g. hack/build-kube.sh 1.36.3 3.6.8 bin/k8s/1.36.3-linux-amd64 kube-apiserver etcd
#
#   hack/build-kube.sh --regenerate KUBE_VERSION ETCD_VERSION
#       Rewrites hack/k8s/go.mod+go.sum and hack/etcd/go.mod+go.sum for new
#       versions (commit the result).
#
# The Kubernetes binaries come from the wrapper module hack/k8s, which requires
# k8s.io/kubernetes and replaces every k8s.io staging module (the list in
# k8s.io/kubernetes's own go.mod replace block) with its v0.X.Y release. etcd
# comes from hack/etcd, which requires go.etcd.io/etcd/server/v3 (its root
# package is etcd's main).
#
# Version policy: the wrapper go.mod files are committed and pin exact
# versions. If KUBE_VERSION or ETCD_VERSION differs from what they pin, this
# script FAILS rather than silently rewriting committed files; run it with
# --regenerate (above) to move the pins, then commit hack/k8s and hack/etcd.
#
# Idempotent: a binary in OUTDIR that already reports the requested version
# (via --version) is not rebuilt. Concurrent runs on one OUTDIR are serialised
# with flock. Binaries are built for the host (go env GOOS/GOARCH).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K8S_MOD=$ROOT/hack/k8s
ETCD_MOD=$ROOT/hack/etcd
GO=${GO:-go}
# A go.work elsewhere must not change what the wrapper modules resolve to.
export GOWORK=off

ALL_KUBE=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

log() { echo "[build-kube $(date +%T)] $*"; }
die() { echo "build-kube: error: $*" >&2; exit 1; }
usage() { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

# v1.36.3 -> 1.36.3
strip_v() { echo "${1#v}"; }
# 1.36.3 -> v0.36.3 (staging modules are released as v0.<minor>.<patch>)
staging_version() { echo "v0.${1#*.}"; }

regenerate() {
  local kv ev staging dir m
  kv=$(strip_v "$1"); ev=$(strip_v "$2"); staging=$(staging_version "$kv")
  log "regenerating $K8S_MOD for k8s.io/kubernetes v$kv (staging $staging)"
  (
    cd "$K8S_MOD"
    rm -f go.mod go.sum
    "$GO" mod init github.com/podgrace/podgrace/hack/k8s 2>/dev/null
    dir=$("$GO" mod download -json "k8s.io/kubernetes@v$kv" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -f "$dir/go.mod" ] || die "cannot download k8s.io/kubernetes@v$kv"
    "$GO" mod edit -require="k8s.io/kubernetes@v$kv" -go="$(sed -n 's/^go //p' "$dir/go.mod")"
    # k8s.io/kubernetes requires its staging modules at v0.0.0 and replaces
    # them with ./staging/src/...; a consumer must pin each one itself.
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$dir/go.mod" | while read -r m; do
      "$GO" mod edit -replace="$m=$m@$staging"
    done
    "$GO" mod tidy
  )
  log "regenerating $ETCD_MOD for go.etcd.io/etcd/server/v3 v$ev"
  (
    cd "$ETCD_MOD"
    rm -f go.mod go.sum
    "$GO" mod init github.com/podgrace/podgrace/hack/etcd 2>/dev/null
    dir=$("$GO" mod download -json "go.etcd.io/etcd/server/v3@v$ev" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -f "$dir/go.mod" ] || die "cannot download go.etcd.io/etcd/server/v3@v$ev"
    "$GO" mod edit -require="go.etcd.io/etcd/server/v3@v$ev" -go="$(sed -n 's/^go //p' "$dir/go.mod")"
    "$GO" mod tidy
  )
  log "done; review and commit hack/k8s and hack/etcd"
}

if [ "${1:-}" = "--regenerate" ]; then
  [ $# -eq 3 ] || usage
  regenerate "$2" "$3"
  exit 0
fi

[ $# -ge 4 ] || usage
KUBE_VERSION=$(strip_v "$1"); ETCD_VERSION=$(strip_v "$2"); OUTDIR=$3; shift 3
BINARIES=("$@")

want_kube=false
for b in "${BINARIES[@]}"; do
  case $b in
    etcd) ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubelet|kube-proxy|kubectl) want_kube=true ;;
    *) die "unknown binary '$b' (known: ${ALL_KUBE[*]} etcd)" ;;
  esac
done

# The version a binary reports, in the same form as KUBE_VERSION/ETCD_VERSION.
reported_version() { # NAME PATH
  local out
  case $1 in
    etcd)    out=$("$2" --version 2>/dev/null) || return 0
             sed -n 's/^etcd Version: \(.*\)$/\1/p' <<<"$out" ;;
    kubectl) out=$("$2" version --client 2>/dev/null) || return 0
             sed -n 's/^Client Version: v\(.*\)$/\1/p' <<<"$out" ;;
    *)       out=$("$2" --version 2>/dev/null) || return 0
             sed -n 's/^Kubernetes v\(.*\)$/\1/p' <<<"$out" ;;
  esac
}

# Check that the committed wrapper modules pin the requested versions.
pinned() { # MODDIR MODULE -> version (and the replacement's version for replaced modules)
  "$GO" -C "$1" list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' "$2"
}
check_pins() {
  local want got
  if $want_kube; then
    got=$(pinned "$K8S_MOD" k8s.io/kubernetes) || die "cannot read $K8S_MOD/go.mod"
    [ "$got" = "v$KUBE_VERSION" ] || die "KUBE_VERSION=$KUBE_VERSION but hack/k8s/go.mod pins k8s.io/kubernetes $got.
  Run: hack/build-kube.sh --regenerate $KUBE_VERSION $ETCD_VERSION   (and commit hack/k8s hack/etcd)"
    want=$(staging_version "$KUBE_VERSION")
    for m in k8s.io/api k8s.io/apiserver k8s.io/client-go k8s.io/component-base; do
      got=$(pinned "$K8S_MOD" "$m")
      [ "$got" = "$want" ] || die "hack/k8s/go.mod replaces $m with $got, expected $want; run --regenerate"
    done
  fi
  if [[ " ${BINARIES[*]} " == *" etcd "* ]]; then
    got=$(pinned "$ETCD_MOD" go.etcd.io/etcd/server/v3) || die "cannot read $ETCD_MOD/go.mod"
    [ "$got" = "v$ETCD_VERSION" ] || die "ETCD_VERSION=$ETCD_VERSION but hack/etcd/go.mod pins go.etcd.io/etcd/server/v3 $got.
  Run: hack/build-kube.sh --regenerate $KUBE_VERSION $ETCD_VERSION   (and commit hack/k8s hack/etcd)"
  fi
}

mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)

find_todo() { # sets todo to the requested binaries that are missing or report another version
  local b want
  todo=()
  for b in "${BINARIES[@]}"; do
    want=$KUBE_VERSION; [ "$b" = etcd ] && want=$ETCD_VERSION
    if [ -x "$OUTDIR/$b" ] && [ "$(reported_version "$b" "$OUTDIR/$b")" = "$want" ]; then
      [ "${1:-}" = quiet ] || log "$b $want is up to date in $OUTDIR"
    else
      todo+=("$b")
    fi
  done
}
# Binaries are replaced with an atomic rename, so checking without the lock is safe.
find_todo
[ ${#todo[@]} -gt 0 ] || exit 0
# Serialise concurrent builds into one OUTDIR (e.g. make -j building both
# envtest targets), then look again: another run may have built them meanwhile.
if command -v flock >/dev/null; then
  exec 9>"$OUTDIR/.build-kube.lock"
  if ! flock -n 9; then
    log "waiting for another build-kube.sh run on $OUTDIR"
    flock 9
    find_todo quiet
    [ ${#todo[@]} -gt 0 ] || { log "built by the other run: ${BINARIES[*]}"; exit 0; }
  fi
fi
check_pins

kube_ldflags() {
  local major minor date commit pkg flags=(-s -w)
  major=${KUBE_VERSION%%.*}; minor=${KUBE_VERSION#*.}; minor=${minor%%.*}
  # buildDate: the release tag's time as the module proxy reports it, so builds
  # are reproducible. gitCommit: the proxy does not expose the tag's commit;
  # set KUBE_GIT_COMMIT to record it.
  date=$("$GO" -C "$K8S_MOD" list -m -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)
  commit=${KUBE_GIT_COMMIT:-}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=("-X=$pkg.gitVersion=v$KUBE_VERSION" "-X=$pkg.gitMajor=$major" "-X=$pkg.gitMinor=$minor"
            "-X=$pkg.gitCommit=$commit" "-X=$pkg.gitTreeState=clean" "-X=$pkg.buildDate=${date:-1970-01-01T00:00:00Z}")
  done
  echo "${flags[*]}"
}

total_start=$SECONDS kube_ld=
for b in "${todo[@]}"; do
  if [ "$b" = etcd ]; then
    moddir=$ETCD_MOD pkg=go.etcd.io/etcd/server/v3 want=$ETCD_VERSION
    ldflags="-s -w" cgo=0
  else
    moddir=$K8S_MOD pkg=k8s.io/kubernetes/cmd/$b want=$KUBE_VERSION
    [ -n "$kube_ld" ] || kube_ld=$(kube_ldflags)
    ldflags=$kube_ld
    # Upstream (hack/lib/golang.sh) builds all of these static except kubelet,
    # which keeps cgo when a C compiler is present. In v1.36 the only cgo
    # packages in kubelet's dependency graph are net and os/user, both with
    # pure-Go fallbacks, so kubelet is built static too.
    cgo=0
  fi
  log "building $b $want ($pkg, CGO_ENABLED=$cgo) -> $OUTDIR/$b"
  start=$SECONDS
  tmp="$OUTDIR/.$b.tmp"
  (
    cd "$moddir"
    CGO_ENABLED=$cgo "$GO" build -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg"
  ) || { rm -f "$tmp"; die "building $b failed"; }
  got=$(reported_version "$b" "$tmp")
  [ "$got" = "$want" ] || { rm -f "$tmp"; die "$b reports version '${got}', expected $want"; }
  mv -f "$tmp" "$OUTDIR/$b"
  log "built $b $want in $((SECONDS - start))s"
done
log "built ${todo[*]} in $((SECONDS - total_start))s"
