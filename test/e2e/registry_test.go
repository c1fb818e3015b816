//go:build e2e

package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/podgrace/podgrace/test/e2e/images"
)

// The node registry: go-containerregistry's in-memory registry (hack/registry,
// referrers on), plain HTTP on the node address (reachable from the host,
// from containerd and from pods, and from nowhere else), a process
// hack/cluster/up.sh starts and down.sh stops. podgrace's release is
// published to it (hack/cluster/publish.sh); podgrace's image inspection
// reads image configs from it; containerd pulls from it over HTTP.

// registryImage pushes a built test image to the e2e registry and returns
// its reference there. The kubelet pulls it from the registry (containerd
// has a plain-HTTP mirror for it), as it would a user's image.
//
// The pushed image is a distinct image (a label in its config, so another
// image ID) from the one imported under localhost/: with
// KubeletEnsureSecretPulledImages (beta, on by default since Kubernetes
// 1.35) the kubelet keeps a record of which names it pulled an image ID
// under, and once it has pulled an ID under the registry name it no longer
// treats that ID as preloaded: a pod using the imported localhost/ name
// (imagePullPolicy IfNotPresent) then gets a pull attempt, which fails here.
func registryImage(t *testing.T, localRef string) string {
	t.Helper()
	local, ok := builtImages[localRef]
	if !ok {
		t.Fatalf("no built image %s", localRef)
	}
	cf, err := local.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := *cf.Config.DeepCopy()
	cfg.Labels = map[string]string{"e2e.podgrace.dev/served-by": "e2e-registry"}
	img, err := mutate.Config(local, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ref := env.Registry + "/" + strings.TrimPrefix(localRef, "localhost/")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := images.Push(ctx, ref, img); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	return ref
}
