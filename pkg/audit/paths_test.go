package audit

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/policy"
)

func findingsOf(fs []PathFinding) []string {
	out := []string{}
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s(%s:%d<%d)", f.Type, f.Container, f.Seconds, f.Needed))
	}
	return out
}

func sleeping(name string, seconds int64) corev1.Container {
	return corev1.Container{Name: name, Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: seconds}}}}
}

// TestCheckPath is the rule engine: S against the measured propagation and
// the health-check bounds, T against the drain windows.
func TestCheckPath(t *testing.T) {
	cfg := policy.Default()
	cfg.Sidecars = []string{"istio-proxy"}
	hc := func(s int64) PathBound {
		return PathBound{Route: "Service/web", Setting: "hc", Seconds: s, Bounds: BoundsSleep}
	}
	drain := func(s int64) PathBound {
		return PathBound{Route: "Service/web", Setting: "drain", Seconds: s, Bounds: BoundsGracePeriod}
	}
	measured := func(s int64) PathOptions { return PathOptions{MinSleep: &MinSleep{Seconds: s, Source: "--min-sleep"}} }
	execHook := corev1.Container{Name: "app", Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"/drain"}}}}}
	execSleep := corev1.Container{Name: "app", Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", "12"}}}}}
	cases := []struct {
		name       string
		grace      *int64
		containers []corev1.Container
		opts       PathOptions
		bounds     []PathBound
		want       []string
	}{
		{name: "nothing given", containers: []corev1.Container{sleeping("app", 15)}, want: []string{}},
		{name: "sleep below the measured propagation", containers: []corev1.Container{sleeping("app", 15)}, opts: measured(20),
			want: []string{"sleep-below-measured(app:15<20)"}},
		{name: "sleep equal to the measured propagation", containers: []corev1.Container{sleeping("app", 20)}, opts: measured(20), want: []string{}},
		{name: "sleep below a health check", containers: []corev1.Container{sleeping("app", 15)}, bounds: []PathBound{hc(30), hc(10)},
			want: []string{"sleep-below-health-check(app:15<30)"}},
		{name: "exec sleep is read", containers: []corev1.Container{execSleep}, bounds: []PathBound{hc(30)},
			want: []string{"sleep-below-health-check(app:12<30)"}},
		{name: "no hook: sleep 0", containers: []corev1.Container{{Name: "app"}}, opts: measured(5),
			want: []string{"sleep-below-measured(app:0<5)"}},
		{name: "a hook that is not a sleep is not judged", containers: []corev1.Container{execHook}, opts: measured(5), bounds: []PathBound{hc(30)}, want: []string{}},
		{name: "listed sidecars are not judged", containers: []corev1.Container{sleeping("app", 30), {Name: "istio-proxy"}}, bounds: []PathBound{hc(30)}, want: []string{}},
		{name: "every app container", containers: []corev1.Container{sleeping("a", 30), sleeping("b", 10)}, bounds: []PathBound{hc(30)},
			want: []string{"sleep-below-health-check(b:10<30)"}},
		{name: "grace below a drain window", grace: ptrTo[int64](30), containers: []corev1.Container{sleeping("app", 15)}, bounds: []PathBound{drain(60), drain(30)},
			want: []string{"grace-below-drain(:30<60)"}},
		{name: "the default grace period (30s)", containers: []corev1.Container{sleeping("app", 15)}, bounds: []PathBound{drain(31)},
			want: []string{"grace-below-drain(:30<31)"}},
		{name: "a drain window does not bound the sleep", grace: ptrTo[int64](300), containers: []corev1.Container{sleeping("app", 15)}, bounds: []PathBound{drain(300)}, want: []string{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{TerminationGracePeriodSeconds: c.grace, Containers: c.containers}}
			got := findingsOf(checkPath(pod, &cfg, c.opts, c.bounds))
			if !slices.Equal(got, c.want) {
				t.Errorf("findings %q, want %q", got, c.want)
			}
		})
	}
}

