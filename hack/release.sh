#!/usr/bin/env bash
# Build, publish and verify a podgrace release (make release / publish /
# verify-release; docs/develop/release.md says what each step makes).
#
#   hack/release.sh build     VERSION=vX.Y.Z DIST=dist/release COSIGN_KEY=cosign.key
#   hack/release.sh publish   VERSION DIST COSIGN_KEY REGISTRY=host:port
#   hack/release.sh verify    VERSION DIST [COSIGN_PUB] [REGISTRY]
#
# Tools come from the environment, as the Makefile builds them into bin/:
# GO, COSIGN, CYCLONEDX_GOMOD, CRANE, HELM. cosign runs offline: keys given
# here, no transparency log (Rekor), no Fulcio, no TUF (signing-config.json
# and trusted-root.json below are empty of services); the docs say what
# changes with Sigstore's public infrastructure. COSIGN_PASSWORD is the key's
# password (empty for a key made with an empty one).
set -euo pipefail

cmd=${1:-}
GO=${GO:-go}
: "${VERSION:?VERSION=vX.Y.Z is required}" "${DIST:?DIST is required}"
[[ $VERSION =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]] ||
  { echo "release: VERSION=$VERSION is not vMAJOR.MINOR.PATCH[-PRERELEASE]" >&2; exit 2; }
CHART_VERSION=${VERSION#v}
# Platforms of the CLI archives; linux/amd64 and linux/arm64 are the image's.
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64}
IMAGE_PLATFORMS="linux/amd64 linux/arm64"
# The image repository the chart's default values name (with the digest).
IMAGE_REPO=${IMAGE_REPO:-ghcr.io/podgrace/podgrace}
export COSIGN_PASSWORD=${COSIGN_PASSWORD-}
export COSIGN_YES=true

log() { echo "[release $(date +%T)] $*"; }
die() { echo "release: error: $*" >&2; exit 1; }
need() { for t in "$@"; do [ -x "${!t:-}" ] || die "$t (${!t:-unset}) is not an executable; make release builds it into bin/"; done; }

CHART_FILE=podgrace-$CHART_VERSION.tgz
IMAGE_SBOM=podgrace_${VERSION}_image.cdx.json
DIGEST_FILE=podgrace_${VERSION}_image.digest

# Offline signing: a signing config with no services (no Fulcio, Rekor or
# timestamp authority) and a trusted root with none, so cosign neither
# uploads to a log nor fetches Sigstore's TUF root.
offline_config() {
  local dir=$DIST/_build/cosign
  mkdir -p "$dir"
  [ -f "$dir/signing-config.json" ] || "$COSIGN" signing-config create --out "$dir/signing-config.json" >/dev/null
  [ -f "$dir/trusted-root.json" ] || "$COSIGN" trusted-root create --out "$dir/trusted-root.json" >/dev/null
  SIGN_FLAGS=(--signing-config "$dir/signing-config.json" --trusted-root "$dir/trusted-root.json")
}

# plain_http REGISTRY: true for a registry on loopback or when PLAIN_HTTP=true.
plain_http() {
  case "${PLAIN_HTTP:-}" in true) return 0 ;; false) return 1 ;; esac
  case "$1" in localhost:* | 127.* | \[::1\]:*) return 0 ;; esac
  return 1
}

