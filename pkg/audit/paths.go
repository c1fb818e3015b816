package audit

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/podgrace/podgrace/pkg/calibrate"
	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// The path check (docs/operate/sizing.md, "What the audit checks"): the
// preStop sleep S and the grace period T of a workload's pods against what
// the traffic path to them needs, from a measured propagation (--min-sleep,
// --calibration) and from the load-balancer settings the Services and
// Ingresses routing to the workload declare. It only warns: it never changes
// what podgrace adds.

// Path finding types.
const (
	// PathSleepBelowMeasured: S is shorter than the measured propagation.
	PathSleepBelowMeasured = "sleep-below-measured"
	// PathSleepBelowHealthCheck: S is shorter than the load balancer's
	// health-check interval × unhealthy threshold.
	PathSleepBelowHealthCheck = "sleep-below-health-check"
	// PathGraceBelowDrain: T is shorter than the load balancer's window for
	// in-flight requests (deregistration delay, connection draining).
	PathGraceBelowDrain = "grace-below-drain"
)

// What a declared setting bounds.
const (
	BoundsSleep       = "sleep"
	BoundsGracePeriod = "gracePeriod"
)

// Annotations and fields the path check reads, with the defaults of the
// controllers that own them (sources in docs/operate/sizing.md).
const (
	// AWS Load Balancer Controller, ALB (on an Ingress, or on its backend
	// Service, which wins).
	annALBInterval  = "alb.ingress.kubernetes.io/healthcheck-interval-seconds"
	annALBUnhealthy = "alb.ingress.kubernetes.io/unhealthy-threshold-count"
	annALBTGAttrs   = "alb.ingress.kubernetes.io/target-group-attributes"
	defALBInterval  = 15
	defALBUnhealthy = 2
	// AWS Load Balancer Controller, NLB (on a Service).
	annNLBInterval  = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval"
	annNLBUnhealthy = "service.beta.kubernetes.io/aws-load-balancer-healthcheck-unhealthy-threshold"
	annNLBTGAttrs   = "service.beta.kubernetes.io/aws-load-balancer-target-group-attributes"
	defNLBInterval  = 10
	defNLBUnhealthy = 3
	// The target-group attribute holding the deregistration delay.
	attrDeregistrationDelay = "deregistration_delay.timeout_seconds"
	// GKE: the Service annotation naming BackendConfigs (and its beta form).
	annBackendConfig     = "cloud.google.com/backend-config"
	annBackendConfigBeta = "beta.cloud.google.com/backend-config"
)

// Path is the path check of one workload: the Services (and Ingresses) that
// route to its pods, the bounds their settings put on S and T, and what falls
// short.
type Path struct {
	// Routes name the Services that select the pods, and the Ingresses
	// through them ("Ingress/web → Service/web").
	Routes []string `json:"routes"`
	// MinSleep is the measured propagation the sleep must cover, if given.
	MinSleep *MinSleep `json:"minSleep,omitempty"`
	// Bounds are the declared load-balancer settings and what they bound.
	Bounds []PathBound `json:"bounds,omitempty"`
	// Findings are the containers whose sleep, or the pod whose grace
	// period, is shorter than a bound.
	Findings []PathFinding `json:"findings"`
	// Unchecked names declared settings the audit could not read (a
	// BackendConfig that is absent or unreadable, a malformed annotation).
	Unchecked []string `json:"unchecked,omitempty"`
}

// MinSleep is a measured propagation.
type MinSleep struct {
	Seconds int64 `json:"seconds"`
	// Source is where it came from: "--min-sleep" or the calibration file.
	Source string `json:"source"`
}

// PathBound is one declared setting of a route.
type PathBound struct {
	Route string `json:"route"`
	// Setting names the annotation(s) or field(s) and how they combine.
	Setting string `json:"setting"`
	Seconds int64  `json:"seconds"`
	// Bounds is "sleep" (new connections arrive until it passes) or
	// "gracePeriod" (a window for in-flight requests).
	Bounds string `json:"bounds"`
}

// PathFinding is a sleep or grace period shorter than a bound.
type PathFinding struct {
	Type      string `json:"type"`
	Container string `json:"container,omitempty"`
	// Seconds is the sleep or grace period the pods get; Needed the bound.
	Seconds int64  `json:"seconds"`
	Needed  int64  `json:"needed"`
	Message string `json:"message"`
}

// PathOptions are the inputs of the path check besides the cluster's own
// settings.
type PathOptions struct {
	// MinSleep is a measured propagation (nil: none given).
	MinSleep *MinSleep
}