// TestPathSettings reads the annotations and fields of each load balancer,
// with the controllers' defaults and the Service's ALB annotations winning
// over the Ingress's.
func TestPathSettings(t *testing.T) {
	type bound struct {
		seconds int64
		bounds  string
	}
	cases := []struct {
		name     string
		svc, ing map[string]string // ing nil: the Service alone
		want     []bound
		bad      string
	}{
		{name: "no annotations", svc: map[string]string{}},
		{name: "NLB interval × threshold", svc: map[string]string{annNLBInterval: "10", annNLBUnhealthy: "5"}, want: []bound{{50, BoundsSleep}}},
		{name: "NLB default threshold (3)", svc: map[string]string{annNLBInterval: "20"}, want: []bound{{60, BoundsSleep}}},
		{name: "NLB default interval (10)", svc: map[string]string{annNLBUnhealthy: "2"}, want: []bound{{20, BoundsSleep}}},
		{name: "NLB deregistration delay", svc: map[string]string{annNLBTGAttrs: "deregistration_delay.timeout_seconds=120, stickiness.enabled=true"}, want: []bound{{120, BoundsGracePeriod}}},
		{name: "target-group attributes without the delay", svc: map[string]string{annNLBTGAttrs: "stickiness.enabled=true"}},
		{name: "malformed interval", svc: map[string]string{annNLBInterval: "10s"}, bad: annNLBInterval},
		{name: "malformed delay", svc: map[string]string{annNLBTGAttrs: "deregistration_delay.timeout_seconds=two"}, bad: attrDeregistrationDelay},
		{name: "ALB annotations on a Service alone do nothing", svc: map[string]string{annALBInterval: "30"}},
		{name: "ALB on the Ingress, default threshold (2)", svc: map[string]string{}, ing: map[string]string{annALBInterval: "15"}, want: []bound{{30, BoundsSleep}}},
		{name: "ALB default interval (15)", svc: map[string]string{}, ing: map[string]string{annALBUnhealthy: "4"}, want: []bound{{60, BoundsSleep}}},
		{name: "the Service's ALB annotation wins", svc: map[string]string{annALBInterval: "5"}, ing: map[string]string{annALBInterval: "30", annALBUnhealthy: "3"}, want: []bound{{15, BoundsSleep}}},
		{name: "ALB deregistration delay, the Service's wins", svc: map[string]string{annALBTGAttrs: "deregistration_delay.timeout_seconds=45"},
			ing: map[string]string{annALBTGAttrs: "deregistration_delay.timeout_seconds=300"}, want: []bound{{45, BoundsGracePeriod}}},
		{name: "GKE BackendConfig", svc: map[string]string{annBackendConfig: `{"default":"bc"}`}, want: []bound{{60, BoundsGracePeriod}, {20, BoundsSleep}}},
		{name: "GKE BackendConfig, beta annotation, by port", svc: map[string]string{annBackendConfigBeta: `{"ports":{"80":"bc"}}`}, want: []bound{{60, BoundsGracePeriod}, {20, BoundsSleep}}},
		{name: "GKE BackendConfig absent", svc: map[string]string{annBackendConfig: `{"default":"missing"}`}, bad: "BackendConfig/missing"},
		{name: "GKE annotation malformed", svc: map[string]string{annBackendConfig: `default: bc`}, bad: annBackendConfig},
	}
	backend := func(ns, name string) (map[string]any, error) {
		if ns == "shop" && name == "bc" {
			return map[string]any{"spec": map[string]any{
				"connectionDraining": map[string]any{"drainingTimeoutSec": int64(60)},
				"healthCheck":        map[string]any{"checkIntervalSec": float64(5), "unhealthyThreshold": int64(4)},
			}}, nil
		}
		return nil, fmt.Errorf("not found")
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: c.svc},
				Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}}}
			var ings []*networkingv1.Ingress
			if c.ing != nil {
				ings = append(ings, &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: c.ing},
					Spec: networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: "web"}}}})
			}
			routes, bounds, unchecked := newRouteIndex([]*corev1.Service{svc}, ings, backend).bounds("shop", map[string]string{"app": "web", "x": "y"})
			if want := 1 + len(ings); len(routes) != want {
				t.Errorf("routes %q, want %d", routes, want)
			}
			var got []bound
			for _, b := range bounds {
				got = append(got, bound{b.Seconds, b.Bounds})
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("bounds %+v, want %+v (%+v)", got, c.want, bounds)
			}
			if c.bad == "" && len(unchecked) > 0 || c.bad != "" && (len(unchecked) != 1 || !strings.Contains(unchecked[0], c.bad)) {
				t.Errorf("unchecked %q, want one naming %q", unchecked, c.bad)
			}
		})
	}
}

