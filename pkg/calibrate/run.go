package calibrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/podgrace/podgrace/pkg/policy"
)

// Options configure a calibration. Defaults are the CLI's.
type Options struct {
	Namespace string
	Image     string
	Replicas  int
	Trials    int
	Window    time.Duration
	// URL is --url ("" = the probe Service's ClusterIP).
	URL string
	// URLTimeout bounds the wait until URL answers from a probe.
	URLTimeout time.Duration
	// ReadyTimeout bounds each wait for pods to be ready and the path to be
	// settled (every ready probe receiving new connections).
	ReadyTimeout time.Duration
	Workers      int
	Interval     time.Duration
	// Config is the cluster config the recommendation is computed with.
	Config *policy.Config
	// Progress receives a transient status line (Update) and permanent
	// lines (Log); nil is silent.
	Progress Progress
}

// Progress reports what calibrate is doing.
type Progress interface {
	Update(line string)
	Log(line string)
}

type nopProgress struct{}

func (nopProgress) Update(string) {}
func (nopProgress) Log(string)    {}

// MinWindow is the shortest --window: a second of traffic after the
// EndpointSlice update at the very least.
const MinWindow = 5 * time.Second

// Validate checks the options against each other and the cluster config.
func (o *Options) Validate() error {
	if o.Config == nil {
		return errors.New("calibrate: no cluster config")
	}
	var errs []error
	if o.Image == "" {
		errs = append(errs, errors.New("no image: pass --image, or install podgrace so that its Deployment names it"))
	}
	if o.Replicas < 2 {
		errs = append(errs, fmt.Errorf("--replicas %d: at least 2 (one keeps serving while the other terminates)", o.Replicas))
	}
	if o.Trials < 1 {
		errs = append(errs, fmt.Errorf("--trials %d: at least 1", o.Trials))
	}
	if o.Workers < 1 || o.Interval <= 0 {
		errs = append(errs, fmt.Errorf("--workers %d, --interval %s: at least 1 worker and a positive interval", o.Workers, o.Interval))
	}
	budget, maxGrace := o.Config.ShutdownBudget.Duration, o.Config.MaxGracePeriod.Duration
	switch {
	case o.Window < MinWindow:
		errs = append(errs, fmt.Errorf("--window %s: at least %s", o.Window, MinWindow))
	case o.Window > maxGrace-budget:
		// A sleep longer than this never fits: podgrace caps T at
		// maxGracePeriod, so measuring beyond it cannot change the advice.
		errs = append(errs, fmt.Errorf("--window %s is longer than the grace period allows: the longest sleep podgrace can give is maxGracePeriod - shutdownBudget = %s - %s = %s (docs/operate/sizing.md)",
			o.Window, maxGrace, budget, maxGrace-budget))
	}
	if o.URL != "" {
		u, err := url.Parse(o.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("--url %q is not an http(s) URL", o.URL))
		}
	}
	return errors.Join(errs...)
}

// Run deploys the probe and the client in o.Namespace, runs the trials and
// returns the report. Everything it created is removed before it returns,
// also when ctx is canceled (Ctrl-C) or a step fails.
func Run(ctx context.Context, cs kubernetes.Interface, o Options) (rep *Report, err error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if o.Progress == nil {
		o.Progress = nopProgress{}
	}
	r := &runner{cs: cs, o: o, ns: o.Namespace}
	ownNS, err := r.prepareNamespace(ctx)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := r.cleanup(ownNS); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	return r.run(ctx)
}

type runner struct {
	cs  kubernetes.Interface
	o   Options
	ns  string
	url string
}