// routeIndex finds the routes to a pod template: Services by their
// selector, Ingresses by the Services their backends name, BackendConfigs
// by name.
type routeIndex struct {
	svcs      map[string][]*corev1.Service       // namespace → Services
	ingresses map[string][]*networkingv1.Ingress // namespace → Ingresses
	backend   func(ns, name string) (map[string]any, error)
}

func newRouteIndex(svcs []*corev1.Service, ings []*networkingv1.Ingress, backend func(ns, name string) (map[string]any, error)) *routeIndex {
	ix := &routeIndex{svcs: map[string][]*corev1.Service{}, ingresses: map[string][]*networkingv1.Ingress{}, backend: backend}
	for _, s := range svcs {
		ix.svcs[s.Namespace] = append(ix.svcs[s.Namespace], s)
	}
	for _, i := range ings {
		ix.ingresses[i.Namespace] = append(ix.ingresses[i.Namespace], i)
	}
	return ix
}

// bounds lists the routes to a pod template in ns and the bounds their
// settings declare.
func (ix *routeIndex) bounds(ns string, podLabels map[string]string) (routes []string, bounds []PathBound, unchecked []string) {
	for _, svc := range ix.svcs[ns] {
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(podLabels)) {
			continue
		}
		route := "Service/" + svc.Name
		routes = append(routes, route)
		b, u := serviceBounds(route, svc.Annotations)
		bounds, unchecked = append(bounds, b...), append(unchecked, u...)
		b, u = ix.backendConfigBounds(route, svc)
		bounds, unchecked = append(bounds, b...), append(unchecked, u...)
		for _, ing := range ix.ingresses[ns] {
			if !slices.Contains(ingressServices(ing), svc.Name) {
				continue
			}
			route := "Ingress/" + ing.Name + " → Service/" + svc.Name
			routes = append(routes, route)
			b, u := albBounds(route, ing.Annotations, svc.Annotations)
			bounds, unchecked = append(bounds, b...), append(unchecked, u...)
		}
	}
	return routes, bounds, unchecked
}

// ingressServices names the Services an Ingress's backends route to.
func ingressServices(ing *networkingv1.Ingress) []string {
	var out []string
	add := func(b *networkingv1.IngressBackend) {
		if b != nil && b.Service != nil && !slices.Contains(out, b.Service.Name) {
			out = append(out, b.Service.Name)
		}
	}
	add(ing.Spec.DefaultBackend)
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for i := range r.HTTP.Paths {
			add(&r.HTTP.Paths[i].Backend)
		}
	}
	return out
}

// serviceBounds reads the NLB settings a Service declares.
func serviceBounds(route string, ann map[string]string) ([]PathBound, []string) {
	var out []PathBound
	var bad []string
	if hc, setting, ok, err := healthCheck(ann, nil, annNLBInterval, annNLBUnhealthy, defNLBInterval, defNLBUnhealthy); err != nil {
		bad = append(bad, route+": "+err.Error())
	} else if ok {
		out = append(out, PathBound{Route: route, Setting: setting, Seconds: hc, Bounds: BoundsSleep})
	}
	return delayBound(route, annNLBTGAttrs, ann[annNLBTGAttrs], out, bad)
}

// albBounds reads the ALB settings of an Ingress route: each annotation on
// the backend Service wins over the Ingress's, as the AWS Load Balancer
// Controller merges them.
func albBounds(route string, ingAnn, svcAnn map[string]string) ([]PathBound, []string) {
	var out []PathBound
	var bad []string
	if hc, setting, ok, err := healthCheck(svcAnn, ingAnn, annALBInterval, annALBUnhealthy, defALBInterval, defALBUnhealthy); err != nil {
		bad = append(bad, route+": "+err.Error())
	} else if ok {
		out = append(out, PathBound{Route: route, Setting: setting, Seconds: hc, Bounds: BoundsSleep})
	}
	attrs, ok := svcAnn[annALBTGAttrs]
	if !ok {
		attrs = ingAnn[annALBTGAttrs]
	}
	return delayBound(route, annALBTGAttrs, attrs, out, bad)
}

// delayBound adds the deregistration delay of a target-group-attributes
// annotation (key, value attrs) to out, or its error to bad.
func delayBound(route, key, attrs string, out []PathBound, bad []string) ([]PathBound, []string) {
	if d, ok, err := deregistrationDelay(attrs); err != nil {
		bad = append(bad, route+": "+key+": "+err.Error())
	} else if ok {
		out = append(out, PathBound{Route: route, Setting: key + " " + attrDeregistrationDelay, Seconds: d, Bounds: BoundsGracePeriod})
	}
	return out, bad
}

