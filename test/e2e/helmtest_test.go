//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/pkg/policy"
)

// podgraceDown makes podgrace unreachable as in a crash: no replica, its
// pods killed at once (the API server keeps connections to a pod that
// drains, as podgrace's own preStop sleep lets it). The returned restore
// (also run when the test ends) scales it back and waits until the API
// server gets its mutation again.
func podgraceDown(t *testing.T) (restore func()) {
	t.Helper()
	ctx := context.Background()
	dep, err := kube.AppsV1().Deployments(pg.Namespace).Get(ctx, pg.Deployment, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	replicas := *dep.Spec.Replicas
	scale := func(n int32) error {
		patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
		_, err := kube.AppsV1().Deployments(pg.Namespace).Patch(ctx, pg.Deployment, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	}
	restored := false
	restore = func() {
		if restored {
			return
		}
		restored = true
		if err := scale(replicas); err != nil {
			t.Errorf("scaling podgrace back to %d: %v", replicas, err)
			return
		}
		if err := waitPodgraceReady(ctx, pg); err != nil {
			t.Errorf("podgrace did not come back: %v", err)
			return
		}
		if err := waitWebhookServing(ctx); err != nil {
			t.Errorf("podgrace does not serve again: %v", err)
		}
	}
	t.Cleanup(restore)
	if err := scale(0); err != nil {
		t.Fatal(err)
	}
	sel := metav1.FormatLabelSelector(dep.Spec.Selector)
	if err := kube.CoreV1().Pods(pg.Namespace).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))},
		metav1.ListOptions{LabelSelector: sel}); err != nil {
		t.Fatal(err)
	}
	return restore
}

// runHelmTest does what `helm test` does with the chart's test hook (`helm
// install` applied everything else; the hook's objects are those `helm get
// hooks` returned), by itself so that it can run the hook again and keep
// its pod's phase and log: it creates the hook's ServiceAccount and RBAC,
// then its Pod, which the real kubelet runs to completion; it returns the
// pod's phase and log, and deletes the hook's objects. extraArgs are
// appended to the test container's arguments.
func runHelmTest(t *testing.T, extraArgs ...string) (corev1.PodPhase, string) {
	t.Helper()
	ctx := context.Background()
	if len(pg.TestHook) == 0 {
		t.Fatal("the chart rendered no `helm test` hook (helmTest.enabled)")
	}
	var rest []*unstructured.Unstructured
	var pod *corev1.Pod
	for _, o := range pg.TestHook {
		if o.GetKind() != "Pod" {
			rest = append(rest, o)
			continue
		}
		pod = &corev1.Pod{}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, pod); err != nil {
			t.Fatal(err)
		}
	}
	if pod == nil {
		t.Fatal("the `helm test` hook has no Pod")
	}
	pod.Spec.Containers[0].Args = append(pod.Spec.Containers[0].Args, extraArgs...)
	manifest, err := chart.ToYAML(rest)
	if err != nil {
		t.Fatal(err)
	}
	cleanup := func() {
		_ = kube.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))})
		_ = kubectl(ctx, manifest, "delete", "--ignore-not-found", "--wait=false", "-f", "-")
	}
	cleanup() // helm.sh/hook-delete-policy: before-hook-creation
	if err := poll(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		_, err := kube.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Fatalf("the previous test pod %s is not gone: %v", pod.Name, err)
	}
	defer cleanup()
	if err := kubectl(ctx, manifest, "apply", "--server-side", "--force-conflicts", "--field-manager", "podgrace-e2e", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var phase corev1.PodPhase
	if err := poll(ctx, 2*time.Minute, func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return retry(err)
		}
		phase = p.Status.Phase
		return phase == corev1.PodSucceeded || phase == corev1.PodFailed, nil
	}); err != nil {
		t.Fatalf("the test pod did not finish (phase %q): %v", phase, err)
	}
	logs, err := kube.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return phase, string(logs)
}

// TestHelmTest runs the chart's `helm test` hook on the real node: it
// passes on the fresh install; with podgrace scaled to zero it fails and
// says why (the webhook unreachable); podgrace is then scaled back.
func TestHelmTest(t *testing.T) {
	requirePodgrace(t)
	start := time.Now()
	phase, logs := runHelmTest(t)
	if phase != corev1.PodSucceeded || !strings.Contains(logs, "selftest: OK") {
		t.Fatalf("helm test on the fresh install: pod %s, log:\n%s", phase, logs)
	}
	t.Logf("helm test passed in %.1fs:\n%s", time.Since(start).Seconds(), logs)

	restore := podgraceDown(t)
	// Killed pods can still answer for a moment on the connections the API
	// server holds to them: wait until a pod in an opted-in namespace comes
	// back without podgrace's status, as the hook's will.
	ns := newNamespace(t, "e2e-helmtest", true)
	if err := poll(context.Background(), 3*time.Minute, func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods(ns).Create(ctx, probePod("probe"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return retry(err)
		}
		_, mutated := p.Annotations[statusAnnotation]
		return !mutated, nil
	}); err != nil {
		t.Fatalf("podgrace still mutates pods after it was scaled to zero: %v", err)
	}
	start = time.Now()
	// The hook retries for --timeout while a namespace it just created is
	// not served yet (60 s by default); 10 s is plenty here and keeps the
	// failing run short.
	phase, logs = runHelmTest(t, "--timeout=10s")
	if phase != corev1.PodFailed {
		t.Errorf("helm test with podgrace scaled to zero: pod %s, want Failed; log:\n%s", phase, logs)
	}
	for _, want := range []string{"selftest: FAILED", "podgrace did not mutate it", "the webhook is unreachable"} {
		if !strings.Contains(logs, want) {
			t.Errorf("helm test with podgrace scaled to zero does not say %q; log:\n%s", want, logs)
		}
	}
	t.Logf("helm test with podgrace scaled to zero failed in %.1fs:\n%s", time.Since(start).Seconds(), logs)
	restore()
}

// TestKubectlApplyWarning: a real `kubectl apply` (the kubectl the cluster
// was built with, at KUBE_VERSION) of a Deployment whose pod template asks
// for `podgrace.dev/prestop-sleep: "15"` (no unit: 15 s, valid) in a grace
// period too short to hold any sleep (3 s, extend-grace off) prints
// podgrace's warning on kubectl's stderr: the workload check answers the
// person who wrote the workload, not the ReplicaSet controller that
// creates its pods. replicas 0: no pod is needed.
func TestKubectlApplyWarning(t *testing.T) {
	requirePodgrace(t)
	ns := newNamespace(t, "e2e-kubectl", true)
	manifest := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: %s
spec:
  replicas: 0
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        %s: "15"
        %s: "false"
    spec:
      terminationGracePeriodSeconds: 3
      containers:
        - name: app
          image: localhost/podgrace-e2e/testserver:v1
`, ns, policy.AnnotationPreStopSleep, policy.AnnotationExtendGrace)
	cmd := exec.CommandContext(context.Background(), env.Kubectl, "--kubeconfig", env.Kubeconfig, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(manifest)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubectl apply: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	const want = "Warning: podgrace: app: no preStop sleep: grace period 3s leaves under 1s after the 5s shutdown budget"
	lines := strings.Split(stderr.String(), "\n")
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, want) }) {
		t.Fatalf("kubectl apply's stderr has no line starting %q:\n%s", want, stderr.String())
	}
	if !strings.Contains(stdout.String(), "deployment.apps/web created") {
		t.Errorf("kubectl apply's stdout:\n%s", stdout.String())
	}
	t.Logf("kubectl apply stderr:\n%s", stderr.String())
}