// prepareNamespace creates the namespace, or accepts an existing one that
// holds nothing but calibrate's own leftovers. It reports whether the
// namespace is calibrate's (and is deleted at the end).
func (r *runner) prepareNamespace(ctx context.Context) (bool, error) {
	m := BuildManifests(&r.o, "")
	ns, err := r.cs.CoreV1().Namespaces().Get(ctx, r.ns, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if _, err := r.cs.CoreV1().Namespaces().Create(ctx, m.Namespace, metav1.CreateOptions{}); err != nil {
			return false, fmt.Errorf("creating namespace %s: %w", r.ns, err)
		}
		r.o.Progress.Log("created namespace " + r.ns)
		return true, nil
	case err != nil:
		return false, fmt.Errorf("namespace %s: %w", r.ns, err)
	}
	if ns.DeletionTimestamp != nil {
		return false, fmt.Errorf("namespace %s is being deleted (a previous run's cleanup?): wait until it is gone", r.ns)
	}
	if ns.Labels[ManagedByLabel] == ManagedBy {
		// Left by an interrupted run: remove it and start afresh.
		r.o.Progress.Log("removing namespace " + r.ns + ", left by an earlier run")
		if err := r.cleanup(true); err != nil {
			return false, err
		}
		if _, err := r.cs.CoreV1().Namespaces().Create(ctx, m.Namespace, metav1.CreateOptions{}); err != nil {
			return false, fmt.Errorf("creating namespace %s: %w", r.ns, err)
		}
		return true, nil
	}
	others, err := r.otherWorkloads(ctx)
	if err != nil {
		return false, err
	}
	if len(others) > 0 {
		return false, fmt.Errorf("namespace %s holds other workloads (%s): calibrate needs a namespace of its own; choose another --namespace",
			r.ns, strings.Join(others, ", "))
	}
	return false, nil
}

// otherWorkloads lists what the namespace holds that calibrate did not create.
func (r *runner) otherWorkloads(ctx context.Context) ([]string, error) {
	var out []string
	add := func(kind string, metas []metav1.ObjectMeta) {
		for _, m := range metas {
			if m.Labels[ManagedByLabel] != ManagedBy {
				out = append(out, kind+"/"+m.Name)
			}
		}
	}
	lo := metav1.ListOptions{Limit: 50}
	pods, err := r.cs.CoreV1().Pods(r.ns).List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("listing pods in %s: %w", r.ns, err)
	}
	add("pod", metas(pods.Items, func(p *corev1.Pod) metav1.ObjectMeta { return p.ObjectMeta }))
	deps, err := r.cs.AppsV1().Deployments(r.ns).List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("listing deployments in %s: %w", r.ns, err)
	}
	add("deployment", metas(deps.Items, func(d *appsv1.Deployment) metav1.ObjectMeta { return d.ObjectMeta }))
	sts, err := r.cs.AppsV1().StatefulSets(r.ns).List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("listing statefulsets in %s: %w", r.ns, err)
	}
	add("statefulset", metas(sts.Items, func(s *appsv1.StatefulSet) metav1.ObjectMeta { return s.ObjectMeta }))
	dss, err := r.cs.AppsV1().DaemonSets(r.ns).List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("listing daemonsets in %s: %w", r.ns, err)
	}
	add("daemonset", metas(dss.Items, func(d *appsv1.DaemonSet) metav1.ObjectMeta { return d.ObjectMeta }))
	svcs, err := r.cs.CoreV1().Services(r.ns).List(ctx, lo)
	if err != nil {
		return nil, fmt.Errorf("listing services in %s: %w", r.ns, err)
	}
	add("service", metas(svcs.Items, func(s *corev1.Service) metav1.ObjectMeta { return s.ObjectMeta }))
	// ReplicaSets are the Deployment's; a foreign one is listed through
	// its pods or its Deployment.
	sort.Strings(out)
	return out, nil
}

func metas[T any](items []T, f func(*T) metav1.ObjectMeta) []metav1.ObjectMeta {
	out := make([]metav1.ObjectMeta, len(items))
	for i := range items {
		out[i] = f(&items[i])
	}
	return out
}