build() {
  need COSIGN CYCLONEDX_GOMOD HELM
  : "${COSIGN_KEY:?COSIGN_KEY=FILE (a cosign key; cosign generate-key-pair) is required: a release is signed}"
  [ -f "$COSIGN_KEY" ] || die "COSIGN_KEY=$COSIGN_KEY: no such file"
  case "$(realpath -m "$DIST")" in / | "$(realpath .)") die "DIST=$DIST would remove the tree" ;; esac
  # Every timestamp is the commit's, so that the same commit gives the same
  # files on any machine (reproducible-builds.org's SOURCE_DATE_EPOCH).
  export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}
  local ldflags="-s -w -X github.com/podgrace/podgrace/pkg/version.Version=$VERSION"
  rm -rf "$DIST"
  mkdir -p "$DIST/_build"
  local start=$SECONDS p os arch exe
  # _build/bin/OS-ARCH: every binary built; _build/cli: links to the CLI
  # platforms' (the archives), which need not include the image's.
  mkdir -p "$DIST/_build/bin" "$DIST/_build/cli"
  for p in $PLATFORMS $IMAGE_PLATFORMS; do
    os=${p%/*} arch=${p#*/} exe=
    [ "$os" = windows ] && exe=.exe
    [ -f "$DIST/_build/bin/$os-$arch/podgrace$exe" ] && continue
    log "go build $p"
    CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$GO" build -trimpath -ldflags "$ldflags" \
      -o "$DIST/_build/bin/$os-$arch/podgrace$exe" ./cmd/podgrace
  done
  for p in $PLATFORMS; do ln -sfn "../bin/${p%/*}-${p#*/}" "$DIST/_build/cli/${p%/*}-${p#*/}"; done
  log "built the binaries in $((SECONDS - start))s"

  log "image index (linux/amd64, linux/arm64)"
  local out digest
  out=$("$GO" run ./hack/image -layout "$DIST/image" -ref "$IMAGE_REPO:$VERSION" -version "$VERSION" \
    -binaries "amd64=$DIST/_build/bin/linux-amd64/podgrace,arm64=$DIST/_build/bin/linux-arm64/podgrace")
  echo "$out"
  digest=$(sed -n 's/.*@\(sha256:[0-9a-f]\{64\}\)$/\1/p' <<<"$out")
  [ -n "$digest" ] || die "no digest from hack/image"
  echo "$digest" >"$DIST/$DIGEST_FILE"

  log "CLI archives and krew manifest"
  "$GO" run ./hack/release -version "$VERSION" -bin "$DIST/_build/cli" -out "$DIST"

  log "SBOMs (CycloneDX, cyclonedx-gomod)"
  for p in $PLATFORMS; do
    os=${p%/*} arch=${p#*/} exe=
    [ "$os" = windows ] && exe=.exe
    "$CYCLONEDX_GOMOD" bin -json -noserial -notimestamp -version "$VERSION" \
      -output "$DIST/podgrace_${VERSION}_${os}_${arch}.cdx.json" "$DIST/_build/bin/$os-$arch/podgrace$exe"
  done
  # The image's SBOM: that of its linux/amd64 podgrace (the arm64 one links
  # the same modules), the only software in the image; its other files are
  # /etc/passwd, /etc/group and the CA bundle hack/image writes from
  # golang.org/x/crypto/x509roots/fallback at go.mod's version. bin mode
  # reads the module list the linker embedded and takes the version given
  # (app mode would ask git, which fails in a worktree).
  "$CYCLONEDX_GOMOD" bin -json -noserial -notimestamp -version "$VERSION" \
    -output "$DIST/$IMAGE_SBOM" "$DIST/_build/bin/linux-amd64/podgrace"

  log "chart $CHART_VERSION, image pinned by digest"
  local chart=$DIST/_build/chart/podgrace
  mkdir -p "$(dirname "$chart")"
  cp -r charts/podgrace "$chart"
  # The digest line of the image block of the default values.
  awk -v d="$digest" -v repo="$IMAGE_REPO" '
    /^image:/ {img = 1; print; next}
    img && /^[^ #]/ {img = 0}
    img && /^  repository: / {sub(/repository: .*/, "repository: " repo); r++}
    img && /^  digest: / {sub(/digest: .*/, "digest: \"" d "\""); n++}
    {print}
    END {if (n != 1 || r != 1) {print "no image.digest/repository in values.yaml" > "/dev/stderr"; exit 1}}' \
    charts/podgrace/values.yaml >"$chart/values.yaml"
  find "$chart" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  "$HELM" package "$chart" --version "$CHART_VERSION" --app-version "$VERSION" -d "$DIST" >/dev/null
  [ -f "$DIST/$CHART_FILE" ] || die "helm package wrote no $CHART_FILE"

  log "SHA256SUMS"
  (cd "$DIST" && find . -maxdepth 1 -type f ! -name SHA256SUMS ! -name '*.sigstore.json' ! -name cosign.pub -printf '%P\n' |
    LC_ALL=C sort | xargs sha256sum >SHA256SUMS)

  log "signatures (cosign sign-blob, key $COSIGN_KEY)"
  offline_config
  "$COSIGN" public-key --key "$COSIGN_KEY" >"$DIST/cosign.pub"
  for f in SHA256SUMS "$CHART_FILE"; do
    "$COSIGN" sign-blob --key "$COSIGN_KEY" "${SIGN_FLAGS[@]}" --bundle "$DIST/$f.sigstore.json" "$DIST/$f" >/dev/null
  done
  log "release $VERSION in $DIST in $((SECONDS - start))s: image $digest"
}

