package integration

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/webhook"
)

const requestsTotal = "controller_runtime_webhook_requests_total"

// The sequential tests come first: Go runs every top-level test that is not
// parallel before it resumes the parallel ones, so while these run no other
// admission moves the shared request counters.

// TestWebhookNotCalled: a namespace without the opt-in label and a pod
// labeled podgrace.dev/inject=disabled are stored untouched, and the API
// server does not even call podgrace (its request counter does not move).
func TestWebhookNotCalled(t *testing.T) {
	cs, _ := client(t)
	ctx := t.Context()
	counters := func() map[string]float64 {
		return scrape(t, mainServer.metrics, map[string]string{"webhook": webhook.Path}, requestsTotal, "podgrace_pods_mutated_total")
	}
	before := counters()

	plain := namespace(t, nil, nil)
	got, err := cs.CoreV1().Pods(plain).Create(ctx, pod("unlabeled-namespace", 30), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	assertUntouched(t, got)

	optOut := pod("opted-out", 30)
	optOut.Labels = map[string]string{policy.LabelInject: policy.InjectDisabled}
	got, err = cs.CoreV1().Pods(mainNamespace).Create(ctx, optOut, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deleteLater(t, mainNamespace, optOut.Name)
	assertUntouched(t, got)

	if after := counters(); after[requestsTotal] != before[requestsTotal] || after["podgrace_pods_mutated_total"] != before["podgrace_pods_mutated_total"] {
		t.Errorf("podgrace was called: counters went from %v to %v", before, after)
	}

	// The counter does count: an opted-in pod moves it.
	if _, err := cs.CoreV1().Pods(mainNamespace).Create(ctx, pod("opted-in", 30), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deleteLater(t, mainNamespace, "opted-in")
	if after := counters(); after[requestsTotal] != before[requestsTotal]+1 || after["podgrace_pods_mutated_total"] != before["podgrace_pods_mutated_total"]+1 {
		t.Errorf("one opted-in pod: counters went from %v to %v, want +1 each", before, after)
	}
}

// TestMirrorPod: a mirror pod (the API server's copy of a static pod file,
// annotated kubernetes.io/config.mirror) in an opted-in namespace reaches
// podgrace (the registration has no matchCondition: one would cost the API
// server a CEL conversion of every pod) and is stored untouched, without a
// warning; podgrace counts it as not handled, reason mirror-pod.
func TestMirrorPod(t *testing.T) {
	cs, warn := client(t)
	ctx := t.Context()
	counters := func() map[string]float64 {
		out := scrape(t, mainServer.metrics, map[string]string{"webhook": webhook.Path}, requestsTotal)
		maps.Copy(out, scrapeVec(t, mainServer.metrics, map[string]string{"reason": "mirror-pod"}, "podgrace_requests_not_handled_total"))
		return out
	}
	before := counters()
	mirror := pod("mirror", 30)
	mirror.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "4f1d2c3b5a6e7f80"}
	mirror.Spec.NodeName = "static-node" // the API server requires it of a mirror pod
	got, err := cs.CoreV1().Pods(mainNamespace).Create(ctx, mirror, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deleteLater(t, mainNamespace, mirror.Name)
	assertUntouched(t, got)
	if w := warn.Take(); len(w) > 0 {
		t.Errorf("warnings for a mirror pod: %q", w)
	}
	after := counters()
	if after[requestsTotal] != before[requestsTotal]+1 || after["podgrace_requests_not_handled_total"] != before["podgrace_requests_not_handled_total"]+1 {
		t.Errorf("a mirror pod: counters went from %v to %v, want podgrace called once and the pod not handled (mirror-pod)", before, after)
	}
}

func assertUntouched(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if _, ok := p.Annotations[policy.AnnotationStatus]; ok {
		t.Errorf("%s: has a status annotation", p.Name)
	}
	c := p.Spec.Containers[0]
	if c.Lifecycle != nil || !slices.Equal(c.Command, []string{"sh", "-c", "bundle exec puma"}) || *p.Spec.TerminationGracePeriodSeconds != 30 {
		t.Errorf("%s: mutated: lifecycle %+v, command %q, grace %d", p.Name, c.Lifecycle, c.Command, *p.Spec.TerminationGracePeriodSeconds)
	}
}

// TestNamespaceAnnotationsFromCache: for a namespace podgrace has cached,
// its annotations come from the informer, with no API read.
func TestNamespaceAnnotationsFromCache(t *testing.T) {
	cs, _ := client(t)
	const lookups = "podgrace_namespace_lookups_total"
	count := func(source string) float64 {
		return scrape(t, mainServer.metrics, map[string]string{"source": source}, lookups)[lookups]
	}
	cacheBefore, apiBefore := count("cache"), count("api")
	got, err := cs.CoreV1().Pods(mainNamespace).Create(t.Context(), pod("cached", 60), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	deleteLater(t, mainNamespace, got.Name)
	if s := sleepOf(&got.Spec.Containers[0]); s != 7 {
		t.Errorf("sleep %d, want the namespace's 7", s)
	}
	if c, a := count("cache")-cacheBefore, count("api")-apiBefore; c != 1 || a != 0 {
		t.Errorf("lookups: cache +%v, api +%v; want +1, +0", c, a)
	}
}

// TestOptedInPodIsMutated: the stored pod has the native sleep preStop, the
// raised grace period, the exec-form command and the status annotation; the
// client sees the warnings. The real API server's validation accepts the
// hook podgrace picked for its version.
func TestOptedInPodIsMutated(t *testing.T) {
	t.Parallel()
	if h := mainServer.server.HookAction(); h != wantHook {
		t.Fatalf("hookAction auto on API server %s chose %q, want %s", serverVersion, h, wantHook)
	}
	cs, warned := client(t)
	ns := namespace(t, optedIn(), nil)
	p := pod("web", 4,
		shellContainer("app", "bundle exec puma"),
		corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2:1"},
		corev1.Container{Name: "hooked", Image: "registry.example/hooked:1", Lifecycle: &corev1.Lifecycle{
			PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/drain"}}},
		}},
	)
	p.Annotations = map[string]string{"podgrace.dev/prestop-seep": "20s"}
	created, err := cs.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the API server rejected podgrace's mutation: %v", err)
	}
	stored, err := cs.CoreV1().Pods(ns).Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(created.Spec, stored.Spec) {
		t.Error("the stored pod differs from the create response")
	}

	app := stored.Spec.Containers[0]
	if s := sleepOf(&app); s != 5 {
		t.Errorf("app preStop %+v, want a 5s %s (auto: clamp(0.5×4, 5, 60))", app.Lifecycle, wantHook)
	}
	if g := *stored.Spec.TerminationGracePeriodSeconds; g != 15 {
		t.Errorf("grace period %d, want it raised to 5s sleep + 5s budget + the sidecar's 5s drain = 15", g)
	}
	if want := []string{"bundle", "exec", "puma"}; !slices.Equal(app.Command, want) {
		t.Errorf("app command %q, want %q", app.Command, want)
	}
	if c := stored.Spec.Containers[1]; sleepOf(&c) != 10 || c.Command != nil {
		t.Errorf("sidecar istio-proxy: %+v, want a 10s sleep (the app's 5s + the 5s budget) and no command", c)
	}
	if c := stored.Spec.Containers[2]; !slices.Equal(c.Lifecycle.PreStop.Exec.Command, []string{"/drain"}) || c.Lifecycle.PreStop.Sleep != nil {
		t.Errorf("the existing preStop hook changed: %+v", c.Lifecycle.PreStop)
	}
	st := status(t, stored)
	want := inject.Status{V: inject.StatusVersion, GraceBefore: 4, GraceAfter: 15, Containers: []inject.ContainerReport{
		{Name: "app", PreStopSleep: 5, Hook: string(wantHook), ExecForm: "drop-shell"},
		{Name: "istio-proxy", Role: string(policy.RoleSidecar), PreStopSleep: 10, Hook: string(wantHook), ExecFormSkipped: inject.SkipSidecar},
		{Name: "hooked", PreStopSkipped: inject.SkipExistingPreStop, ExecFormSkipped: inject.SkipImageNotInspected},
	}}
	if !equality.Semantic.DeepEqual(st, want) {
		t.Errorf("status\n got %+v\nwant %+v", st, want)
	}
	ws := warned.Take()
	if !slices.Contains(ws, `podgrace: podgrace.dev/prestop-seep="20s" is not a podgrace key; ignored`) {
		t.Errorf("the client did not see the warning; got %q", ws)
	}
}

// TestSidecarsOutliveApp: a pod with an app, a mesh proxy and a database
// proxy, a Job-like pod with a database proxy, and a pod with a native
// sidecar, created through the real API server (whose validation rejects a
// sleep longer than the grace period). docs/design.md §2, §4.
func TestSidecarsOutliveApp(t *testing.T) {
	t.Parallel()
	cs, _ := client(t)
	ns := namespace(t, optedIn(), nil)
	create := func(p *corev1.Pod) *corev1.Pod {
		t.Helper()
		got, err := cs.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("%s: the API server rejected podgrace's mutation: %v", p.Name, err)
		}
		return got
	}

	// Service pod: app S = 10 (0.5 × 20), both proxies 10 + 5 = 15; Istio's
	// declared drain (10s) replaces the 5s sidecar budget: T = 15 + 10 = 25.
	web := pod("web", 20,
		shellContainer("app", "bundle exec puma"),
		corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2:1", Args: []string{"proxy", "sidecar"}},
		shellContainer("cloud-sql-proxy", "/cloud-sql-proxy --port 5432 p:r:db"),
	)
	web.Annotations = map[string]string{policy.AnnotationIstioProxyConfig: "terminationDrainDuration: 10s\n"}
	got := create(web)
	for i, want := range []int64{10, 15, 15} {
		if s := sleepOf(&got.Spec.Containers[i]); s != want {
			t.Errorf("web/%s: sleep %d, want %d", got.Spec.Containers[i].Name, s, want)
		}
	}
	if g := *got.Spec.TerminationGracePeriodSeconds; g != 25 {
		t.Errorf("web: grace period %d, want 25", g)
	}
	if c := got.Spec.Containers[2].Command; !slices.Equal(c, []string{"sh", "-c", "/cloud-sql-proxy --port 5432 p:r:db"}) {
		t.Errorf("the database proxy's command was rewritten: %q", c)
	}
	want := inject.Status{V: inject.StatusVersion, GraceBefore: 20, GraceAfter: 25, Containers: []inject.ContainerReport{
		{Name: "app", PreStopSleep: 10, Hook: string(wantHook), ExecForm: "drop-shell"},
		{Name: "istio-proxy", Role: string(policy.RoleSidecar), PreStopSleep: 15, Hook: string(wantHook), ExecFormSkipped: inject.SkipSidecar},
		{Name: "cloud-sql-proxy", Role: string(policy.RoleSidecar), PreStopSleep: 15, Hook: string(wantHook), ExecFormSkipped: inject.SkipSidecar},
	}}
	if st := status(t, got); !equality.Semantic.DeepEqual(st, want) {
		t.Errorf("web: status\n got %+v\nwant %+v", st, want)
	}

	// Run-to-completion pod: no app sleep, the rewrite kept; the database
	// proxy still outlives the app's drain by the 5s budget.
	job := pod("job", 30, shellContainer("task", "run-task --all"), corev1.Container{Name: "cloud-sql-proxy", Image: "registry.example/csp:2"})
	job.Spec.RestartPolicy = corev1.RestartPolicyNever
	got = create(job)
	if task := got.Spec.Containers[0]; sleepOf(&task) != -1 || !slices.Equal(task.Command, []string{"run-task", "--all"}) {
		t.Errorf("job/task: %+v %q, want no hook and the shell dropped", task.Lifecycle, task.Command)
	}
	if s := sleepOf(&got.Spec.Containers[1]); s != 5 || *got.Spec.TerminationGracePeriodSeconds != 30 {
		t.Errorf("job/cloud-sql-proxy: sleep %d grace %d, want 5 and 30", s, *got.Spec.TerminationGracePeriodSeconds)
	}
	if st := status(t, got); st.Containers[0].PreStopSkipped != inject.SkipRunToCompletion {
		t.Errorf("job: status %+v, want task skipped as %s", st, inject.SkipRunToCompletion)
	}

	// Native sidecar (Istio's native mode): no hook, its drain counts:
	// S = 9 (0.5 × 18), N = 9 + 5 + 5 = 19.
	always := corev1.ContainerRestartPolicyAlways
	native := pod("native", 18)
	native.Spec.InitContainers = []corev1.Container{{Name: "istio-proxy", Image: "istio/proxyv2:1", RestartPolicy: &always}}
	got = create(native)
	if lc := got.Spec.InitContainers[0].Lifecycle; lc != nil {
		t.Errorf("native sidecar given a hook: %+v", lc)
	}
	if s, g := sleepOf(&got.Spec.Containers[0]), *got.Spec.TerminationGracePeriodSeconds; s != 9 || g != 19 {
		t.Errorf("native: app sleep %d grace %d, want 9 and 19", s, g)
	}
}

// TestHookAcceptedByValidation creates pods over a range of grace periods and
// explicit sleeps; the API server's validation must accept each result.
func TestHookAcceptedByValidation(t *testing.T) {
	t.Parallel()
	cs, _ := client(t)
	ns := namespace(t, optedIn(), nil)
	cases := []struct {
		grace     int64
		sleep     string
		wantSleep int64
		wantGrace int64
	}{
		{grace: 0, wantSleep: -1, wantGrace: 0}, // immediate kill: left alone
		{grace: 1, wantSleep: 5, wantGrace: 10},
		{grace: 30, wantSleep: 15, wantGrace: 30},
		{grace: 300, wantSleep: 60, wantGrace: 300},
		{grace: 30, sleep: "90s", wantSleep: 90, wantGrace: 95},
		{grace: 30, sleep: "off", wantSleep: -1, wantGrace: 30},
	}
	for i, tc := range cases {
		p := pod("p"+string(rune('a'+i)), tc.grace)
		if tc.sleep != "" {
			p.Annotations = map[string]string{policy.AnnotationPreStopSleep: tc.sleep}
		}
		got, err := cs.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
		if err != nil {
			t.Errorf("grace %d sleep %q: the API server rejected the pod: %v", tc.grace, tc.sleep, err)
			continue
		}
		if s, g := sleepOf(&got.Spec.Containers[0]), *got.Spec.TerminationGracePeriodSeconds; s != tc.wantSleep || g != tc.wantGrace {
			t.Errorf("grace %d sleep %q: got sleep %d grace %d, want %d and %d", tc.grace, tc.sleep, s, g, tc.wantSleep, tc.wantGrace)
		}
	}
}

// TestPrecedence: per-container pod annotation > pod annotation > namespace
// annotation > cluster config (docs/design.md §3).
func TestPrecedence(t *testing.T) {
	t.Parallel()
	cs, _ := client(t)
	ns := namespace(t, optedIn(), map[string]string{
		policy.AnnotationPreStopSleep: "20s",
		policy.AnnotationExecForm:     "off",
		policy.AnnotationExtendGrace:  "false",
	})
	create := func(p *corev1.Pod) *corev1.Pod {
		t.Helper()
		got, err := cs.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	shell := []string{"sh", "-c", "bundle exec puma"}
	execForm := []string{"bundle", "exec", "puma"}
	check := func(p *corev1.Pod, container int, sleep, grace int64, command []string) {
		t.Helper()
		c := &p.Spec.Containers[container]
		if s, g := sleepOf(c), *p.Spec.TerminationGracePeriodSeconds; s != sleep || g != grace || !slices.Equal(c.Command, command) {
			t.Errorf("%s/%s: sleep %d grace %d command %q; want %d, %d, %q", p.Name, c.Name, s, g, c.Command, sleep, grace, command)
		}
	}

	// Namespace defaults over the cluster config.
	check(create(pod("namespace-defaults", 60)), 0, 20, 60, shell)
	// Namespace extend-grace=false: the sleep shrinks to T − budget.
	check(create(pod("no-extend", 8)), 0, 3, 8, shell)

	// Pod annotations over the namespace.
	p := pod("pod-overrides", 30)
	p.Annotations = map[string]string{
		policy.AnnotationPreStopSleep: "30s",
		policy.AnnotationExecForm:     "on",
		policy.AnnotationExtendGrace:  "true",
	}
	check(create(p), 0, 30, 35, execForm)

	// Per-container annotations over the pod's.
	p = pod("container-overrides", 60, shellContainer("web", "bundle exec puma"), shellContainer("worker", "bundle exec puma"))
	p.Annotations = map[string]string{
		policy.AnnotationPreStopSleep:                                    "30s",
		policy.ContainerAnnotation("web", policy.AnnotationPreStopSleep): "12s",
		policy.ContainerAnnotation("web", policy.AnnotationExecForm):     "on",
	}
	got := create(p)
	check(got, 0, 12, 60, execForm)
	check(got, 1, 30, 60, shell)

	// The containers annotation selects.
	p = pod("selected", 60, shellContainer("web", "bundle exec puma"), shellContainer("worker", "bundle exec puma"))
	p.Annotations = map[string]string{policy.AnnotationContainers: "web"}
	got = create(p)
	check(got, 0, 20, 60, shell)
	check(got, 1, -1, 60, shell)
	if st := status(t, got); st.Containers[1].Skipped != policy.SkipNotSelected {
		t.Errorf("worker: status %+v, want skipped %s", st.Containers[1], policy.SkipNotSelected)
	}
}

// TestInvalidAnnotation: an invalid value is a warning and the pod is
// created; in strict mode the same pod is denied with that message.
func TestInvalidAnnotation(t *testing.T) {
	t.Parallel()
	const warning = `podgrace: podgrace.dev/prestop-sleep="abc" is not a duration, "auto" or "off"; using auto`
	invalid := func() *corev1.Pod {
		p := pod("invalid", 30)
		p.Annotations = map[string]string{policy.AnnotationPreStopSleep: "abc"}
		return p
	}
	cs, warned := client(t)

	ns := namespace(t, optedIn(), nil)
	got, err := cs.CoreV1().Pods(ns).Create(t.Context(), invalid(), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s := sleepOf(&got.Spec.Containers[0]); s != 15 {
		t.Errorf("sleep %d, want auto's 15", s)
	}
	if ws := warned.Take(); !slices.Contains(ws, warning) {
		t.Errorf("warnings %q, want %q", ws, warning)
	}

	strictCfg := baseConfig()
	strictCfg.Strict = true
	strict := serve(t, "strict", &strictCfg, 0)
	ns = namespace(t, forInstance("strict"), nil)
	if err := waitForMutation(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	_, err = cs.CoreV1().Pods(ns).Create(t.Context(), invalid(), metav1.CreateOptions{})
	if err == nil {
		t.Fatal("strict mode admitted a pod with an invalid annotation")
	}
	// The denial carries the warning's message, without the fallback: in
	// strict mode nothing falls back.
	denial := strings.TrimSuffix(warning, "; using auto")
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `admission webhook "`+webhook.WebhookName+`" denied the request: `+denial) {
		t.Errorf("denial: %v", err)
	}
	if _, err := cs.CoreV1().Pods(ns).Get(t.Context(), "invalid", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the denied pod exists: %v", err)
	}
	denied := scrape(t, strict.metrics, nil, "podgrace_pods_denied_total")["podgrace_pods_denied_total"]
	if denied < 1 {
		t.Errorf("podgrace_pods_denied_total = %v", denied)
	}
}

// serve starts an instance that selects the namespaces labeled for it.
func serve(t *testing.T, name string, cfg *policy.Config, drain time.Duration) *instance {
	t.Helper()
	return serveWith(t, name, webhook.Options{Config: cfg, CertDir: certDir, DrainDelay: drain})
}

// serveWith is serve with more of the server's options.
func serveWith(t *testing.T, name string, o webhook.Options) *instance {
	t.Helper()
	in, err := startInstanceWith(t.Context(), name, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.stop() })
	register(t, mustWebhook(chart.WebhookOptions{
		Name:                   "podgrace-" + name,
		URL:                    in.url,
		CABundle:               tlsAssets.caPEM,
		ExtraNamespaceSelector: instanceSelector(name),
	}))
	return in
}

func register(t *testing.T, mwc *admissionregistrationv1.MutatingWebhookConfiguration) {
	t.Helper()
	api := admin.AdmissionregistrationV1().MutatingWebhookConfigurations()
	if _, err := api.Create(t.Context(), mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Delete(context.Background(), mwc.Name, metav1.DeleteOptions{}) })
}

// TestDryRun: a dry-run create is mutated the same way and leaves nothing behind.
func TestDryRun(t *testing.T) {
	t.Parallel()
	cs, warned := client(t)
	ns := namespace(t, optedIn(), nil)
	p := pod("web", 4)
	p.Annotations = map[string]string{policy.AnnotationExtendGrace: "maybe"}
	dry, err := cs.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	dryWarnings := warned.Take()
	if _, err := cs.CoreV1().Pods(ns).Get(t.Context(), "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the dry run left a pod behind: %v", err)
	}
	if list, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{}); err != nil || len(list.Items) != 0 {
		t.Fatalf("the dry run left pods behind: %v %d", err, len(list.Items))
	}
	stored, err := cs.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := dry.Annotations[policy.AnnotationStatus]; !ok {
		t.Fatal("the dry run was not mutated")
	}
	if !equality.Semantic.DeepEqual(dry.Spec, stored.Spec) || dry.Annotations[policy.AnnotationStatus] != stored.Annotations[policy.AnnotationStatus] {
		t.Errorf("the dry run was mutated differently:\n   dry %+v\nstored %+v", dry.Spec, stored.Spec)
	}
	if ws := warned.Take(); !slices.Equal(ws, dryWarnings) || len(ws) == 0 {
		t.Errorf("warnings: dry run %q, real %q", dryWarnings, ws)
	}
}