// cleanup removes everything calibrate created, with a context of its own
// (ctx may be canceled already), and waits until it is gone.
func (r *runner) cleanup(ownNS bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r.o.Progress.Update("removing what calibrate created in namespace " + r.ns)
	var errs []error
	bg := metav1.DeletePropagationBackground
	del := metav1.DeleteOptions{PropagationPolicy: &bg}
	now := metav1.DeleteOptions{PropagationPolicy: &bg, GracePeriodSeconds: new(int64(0))}
	sel := metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedBy}
	ignore := func(err error) {
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	ignore(r.cs.AppsV1().Deployments(r.ns).Delete(ctx, ProbeName, del))
	ignore(r.cs.AppsV1().ReplicaSets(r.ns).DeleteCollection(ctx, del, sel))
	ignore(r.cs.CoreV1().Services(r.ns).Delete(ctx, ProbeName, del))
	ignore(r.cs.CoreV1().Pods(r.ns).DeleteCollection(ctx, now, sel))
	if ownNS {
		ignore(r.cs.CoreV1().Namespaces().Delete(ctx, r.ns, del))
	}
	if len(errs) > 0 {
		return fmt.Errorf("removing calibrate's objects in namespace %s (remove them with: kubectl delete namespace %s): %w", r.ns, r.ns, errors.Join(errs...))
	}
	// Wait until the pods are gone (and the namespace, when it is ours).
	err := poll(ctx, time.Second, func() (bool, error) {
		if ownNS {
			_, err := r.cs.CoreV1().Namespaces().Get(ctx, r.ns, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return false, nil
		}
		pods, err := r.cs.CoreV1().Pods(r.ns).List(ctx, sel)
		return err == nil && len(pods.Items) == 0, nil
	})
	if err != nil {
		what := "its pods"
		if ownNS {
			what = "namespace " + r.ns
		}
		return fmt.Errorf("calibrate deleted everything it created, but %s is not gone yet after 2m (check with: kubectl get namespace %s)", what, r.ns)
	}
	r.o.Progress.Log("removed everything calibrate created in namespace " + r.ns)
	return nil
}

func (r *runner) run(ctx context.Context) (*Report, error) {
	m := BuildManifests(&r.o, "")
	svc, err := r.cs.CoreV1().Services(r.ns).Create(ctx, m.Service, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating service: %w", err)
	}
	if _, err := r.cs.AppsV1().Deployments(r.ns).Create(ctx, m.Deployment, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating deployment: %w", err)
	}
	kind := PathClusterIP
	r.url = r.o.URL
	if r.url == "" {
		r.url = "http://" + svc.Spec.ClusterIP + ":80/"
	} else {
		kind = PathURL
	}
	client := BuildManifests(&r.o, r.url).Client
	if _, err := r.cs.CoreV1().Pods(r.ns).Create(ctx, client, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating the client pod: %w", err)
	}
	r.o.Progress.Log(fmt.Sprintf("deployed %d probe replicas of %s behind service %s/%s and the client pod, sending to %s",
		r.o.Replicas, r.o.Image, r.ns, ProbeName, r.url))
	if err := r.waitPodsReady(ctx); err != nil {
		return nil, err
	}
	if kind == PathURL {
		r.o.Progress.Log(fmt.Sprintf("point %s at service %s/%s port 80 (ClusterIP %s); waiting up to %s until it answers from a probe",
			r.url, r.ns, ProbeName, svc.Spec.ClusterIP, r.o.URLTimeout))
		if err := r.waitURL(ctx); err != nil {
			return nil, err
		}
	}
	rep := &Report{
		APIVersion: ReportAPIVersion, Kind: ReportKind,
		Path:          Path{Kind: kind, URL: r.url, Service: r.ns + "/" + ProbeName},
		WindowSeconds: secs(r.o.Window),
	}
	if err := r.settle(ctx); err != nil {
		return nil, err
	}
	for i := range r.o.Trials {
		t, err := r.trial(ctx, i)
		if err != nil {
			return nil, fmt.Errorf("trial %d: %w", i+1, err)
		}
		rep.Trials = append(rep.Trials, t)
		r.o.Progress.Log(t.summary(i+1, r.o.Trials))
	}
	finish(rep, r.o.Config)
	return rep, nil
}

// finish computes the propagation, completeness and the recommendation.
func finish(rep *Report, cfg *policy.Config) {
	var slowest float64
	rep.Complete = true
	for i, t := range rep.Trials {
		if t.LastNewConnectionAfterSigtermSeconds != nil {
			slowest = max(slowest, *t.LastNewConnectionAfterSigtermSeconds)
		}
		if t.ReachedWindowEnd {
			rep.Complete = false
			rep.Incomplete = append(rep.Incomplete, fmt.Sprintf("trial %d: new connections still arrived at the end of the %gs window: the propagation may be longer (rerun with a longer --window)", i+1, rep.WindowSeconds))
		}
		if t.ClientFailures > 0 {
			rep.Complete = false
			rep.Incomplete = append(rep.Incomplete, fmt.Sprintf("trial %d: %d requests failed at the client although the probe served for the whole window: the path routed to the pod after it exited, or lost requests for another reason", i+1, t.ClientFailures))
		}
	}
	rep.PropagationSeconds = slowest
	rep.Recommendation = Recommend(time.Duration(slowest*float64(time.Second)), cfg)
}

func (t *Trial) summary(i, n int) string {
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatFloat(*p, 'f', 1, 64) + "s"
	}
	return fmt.Sprintf("trial %d/%d: pod %s: SIGTERM %.1fs and endpoint not ready %s after the delete; last new connection %s after SIGTERM (%d new connections, %d requests on reused ones); %d of %d requests failed at the client",
		i, n, t.Pod, t.SigtermAfterDeleteSeconds, f(t.EndpointNotReadyAfterDeleteSeconds), f(t.LastNewConnectionAfterSigtermSeconds),
		t.NewConnectionsAfterSigterm, t.RequestsOnReusedConnections, t.ClientFailures, t.ClientRequests)
}