publish() {
  need COSIGN CRANE HELM
  : "${REGISTRY:?REGISTRY=host:port is required}" "${COSIGN_KEY:?COSIGN_KEY is required}"
  local digest insecure=() plain=() reg_flags=()
  digest=$(cat "$DIST/$DIGEST_FILE")
  if plain_http "$REGISTRY"; then
    insecure=(--insecure) plain=(--plain-http) reg_flags=(--allow-http-registry --allow-insecure-registry)
  fi
  local ref=$REGISTRY/podgrace
  log "crane push the image index to $ref:$VERSION"
  local pushed
  pushed=$("$CRANE" push "${insecure[@]}" "$DIST/image" "$ref:$VERSION")
  [ "$pushed" = "$ref@$digest" ] || die "pushed $pushed, the release's index is $digest"
  log "helm push the chart to oci://$REGISTRY/charts"
  "$HELM" push "${plain[@]}" "$DIST/$CHART_FILE" "oci://$REGISTRY/charts"
  offline_config
  log "cosign sign --recursive $ref@$digest"
  "$COSIGN" sign --key "$COSIGN_KEY" --recursive "${SIGN_FLAGS[@]}" "${reg_flags[@]}" "$ref@$digest"
  log "cosign attest --type cyclonedx $ref@$digest"
  "$COSIGN" attest --key "$COSIGN_KEY" --type cyclonedx --predicate "$DIST/$IMAGE_SBOM" "${SIGN_FLAGS[@]}" "${reg_flags[@]}" "$ref@$digest"
}

verify() {
  need COSIGN
  local pub=${COSIGN_PUB:-$DIST/cosign.pub}
  log "checksums (SHA256SUMS)"
  (cd "$DIST" && sha256sum --strict --quiet -c SHA256SUMS)
  offline_config
  local f
  for f in SHA256SUMS "$CHART_FILE"; do
    log "signature of $f"
    "$COSIGN" verify-blob --key "$pub" --insecure-ignore-tlog --trusted-root "$DIST/_build/cosign/trusted-root.json" \
      --bundle "$DIST/$f.sigstore.json" "$DIST/$f"
  done
  [ -n "${REGISTRY:-}" ] || { log "no REGISTRY: the image's signature and attestation not checked"; return 0; }
  need CRANE
  local digest insecure=() reg_flags=() ref=$REGISTRY/podgrace d
  digest=$(cat "$DIST/$DIGEST_FILE")
  if plain_http "$REGISTRY"; then insecure=(--insecure) reg_flags=(--allow-http-registry --allow-insecure-registry); fi
  d=$("$CRANE" digest "${insecure[@]}" "$ref:$VERSION")
  [ "$d" = "$digest" ] || die "$ref:$VERSION is $d, the release's index is $digest"
  local vflags=(--key "$pub" --insecure-ignore-tlog --trusted-root "$DIST/_build/cosign/trusted-root.json" "${reg_flags[@]}")
  # The index and, signed by --recursive, each platform's image.
  for d in "$digest" $("$CRANE" manifest "${insecure[@]}" "$ref@$digest" | grep -o 'sha256:[0-9a-f]\{64\}' | sort -u); do
    log "image signature of $ref@$d"
    "$COSIGN" verify "${vflags[@]}" "$ref@$d" >/dev/null
  done
  log "SBOM attestation of $ref@$digest"
  "$COSIGN" verify-attestation "${vflags[@]}" --type cyclonedx "$ref@$digest" >/dev/null
  log "verified release $VERSION: checksums, 2 blob signatures, image signatures and SBOM attestation"
}

case "$cmd" in
  build | publish | verify) "$cmd" ;;
  *) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
