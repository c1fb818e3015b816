# podgrace Makefile. `make help` lists every target.

# ---- Versions: the one place every pinned tool version lives. -------------
# Go toolchain: the `go` line of go.mod is the one source. Every build, test
# and tool below runs under it (the go command fetches it from the module
# proxy once); the machine's own Go only bootstraps it.
GO_VERSION := $(shell sed -n 's/^go //p' $(dir $(lastword $(MAKEFILE_LIST)))go.mod)
export GOTOOLCHAIN := go$(GO_VERSION)
# Kubernetes release the tests run against; must match the k8s.io/api line in go.mod.
KUBE_VERSION ?= 1.36.3
# etcd server built for envtest and the e2e cluster.
ETCD_VERSION ?= 3.6.8
# The oldest Kubernetes the README supports (the floor of the chart's
# kubeVersion; test/repo checks they agree) and the etcd its kubeadm names
# (the newest 3.5, one build for 1.29-1.33): make test runs the API-server
# suites against it too, with the native sleep action on (its default).
OLDEST_KUBE_VERSION ?= 1.30.14
ETCD_3_5_VERSION ?= 3.5.24
OLDEST := $(OLDEST_KUBE_VERSION)/$(ETCD_3_5_VERSION)
# Runs of `make test-versions`: KUBE/ETCD[/kube-apiserver flags joined by +].
# The newest patch of each minor on the Go module proxy, with the etcd its
# kubeadm names, and the oldest with the native sleep action turned off
# (docs/develop/versions.md).
TEST_VERSIONS ?= 1.29.15/$(ETCD_3_5_VERSION) \
	$(OLDEST) \
	$(OLDEST)/--feature-gates=PodLifecycleSleepAction=false \
	1.33.13/$(ETCD_3_5_VERSION) \
	$(KUBE_VERSION)/$(ETCD_VERSION) \
	1.37.2/3.7.0
# golangci-lint, built from the Go module proxy.
GOLANGCI_LINT_VERSION ?= v2.15.0
# Go vulnerability database: this version of golang.org/x/vulndb (the module
# has no tags, so a pseudo-version), or `latest`. Bump it as docs/operate/security.md says.
VULNDB ?= v0.0.0-20261105234957-e22db6528018
# govulncheck, built from the Go module proxy.
GOVULNCHECK_VERSION ?= v1.9.0
# kube-score, the third-party linter run on the rendered chart.
KUBE_SCORE_VERSION ?= v1.20.0
# promtool (Prometheus's cmd/promtool; the v3 line is tagged v0.3xx), which
# unit-tests the chart's alert rules. A tool binary, never in go.mod: it
# would pull k8s.io v0.37. About 4 minutes to build cold; cached in bin/.
PROMTOOL_VERSION ?= v0.316.0
# Release tools (make release / publish / verify-release; docs/develop/release.md).
# Tool binaries only, never in go.mod. cosign signs and verifies blobs, the
# image and its SBOM attestation (about 2.5 minutes to build cold).
COSIGN_VERSION ?= v3.1.3
# cyclonedx-gomod writes the CycloneDX SBOMs of the binaries and the image.
CYCLONEDX_GOMOD_VERSION ?= v1.10.0
# crane copies the image index to a registry (and, for users, air-gapped).
# The same go-containerregistry as go.mod's, whose pkg/registry hack/registry serves.
CRANE_VERSION := $(shell sed -n 's|^\tgithub.com/google/go-containerregistry \(v[^ ]*\)$$|\1|p' $(dir $(lastword $(MAKEFILE_LIST)))go.mod)
# helm CLI (helm package / push / pull): the Helm go.mod already renders the chart with.
HELM_VERSION := $(shell sed -n 's|^\thelm.sh/helm/v4 \(v[^ ]*\)$$|\1|p' $(dir $(lastword $(MAKEFILE_LIST)))go.mod)

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
GO ?= go
BIN := $(CURDIR)/bin
GOLANGCI_LINT := $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
# Named by the Go version too: govulncheck must be built by the Go it scans with.
GOVULNCHECK := $(BIN)/govulncheck-$(GOVULNCHECK_VERSION)-go$(GO_VERSION)
# The chart tests run it (test/chart/kubescore_test.go); they fail without it.
export KUBE_SCORE ?= $(BIN)/kube-score-$(KUBE_SCORE_VERSION)
# The chart tests run it (test/chart/alerts_test.go); they fail without it.
export PROMTOOL ?= $(BIN)/promtool-$(PROMTOOL_VERSION)
COSIGN := $(BIN)/cosign-$(COSIGN_VERSION)
CYCLONEDX_GOMOD := $(BIN)/cyclonedx-gomod-$(CYCLONEDX_GOMOD_VERSION)
CRANE := $(BIN)/crane-$(CRANE_VERSION)
HELM := $(BIN)/helm-$(HELM_VERSION)
RELEASE_TOOLS := $(COSIGN) $(CYCLONEDX_GOMOD) $(CRANE) $(HELM)
# Directory handed to controller-runtime's envtest. A user who already has
# envtest assets (setup-envtest) sets KUBEBUILDER_ASSETS and nothing is built.
ENVTEST_ASSETS := $(BIN)/k8s/$(KUBE_VERSION)-linux-amd64
export KUBEBUILDER_ASSETS ?= $(ENVTEST_ASSETS)

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/podgrace/podgrace/pkg/version.Version=$(VERSION)

