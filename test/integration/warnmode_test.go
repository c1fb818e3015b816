package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/podgrace/podgrace/pkg/policy"
)

// TestWarnMode: with enforcement warn (and strict on, which warn mode
// overrides) the API server stores every pod exactly as the client sent it,
// the client reads what podgrace would have done as a warning, an invalid
// setting denies nothing, and the metric counts a Deployment's pods by
// namespace.
func TestWarnMode(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Enforcement = policy.EnforcementWarn
	cfg.Strict = true
	in := serve(t, "warn", &cfg, 0)
	ns := namespace(t, forInstance("warn"), nil)
	if err := waitForWarning(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	cs, warned := client(t)
	_ = warned.Take()
	count := func(outcome string) float64 {
		return scrape(t, in.metrics, map[string]string{"namespace": ns, "outcome": outcome}, "podgrace_warn_mode_pods_total")["podgrace_warn_mode_pods_total"]
	}
	mutateBefore, denyBefore := count("would-mutate"), count("would-deny")

	sent := pod("web", 30, shellContainer("app", "bundle exec puma"), corev1.Container{Name: "side", Image: "registry.example/side:1", Command: []string{"sh", "-c", "cd /srv && ./serve"}})
	got, err := cs.CoreV1().Pods(ns).Create(t.Context(), sent.DeepCopy(), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.Annotations[policy.AnnotationStatus]; ok {
		t.Errorf("warn mode wrote the status annotation: %v", got.Annotations)
	}
	if *got.Spec.TerminationGracePeriodSeconds != 30 {
		t.Errorf("grace %d, want 30 as sent", *got.Spec.TerminationGracePeriodSeconds)
	}
	for i, c := range got.Spec.Containers {
		if c.Lifecycle != nil || !slices.Equal(c.Command, sent.Spec.Containers[i].Command) {
			t.Errorf("container %s changed: lifecycle %v, command %q", c.Name, c.Lifecycle, c.Command)
		}
	}
	// The warning names the hook form where it is not the native sleep
	// action (hookAction auto chooses exec on a server without it).
	hook := ""
	if wantHook == policy.HookExec {
		hook = " (exec)"
	}
	want := "podgrace (warn mode): would add preStop sleep 15s" + hook + " to app, drop the shell of app (exec form), " +
		"add preStop sleep 15s" + hook + " to side, put exec before side's command (exec form)"
	if ws := warned.Take(); !slices.Contains(ws, want) {
		t.Errorf("warnings %q\nwant %q", ws, want)
	}

	// Strict mode would deny this pod; warn mode admits it, unchanged.
	invalid := pod("invalid", 30)
	invalid.Annotations = map[string]string{policy.AnnotationPreStopSleep: "abc"}
	got, err = cs.CoreV1().Pods(ns).Create(t.Context(), invalid, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("warn mode denied a pod: %v", err)
	}
	if got.Spec.Containers[0].Lifecycle != nil {
		t.Errorf("invalid pod mutated: %v", got.Spec.Containers[0].Lifecycle)
	}
	ws := warned.Take()
	if !slices.ContainsFunc(ws, func(w string) bool {
		return strings.HasPrefix(w, `podgrace (warn mode): would deny: podgrace.dev/prestop-sleep="abc" is not a duration`)
	}) {
		t.Errorf("warnings %q, want a would-deny warning", ws)
	}

	// A Deployment's pods, created as its ReplicaSet controller creates
	// them (generateName, controller owner reference): each is counted.
	_, rs := deployment(t, ns, "shop", 3)
	for range 3 {
		p := pod("", 30)
		p.GenerateName = rs.Name + "-"
		p.Labels = rs.Spec.Template.Labels
		p.OwnerReferences = []metav1.OwnerReference{controllerRef(rs.Name, rs.UID, "ReplicaSet")}
		if _, err := admin.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := count("would-mutate")-mutateBefore, 4.0; got != want {
		t.Errorf("podgrace_warn_mode_pods_total{namespace=%q,outcome=would-mutate} rose by %v, want %v (1 pod + 3 of the Deployment)", ns, got, want)
	}
	if got := count("would-deny") - denyBefore; got != 1 {
		t.Errorf("podgrace_warn_mode_pods_total{outcome=would-deny} rose by %v, want 1", got)
	}
}

// waitForWarning waits until the warn-mode instance answers for ns.
func waitForWarning(ctx context.Context, ns string) error {
	w := &warnings{}
	cfg := *restConfig
	cfg.WarningHandler = w
	cs := kubernetes.NewForConfigOrDie(&cfg)
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod("probe", 30), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			return false, err
		}
		return slices.ContainsFunc(w.Take(), func(s string) bool { return strings.HasPrefix(s, "podgrace (warn mode): ") }), nil
	})
}

// deployment creates a Deployment and the ReplicaSet its controller would
// create for it (envtest runs no controllers).
func deployment(t *testing.T, ns, name string, replicas int32) (*appsv1.Deployment, *appsv1.ReplicaSet) {
	t.Helper()
	labels := map[string]string{"app": name}
	tmpl := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       pod("", 30).Spec,
	}
	dep, err := admin.AppsV1().Deployments(ns).Create(t.Context(), &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: tmpl,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rsLabels := map[string]string{"app": name, "pod-template-hash": "abc12"}
	tmpl.Labels = rsLabels
	rs, err := admin.AppsV1().ReplicaSets(ns).Create(t.Context(), &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name: fmt.Sprintf("%s-abc12", name), Labels: rsLabels,
			OwnerReferences: []metav1.OwnerReference{controllerRef(dep.Name, dep.UID, "Deployment")},
		},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To(replicas), Selector: &metav1.LabelSelector{MatchLabels: rsLabels}, Template: tmpl},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return dep, rs
}

// controllerRef is the owner reference an apps/v1 controller sets.
func controllerRef(name string, uid types.UID, kind string) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, UID: uid, Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
}
