package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podgrace/podgrace/pkg/calibrate"
	"github.com/podgrace/podgrace/pkg/policy"
)

// The orchestration of `podgrace calibrate` against the real kube-apiserver
// (envtest has no kubelet, so no pod ever runs: the measurement itself is
// proven by TestCalibrateSlowPath in test/e2e). What is proven here: bad
// input creates nothing, and an interrupted run removes what it created.

func calibrateOptions(ns string) calibrate.Options {
	cfg := policy.Default()
	return calibrate.Options{
		Namespace: ns, Image: "podgrace:test", Replicas: 2, Trials: 1, Window: 30 * time.Second,
		URLTimeout: time.Minute, ReadyTimeout: time.Minute, Workers: 1, Interval: time.Second, Config: &cfg,
	}
}

// TestCalibrateRefusesForeignNamespace: a namespace holding a workload
// calibrate did not create is refused, and nothing is created in it.
func TestCalibrateRefusesForeignNamespace(t *testing.T) {
	ctx := t.Context()
	ns := namespace(t, nil, nil)
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "shop"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
	if _, err := admin.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := calibrate.Run(ctx, admin, calibrateOptions(ns))
	if err == nil || !strings.Contains(err.Error(), "holds other workloads (service/shop)") {
		t.Fatalf("Run in a namespace with service/shop: %v; want it refused, naming the service", err)
	}
	assertNothingOfCalibrate(t, ns)
	if _, err := admin.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Fatalf("the user's namespace: %v", err)
	}
}

// TestCalibrateWindowTooLong: a window longer than maxGracePeriod -
// shutdownBudget is refused before anything is created.
func TestCalibrateWindowTooLong(t *testing.T) {
	o := calibrateOptions("pg-calibrate-window")
	o.Window = 10 * time.Minute
	_, err := calibrate.Run(t.Context(), admin, o)
	if err == nil || !strings.Contains(err.Error(), "longer than the grace period allows") {
		t.Fatalf("Run with a 10m window: %v; want it refused", err)
	}
	if _, err := admin.CoreV1().Namespaces().Get(t.Context(), o.Namespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("namespace %s after a refused run: %v; want not found", o.Namespace, err)
	}
}

// TestCalibrateCleanupOnInterrupt: calibrate creates its Service,
// Deployment and client pod, labeled, with the pod opt-out label; when
// its context is canceled (Ctrl-C) while it waits for the pods, it
// removes all of them and leaves the namespace it did not create.
func TestCalibrateCleanupOnInterrupt(t *testing.T) {
	ns := namespace(t, nil, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	seen := make(chan struct{})
	go func() {
		defer close(seen)
		for ctx.Err() == nil {
			pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: calibrate.ManagedByLabel + "=" + calibrate.ManagedBy})
			if err == nil && len(pods.Items) > 0 {
				p := pods.Items[0]
				if p.Labels[policy.LabelInject] != policy.InjectDisabled {
					t.Errorf("client pod labels %v: no %s=%s", p.Labels, policy.LabelInject, policy.InjectDisabled)
				}
				if _, err := admin.AppsV1().Deployments(ns).Get(ctx, calibrate.ProbeName, metav1.GetOptions{}); err != nil {
					t.Errorf("probe deployment: %v", err)
				}
				cancel()
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	_, err := calibrate.Run(ctx, admin, calibrateOptions(ns))
	<-seen
	if err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("Run canceled while waiting for pods: %v; want interrupted", err)
	}
	assertNothingOfCalibrate(t, ns)
	if _, err := admin.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{}); err != nil {
		t.Fatalf("the namespace calibrate did not create was deleted: %v", err)
	}
}

func assertNothingOfCalibrate(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	sel := metav1.ListOptions{LabelSelector: calibrate.ManagedByLabel + "=" + calibrate.ManagedBy}
	pods, err := admin.CoreV1().Pods(ns).List(ctx, sel)
	if err != nil || len(pods.Items) > 0 {
		t.Errorf("pods of calibrate left in %s: %d (%v)", ns, len(pods.Items), err)
	}
	svcs, err := admin.CoreV1().Services(ns).List(ctx, sel)
	if err != nil || len(svcs.Items) > 0 {
		t.Errorf("services of calibrate left in %s: %d (%v)", ns, len(svcs.Items), err)
	}
	deps, err := admin.AppsV1().Deployments(ns).List(ctx, sel)
	if err != nil || len(deps.Items) > 0 {
		t.Errorf("deployments of calibrate left in %s: %d (%v)", ns, len(deps.Items), err)
	}
}