// healthCheck is interval × unhealthy threshold when at least one of the two
// annotations is declared (the other takes the controller's default). An
// annotation in first wins over one in second.
func healthCheck(first, second map[string]string, intervalKey, unhealthyKey string, defInterval, defUnhealthy int64) (int64, string, bool, error) {
	get := func(key string, def int64) (int64, bool, error) {
		v, ok := first[key]
		if !ok {
			v, ok = second[key]
		}
		if !ok {
			return def, false, nil
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 {
			return 0, true, fmt.Errorf("%s: %q is not a whole number of seconds or checks", key, v)
		}
		return n, true, nil
	}
	interval, setI, err := get(intervalKey, defInterval)
	if err != nil {
		return 0, "", false, err
	}
	unhealthy, setU, err := get(unhealthyKey, defUnhealthy)
	if err != nil {
		return 0, "", false, err
	}
	if !setI && !setU {
		return 0, "", false, nil
	}
	describe := func(key string, n int64, set bool) string {
		if set {
			return fmt.Sprintf("%s=%d", key, n)
		}
		return fmt.Sprintf("%s=%d (default)", key, n)
	}
	return interval * unhealthy, describe(intervalKey, interval, setI) + " × " + describe(unhealthyKey, unhealthy, setU), true, nil
}

// deregistrationDelay reads deregistration_delay.timeout_seconds from a
// target-group-attributes annotation (a stringMap: k1=v1,k2=v2).
func deregistrationDelay(attrs string) (int64, bool, error) {
	if strings.TrimSpace(attrs) == "" {
		return 0, false, nil
	}
	for _, kv := range strings.Split(attrs, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) != attrDeregistrationDelay {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 {
			return 0, false, fmt.Errorf("%s=%q is not a whole number of seconds", attrDeregistrationDelay, strings.TrimSpace(v))
		}
		return n, true, nil
	}
	return 0, false, nil
}

// backendConfigNames reads a Service's backend-config annotation:
// {"default": NAME, "ports": {PORT: NAME}}.
func backendConfigNames(ann map[string]string) (string, []string, error) {
	key := annBackendConfig
	raw, ok := ann[key]
	if !ok {
		key = annBackendConfigBeta
		if raw, ok = ann[key]; !ok {
			return "", nil, nil
		}
	}
	var v struct {
		Default string            `json:"default"`
		Ports   map[string]string `json:"ports"`
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return key, nil, fmt.Errorf("%s: %w", key, err)
	}
	var names []string
	for _, n := range v.Ports {
		if n != "" && n != v.Default && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if v.Default != "" {
		names = append([]string{v.Default}, names...)
	}
	return key, names, nil
}

// backendConfigBounds reads the BackendConfigs a Service names: connection
// draining bounds T, a declared health check (interval × unhealthy
// threshold, both set) bounds S.
func (ix *routeIndex) backendConfigBounds(route string, svc *corev1.Service) ([]PathBound, []string) {
	key, names, err := backendConfigNames(svc.Annotations)
	if err != nil {
		return nil, []string{route + ": " + err.Error()}
	}
	var out []PathBound
	var bad []string
	for _, name := range names {
		where := route + " → BackendConfig/" + name
		if ix.backend == nil {
			bad = append(bad, where+": BackendConfigs are not read here")
			continue
		}
		obj, err := ix.backend(svc.Namespace, name)
		if err != nil {
			bad = append(bad, where+" (named by "+key+"): "+err.Error())
			continue
		}
		spec, _ := obj["spec"].(map[string]any)
		if d, ok := intField(spec, "connectionDraining", "drainingTimeoutSec"); ok {
			out = append(out, PathBound{Route: where, Setting: "spec.connectionDraining.drainingTimeoutSec", Seconds: d, Bounds: BoundsGracePeriod})
		}
		interval, okI := intField(spec, "healthCheck", "checkIntervalSec")
		unhealthy, okU := intField(spec, "healthCheck", "unhealthyThreshold")
		if okI && okU {
			out = append(out, PathBound{Route: where, Setting: fmt.Sprintf("spec.healthCheck.checkIntervalSec=%d × spec.healthCheck.unhealthyThreshold=%d", interval, unhealthy),
				Seconds: interval * unhealthy, Bounds: BoundsSleep})
		}
	}
	return out, bad
}

// intField reads a whole number at a path of an unstructured object.
func intField(m map[string]any, path ...string) (int64, bool) {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return 0, false
		}
		cur = mm[p]
	}
	switch v := cur.(type) {
	case int64:
		return v, true
	case int:
		return int64(v), true
	case float64:
		if v == float64(int64(v)) {
			return int64(v), true
		}
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	}
	return 0, false
}

