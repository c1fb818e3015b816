//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/podgrace/podgrace/hack/manifests/chart"
)

// podgraceInstall is podgrace as the tests installed it.
type podgraceInstall struct {
	Namespace  string
	Deployment string
	Image      string
	Webhook    string // MutatingWebhookConfiguration name
	// TestHook are the chart's `helm test` objects, which the install
	// leaves out as `helm install` does (TestHelmTest runs them).
	TestHook []*unstructured.Unstructured
}

func (p *podgraceInstall) close() { stopRegistry() }

// installPodgrace installs podgrace the way a user does: the image `make
// image` built (an OCI archive in dist/) imported into containerd, the Helm
// chart rendered with Helm's SDK and applied, TLS from cert-manager (running
// as a host process, hack/cluster/up.sh), then it waits until the API server
// actually calls the webhook.
func installPodgrace(ctx context.Context) (*podgraceInstall, error) {
	archive, err := podgraceImageArchive()
	if err != nil {
		return nil, err
	}
	ref, err := archiveRef(archive)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", archive, err)
	}
	repo, tag, ok := splitTag(ref)
	if !ok {
		return nil, fmt.Errorf("%s: image reference %q has no tag", archive, ref)
	}
	out, err := exec.CommandContext(ctx, env.Ctr, "--address", env.Containerd, "--namespace", "k8s.io",
		"images", "import", archive).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("importing %s: %w\n%s", archive, err, out)
	}

	dir := filepath.Join(env.Root, chart.Path)
	if _, err := os.Stat(filepath.Join(dir, "Chart.yaml")); err != nil {
		return nil, fmt.Errorf("the chart: %w", err)
	}
	rel := chart.DefaultRelease
	values := map[string]any{
		"image": map[string]any{"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"},
		"config": map[string]any{"imageInspection": map[string]any{
			// The e2e registry is plain HTTP on the node address: named,
			// since every other registry is HTTPS only.
			"insecureRegistries": []any{env.Registry},
		}},
		// Metrics as a security-minded cluster runs them (TestSecureMetrics).
		"metrics": map[string]any{"secure": true, "service": true},
	}
	rendered, err := chart.Render(dir, rel, values)
	if err != nil {
		return nil, fmt.Errorf("rendering %s: %w", dir, err)
	}
	p := &podgraceInstall{Namespace: rel.Namespace, Image: ref}
	var install []*unstructured.Unstructured
	for _, o := range rendered.Objects {
		if o.GetAnnotations()["helm.sh/hook"] == "test" {
			p.TestHook = append(p.TestHook, o)
			continue
		}
		install = append(install, o)
		switch o.GetKind() {
		case "Deployment":
			p.Deployment = o.GetName()
		case "MutatingWebhookConfiguration":
			p.Webhook = o.GetName()
		}
	}
	if p.Deployment == "" || p.Webhook == "" {
		return nil, errors.New("the rendered chart has no Deployment or no MutatingWebhookConfiguration")
	}
	manifest, err := chart.ToYAML(install)
	if err != nil {
		return nil, err
	}

	if err := kubectl(ctx, nil, "create", "namespace", rel.Namespace); err != nil && !strings.Contains(err.Error(), "AlreadyExists") {
		return nil, err
	}
	if err := kubectl(ctx, manifest, "apply", "--server-side", "--force-conflicts", "--field-manager", "podgrace-e2e", "-f", "-"); err != nil {
		return nil, err
	}
	if err := kubectl(ctx, nil, "-n", rel.Namespace, "wait", "--for=condition=Ready", "certificates.cert-manager.io", "--all", "--timeout=120s"); err != nil {
		return nil, fmt.Errorf("cert-manager did not issue podgrace's certificates: %w", err)
	}
	if err := waitPodgraceReady(ctx, p); err != nil {
		return nil, err
	}
	if err := poll(ctx, 120*time.Second, func(ctx context.Context) (bool, error) {
		w, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, p.Webhook, metav1.GetOptions{})
		if err != nil {
			return retry(err)
		}
		for _, wh := range w.Webhooks {
			if len(wh.ClientConfig.CABundle) == 0 {
				return false, nil
			}
		}
		return true, nil
	}); err != nil {
		return nil, fmt.Errorf("cainjector did not fill the caBundle of %s: %w", p.Webhook, err)
	}
	if err := waitWebhookServing(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// waitPodgraceReady waits for podgrace's Deployment to roll out, failing
// fast (with the container's last log lines) when its pods crash.
func waitPodgraceReady(ctx context.Context, p *podgraceInstall) error {
	rolled := make(chan error, 1)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { rolled <- waitRollout(rctx, p.Namespace, p.Deployment) }()
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case err := <-rolled:
			return err
		case <-tick.C:
		}
		pods, err := kube.CoreV1().Pods(p.Namespace).List(ctx, metav1.ListOptions{})
		if err != nil {
			continue
		}
		for _, pod := range pods.Items {
			for _, cs := range pod.Status.ContainerStatuses {
				if cs.RestartCount < 2 {
					continue
				}
				logs, _ := kube.CoreV1().Pods(p.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{
					Container: cs.Name, Previous: true, TailLines: ptr(int64(20)),
				}).DoRaw(ctx)
				return fmt.Errorf("podgrace's container %s/%s restarted %d times; its last log lines:\n%s",
					pod.Name, cs.Name, cs.RestartCount, logs)
			}
		}
	}
}

