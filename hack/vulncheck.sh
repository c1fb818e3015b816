#!/usr/bin/env bash
# Scan for known vulnerabilities that the code can reach, offline, against a
# Go vulnerability database built from a pinned golang.org/x/vulndb version.
#
#   hack/vulncheck.sh VULNDB GOVULNCHECK CACHE_DIR [GOVULNCHECK_ARGS...]
#   e.g. hack/vulncheck.sh v0.0.0-20261105234957-e22db6528018 bin/govulncheck bin -test ./...
#
# VULNDB is a version of the module golang.org/x/vulndb (it has no tags: a
# pseudo-version), or "latest" for the newest the module proxy serves. The
# module holds every report as OSV JSON under data/osv; its cmd/indexdb
# writes them as the database `govulncheck -db file://DIR` reads. The
# database is built once per version into CACHE_DIR/vulndb-VERSION.
# Exits non-zero (govulncheck: 3) when a vulnerability is reachable.
set -euo pipefail

[ $# -ge 3 ] || { sed -n '2,6p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
VULNDB=$1 GOVULNCHECK=$2 CACHE=$3
shift 3
GO=${GO:-go}
MOD=golang.org/x/vulndb

log() { echo "[vulncheck $(date +%T)] $*"; }
die() { echo "vulncheck: error: $*" >&2; exit 1; }

# The two traps of source mode: govulncheck must be built by the Go that
# builds the code, and it takes the standard library's version from
# `go env GOVERSION` (GOTOOLCHAIN must be in its environment).
want=$("$GO" env GOVERSION)
built=$("$GO" version "$GOVULNCHECK" | awk '{print $2}')
[ "$built" = "$want" ] || die "$GOVULNCHECK was built by $built, the code is built by $want: rebuild it"

if [ "$VULNDB" = latest ]; then
  VULNDB=$("$GO" list -m -f '{{.Version}}' "$MOD@latest")
  log "newest $MOD on the module proxy: $VULNDB"
fi
db=$CACHE/vulndb-$VULNDB

if [ ! -f "$db/index/db.json" ]; then
  start=$SECONDS
  log "building the vulnerability database from $MOD@$VULNDB -> $db"
  info=$("$GO" mod download -json "$MOD@$VULNDB")
  src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$info")
  [ -d "$src/data/osv" ] || die "no data/osv in $MOD@$VULNDB (${src:-not downloaded})"
  mkdir -p "$CACHE"
  tmp=$(mktemp -d "$CACHE/.vulndb-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  # indexdb of the same version: it knows that version's OSV schema.
  "$GO" run "$MOD/cmd/indexdb@$VULNDB" -vulns "$src/data/osv" -out "$tmp"
  # indexdb leaves the database's "modified" time at zero; the module's
  # commit time is when the data was last changed (govulncheck -version shows it).
  modified=$("$GO" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' "$MOD@$VULNDB")
  printf '{"modified":"%s"}' "$modified" >"$tmp/index/db.json"
  gzip -n -c "$tmp/index/db.json" >"$tmp/index/db.json.gz"
  rm -rf "$db"
  mv "$tmp" "$db"
  log "built $(find "$db/ID" -name '*.json' | wc -l) reports in $((SECONDS - start))s"
fi

"$GOVULNCHECK" -db "file://$(cd "$db" && pwd)" -version
"$GOVULNCHECK" -db "file://$(cd "$db" && pwd)" "$@"