// TestReinvocation: a second webhook, called after podgrace, adds a
// container and a mesh proxy, as a mesh injector does; the API server calls
// podgrace again (reinvocationPolicy IfNeeded), which handles the new
// containers, raises the grace period for the proxy's drain, and leaves the
// app exactly as its first pass made it.
func TestReinvocation(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	late := shellContainer("late", "sleep 3600")
	proxy := corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2:1", Args: []string{"proxy", "sidecar"}}
	adder := patchingWebhook(t, func(p *corev1.Pod) []map[string]any {
		calls.Add(1)
		if slices.ContainsFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == "late" }) {
			return nil
		}
		return []map[string]any{
			{"op": "add", "path": "/spec/containers/-", "value": late},
			{"op": "add", "path": "/spec/containers/-", "value": proxy},
		}
	})
	// Configurations are called in name order: "podgrace" first, then this.
	url := adder.URL
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	never := admissionregistrationv1.NeverReinvocationPolicy
	register(t, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "zz-podgrace-test-adder"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "adder.podgrace-test.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: tlsAssets.caPEM},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			ReinvocationPolicy:      &never,
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{adderLabel: "true"}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
		}},
	})
	labels := optedIn()
	labels[adderLabel] = "true"
	ns := namespace(t, labels, nil)
	cs, _ := client(t)
	// The adder's configuration takes effect a moment after it is created.
	var got *corev1.Pod
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(ns).Create(ctx, pod("web", 16), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		got = p
		return err == nil && len(p.Spec.Containers) == 3, err
	})
	if err != nil {
		t.Fatalf("the adder never ran: %v", err)
	}
	got, err = cs.CoreV1().Pods(ns).Create(t.Context(), pod("web", 16), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// What podgrace alone makes of the same pod: app 8s (0.5 × 16), grace 16.
	alone, err := cs.CoreV1().Pods(namespace(t, optedIn(), nil)).Create(t.Context(), pod("web", 16), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Containers) != 3 || got.Spec.Containers[1].Name != "late" || got.Spec.Containers[2].Name != "istio-proxy" {
		t.Fatalf("containers %v", got.Spec.Containers)
	}
	if g := *alone.Spec.TerminationGracePeriodSeconds; g != 16 || sleepOf(&alone.Spec.Containers[0]) != 8 {
		t.Fatalf("podgrace alone: grace %d, app %+v; want 16 and an 8s sleep", g, alone.Spec.Containers[0].Lifecycle)
	}
	wantApp := alone.Spec.Containers[0]
	if !equality.Semantic.DeepEqual(got.Spec.Containers[0], wantApp) {
		t.Errorf("the first container changed on the second pass:\n got %+v\nwant %+v", got.Spec.Containers[0], wantApp)
	}
	lateGot := got.Spec.Containers[1]
	if s := sleepOf(&lateGot); s != 8 || !slices.Equal(lateGot.Command, []string{"sleep", "3600"}) {
		t.Errorf("the added container was not handled: sleep %d, command %q", s, lateGot.Command)
	}
	// The proxy outlives the app: 8s + the 5s budget; the grace period is
	// raised to 13 + the proxy's 5s drain = 18; its command is the mesh's.
	proxyGot := got.Spec.Containers[2]
	if s := sleepOf(&proxyGot); s != 13 || proxyGot.Command != nil || !slices.Equal(proxyGot.Args, proxy.Args) {
		t.Errorf("the added proxy: sleep %d, command %q args %q; want 13s and its own args", s, proxyGot.Command, proxyGot.Args)
	}
	if g := *got.Spec.TerminationGracePeriodSeconds; g != 18 {
		t.Errorf("grace period %d, want 18", g)
	}
	st := status(t, got)
	if len(st.Containers) != 3 || st.Containers[0].Name != "app" || st.Containers[1].Name != "late" ||
		st.Containers[2].Name != "istio-proxy" || st.Containers[2].Role != string(policy.RoleSidecar) ||
		st.V != inject.StatusVersion || st.GraceBefore != 16 || st.GraceAfter != 18 {
		t.Errorf("status %+v, want app, late, then the sidecar istio-proxy; grace 16 → 18", st)
	}
	if calls.Load() < 2 {
		t.Errorf("the adder was called %d times", calls.Load())
	}
}