// poll calls f every interval until it returns true or an error, or ctx ends.
func poll(ctx context.Context, interval time.Duration, f func() (bool, error)) error {
	for {
		ok, err := f()
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// withTimeout runs poll under a deadline and names what was awaited.
func withTimeout(ctx context.Context, d time.Duration, what func() string, f func() (bool, error)) error {
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err := poll(cctx, 500*time.Millisecond, f)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s after %s", what(), d)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", ctx.Err())
	}
	return err
}

func (r *runner) probePods(ctx context.Context) ([]corev1.Pod, error) {
	pods, err := r.cs.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: NameLabel + "=" + ProbeName})
	if err != nil {
		return nil, err
	}
	sort.Slice(pods.Items, func(i, j int) bool {
		return pods.Items[i].CreationTimestamp.Before(&pods.Items[j].CreationTimestamp)
	})
	return pods.Items, nil
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// why says why a pod is not ready, from its container states.
func why(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return fmt.Sprintf("%s: %s %s", p.Name, w.Reason, w.Message)
		}
		if t := cs.State.Terminated; t != nil {
			return fmt.Sprintf("%s: terminated (%s, exit %d)", p.Name, t.Reason, t.ExitCode)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue {
			return fmt.Sprintf("%s: not scheduled: %s", p.Name, c.Message)
		}
	}
	return p.Name + ": " + string(p.Status.Phase)
}

// waitPodsReady waits for the probe replicas and the client.
func (r *runner) waitPodsReady(ctx context.Context) error {
	state := "no pods yet"
	return withTimeout(ctx, r.o.ReadyTimeout, func() string { return "the probe and client pods are not ready (" + state + ")" }, func() (bool, error) {
		pods, err := r.cs.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedBy})
		if err != nil {
			return false, err
		}
		n, probes, client := 0, 0, false
		var notReady []string
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp != nil {
				continue
			}
			if !ready(p) {
				notReady = append(notReady, why(p))
				continue
			}
			n++
			switch p.Labels[NameLabel] {
			case ProbeName:
				probes++
			case ClientName:
				client = true
			}
		}
		state = fmt.Sprintf("%d of %d probes ready, client ready %v", probes, r.o.Replicas, client)
		if len(notReady) > 0 {
			state += "; " + strings.Join(notReady, "; ")
		}
		r.o.Progress.Update("waiting for pods: " + state)
		return probes >= r.o.Replicas && client, nil
	})
}

func (r *runner) clientStats(ctx context.Context) (ClientStats, error) {
	var s ClientStats
	raw, err := r.cs.CoreV1().Pods(r.ns).ProxyGet("http", ClientName, strconv.Itoa(AdminPort), "/stats", nil).DoRaw(ctx)
	if err != nil {
		return s, fmt.Errorf("reading the client's stats through pods/proxy: %w", err)
	}
	return s, json.Unmarshal(raw, &s)
}

func (r *runner) records(ctx context.Context, pod string, final bool) (Records, error) {
	var rec Records
	var params map[string]string
	if final {
		params = map[string]string{"final": "true"}
	}
	raw, err := r.cs.CoreV1().Pods(r.ns).ProxyGet("http", pod, strconv.Itoa(AdminPort), "/records", params).DoRaw(ctx)
	if err != nil {
		return rec, fmt.Errorf("reading the records of probe %s through pods/proxy: %w", pod, err)
	}
	return rec, json.Unmarshal(raw, &rec)
}

// waitURL waits until --url answers from a probe.
func (r *runner) waitURL(ctx context.Context) error {
	var last ClientStats
	start, err := r.clientStats(ctx)
	if err != nil {
		return err
	}
	return withTimeout(ctx, r.o.URLTimeout, func() string {
		msg := fmt.Sprintf("--url %s does not reach the probe Service %s/%s: no answer from a probe", r.url, r.ns, ProbeName)
		if last.LastError != "" {
			msg += " (last error at the client: " + last.LastError + ")"
		}
		return msg
	}, func() (bool, error) {
		s, err := r.clientStats(ctx)
		if err != nil {
			return false, err
		}
		last = s
		r.o.Progress.Update(fmt.Sprintf("waiting for %s to answer from a probe: %d requests, %d failed", r.url, s.Requests-start.Requests, s.Failures-start.Failures))
		return s.ProbeAnswers > start.ProbeAnswers, nil
	})
}

