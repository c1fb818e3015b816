package integration

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/cli"
	"github.com/podgrace/podgrace/pkg/policy"
)

// TestExplain runs `podgrace explain` (as `kubectl podgrace explain`) against
// the real API server and the main instance's registration: a mutated pod's
// status decoded with the grace arithmetic (exit 0), a pod of a namespace
// podgrace does not select with that cause (exit 2), a pod created before
// its namespace opted in, and a Deployment's next rollout.
func TestExplain(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	kubeconfig := writeKubeconfig(t, restConfig)
	explain := func(args ...string) (int, string, string) {
		t.Helper()
		return runAudit(t, append([]string{"explain", "--kubeconfig", kubeconfig, "--config-map", "none/none"}, args...)...)
	}

	ns := namespace(t, optedIn(), nil)
	p, err := admin.CoreV1().Pods(ns).Create(ctx, pod("web", 30), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := explain("-n", ns, "pod/web")
	if code != 0 {
		t.Fatalf("explain pod/web: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{
		"Pod " + ns + "/web",
		"label podgrace.dev/inject=enabled",
		"namespaceSelector: ", "podgrace.dev/inject in (enabled)",
		"Served: yes",
		"What podgrace did (podgrace.dev/status)",
		"Grace: terminationGracePeriodSeconds 30; needs longest sleep 15s + shutdownBudget 5s = 20s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("explain pod/web: output lacks %q:\n%s", want, out)
		}
	}
	if st := status(t, p); !strings.Contains(out, "app") || st.Containers[0].PreStopSleep != 15 {
		t.Errorf("status %+v", st)
	}

	// A namespace that did not opt in: no status, the cause named, exit 2.
	other := namespace(t, nil, nil)
	if _, err := admin.CoreV1().Pods(other).Create(ctx, pod("web", 30), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runAudit(t, "explain", "--kubeconfig", kubeconfig, "--config-map", "none/none", "-n", other, "web")
	if code != cli.ExitNotMutated || !strings.Contains(errOut, "has no podgrace status") {
		t.Errorf("explain web in %s: exit %d, stderr %s", other, code, errOut)
	}
	for _, want := range []string{"label podgrace.dev/inject=(unset)", "Not mutated", "Likely cause: not selected: namespace not selected by", "If created again now, podgrace would do:"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain web in %s: output lacks %q:\n%s", other, want, out)
		}
	}

	// A Deployment with a typo: what its next rollout gets, with the warning.
	labels := map[string]string{"app": "api"}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{policy.AnnotationPreStopSleep: "abc"}}, Spec: pod("", 30).Spec}
	if _, err := admin.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "api"},
		Spec:       appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tmpl},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = explain("-n", ns, "deploy/api")
	if code != 0 {
		t.Fatalf("explain deploy/api: exit %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"Deployment " + ns + "/api", "What the next rollout's pods get:", `Warning: podgrace: podgrace.dev/prestop-sleep="abc"`} {
		if !strings.Contains(out, want) {
			t.Errorf("explain deploy/api: output lacks %q:\n%s", want, out)
		}
	}
	if code, _, errOut := explain("-n", ns, "service/api"); code != 1 || !strings.Contains(errOut, "not a pod or a workload kind") {
		t.Errorf("explain service/api: exit %d %s", code, errOut)
	}
}