// TestManifestsPaths audits testdata/paths.yaml: an NLB, an ALB Ingress, a
// GKE BackendConfig, a workload no Service selects and a BackendConfig the
// manifests do not hold.
func TestManifestsPaths(t *testing.T) {
	cfg := policy.Default()
	rep := Manifests(context.Background(), []Source{fixture(t, "paths.yaml")}, ManifestOptions{
		Env: Env{Config: &cfg, HookAction: policy.HookSleep, Path: PathOptions{MinSleep: &MinSleep{Seconds: 20, Source: "--min-sleep"}}},
	})
	if len(rep.Errors) > 0 {
		t.Fatalf("errors %+v", rep.Errors)
	}
	got := byName(rep)
	want := map[string][]string{
		"shop/Deployment/web":    {"sleep-below-measured(app:15<20)", "sleep-below-health-check(app:15<30)", "sleep-below-health-check(app:15<40)"},
		"shop/Deployment/api":    {"sleep-below-health-check(app:45<60)", "grace-below-drain(:90<120)"},
		"shop/Deployment/legacy": {},
	}
	for key, findings := range want {
		w := got[key]
		if w == nil || w.Path == nil {
			t.Fatalf("%s: no path check in %+v", key, w)
		}
		if f := findingsOf(w.Path.Findings); !slices.Equal(f, findings) {
			t.Errorf("%s: findings %q, want %q (bounds %+v)", key, f, findings, w.Path.Bounds)
		}
	}
	if r := got["shop/Deployment/web"].Path.Routes; !slices.Equal(r, []string{"Service/web", "Ingress/shop → Service/web"}) {
		t.Errorf("web routes %q", r)
	}
	if u := got["shop/Deployment/legacy"].Path.Unchecked; len(u) != 1 || !strings.Contains(u[0], "BackendConfig/legacy") {
		t.Errorf("legacy unchecked %q, want its BackendConfig named", u)
	}
	if w := got["shop/Deployment/worker"]; w == nil || w.Path != nil {
		t.Errorf("worker %+v: no Service selects it, no path check", w)
	}
	if rep.Summary.PathFindings != 2 {
		t.Errorf("summary %+v, want 2 workloads with path findings", rep.Summary)
	}
	var out bytes.Buffer
	if err := Print(rep, "", &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "grace-below-drain(pod: 90s<120s)") || !strings.Contains(out.String(), "sleep-below-measured(app: 15s<20s)") {
		t.Errorf("table:\n%s", out.String())
	}

	// Without a measured propagation, only the declared settings.
	rep = Manifests(context.Background(), []Source{fixture(t, "paths.yaml")}, ManifestOptions{Env: Env{Config: &cfg, HookAction: policy.HookSleep}})
	if f := findingsOf(byName(rep)["shop/Deployment/web"].Path.Findings); len(f) != 2 || slices.ContainsFunc(f, func(s string) bool { return strings.HasPrefix(s, PathSleepBelowMeasured) }) {
		t.Errorf("web without --min-sleep: %q", f)
	}
}

// TestReadCalibration reads the sleep to check against from a calibration
// report and refuses other documents.
func TestReadCalibration(t *testing.T) {
	ok := `{"apiVersion":"calibrate.podgrace.dev/v1","kind":"CalibrationReport","propagationSeconds":14.2,"complete":true,"recommendation":{"sleepSeconds":17}}`
	m, err := ReadCalibration([]byte(ok), "cal.json")
	if err != nil || m.Seconds != 17 || !strings.Contains(m.Source, "cal.json") || !strings.Contains(m.Source, "14.2s") {
		t.Errorf("%+v, %v", m, err)
	}
	partial := `{"apiVersion":"calibrate.podgrace.dev/v1","kind":"CalibrationReport","propagationSeconds":29.5,"complete":false,"incomplete":["trial 2: new connections until the window's end"],"recommendation":{"sleepSeconds":33}}`
	if m, err := ReadCalibration([]byte(partial), "cal.json"); err != nil || m.Seconds != 33 || !strings.Contains(m.Source, "incomplete") {
		t.Errorf("incomplete: %+v, %v", m, err)
	}
	for _, bad := range []string{
		`{`,
		`{"apiVersion":"audit.podgrace.dev/v1alpha1","kind":"AuditReport"}`,
		`{"apiVersion":"calibrate.podgrace.dev/v1","kind":"CalibrationReport","recommendation":{"sleepSeconds":0}}`,
	} {
		if _, err := ReadCalibration([]byte(bad), "x.json"); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
