//go:build e2e

package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/test/releasecheck"
)

// TestRelease checks the release podgrace was installed from
// (hack/cluster/publish.sh: make release, make publish to the node
// registry; installPodgrace: helm install from oci://REGISTRY/charts): the
// node pulled podgrace's image by the release index's digest from the node
// registry; that digest's signature and SBOM attestation verify with
// cosign, offline as `make verify-release` does; and the index's arm64
// image, which cannot run here, is linux/arm64 with an EM_AARCH64 podgrace.
func TestRelease(t *testing.T) {
	requirePodgrace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	repo := env.Registry + "/podgrace"
	if want := repo + "@" + env.ReleaseDigest; pg.Image != want {
		t.Errorf("podgrace's Deployment runs %s, want the release's index by digest %s", pg.Image, want)
	}

	// What the node pulled: the image ID containerd reports in the pod
	// status, a repository digest of the node registry.
	dep, err := kube.AppsV1().Deployments(pg.Namespace).Get(ctx, pg.Deployment, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := kube.CoreV1().Pods(pg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(dep.Spec.Selector)})
	if err != nil {
		t.Fatal(err)
	}
	pulled := map[string]bool{}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.ImageID == "" {
				continue
			}
			t.Logf("pod %s container %s: image %s, imageID %s", p.Name, cs.Name, cs.Image, cs.ImageID)
			pulled[cs.ImageID] = true
		}
	}
	if len(pulled) != 1 {
		t.Fatalf("podgrace's pods report image IDs %v, want one", pulled)
	}
	var imageID string
	for id := range pulled {
		imageID = id
	}
	repoDigest, digest, ok := strings.Cut(imageID, "@")
	if !ok || repoDigest != repo || digest != env.ReleaseDigest {
		t.Fatalf("the node pulled %s, want %s@%s (the release's index from the node registry)", imageID, repo, env.ReleaseDigest)
	}

	// cosign, offline (no transparency log, the release's empty trusted
	// root) over plain HTTP, on the digest the node pulled.
	flags := []string{"--key", filepath.Join(env.ReleaseDir, "cosign.pub"), "--insecure-ignore-tlog",
		"--trusted-root", filepath.Join(env.ReleaseDir, "_build", "cosign", "trusted-root.json"),
		"--allow-http-registry", "--allow-insecure-registry"}
	for _, args := range [][]string{
		append([]string{"verify"}, append(flags, imageID)...),
		append([]string{"verify-attestation", "--type", "cyclonedx"}, append(flags, imageID)...),
	} {
		out, err := exec.CommandContext(ctx, env.Cosign, args...).CombinedOutput()
		if err != nil {
			t.Errorf("cosign %s: %v\n%s", strings.Join(args, " "), err, out)
			continue
		}
		t.Logf("cosign %s %s: verified", args[0], imageID)
	}

	// The index's platforms, the arm64 one checked by its ELF header.
	checked, problems, err := releasecheck.PlatformsAt(ctx, imageID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checked {
		t.Log(c)
	}
	for _, p := range problems {
		t.Error(p)
	}
}