// tlsServer serves h over TLS with the suite's serving certificate.
// patchingWebhook serves a mutating webhook, as another injector would: each
// pod gets the JSON patch patchFor returns (none when it returns nil).
func patchingWebhook(t *testing.T, patchFor func(*corev1.Pod) []map[string]any) *httptest.Server {
	t.Helper()
	return tlsServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rev admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&rev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var p corev1.Pod
		if err := json.Unmarshal(rev.Request.Object.Raw, &p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp := &admissionv1.AdmissionResponse{UID: rev.Request.UID, Allowed: true}
		if ops := patchFor(&p); len(ops) > 0 {
			resp.Patch, _ = json.Marshal(ops)
			pt := admissionv1.PatchTypeJSONPatch
			resp.PatchType = &pt
		}
		rev.Request, rev.Response = nil, resp
		_ = json.NewEncoder(w).Encode(&rev)
	}))
}

func tlsServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certDir+"/tls.crt", certDir+"/tls.key")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// TestWebhookTimeout: a podgrace that accepts the connection and never
// answers costs the pod at most timeoutSeconds (5), then the pod is created
// unmutated (failurePolicy Ignore).
func TestWebhookTimeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var called atomic.Int32
	hang := tlsServer(t, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		called.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer close(release)
	register(t, mustWebhook(chart.WebhookOptions{
		Name: "podgrace-hang", URL: hang.URL + webhook.Path, CABundle: tlsAssets.caPEM,
		ExtraNamespaceSelector: instanceSelector("hang"),
	}))
	ns := namespace(t, forInstance("hang"), nil)
	cs, _ := client(t)
	// Until the configuration takes effect creates are fast and the hanging
	// server sees nothing; the first create it sees is the one measured.
	for i := 0; called.Load() == 0; i++ {
		if i == 100 {
			t.Fatal("the hanging webhook was never called")
		}
		start := time.Now()
		got, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod("p"+strconv.Itoa(i), 30), metav1.CreateOptions{})
		took := time.Since(start)
		if err != nil {
			t.Fatalf("the pod was not created with the webhook hanging: %v", err)
		}
		if called.Load() == 0 {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		assertUntouched(t, got)
		if took < 4*time.Second || took > 9*time.Second {
			t.Errorf("create took %v with a hanging webhook; want about timeoutSeconds (5s)", took)
		}
	}
}