// settleWindow: a probe that got no request for this long is not (yet)
// reached by the path.
const settleWindow = 2 * time.Second

// settle waits until exactly Replicas probe pods exist, all ready, none
// terminating, and each has received a request in the last two seconds:
// the path reaches every probe.
func (r *runner) settle(ctx context.Context) error {
	state := ""
	return withTimeout(ctx, r.o.ReadyTimeout, func() string { return "the path did not settle (" + state + ")" }, func() (bool, error) {
		pods, err := r.probePods(ctx)
		if err != nil {
			return false, err
		}
		var waiting []string
		for i := range pods {
			p := &pods[i]
			switch {
			case p.DeletionTimestamp != nil:
				waiting = append(waiting, p.Name+" terminating")
				continue
			case !ready(p):
				waiting = append(waiting, why(p))
				continue
			}
			rec, err := r.records(ctx, p.Name, false)
			if err != nil {
				waiting = append(waiting, err.Error())
				continue
			}
			if rec.LastRequestAgoSeconds < 0 || rec.LastRequestAgoSeconds > settleWindow.Seconds() {
				waiting = append(waiting, p.Name+" not reached by the path yet")
			}
		}
		if len(pods) != r.o.Replicas && len(waiting) == 0 {
			waiting = append(waiting, fmt.Sprintf("%d probe pods, want %d", len(pods), r.o.Replicas))
		}
		state = strings.Join(waiting, "; ")
		r.o.Progress.Update("waiting for the path to settle: " + state)
		return len(waiting) == 0, nil
	})
}

// endpointWatch reports when pod's endpoint stops being ready (or leaves)
// in the probe Service's EndpointSlices.
type endpointWatch struct {
	w    watch.Interface
	seen chan time.Time
}

func (r *runner) watchEndpoint(ctx context.Context, pod string) (*endpointWatch, error) {
	sel := metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + ProbeName}
	list, err := r.cs.DiscoveryV1().EndpointSlices(r.ns).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("listing EndpointSlices: %w", err)
	}
	sel.ResourceVersion = list.ResourceVersion
	w, err := r.cs.DiscoveryV1().EndpointSlices(r.ns).Watch(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("watching EndpointSlices: %w", err)
	}
	ew := &endpointWatch{w: w, seen: make(chan time.Time, 1)}
	known := map[string]*discoveryv1.EndpointSlice{}
	for i := range list.Items {
		known[list.Items[i].Name] = &list.Items[i]
	}
	go func() {
		for ev := range w.ResultChan() {
			s, ok := ev.Object.(*discoveryv1.EndpointSlice)
			if !ok {
				continue
			}
			if ev.Type == watch.Deleted {
				delete(known, s.Name)
			} else {
				known[s.Name] = s
			}
			if !endpointReady(known, pod) {
				ew.seen <- time.Now()
				return
			}
		}
	}()
	return ew, nil
}

// endpointReady: the pod has an endpoint whose ready condition is not false.
func endpointReady(slices map[string]*discoveryv1.EndpointSlice, pod string) bool {
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.TargetRef != nil && e.TargetRef.Name == pod {
				return e.Conditions.Ready == nil || *e.Conditions.Ready
			}
		}
	}
	return false
}