.DEFAULT_GOAL := help

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} /^[a-zA-Z0-9_.-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

.PHONY: demo
demo: envtest-assets build ## See podgrace mutate a pod on a throwaway local control plane (the README's first command; cleans up).
	$(GO) run ./hack/demo -podgrace $(BIN)/podgrace -assets '$(KUBEBUILDER_ASSETS)'

##@ Development

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (pinned, built into bin/).
	$(GOLANGCI_LINT) run ./...

.PHONY: vulncheck
vulncheck: $(GOVULNCHECK) ## Fail on any known vulnerability podgrace's code reaches (offline database, pinned; VULNDB=latest for the newest).
	GO='$(GO)' hack/vulncheck.sh '$(VULNDB)' '$(GOVULNCHECK)' '$(BIN)' -test -tags e2e,bench,scale ./...

.PHONY: kube-score
kube-score: $(KUBE_SCORE) ## Run kube-score on the rendered chart; fail on a finding docs/operate/install.md does not answer.
	$(GO) test ./test/chart/ -run '^TestKubeScore$$' -count=1 -v

.PHONY: test-alerts
test-alerts: $(PROMTOOL) ## Unit-test the chart's alert rules with promtool (make test runs it too).
	$(GO) test ./test/chart/ -run '^TestAlertRules$$' -count=1 -v

.PHONY: golden
golden: ## Refresh the golden files of the mutation (testdata/*.golden).
	REFRESH_GOLDEN=true $(GO) test ./pkg/manifest/ ./pkg/policy/ -run 'Golden|README' -count=1

# Build tags that swap each hand-written codec for the standard one
# (docs/develop/performance.md): make test runs the handler's and the core's tests on
# that build too; make bench-codecs measures it.
CODEC_TAGS := podgrace_stdpatch,podgrace_stddecode

.PHONY: test
test: lint verify-tidy vulncheck test-deps envtest-assets $(KUBE_SCORE) $(PROMTOOL) ## Run every test but the real-node ones (unit, golden, fuzz seeds, real shells, envtest, kube-score), after lint, tidy and vulncheck; the API-server suites on the oldest supported Kubernetes too.
	$(GO) test ./... -count=1 -timeout 30m
	$(GO) test -tags '$(CODEC_TAGS)' ./pkg/webhook/ ./pkg/inject/ -count=1
	GO='$(GO)' hack/test-versions.sh $(OLDEST)

.PHONY: test-oldest
test-oldest: $(KUBE_SCORE) $(PROMTOOL) ## Run only test/integration and test/chart against the oldest supported Kubernetes (OLDEST; built into bin/ once; make test runs it).
	GO='$(GO)' hack/test-versions.sh $(OLDEST)

# How long `make fuzz` runs each fuzzer (a go test -fuzztime value: 30s, 5m, 10000x).
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: ## Run every fuzzer in the repo (each func FuzzXxx) for FUZZTIME (default 30s) each; make test runs only their seeds.
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | sort); do \
	  for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
	    echo "== $$(dirname $$f) $$name for $(FUZZTIME)"; \
	    $(GO) test $$(dirname $$f) -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME); \
	  done; \
	done

.PHONY: test-deps
test-deps: ## Install what the tests need from the machine (dash, bash, busybox, unshare; apt-get, only when missing).
	hack/test-deps.sh

.PHONY: verify-tidy
verify-tidy: ## Fail when `go mod tidy` would change go.mod or go.sum.
	$(GO) mod tidy -diff

.PHONY: integration
integration: envtest-assets ## Run only the webhook's envtest suite (test/integration) against the real kube-apiserver.
	$(GO) test ./test/integration/ -count=1 -v

.PHONY: test-versions
test-versions: $(KUBE_SCORE) $(PROMTOOL) ## Run test/integration and test/chart against every supported Kubernetes version (TEST_VERSIONS; builds each once; ~1 h cold).
	GO='$(GO)' hack/test-versions.sh $(TEST_VERSIONS)

##@ Build

.PHONY: build
build: ## Build the podgrace binary into bin/.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/podgrace ./cmd/podgrace

