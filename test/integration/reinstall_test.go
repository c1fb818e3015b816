package integration

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	crclient "sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/internal/testkube"
	"github.com/podgrace/podgrace/pkg/policy"
)

// TestPolicyReinstall: the chart's admission: policy on a kube-apiserver of
// its own (the shared one has held policies of every other test), through
// install, `helm upgrade` with new values, uninstall and install again.
// With parameters in a ConfigMap, the reinstall left every pod unmutated
// until the API server restarted (kubernetes/kubernetes#130887, the
// informer of a paramKind stops once no binding names it); with the config
// compiled into the CEL, pods are mutated again as soon as the API server
// has loaded the new policy.
func TestPolicyReinstall(t *testing.T) {
	needsPolicyAPI(t)
	t.Parallel()
	env := &envtest.Environment{ControlPlaneStartTimeout: 2 * time.Minute, ControlPlaneStopTimeout: time.Minute}
	if err := testkube.Configure(env); err != nil {
		t.Fatal(err)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("starting a second kube-apiserver: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	cs := kubernetes.NewForConfigOrDie(cfg)
	k, err := crclient.New(cfg, crclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	dir, err := chart.Dir()
	if err != nil {
		t.Fatal(err)
	}
	rel := chart.Release{Name: "podgrace", Namespace: "podgrace"}
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: rel.Namespace}},
		{ObjectMeta: metav1.ObjectMeta{Name: "apps", Labels: map[string]string{policy.LabelInject: policy.InjectEnabled}}},
	} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	render := func(sleep string) []*unstructured.Unstructured {
		t.Helper()
		r, err := chart.Render(dir, rel, map[string]any{"admission": "policy", "config": map[string]any{"preStopSleep": sleep, "hookAction": string(wantHook)}})
		if err != nil {
			t.Fatal(err)
		}
		return r.Objects
	}
	// install and upgrade as Helm does: create what is missing, update the rest.
	install := func(objs []*unstructured.Unstructured) {
		t.Helper()
		for _, o := range objs {
			cur := &unstructured.Unstructured{}
			cur.SetGroupVersionKind(o.GroupVersionKind())
			switch err := k.Get(ctx, crclient.ObjectKeyFromObject(o), cur); {
			case apierrors.IsNotFound(err):
				err = k.Create(ctx, o.DeepCopy())
				if err != nil {
					t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
				}
			case err != nil:
				t.Fatal(err)
			default:
				u := o.DeepCopy()
				u.SetResourceVersion(cur.GetResourceVersion())
				if err := k.Update(ctx, u); err != nil {
					t.Fatalf("updating %s %s: %v", o.GetKind(), o.GetName(), err)
				}
			}
		}
	}
	uninstall := func(objs []*unstructured.Unstructured) {
		t.Helper()
		for _, o := range objs {
			if err := k.Delete(ctx, o.DeepCopy()); err != nil {
				t.Fatalf("deleting %s %s: %v", o.GetKind(), o.GetName(), err)
			}
		}
	}
	// until waits for a pod created in apps to get want seconds of sleep
	// (-1: none); every pod created meanwhile must be admitted.
	until := func(what string, want int64) {
		t.Helper()
		start := time.Now()
		var got int64
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			p, err := cs.CoreV1().Pods("apps").Create(ctx, pod("web", 60), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				return false, err
			}
			got = sleepOf(&p.Spec.Containers[0])
			return got == want, nil
		})
		if err != nil {
			t.Fatalf("%s: a pod's sleep is %d s, want %d s: %v", what, got, want, err)
		}
		t.Logf("%s: pods get %d s after %v", what, want, time.Since(start).Round(100*time.Millisecond))
	}

	first := render("11s")
	install(first)
	until("install", 11)
	second := render("13s")
	install(second)
	until("helm upgrade with preStopSleep 13s", 13)
	uninstall(second)
	until("uninstall", -1)
	// Longer than the API server's policy refresh: with a paramKind, its
	// informer would be stopped for good by now.
	time.Sleep(5 * time.Second)
	install(render("17s"))
	until("install after uninstall", 17)
}