// trial deletes the oldest probe pod and measures.
func (r *runner) trial(ctx context.Context, i int) (Trial, error) {
	pods, err := r.probePods(ctx)
	if err != nil {
		return Trial{}, err
	}
	if len(pods) == 0 {
		return Trial{}, errors.New("no probe pod")
	}
	pod := pods[0].Name
	t := Trial{Pod: pod}
	before, err := r.clientStats(ctx)
	if err != nil {
		return t, err
	}
	ew, err := r.watchEndpoint(ctx, pod)
	if err != nil {
		return t, err
	}
	defer ew.w.Stop()
	if err := r.cs.CoreV1().Pods(r.ns).Delete(ctx, pod, metav1.DeleteOptions{}); err != nil {
		return t, fmt.Errorf("deleting probe %s: %w", pod, err)
	}
	deleted := time.Now()
	prefix := fmt.Sprintf("trial %d/%d: pod %s", i+1, r.o.Trials, pod)

	// The moment termination started, on calibrate's clock: the probe says
	// how long ago it was; the error is half the round trip.
	var sigterm time.Time
	var lastErr error
	errNote := func() string {
		if lastErr != nil {
			return " (last error: " + lastErr.Error() + ")"
		}
		return ""
	}
	err = withTimeout(ctx, r.o.ReadyTimeout, func() string { return "probe " + pod + " did not start terminating" + errNote() }, func() (bool, error) {
		sent := time.Now()
		rec, err := r.records(ctx, pod, false)
		if err != nil {
			return keepTrying(&lastErr, err)
		}
		got := time.Now()
		if rec.Terminating {
			sigterm = sent.Add(got.Sub(sent) / 2).Add(-time.Duration(rec.SinceSeconds * float64(time.Second)))
			return true, nil
		}
		r.o.Progress.Update(prefix + ": deleted, waiting for SIGTERM")
		return false, nil
	})
	if err != nil {
		return t, err
	}
	t.SigtermAfterDeleteSeconds = secs(sigterm.Sub(deleted))
	var final Records
	err = withTimeout(ctx, r.o.Window+collectSlack, func() string { return "the window of probe " + pod + " did not end" + errNote() }, func() (bool, error) {
		rec, err := r.records(ctx, pod, false)
		if err != nil {
			return keepTrying(&lastErr, err)
		}
		var lastNew float64 = -1
		for _, x := range rec.Records {
			if x.New {
				lastNew = max(lastNew, x.AtSeconds)
			}
		}
		status := fmt.Sprintf("%s: %.0fs of the %s window", prefix, rec.SinceSeconds, r.o.Window)
		if lastNew >= 0 {
			status += fmt.Sprintf(", last new connection at %.1fs", lastNew)
		}
		r.o.Progress.Update(status)
		if !rec.WindowDone {
			return false, nil
		}
		// The window is over and the probe's traffic listener closed: these
		// records are complete. Reading them once more with final=true only
		// lets the probe exit before its hold ends, so a failure there (the
		// probe gone between the two reads) costs nothing but the hold.
		final = rec
		if _, err := r.records(ctx, pod, true); err != nil {
			r.o.Progress.Update(prefix + ": window done; " + err.Error() + " (the probe exits at the end of its grace period)")
		}
		return true, nil
	})
	if err != nil {
		return t, err
	}
	select {
	case at := <-ew.seen:
		t.EndpointNotReadyAfterDeleteSeconds = secsPtr(at.Sub(deleted))
	default:
	}
	measure(&t, final.Records, r.o.Window)
	if t.LastNewConnectionAfterSigtermSeconds != nil && t.EndpointNotReadyAfterDeleteSeconds != nil {
		v := *t.LastNewConnectionAfterSigtermSeconds + t.SigtermAfterDeleteSeconds - *t.EndpointNotReadyAfterDeleteSeconds
		t.LastNewConnectionAfterEndpointSliceSeconds = &v
	}
	r.o.Progress.Update(prefix + ": window done, waiting for the replacement and the path")
	if err := r.settle(ctx); err != nil {
		return t, err
	}
	after, err := r.clientStats(ctx)
	if err != nil {
		return t, err
	}
	t.ClientRequests = int(after.Requests - before.Requests)
	t.ClientFailures = int(after.Failures - before.Failures)
	return t, nil
}

// keepTrying notes a transient error (a probe's admin port not reachable
// for a moment) and polls on; the timeout's message names it.
func keepTrying(last *error, err error) (bool, error) {
	*last = err
	return false, nil
}

// measure fills the per-connection counts of a trial from the probe's records.
func measure(t *Trial, recs []Record, window time.Duration) {
	newConns := map[uint64]bool{}
	for _, x := range recs {
		if x.AtSeconds < 0 {
			continue
		}
		if x.New {
			newConns[x.Conn] = true
			t.RequestsOnNewConnections++
			if t.LastNewConnectionAfterSigtermSeconds == nil || x.AtSeconds > *t.LastNewConnectionAfterSigtermSeconds {
				t.LastNewConnectionAfterSigtermSeconds = new(x.AtSeconds)
			}
			continue
		}
		t.RequestsOnReusedConnections++
		if t.LastReusedAfterSigtermSeconds == nil || x.AtSeconds > *t.LastReusedAfterSigtermSeconds {
			t.LastReusedAfterSigtermSeconds = new(x.AtSeconds)
		}
	}
	t.NewConnectionsAfterSigterm = len(newConns)
	if last := t.LastNewConnectionAfterSigtermSeconds; last != nil {
		t.ReachedWindowEnd = *last >= (window - time.Second).Seconds()
	}
}