# Reference recorded in the image archive (`ctr images import` names it so).
IMAGE ?= ghcr.io/podgrace/podgrace:$(VERSION)

.PHONY: image
image: build ## Build the podgrace image without Docker: an OCI layout tarball in dist/ (same image as the Dockerfile).
	$(GO) run ./hack/image -binary $(BIN)/podgrace -o dist/podgrace-image.tar -ref '$(IMAGE)' -version '$(VERSION)'

.PHONY: manifests
manifests: ## Regenerate the chart's config values and schema (from pkg/policy/configfields.go), config/ (kustomize) and the chart README's values table.
	$(GO) run ./hack/manifests

.PHONY: verify-manifests
verify-manifests: ## Fail when any file make manifests writes is stale (make test checks it too).
	$(GO) run ./hack/manifests -check

##@ Release

# make release: where it writes (replaced each time), the cosign key that
# signs it (COSIGN_PASSWORD its password), the image repository the chart's
# default values name, and where make publish pushes (host:port; plain HTTP
# for a loopback address, or PLAIN_HTTP=true). docs/develop/release.md.
DIST ?= $(CURDIR)/dist/release
COSIGN_KEY ?=
IMAGE_REPO ?= ghcr.io/podgrace/podgrace
REGISTRY ?=
# The CLI archives' platforms; the image is linux/amd64 and linux/arm64.
RELEASE_PLATFORMS ?= linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64
RELEASE_ENV = VERSION='$(VERSION)' PLATFORMS='$(RELEASE_PLATFORMS)' DIST='$(DIST)' COSIGN_KEY='$(COSIGN_KEY)' IMAGE_REPO='$(IMAGE_REPO)' REGISTRY='$(REGISTRY)' \
	GO='$(GO)' COSIGN='$(COSIGN)' CYCLONEDX_GOMOD='$(CYCLONEDX_GOMOD)' CRANE='$(CRANE)' HELM='$(HELM)'

.PHONY: release
release: $(COSIGN) $(CYCLONEDX_GOMOD) $(HELM) ## Build a signed release into DIST (VERSION=vX.Y.Z COSIGN_KEY=FILE): multi-arch image index, chart, CLI archives, krew manifest, SBOMs, SHA256SUMS.
	$(RELEASE_ENV) hack/release.sh build

.PHONY: publish
publish: $(COSIGN) $(CRANE) $(HELM) ## Push the release in DIST to REGISTRY=host:port (image index, chart), sign the index and attest its SBOM (COSIGN_KEY).
	$(RELEASE_ENV) hack/release.sh publish

.PHONY: verify-release
verify-release: $(COSIGN) $(CRANE) ## Verify the release in DIST: every checksum and blob signature; with REGISTRY, the image's signatures and SBOM attestation.
	$(RELEASE_ENV) hack/release.sh verify

.PHONY: test-release
test-release: $(RELEASE_TOOLS) ## Test the whole release chain against a registry on loopback (not in make test; docs/develop/release.md).
	RELEASE_TOOLS_DIR='$(BIN)' COSIGN='$(COSIGN)' CYCLONEDX_GOMOD='$(CYCLONEDX_GOMOD)' CRANE='$(CRANE)' HELM='$(HELM)' \
	  $(GO) test -tags release ./test/release/ -count=1 -v -timeout 60m

##@ E2E

# State directory of the e2e cluster (PKI, etcd, containerd, kubelet, logs).
E2E_DIR ?= /var/lib/podgrace-e2e
# Extra `go test` flags for make e2e, e.g. E2E_FLAGS='-run Rolling'.
E2E_FLAGS ?=
E2E_ENV := E2E_DIR='$(E2E_DIR)' KUBE_VERSION='$(KUBE_VERSION)' ETCD_VERSION='$(ETCD_VERSION)' GO='$(GO)'
# hack/cluster/publish.sh: make release + make publish to the node registry.
E2E_PUBLISH_ENV = $(E2E_ENV) MAKE='$(MAKE)' COSIGN='$(COSIGN)' HELM='$(HELM)'

.PHONY: cluster-up
cluster-up: $(RELEASE_TOOLS) ## Bring up the real single-node e2e cluster and leave it running with a podgrace release published to its node registry and installed from it, and the test images imported, to use by hand (Linux, root; make cluster-down removes it).
	$(E2E_ENV) hack/cluster/up.sh
	$(E2E_PUBLISH_ENV) hack/cluster/publish.sh
	@# The e2e suite's own setup with no test: builds and imports the test
	@# images (app, ingress proxy) and installs podgrace with helm install
	@# from the node registry.
	E2E_DIR='$(E2E_DIR)' $(GO) test -tags e2e -count=1 -run '^$$' ./test/e2e/
	@echo "cluster up with podgrace installed: export $$(grep '^KUBECONFIG=' '$(E2E_DIR)/cluster.env')"

