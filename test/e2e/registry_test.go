//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/podgrace/podgrace/test/e2e/images"
)

// The e2e registry: go-containerregistry's in-memory registry, plain HTTP,
// on the node address (reachable from the host, from containerd and from
// pods, and from nowhere else). podgrace's image inspection reads image
// configs from it; containerd is configured (hack/cluster/up.sh) to pull
// from it over HTTP. It lives as long as the test binary.
var (
	registryOnce sync.Once
	registryErr  error
	registryStop func()
)

func startRegistry() error {
	registryOnce.Do(func() {
		ln, err := net.Listen("tcp", env.Registry)
		if err != nil {
			registryErr = fmt.Errorf("e2e registry on %s: %w", env.Registry, err)
			return
		}
		srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		registryStop = func() { _ = srv.Close() }
	})
	return registryErr
}

// registryImage pushes a built test image to the e2e registry and tags it in
// containerd under the registry name (so the kubelet finds it either way),
// and returns the registry reference.
func registryImage(t *testing.T, localRef string) string {
	t.Helper()
	if err := startRegistry(); err != nil {
		t.Fatal(err)
	}
	img, ok := builtImages[localRef]
	if !ok {
		t.Fatalf("no built image %s", localRef)
	}
	ref := env.Registry + "/" + strings.TrimPrefix(localRef, "localhost/")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := images.Push(ctx, ref, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	out, err := exec.CommandContext(ctx, env.Ctr, "--address", env.Containerd, "--namespace", "k8s.io",
		"images", "tag", "--force", localRef, ref).CombinedOutput()
	if err != nil {
		t.Fatalf("ctr images tag %s %s: %v\n%s", localRef, ref, err, out)
	}
	return ref
}

func stopRegistry() {
	if registryStop != nil {
		registryStop()
	}
}