// TestDrain: after SIGTERM podgrace turns unready at once, but keeps
// answering admissions (on an open keep-alive connection, on new
// connections, and from the API server) for the drain delay; then its port
// is closed, and with podgrace gone pods are still created (failurePolicy
// Ignore), promptly.
func TestDrain(t *testing.T) {
	t.Parallel()
	const drain = 4 * time.Second
	cfg := baseConfig()
	in := serve(t, "drain", &cfg, drain)
	ns := namespace(t, forInstance("drain"), nil)
	if err := waitForMutation(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	cs, _ := client(t)
	review := reviewBody(t, ns)

	// A keep-alive connection, open before SIGTERM.
	keepAlive := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsAssets.clientTLS(), MaxIdleConnsPerHost: 1}}
	if reused, closing := admitDirect(t, keepAlive, in.url, review); reused || closing {
		t.Fatalf("before the drain: reused %v, Connection: close %v", reused, closing)
	}
	if code, s := probe(in.probes + "/readyz"); code != http.StatusOK {
		t.Fatalf("readyz before the drain: %s", s)
	}

	start := time.Now()
	in.cancel() // SIGTERM
	if err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, time.Second, true, func(context.Context) (bool, error) {
		code, _ := probe(in.probes + "/readyz")
		return code != http.StatusOK, nil
	}); err != nil {
		t.Fatal("readyz still passes after SIGTERM")
	}
	if code, _ := probe(in.probes + "/healthz"); code != http.StatusOK {
		t.Errorf("healthz fails while draining: %d", code)
	}
	reused, closing := admitDirect(t, keepAlive, in.url, review)
	if !reused || !closing {
		t.Errorf("first admission after SIGTERM: reused connection %v, Connection: close %v; want both", reused, closing)
	}
	rounds := 0
	for time.Since(start) < drain-time.Second {
		admitDirect(t, keepAlive, in.url, review)
		fresh := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsAssets.clientTLS()}}
		admitDirect(t, fresh, in.url, review)
		got, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod("during-drain-"+strconv.Itoa(rounds), 30), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := got.Annotations[policy.AnnotationStatus]; !ok {
			t.Fatalf("a pod created %v into the drain was not mutated", time.Since(start).Round(time.Millisecond))
		}
		rounds++
	}
	if rounds < 3 {
		t.Errorf("only %d rounds of admissions during the drain", rounds)
	}

	select {
	case <-in.stopped:
	case <-time.After(drain + 30*time.Second):
		t.Fatal("the server did not stop after the drain")
	}
	if in.err != nil {
		t.Errorf("Start returned %v", in.err)
	}
	if took := time.Since(start); took < drain {
		t.Errorf("stopped after %v, before the %v drain delay", took, drain)
	}
	if c, err := net.DialTimeout("tcp", in.addr, time.Second); err == nil {
		_ = c.Close()
		t.Error("the webhook port is still open after the drain")
	} else if !isConnRefused(err) {
		t.Errorf("dialing the stopped webhook: %v", err)
	}

	// The webhook is gone but still registered: pods are created, unmutated, promptly.
	t0 := time.Now()
	got, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod("after-drain", 30), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("with podgrace stopped the pod was not created: %v", err)
	}
	assertUntouched(t, got)
	if took := time.Since(t0); took > time.Duration(webhook.TimeoutSeconds)*time.Second {
		t.Errorf("create took %v with podgrace stopped", took)
	}
}

