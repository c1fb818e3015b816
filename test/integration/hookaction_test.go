package integration

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/webhook"
)

// TestHookActionAuto: hookAction auto is what this API server's dry run
// answered (sleep where the native sleep action is on, exec where it is off:
// 1.29, or 1.30 with the feature gate off), never the version fallback; and
// the premise holds on the server itself: a pod's native sleep hook is kept
// exactly when podgrace chose sleep, else rejected (1.29) or silently
// dropped with the whole lifecycle (1.30 with the gate off).
func TestHookActionAuto(t *testing.T) {
	t.Parallel()
	d := mainServer.server.HookDecision()
	if d.Action != wantHook || d.Fallback || d.ServerVersion != serverVersion {
		t.Fatalf("hookAction auto on %s: %+v; want %s decided by the dry run", serverVersion, d, wantHook)
	}
	// exec: 1.29 rejects the hook, 1.30-1.33 with the gate off accept the
	// pod and drop it.
	if ok := strings.Contains(d.Reason, "accepted a dry-run pod with") == (wantHook == policy.HookSleep); !ok {
		t.Errorf("reason %q for %s", d.Reason, wantHook)
	}
	t.Logf("%s: %s (%s)", serverVersion, d.Action, d.Reason)

	// Without podgrace (a namespace no instance selects).
	ns := namespace(t, map[string]string{instanceLabel: "none"}, nil)
	p := pod("native-sleep", 30)
	p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 5}}}
	got, err := admin.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	kept := err == nil && hasSleep(&got.Spec.Containers[0])
	switch {
	case wantHook == policy.HookSleep && !kept:
		t.Errorf("%s did not keep a native sleep hook: %v", serverVersion, err)
	case wantHook == policy.HookExec && err != nil && !apierrors.IsInvalid(err):
		t.Errorf("%s: a native sleep hook gave %v, want Invalid", serverVersion, err)
	case wantHook == policy.HookExec && kept:
		t.Errorf("%s kept a native sleep hook", serverVersion)
	case wantHook == policy.HookExec:
		t.Logf("%s without the sleep action: error %v, stored lifecycle %+v", serverVersion, err, lifecycleOf(got))
	}
}

// TestHookActionAutoFallback: a probe the API server forbids (no RBAC for
// pods) cannot tell, so the version decides, and the reason says why.
func TestHookActionAutoFallback(t *testing.T) {
	t.Parallel()
	cfg := rest.CopyConfig(restConfig)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:podgrace-test:nobody"}
	p := &webhook.HookProbe{Client: kubernetes.NewForConfigOrDie(cfg), Namespace: "default", Log: logger()}
	d, err := p.Decide(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	byVersion, err := webhook.HookActionFor(&versionInfo)
	if err != nil {
		t.Fatal(err)
	}
	if !d.Fallback || d.Action != byVersion || !strings.Contains(d.Reason, "forbidden") {
		t.Errorf("forbidden probe: %+v; want the version's %s with the reason", d, byVersion)
	}
}

// TestConfigurationKeptByServer: the fields podgrace's registration relies
// on survive this API server's decoding and defaulting (an older server
// drops fields it does not know, silently).
func TestConfigurationKeptByServer(t *testing.T) {
	t.Parallel()
	mwc := mustWebhook(chart.WebhookOptions{URL: mainServer.url})
	stored, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(t.Context(), mwc.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := stored.Webhooks[0]
	want := mwc.Webhooks[0]
	if *got.ReinvocationPolicy != *want.ReinvocationPolicy || *got.MatchPolicy != *want.MatchPolicy ||
		*got.SideEffects != *want.SideEffects || *got.TimeoutSeconds != *want.TimeoutSeconds ||
		*got.FailurePolicy != *want.FailurePolicy || !equality.Semantic.DeepEqual(got.ObjectSelector, want.ObjectSelector) ||
		!equality.Semantic.DeepEqual(got.Rules, want.Rules) {
		t.Errorf("%s changed podgrace's webhook:\n got %+v\nwant %+v", serverVersion, got, want)
	}
}

// TestChartNeedsSleepAction: podgrace's own pod (the chart's Deployment)
// uses the native sleep action, its image having no shell and no sleep
// binary. Where the action is off the API server either rejects the
// Deployment for that hook (1.29) or stores it without the hook (1.30 with
// the gate off): the chart's kubeVersion (>=1.30) and docs/develop/versions.md say
// so, and make test-versions runs the chart's suite only where it is on.
func TestChartNeedsSleepAction(t *testing.T) {
	t.Parallel()
	dir, err := chart.Dir()
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, map[string]string{instanceLabel: "none"}, nil)
	r, err := chart.Render(dir, chart.Release{Name: "podgrace", Namespace: ns}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := chart.Into(r.Find("Deployment", "podgrace"), &d); err != nil {
		t.Fatal(err)
	}
	d.Namespace = ns
	got, err := admin.AppsV1().Deployments(ns).Create(t.Context(), &d, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	kept := err == nil && hasSleep(&got.Spec.Template.Spec.Containers[0])
	switch {
	case wantHook == policy.HookSleep && !kept:
		t.Errorf("%s did not keep the chart's Deployment with its sleep hook: %v", serverVersion, err)
	case wantHook == policy.HookExec && err != nil && (!apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "lifecycle.preStop")):
		t.Errorf("%s without the sleep action: the chart's Deployment gave %v, want Invalid on its preStop hook", serverVersion, err)
	case wantHook == policy.HookExec && kept:
		t.Errorf("%s without the sleep action kept the chart's sleep hook", serverVersion)
	case wantHook == policy.HookExec:
		t.Logf("%s: the chart's Deployment: error %v (stored without the sleep hook if nil)", serverVersion, err)
	}
}

func hasSleep(c *corev1.Container) bool {
	return c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil
}

func lifecycleOf(p *corev1.Pod) any {
	if p == nil || len(p.Spec.Containers) == 0 {
		return nil
	}
	return p.Spec.Containers[0].Lifecycle
}
