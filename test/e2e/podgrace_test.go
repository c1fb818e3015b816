//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
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
	// TestHook are the chart's `helm test` objects, which `helm install`
	// leaves out (TestHelmTest runs them).
	TestHook []*unstructured.Unstructured
}

func (p *podgraceInstall) close() {}

// installPodgrace installs podgrace the way a user installs a release: the
// release hack/cluster/publish.sh published to the node registry (`make
// release`, `make publish`), installed with `helm install` from
// oci://REGISTRY/charts (the chart's default values pin the image by the
// index's digest, so the node pulls it by digest from the registry: nothing
// is imported), TLS from cert-manager (running as a host process,
// hack/cluster/up.sh); then it waits until the API server actually calls
// the webhook. TestRelease verifies what the node pulled.
func installPodgrace(ctx context.Context) (*podgraceInstall, error) {
	rel := chart.DefaultRelease
	// Values a cluster operator would set; the image is the chart's own.
	values := map[string]any{
		"config": map[string]any{"imageInspection": map[string]any{
			// The node registry is plain HTTP on the node address: named,
			// since every other registry is HTTPS only.
			"insecureRegistries": []any{env.Registry},
		}},
		// Metrics as a security-minded cluster runs them (TestSecureMetrics).
		"metrics": map[string]any{"secure": true, "service": true},
	}
	valuesFile, err := os.CreateTemp("", "podgrace-e2e-values-*.json")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.Remove(valuesFile.Name()) }()
	if err := json.NewEncoder(valuesFile).Encode(values); err != nil {
		return nil, err
	}
	if err := valuesFile.Close(); err != nil {
		return nil, err
	}
	chartRef := "oci://" + env.Registry + "/charts/podgrace"
	chartVersion := strings.TrimPrefix(env.ReleaseVersion, "v")
	// upgrade --install: `helm install` on a fresh cluster, and a no-op
	// upgrade when the suite runs again on one `make cluster-up` left up.
	if _, err := helm(ctx, "upgrade", "--install", rel.Name, chartRef, "--version", chartVersion, "--plain-http",
		"--namespace", rel.Namespace, "--create-namespace", "-f", valuesFile.Name()); err != nil {
		return nil, err
	}
	manifest, err := helm(ctx, "get", "manifest", rel.Name, "--namespace", rel.Namespace)
	if err != nil {
		return nil, err
	}
	objs, err := chart.Decode(manifest)
	if err != nil {
		return nil, fmt.Errorf("helm get manifest: %w", err)
	}
	p := &podgraceInstall{Namespace: rel.Namespace}
	for _, o := range objs {
		switch o.GetKind() {
		case "Deployment":
			p.Deployment = o.GetName()
			cs, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			if len(cs) > 0 {
				p.Image, _, _ = unstructured.NestedString(cs[0].(map[string]any), "image")
			}
		case "MutatingWebhookConfiguration":
			p.Webhook = o.GetName()
		}
	}
	if p.Deployment == "" || p.Webhook == "" {
		return nil, errors.New("the installed release has no Deployment or no MutatingWebhookConfiguration")
	}
	if want := env.Registry + "/podgrace@" + env.ReleaseDigest; p.Image != want {
		return nil, fmt.Errorf("the chart from %s installs image %q, want the release's index by digest %q", chartRef, p.Image, want)
	}
	hooks, err := helm(ctx, "get", "hooks", rel.Name, "--namespace", rel.Namespace)
	if err != nil {
		return nil, err
	}
	hookObjs, err := chart.Decode(hooks)
	if err != nil {
		return nil, fmt.Errorf("helm get hooks: %w", err)
	}
	for _, o := range hookObjs {
		if o.GetAnnotations()["helm.sh/hook"] == "test" {
			p.TestHook = append(p.TestHook, o)
		}
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

// helm runs the helm CLI `make` built (named in cluster.env) against the
// cluster and returns its standard output.
func helm(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, env.Helm, append(args, "--kubeconfig", env.Kubeconfig)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return string(out), nil
}