// reviewBody is an AdmissionReview for a Pod CREATE in ns, as the API server sends it.
func reviewBody(t *testing.T, ns string) []byte {
	t.Helper()
	p := pod("direct", 30)
	p.Namespace = ns
	obj, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "direct-1",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns,
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: obj},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// admitDirect posts a review straight to podgrace and checks it was mutated;
// it reports whether the connection was reused and whether the server asked
// to close it (Connection: close; Go's client removes that header and sets
// Response.Close).
func admitDirect(t *testing.T, c *http.Client, url string, body []byte) (reused, closing bool) {
	t.Helper()
	ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("admission failed: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	var rev admissionv1.AdmissionReview
	if resp.StatusCode != http.StatusOK || json.Unmarshal(data, &rev) != nil || rev.Response == nil || !rev.Response.Allowed || rev.Response.Patch == nil {
		t.Fatalf("admission: HTTP %d %s", resp.StatusCode, data)
	}
	if resp.ProtoMajor != 1 {
		t.Errorf("served over %s; HTTP/2 must be off", resp.Proto)
	}
	return reused, resp.Close
}

// TestExecHookAction: with hookAction exec the preStop hook is
// `exec: [sleep, S]`, and the API server accepts the pod.
func TestExecHookAction(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.HookAction = policy.HookExec
	in := serve(t, "exec", &cfg, 0)
	if h := in.server.HookAction(); h != policy.HookExec {
		t.Fatalf("hook action %q", h)
	}
	ns := namespace(t, forInstance("exec"), nil)
	if err := waitForMutation(t.Context(), ns); err != nil {
		t.Fatal(err)
	}
	cs, _ := client(t)
	got, err := cs.CoreV1().Pods(ns).Create(t.Context(), pod("web", 4), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("the API server rejected the exec hook: %v", err)
	}
	ps := got.Spec.Containers[0].Lifecycle.PreStop
	if ps.Sleep != nil || ps.Exec == nil || !slices.Equal(ps.Exec.Command, []string{"sleep", "5"}) || *got.Spec.TerminationGracePeriodSeconds != 10 {
		t.Errorf("preStop %+v grace %d; want exec [sleep 5] and 10", ps, *got.Spec.TerminationGracePeriodSeconds)
	}
	if st := status(t, got); st.Containers[0].Hook != "exec" {
		t.Errorf("status %+v", st)
	}
}

// TestTLS: TLS 1.2 at least, HTTP/2 off, the certificate valid for 127.0.0.1.
func TestTLS(t *testing.T) {
	t.Parallel()
	cfg := tlsAssets.clientTLS()
	cfg.MaxVersion = tls.VersionTLS11
	cfg.MinVersion = tls.VersionTLS10
	if c, err := tls.Dial("tcp", mainServer.addr, cfg); err == nil {
		_ = c.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}
	cfg = tlsAssets.clientTLS()
	cfg.NextProtos = []string{"h2", "http/1.1"}
	c, err := tls.Dial("tcp", mainServer.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Close() }()
	if p := c.ConnectionState().NegotiatedProtocol; p == "h2" {
		t.Error("HTTP/2 was negotiated")
	}
}

// TestCertificateRotation: a certificate replaced in the cert dir is served
// without a restart.
func TestCertificateRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := tlsAssets.writeServing(dir, 100); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig()
	in, err := startInstance(t.Context(), "rotation", &cfg, dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.stop() })
	serial := func() int64 {
		c, err := tls.Dial("tcp", in.addr, tlsAssets.clientTLS())
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(); s != 100 {
		t.Fatalf("serving serial %d, want 100", s)
	}
	if err := tlsAssets.writeServing(dir, 101); err != nil {
		t.Fatal(err)
	}
	if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return serial() == 101, nil
	}); err != nil {
		t.Fatal("the rotated certificate was not served")
	}
}