// waitWebhookServing creates pods (server-side dry run) in an opted-in
// namespace until one comes back with podgrace's status annotation: the API
// server reaches the webhook through its Service, over TLS it trusts.
func waitWebhookServing(ctx context.Context) error {
	ns := "e2e-webhook-probe"
	_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: ns, Labels: map[string]string{injectLabel: "enabled"},
	}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	defer func() { _ = kube.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{}) }()
	var last string
	err = poll(ctx, 120*time.Second, func(ctx context.Context) (bool, error) {
		pod, err := kube.CoreV1().Pods(ns).Create(ctx, probePod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			last = err.Error()
			return retry(err)
		}
		if _, ok := pod.Annotations[statusAnnotation]; !ok {
			last = "created without " + statusAnnotation
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("the API server does not get podgrace's mutation (%s): %w", last, err)
	}
	return nil
}

// probePod is a pod that is never scheduled (its nodeSelector matches no
// node), so creating many of them costs the node nothing.
func probePod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "probe"}},
		Spec: corev1.PodSpec{
			NodeSelector:                 map[string]string{"e2e.podgrace.dev/never": "true"},
			AutomountServiceAccountToken: ptr(false),
			EnableServiceLinks:           ptr(false),
			Containers: []corev1.Container{{
				Name: "app", Image: "localhost/podgrace-e2e/testserver:v1",
				Command: []string{"/usr/local/bin/app", "--port", "8080"},
			}},
		},
	}
}

// podgraceImageArchive finds the image archive `make image` wrote in dist/.
func podgraceImageArchive() (string, error) {
	if f := os.Getenv("PODGRACE_IMAGE_ARCHIVE"); f != "" {
		return f, nil
	}
	matches, _ := filepath.Glob(filepath.Join(env.Root, "dist", "*.tar"))
	sort.Strings(matches)
	switch len(matches) {
	case 0:
		return "", fmt.Errorf("no image archive in %s/dist (run `make image`)", env.Root)
	case 1:
		return matches[0], nil
	}
	return "", fmt.Errorf("several image archives in dist/ (%v): set PODGRACE_IMAGE_ARCHIVE", matches)
}

// archiveRef reads the image reference recorded in an OCI layout archive
// (index.json annotations) or a docker-archive (manifest.json RepoTags).
func archiveRef(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer func() { _ = f.Close() }()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", errors.New("no index.json or manifest.json with an image name")
		}
		if err != nil {
			return "", err
		}
		switch strings.TrimPrefix(h.Name, "./") {
		case "index.json":
			var idx struct {
				Manifests []struct {
					Annotations map[string]string `json:"annotations"`
				} `json:"manifests"`
			}
			if err := json.NewDecoder(tr).Decode(&idx); err != nil {
				return "", err
			}
			for _, m := range idx.Manifests {
				for _, k := range []string{"io.containerd.image.name", "org.opencontainers.image.ref.name"} {
					if v := m.Annotations[k]; strings.Contains(v, ":") || strings.Contains(v, "/") {
						return v, nil
					}
				}
			}
		case "manifest.json":
			var ms []struct{ RepoTags []string }
			if err := json.NewDecoder(tr).Decode(&ms); err != nil {
				return "", err
			}
			for _, m := range ms {
				if len(m.RepoTags) > 0 {
					return m.RepoTags[0], nil
				}
			}
		}
	}
}

// splitTag splits "repo/name:tag" (the registry may have a port).
func splitTag(ref string) (repo, tag string, ok bool) {
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return "", "", false
	}
	return ref[:i], ref[i+1:], true
}

// kubectl runs the cluster's kubectl with the admin kubeconfig.
func kubectl(ctx context.Context, stdin []byte, args ...string) error {
	cmd := exec.CommandContext(ctx, env.Kubectl, append([]string{"--kubeconfig", env.Kubeconfig}, args...)...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}
