#!/usr/bin/env bash
# Build a Go tool at a pinned version from the Go module proxy.
#
#   hack/build-tool.sh MODULE_PKG VERSION OUTPUT
#   e.g. hack/build-tool.sh github.com/golangci/golangci-lint/v2/cmd/golangci-lint v2.15.0 bin/golangci-lint-v2.15.0
#
# Uses `go install MODULE_PKG@VERSION` (the tool's own go.mod decides its
# dependencies; the project's go.mod and any go.work are ignored) into a
# temporary GOBIN, then moves the binary to OUTPUT. CGO is off unless the
# caller sets CGO_ENABLED. Idempotent: if OUTPUT already embeds MODULE_PKG at
# VERSION (as `go version -m` reports), nothing is built.
set -euo pipefail

[ $# -eq 3 ] || { sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
PKG=$1 VERSION=$2 OUTPUT=$3
GO=${GO:-go}
export GOWORK=off

log() { echo "[build-tool $(date +%T)] $*"; }

# "path PKG" and the main module's version, from the binary's build info.
embedded() { "$GO" version -m "$1" 2>/dev/null | awk '$1 == "path" {p = $2} $1 == "mod" {v = $3} END {print p, v}'; }

if [ -x "$OUTPUT" ] && [ "$(embedded "$OUTPUT")" = "$PKG $VERSION" ]; then
  log "$PKG@$VERSION is up to date in $OUTPUT"
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "building $PKG@$VERSION -> $OUTPUT"
start=$SECONDS
GOBIN=$tmp CGO_ENABLED=${CGO_ENABLED:-0} "$GO" install -trimpath "$PKG@$VERSION"
bins=("$tmp"/*)
if [ ${#bins[@]} -ne 1 ] || [ ! -x "${bins[0]}" ]; then
  echo "build-tool: error: expected one binary in $tmp, got: ${bins[*]}" >&2; exit 1
fi
[ "$(embedded "${bins[0]}")" = "$PKG $VERSION" ] || { echo "build-tool: error: built binary reports '$(embedded "${bins[0]}")'" >&2; exit 1; }
mkdir -p "$(dirname "$OUTPUT")"
mv -f "${bins[0]}" "$OUTPUT"
log "built $PKG@$VERSION in $((SECONDS - start))s"
