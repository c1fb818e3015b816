# syntax=docker/dockerfile:1
# podgrace's image: one static binary on distroless static, non-root.
# `make image` builds the same image without Docker (hack/image, an OCI
# layout tarball); hack/image's test checks the two agree on user, entrypoint
# and command.
# Must equal the `go` line of go.mod (hack/image's test checks it).
ARG GO_VERSION=1.27.3

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY cmd/ cmd/
COPY pkg/ pkg/
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X github.com/podgrace/podgrace/pkg/version.Version=${VERSION}" \
      -o /out/podgrace ./cmd/podgrace

FROM gcr.io/distroless/static:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="podgrace" \
      org.opencontainers.image.description="Kubernetes admission webhook: preStop sleeps and exec-form commands for graceful shutdown" \
      org.opencontainers.image.source="https://github.com/podgrace/podgrace" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/podgrace /podgrace
USER 65532:65532
# Exec form: podgrace is PID 1 and receives SIGTERM itself. The chart passes
# `webhook` and its flags as args; `docker run IMAGE inject -f -` also works.
ENTRYPOINT ["/podgrace"]
CMD ["webhook"]