.PHONY: cluster-down
cluster-down: ## Tear the e2e cluster down and verify that nothing of it is left.
	$(E2E_ENV) hack/cluster/down.sh

.PHONY: e2e
e2e: $(RELEASE_TOOLS) ## Real-node e2e: cluster up, a release published to the node registry and podgrace installed from it, rollout, traffic-path and SIGTERM tests, cluster down (even on failure; a failure prints its cause first).
	$(E2E_PUBLISH_ENV) hack/cluster/e2e.sh $(E2E_FLAGS)

##@ Benchmarks

# `go test -count` for the handler benchmarks (each count is one full set of rounds).
BENCH_COUNT ?= 3

# `make bench-codecs`: invocations (each a full set of alternating rounds),
# the podgrace builds compared with the default one (test/bench: variantTags),
# and which benchmarks (a -bench pattern).
BENCH_INVOCATIONS ?= 3
BENCH_VARIANTS ?= stdpatch,stddecode
BENCH_CODECS ?= .

# `make bench-scale`: which scale tests (a -run pattern).
SCALE_RUN ?= .

.PHONY: bench-codecs
bench-codecs: envtest-assets build ## Is each hand-written codec still worth it? HTTPS and pod-create benches, podgrace with and without each, alternating (~8 min per invocation).
	for i in $$(seq 1 $(BENCH_INVOCATIONS)); do \
	  echo "== bench-codecs invocation $$i of $(BENCH_INVOCATIONS)"; \
	  BENCH_VARIANTS='$(BENCH_VARIANTS)' PODGRACE_BIN=$(BIN)/podgrace $(GO) test -tags bench ./test/bench/ -run '^$$' -bench '$(BENCH_CODECS)' -benchtime=1x -count=1 -timeout 60m -v || exit $$?; \
	done

.PHONY: bench
bench: envtest-assets build ## Measure podgrace against its baselines (docs/develop/performance.md): handler CPU, HTTPS load, pod-create latency, RSS.
	$(GO) test ./test/bench/handler/ -run '^$$' -bench '^BenchmarkHandlerRatio$$' -benchmem -count=$(BENCH_COUNT) -timeout 30m
	PODGRACE_BIN=$(BIN)/podgrace $(GO) test -tags bench ./test/bench/ -run '^$$' -bench . -benchtime=1x -count=1 -timeout 30m -v

.PHONY: bench-scale
bench-scale: envtest-assets build ## Cluster-scale measurements, not in CI (docs/develop/performance.md): pod-create storms against two replicas, slow and failing registries, memory and audit growth.
	PODGRACE_BIN=$(BIN)/podgrace $(GO) test -tags scale ./test/scale/... -run '$(SCALE_RUN)' -count=1 -timeout 120m -v

##@ Tools

.PHONY: envtest-assets
envtest-assets: ## Build kube-apiserver and etcd for envtest into bin/ (a no-op when built, or when you set KUBEBUILDER_ASSETS).
ifeq ($(origin KUBEBUILDER_ASSETS),environment)
	@echo "Using your envtest assets in KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS)"
else
	hack/build-kube.sh "$(KUBE_VERSION)" "$(ETCD_VERSION)" "$(ENVTEST_ASSETS)" kube-apiserver etcd
endif

$(GOLANGCI_LINT):
	hack/build-tool.sh github.com/golangci/golangci-lint/v2/cmd/golangci-lint "$(GOLANGCI_LINT_VERSION)" "$@"

$(GOVULNCHECK):
	hack/build-tool.sh golang.org/x/vuln/cmd/govulncheck "$(GOVULNCHECK_VERSION)" "$@"

$(KUBE_SCORE):
	hack/build-tool.sh github.com/zegl/kube-score/cmd/kube-score "$(KUBE_SCORE_VERSION)" "$@"

$(PROMTOOL):
	hack/build-tool.sh github.com/prometheus/prometheus/cmd/promtool "$(PROMTOOL_VERSION)" "$@"

$(COSIGN):
	hack/build-tool.sh github.com/sigstore/cosign/v3/cmd/cosign "$(COSIGN_VERSION)" "$@"

$(CYCLONEDX_GOMOD):
	hack/build-tool.sh github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod "$(CYCLONEDX_GOMOD_VERSION)" "$@"

$(CRANE):
	hack/build-tool.sh github.com/google/go-containerregistry/cmd/crane "$(CRANE_VERSION)" "$@"

$(HELM):
	hack/build-tool.sh helm.sh/helm/v4/cmd/helm "$(HELM_VERSION)" "$@"

.PHONY: release-tools
release-tools: $(RELEASE_TOOLS) ## Build the release tools (cosign, cyclonedx-gomod, crane, helm) into bin/ at their pinned versions.
