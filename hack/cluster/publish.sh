#!/usr/bin/env bash
# Publish a podgrace release to the node registry the cluster runs
# (hack/cluster/up.sh), as a release is published: `make release` (the image
# index for linux/amd64 and linux/arm64, the chart pinning it by digest, the
# CLI for those two platforms, SBOMs, SHA256SUMS, blob signatures), signed
# with a throwaway cosign key made here, then `make publish` to the node
# registry (plain HTTP): the index, the chart as oci://REGISTRY/charts, the
# index's signatures and SBOM attestation. The e2e installs podgrace from it
# (test/e2e: helm install oci://..., the node pulling the image by digest) and
# verifies what the node pulled. Appends RELEASE_* to $E2E_DIR/cluster.env.
#
# Environment: MAKE, and the release tools the Makefile built (COSIGN, HELM;
# make's own CRANE and CYCLONEDX_GOMOD). E2E_RELEASE_VERSION (default
# v0.0.0-e2e) is the version published.
set -euo pipefail
# shellcheck source=hack/cluster/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

T0=$SECONDS
MAKE=${MAKE:-make}
: "${COSIGN:?COSIGN (the cosign make builds) is required}" "${HELM:?HELM (the helm make builds) is required}"
[ -f "$E2E_DIR/cluster.env" ] || die "no $E2E_DIR/cluster.env: bring the cluster up first (hack/cluster/up.sh)"
running registry || die "the node registry is not running (hack/cluster/up.sh starts it)"
VERSION=${E2E_RELEASE_VERSION:-v0.0.0-e2e}
REGISTRY=$NODE_IP:$REGISTRY_PORT
DIST=$E2E_DIR/release
KEYS=$E2E_DIR/release-key

# A throwaway key pair (empty password), made once per bring-up.
if [ ! -f "$KEYS/cosign.key" ]; then
  rm -rf "$KEYS" && mkdir -p "$KEYS" && chmod 700 "$KEYS"
  (cd "$KEYS" && COSIGN_PASSWORD='' "$COSIGN" generate-key-pair >/dev/null 2>&1) || die "cosign generate-key-pair failed"
fi
export COSIGN_PASSWORD=''
vars=(VERSION="$VERSION" DIST="$DIST" COSIGN_KEY="$KEYS/cosign.key" IMAGE_REPO="$REGISTRY/podgrace"
  REGISTRY="$REGISTRY" RELEASE_PLATFORMS="linux/amd64 linux/arm64")
log "make release $VERSION (linux/amd64, linux/arm64; image $REGISTRY/podgrace)"
"$MAKE" --no-print-directory -C "$ROOT" release "${vars[@]}" >"$LOG/release.log" 2>&1 ||
  { tail -n 30 "$LOG/release.log" >&2; die "make release failed (whole output: $LOG/release.log)"; }
TP=$SECONDS
log "make publish to $REGISTRY (plain HTTP)"
# The node address is not loopback: say plain HTTP (hack/release.sh).
PLAIN_HTTP=true "$MAKE" --no-print-directory -C "$ROOT" publish "${vars[@]}" >"$LOG/publish.log" 2>&1 ||
  { tail -n 30 "$LOG/publish.log" >&2; die "make publish failed (whole output: $LOG/publish.log)"; }

sed -i '/^RELEASE_/d; /^COSIGN=/d; /^HELM=/d' "$E2E_DIR/cluster.env"
cat >>"$E2E_DIR/cluster.env" <<EOF
RELEASE_VERSION=$VERSION
RELEASE_DIR=$DIST
RELEASE_DIGEST=$(cat "$DIST/podgrace_${VERSION}_image.digest")
COSIGN=$COSIGN
HELM=$HELM
EOF
log "release $VERSION published to $REGISTRY: build $((TP - T0))s, publish $((SECONDS - TP))s ($LOG/release.log, $LOG/publish.log)"
