#!/usr/bin/env bash
# Installs what `go test ./...` needs from the machine and does not build
# itself (`make test-deps`, run by `make test`): the shells the PID 1 proof of
# the exec-form rewrite runs (pkg/execform TestSignalDelivery) and unshare.
# The tests never install anything; they fail and name this script when a
# tool is missing. Debian/Ubuntu (apt-get); nothing is done when all are present.
set -euo pipefail

declare -A pkg=([dash]=dash [bash]=bash [busybox]=busybox [unshare]=util-linux)
missing=()
for tool in dash bash busybox unshare; do
	command -v "$tool" >/dev/null || missing+=("${pkg[$tool]}")
done
if [ ${#missing[@]} -eq 0 ]; then
	echo "test-deps: dash, bash, busybox and unshare are installed"
	exit 0
fi
if ! command -v apt-get >/dev/null; then
	echo "test-deps: missing ${missing[*]} and no apt-get: install them with your package manager" >&2
	exit 1
fi
sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "test-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get install -y -q "${missing[@]}" || {
	"${sudo[@]}" apt-get update -q
	"${sudo[@]}" apt-get install -y -q "${missing[@]}"
}