// effectivePod is the pod as it runs when created now: podgrace's result
// when the webhook serves the workload, the template as stored otherwise.
func effectivePod(tmpl *corev1.Pod, out outcome, served Served) *corev1.Pod {
	if (served == ServedYes || served == ServedAssumed) && out.after != nil {
		return out.after
	}
	return tmpl
}

// checkPath is the rule engine: the sleep of every app container against
// the measured propagation and each bound on S, the grace period against
// each bound on T. Listed sidecars and native sidecars are not judged (their
// shutdown belongs to the mesh), nor a preStop hook that is not a sleep (its
// length is unknown).
func checkPath(pod *corev1.Pod, cfg *policy.Config, opts PathOptions, bounds []PathBound) []PathFinding {
	out := []PathFinding{}
	grace := inject.DefaultGracePeriod
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if cfg.IsSidecar(c.Name) {
			continue
		}
		sleep, hasHook := preStopSleep(c)
		if hasHook && sleep == 0 {
			continue
		}
		if m := opts.MinSleep; m != nil && sleep < m.Seconds {
			out = append(out, PathFinding{Type: PathSleepBelowMeasured, Container: c.Name, Seconds: sleep, Needed: m.Seconds,
				Message: fmt.Sprintf("%s: preStop sleep %ds < measured propagation %ds (%s): new connections still arrive after SIGTERM", c.Name, sleep, m.Seconds, m.Source)})
		}
		for _, b := range bounds {
			if b.Bounds == BoundsSleep && sleep < b.Seconds {
				out = append(out, PathFinding{Type: PathSleepBelowHealthCheck, Container: c.Name, Seconds: sleep, Needed: b.Seconds,
					Message: fmt.Sprintf("%s: preStop sleep %ds < %ds (%s, %s): the load balancer sends new requests until its health checks fail", c.Name, sleep, b.Seconds, b.Route, b.Setting)})
			}
		}
	}
	for _, b := range bounds {
		if b.Bounds == BoundsGracePeriod && grace < b.Seconds {
			out = append(out, PathFinding{Type: PathGraceBelowDrain, Seconds: grace, Needed: b.Seconds,
				Message: fmt.Sprintf("grace period %ds < %ds (%s, %s): the load balancer lets in-flight requests run that long, SIGKILL ends them first", grace, b.Seconds, b.Route, b.Setting)})
		}
	}
	return out
}

// path is the path check of a workload whose pods, created now, run as pod.
// nil when no Service selects them.
func (ix *routeIndex) path(ns string, tmpl, pod *corev1.Pod, cfg *policy.Config, opts PathOptions) *Path {
	routes, bounds, unchecked := ix.bounds(ns, tmpl.Labels)
	if len(routes) == 0 {
		return nil
	}
	return &Path{Routes: routes, MinSleep: opts.MinSleep, Bounds: bounds, Unchecked: unchecked, Findings: checkPath(pod, cfg, opts, bounds)}
}

// compactPath is the table's short form of the path findings:
// type(container: have<needs).
func compactPath(w *Workload) []string {
	if w.Path == nil {
		return nil
	}
	var out []string
	for _, f := range w.Path.Findings {
		who := f.Container
		if who == "" {
			who = "pod"
		}
		s := fmt.Sprintf("%s(%s: %ds<%ds)", f.Type, who, f.Seconds, f.Needed)
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// ReadCalibration reads a calibration report: the sleep every routed
// workload needs is its recommendation (the measured propagation plus the
// margin). name is the file's name, for the report.
func ReadCalibration(data []byte, name string) (*MinSleep, error) {
	c, err := calibrate.ReadReport(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (podgrace calibrate -o json)", name, err)
	}
	if c.Recommendation.SleepSeconds <= 0 {
		return nil, fmt.Errorf("%s: recommendation.sleepSeconds is %d: no recommendation to check against", name, c.Recommendation.SleepSeconds)
	}
	src := fmt.Sprintf("recommended by %s, measured %.1fs", name, c.PropagationSeconds)
	if !c.Complete {
		src += ", incomplete: " + strings.Join(c.Incomplete, "; ")
	}
	return &MinSleep{Seconds: c.Recommendation.SleepSeconds, Source: src}, nil
}
