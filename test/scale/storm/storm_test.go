//go:build scale

package storm

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/internal/freeport"
	"github.com/podgrace/podgrace/internal/testcert"
	"github.com/podgrace/podgrace/internal/testkube"
	"github.com/podgrace/podgrace/pkg/policy"
)

const (
	// stormPods pods are created by stormClients concurrent clients.
	stormPods    = 5000
	stormClients = 50
	// warmPods are created through each arm before the storms, unmeasured.
	warmPods = 500
	// armLabel says which webhook serves an arm's namespace.
	armLabel = "storm.podgrace.dev/webhook"
	// The replicas' caps (--max-connections, --max-in-flight), set
	// explicitly and sized above the storm: 50 requests at once, spread
	// over two replicas. The chart's defaults are 1024 and 256.
	maxConnections = 200
	maxInFlight    = 100
	// drainDelay is the chart's shutdown.drainDelaySeconds.
	drainDelay = 5 * time.Second
	// webhookTimeout is the chart's webhook.timeoutSeconds.
	webhookTimeout = 5 * time.Second
	// noopWebhook names the no-op's webhook, so the API server's metrics
	// tell it from podgrace's (pods.podgrace.dev); the rest of its
	// registration is the chart's.
	noopWebhook = "noop.pods.podgrace.dev"
	// stormNode is the node the replicas' Pod objects are bound to; no
	// kubelet runs it (the test does the kubelet's part).
	stormNode = "storm-node"
)

// arm is one storm: pods created in a fresh namespace served by webhook
// (none when empty).
type arm struct {
	name    string
	webhook string // the webhook's name in the API server's metrics
	mutated bool   // every pod must carry podgrace's mutation
	evict   bool   // a replica is evicted during the storm
}

// result is what one storm measured.
type result struct {
	arm
	wall      time.Duration
	lat       []time.Duration // per pod, client side
	errs      []error
	unmutated int
	// unmutatedAt is when each unmutated pod's create started and ended,
	// from the storm's start.
	unmutatedAt []string
	cpu         time.Duration // the arm's webhook processes, over the storm
	admissions  float64       // the API server's calls of the webhook
	failOpen    float64       // apiserver_admission_webhook_fail_open_count
	rejected    float64       // apiserver_admission_webhook_rejection_count
	non200      float64       // apiserver_admission_webhook_request_total{code!=200}
	afterExit   int           // pods created after the evicted replica exited
	evicted     string        // what the eviction did, for the log
	detail      []string      // failed calls by code, slow calls, for the log
	// served is each podgrace replica's admissions (its
	// controller_runtime_webhook_requests_total), -1 when it exited.
	served []float64
}

func (r *result) quantile(p float64) time.Duration {
	xs := slices.Clone(r.lat)
	slices.Sort(xs)
	return xs[min(len(xs)-1, int(p*float64(len(xs))))]
}

func (r *result) throughput() float64 { return float64(len(r.lat)) / r.wall.Seconds() }

// TestStorm creates 5,000 pods from 50 concurrent clients as fast as the
// API server takes them, in four arms in one run: no webhook; a no-op
// mutating webhook (test/bench/floorserver, answering allowed with no
// patch) registered as the chart registers podgrace; podgrace, two
// replicas of the real binary behind the chart's Service (one
// EndpointSlice per replica: both listen on this machine's address, on
// different ports); and podgrace again while one replica is evicted
// through the Eviction API halfway through (the test does the endpoint
// controller's and the kubelet's part: the endpoint turns terminating, the
// process gets SIGTERM and drains for the chart's drain delay, its Pod
// object is removed when it exits). It asserts from the API server's own
// metrics that no call of either webhook failed open, was rejected or
// answered other than 200, that every pod was created, and that every pod
// of the podgrace arms carries podgrace's mutation; it reports throughput,
// the latency each webhook adds, and the webhook's CPU per admission.
func TestStorm(t *testing.T) {
	ctx := t.Context()
	ns := chart.DefaultRelease.Namespace
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ip, err := testkube.HostIP()
	if err != nil {
		t.Fatal(err)
	}

	// The chart's registration, Service and PDB; the no-op's registration
	// is the chart's too, for its own Service.
	dir, err := chart.Dir()
	if err != nil {
		t.Fatal(err)
	}
	pg, err := chart.ServedWebhook(dir, chart.WebhookOptions{Name: "podgrace",
		ExtraNamespaceSelector: []metav1.LabelSelectorRequirement{{Key: armLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"podgrace"}}}})
	if err != nil {
		t.Fatal(err)
	}
	noop, err := chart.ServedWebhook(dir, chart.WebhookOptions{Name: "podgrace-noop",
		ExtraNamespaceSelector: []metav1.LabelSelectorRequirement{{Key: armLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"noop"}}}})
	if err != nil {
		t.Fatal(err)
	}
	noop.Webhook.Webhooks[0].Name = noopWebhook
	certDir := workDir
	caPEM, err := testcert.Write(certDir, pg.Service.Name+"."+ns+".svc", noop.Service.Name+"."+ns+".svc")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*chart.Served{pg, noop} {
		s.Webhook.Webhooks[0].ClientConfig.CABundle = caPEM
		if _, err := kube.CoreV1().Services(ns).Create(ctx, s.Service, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// Two podgrace replicas and the no-op, each listening on all addresses.
	ports, err := freeport.Take(7)
	if err != nil {
		t.Fatal(err)
	}
	var replicas []*proc
	for i := range 2 {
		p := ports[3*i:]
		r := startProc(t, fmt.Sprintf("podgrace-%d", i), bins["podgrace"], "webhook",
			"--cert-dir", certDir, "--port", strconv.Itoa(p[0]), "--kubeconfig", kubeconfig, "--namespace", ns,
			"--metrics-bind-address", "127.0.0.1:"+strconv.Itoa(p[1]), "--health-probe-bind-address", "127.0.0.1:"+strconv.Itoa(p[2]),
			"--drain-delay", drainDelay.String(), "--webhook-timeout", webhookTimeout.String(),
			"--max-connections", strconv.Itoa(maxConnections), "--max-in-flight", strconv.Itoa(maxInFlight))
		r.port, r.metric, r.health = p[0], p[1], p[2]
		replicas = append(replicas, r)
	}
	floor := startProc(t, "noop", bins["floorserver"], "-cert-dir", certDir, "-host", "0.0.0.0", "-port", strconv.Itoa(ports[6]))
	floor.port = ports[6]
	for _, p := range append(slices.Clone(replicas), floor) {
		if err := p.waitReady(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// What the endpoint controller would publish: one EndpointSlice per
	// replica (same address, different ports), one for the no-op.
	for i, r := range replicas {
		publish(ctx, t, ns, pg.Service.Name, fmt.Sprintf("podgrace-%d", i), ip, r.port, endpointReady)
	}
	publish(ctx, t, ns, noop.Service.Name, "noop", ip, floor.port, endpointReady)
	// The replicas' Pod objects and the chart's PDB over them, with the
	// status the disruption controller would compute.
	for i := range replicas {
		replicaPod(ctx, t, ns, fmt.Sprintf("podgrace-%d", i), pg.PDB.Spec.Selector.MatchLabels)
	}
	if _, err := kube.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pg.PDB, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pdbStatus(ctx, t, ns, pg.PDB.Name, len(replicas))

	for _, s := range []*chart.Served{pg, noop} {
		if _, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, s.Webhook, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), s.Webhook.Name, metav1.DeleteOptions{})
		})
	}

	pod := typicalPod(t)
	arms := []arm{
		{name: "none"},
		{name: "noop", webhook: noopWebhook},
		{name: "podgrace", webhook: pg.Webhook.Webhooks[0].Name, mutated: true},
		{name: "podgrace-evict", webhook: pg.Webhook.Webhooks[0].Name, mutated: true, evict: true},
	}
	// The API server picks the registrations up through an informer:
	// wait until a dry run in each arm's namespace calls its webhook.
	namespaces := map[string]string{}
	for _, a := range arms {
		namespaces[a.name] = armNamespace(ctx, t, a)
		if a.webhook == "" {
			continue
		}
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			before := apiMetrics(ctx, t, a.webhook)["apiserver_admission_webhook_admission_duration_seconds"]
			probe := pod.DeepCopy()
			probe.Name = "probe"
			p, err := kube.CoreV1().Pods(namespaces[a.name]).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				return false, err
			}
			called := apiMetrics(ctx, t, a.webhook)["apiserver_admission_webhook_admission_duration_seconds"] > before
			return called && (!a.mutated || isMutated(p)), nil
		})
		if err != nil {
			t.Fatalf("%s: the API server does not call %s: %v", a.name, a.webhook, err)
		}
	}

	// Warm every path (connections, caches), unmeasured.
	for _, a := range arms[:3] {
		warm := armNamespace(ctx, t, a)
		r := storm(ctx, t, warm, pod, warmPods, a, nil, nil)
		if len(r.errs) > 0 {
			t.Fatalf("warm-up %s: %d errors, first: %v", a.name, len(r.errs), r.errs[0])
		}
		deletePods(ctx, t, warm, warmPods)
	}

	var results []*result
	for _, a := range arms {
		procs := map[string][]*proc{"noop": {floor}, "podgrace": replicas, "podgrace-evict": replicas}[a.name]
		var ev *evictor
		if a.evict {
			ev = &evictor{ns: ns, pods: []string{"podgrace-0", "podgrace-1"}, replica: replicas[0],
				service: pg.Service.Name, slice: "podgrace-0", ip: ip}
		}
		r := storm(ctx, t, namespaces[a.name], pod, stormPods, a, procs, ev)
		t.Logf("%s: %d pods in %v, %d errors", a.name, stormPods, r.wall.Round(time.Millisecond), len(r.errs))
		results = append(results, r)
		checkStored(ctx, t, namespaces[a.name], a)
		deletePods(ctx, t, namespaces[a.name], stormPods)
	}
	report(t, results)
}

// report logs the results as a table and checks what must hold.
func report(t *testing.T, results []*result) {
	t.Helper()
	none := results[0]
	var b strings.Builder
	fmt.Fprintf(&b, "storm: %d pods, %d clients per arm, kube-apiserver %s\n", stormPods, stormClients, serverVersion())
	fmt.Fprintf(&b, "%-15s %8s %8s %8s %8s %9s %9s %9s %9s %10s %9s %8s %7s\n",
		"arm", "pods/s", "p50 ms", "p90 ms", "max ms", "+p50 ms", "+p90 ms", "+max ms", "admits", "cpu µs/adm", "fail-open", "rejected", "non-200")
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	cpuPer := map[string]float64{}
	for _, r := range results {
		if r.admissions > 0 {
			cpuPer[r.name] = float64(r.cpu) / float64(time.Microsecond) / r.admissions
		}
		fmt.Fprintf(&b, "%-15s %8.0f %8.1f %8.1f %8.0f %+9.1f %+9.1f %+9.0f %9.0f %10.0f %9.0f %8.0f %7.0f\n",
			r.name, r.throughput(), ms(r.quantile(0.5)), ms(r.quantile(0.9)), ms(r.quantile(1)),
			ms(r.quantile(0.5)-none.quantile(0.5)), ms(r.quantile(0.9)-none.quantile(0.9)), ms(r.quantile(1)-none.quantile(1)),
			r.admissions, cpuPer[r.name], r.failOpen, r.rejected, r.non200)
	}
	for _, r := range results {
		if len(r.served) > 0 && r.name != "noop" {
			fmt.Fprintf(&b, "%s: admissions per replica %v (-1: exited, not read)\n", r.name, r.served)
		}
		if r.evicted != "" {
			fmt.Fprintf(&b, "%s: %s; %d pods created after the replica exited\n", r.name, r.evicted, r.afterExit)
		}
		if len(r.detail) > 0 {
			fmt.Fprintf(&b, "%s: webhook calls %s\n", r.name, strings.Join(r.detail, ", "))
		}
	}
	if cpuPer["noop"] > 0 {
		fmt.Fprintf(&b, "podgrace/no-op: throughput %.2f×, added p50 %.2f×, added p90 %.2f×, CPU per admission %.2f×\n",
			results[2].throughput()/results[1].throughput(),
			float64(results[2].quantile(0.5)-none.quantile(0.5))/float64(results[1].quantile(0.5)-none.quantile(0.5)),
			float64(results[2].quantile(0.9)-none.quantile(0.9))/float64(results[1].quantile(0.9)-none.quantile(0.9)),
			cpuPer["podgrace"]/cpuPer["noop"])
	}
	t.Log("\n" + b.String())

	for _, r := range results {
		if len(r.errs) > 0 {
			t.Errorf("%s: %d of %d creates failed, first: %v", r.name, len(r.errs), stormPods, r.errs[0])
		}
		if r.unmutated > 0 {
			t.Errorf("%s: %d pods created without podgrace's mutation: %s", r.name, r.unmutated, strings.Join(r.unmutatedAt, ", "))
		}
		if r.failOpen != 0 || r.rejected != 0 || r.non200 != 0 {
			t.Errorf("%s: apiserver_admission_webhook_fail_open_count +%v, _rejection_count +%v, _request_total{code!=200} +%v: want 0",
				r.name, r.failOpen, r.rejected, r.non200)
		}
		if want := map[bool]float64{true: stormPods, false: 0}[r.webhook != ""]; r.admissions != want {
			t.Errorf("%s: the API server called the webhook %v times for %d pods, want %v", r.name, r.admissions, stormPods, want)
		}
		if r.name == "podgrace" && (len(r.served) != 2 || r.served[0] <= 0 || r.served[1] <= 0) {
			t.Errorf("%s: admissions per replica %v: the Service did not spread the storm over both", r.name, r.served)
		}
		if r.evict && r.afterExit == 0 {
			t.Errorf("%s: the storm ended before the evicted replica exited: nothing shows the Service serving without it", r.name)
		}
	}
}

// storm creates n pods named s-00000… in ns from stormClients concurrent
// clients and measures them; procs are the webhook processes whose CPU is
// charged to the arm. With ev, the eviction starts once n/3 pods are done.
func storm(ctx context.Context, t *testing.T, ns string, pod *corev1.Pod, n int, a arm, procs []*proc, ev *evictor) *result {
	t.Helper()
	r := &result{arm: a, lat: make([]time.Duration, n)}
	names := []string{}
	if a.webhook != "" {
		names = append(names, a.webhook)
	}
	before := apiMetrics(ctx, t, names...)
	cpu0 := cpuOf(t, procs)
	served0 := servedBy(ctx, procs)

	var (
		next, done atomic.Int64
		mu         sync.Mutex
		wg, evWG   sync.WaitGroup
		exited     = make(chan time.Time, 1)
		starts     = make([]time.Time, n)
	)
	start := time.Now()
	for range stormClients {
		cfg := rest.CopyConfig(restConfig)
		cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit
		cs := kubernetes.NewForConfigOrDie(cfg)
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				p := pod.DeepCopy()
				p.Name = fmt.Sprintf("s-%05d", i)
				starts[i] = time.Now()
				got, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
				r.lat[i] = time.Since(starts[i])
				mu.Lock()
				if err != nil {
					r.errs = append(r.errs, fmt.Errorf("%s: %w", p.Name, err))
				} else if a.mutated && !isMutated(got) {
					r.unmutated++
					r.unmutatedAt = append(r.unmutatedAt, fmt.Sprintf("%s %.2f–%.2fs", p.Name,
						starts[i].Sub(start).Seconds(), (starts[i].Sub(start)+r.lat[i]).Seconds()))
				}
				mu.Unlock()
				if ev != nil && int(done.Add(1)) == n/3 {
					evWG.Go(func() { ev.run(ctx, t, start, exited) })
				}
			}
		})
	}
	wg.Wait()
	r.wall = time.Since(start)
	evWG.Wait()
	if ev != nil {
		r.evicted = ev.summary
		select {
		case at := <-exited:
			for _, s := range starts {
				if s.After(at) {
					r.afterExit++
				}
			}
		default:
		}
	}
	cpu1 := cpuOf(t, procs)
	r.cpu = cpu1 - cpu0
	for i, n := range servedBy(ctx, procs) {
		if n < 0 || served0[i] < 0 {
			r.served = append(r.served, -1)
		} else {
			r.served = append(r.served, n-served0[i])
		}
	}
	after := apiMetrics(ctx, t, names...)
	r.admissions = after["apiserver_admission_webhook_admission_duration_seconds"] - before["apiserver_admission_webhook_admission_duration_seconds"]
	r.failOpen = after["apiserver_admission_webhook_fail_open_count"] - before["apiserver_admission_webhook_fail_open_count"]
	r.rejected = after["apiserver_admission_webhook_rejection_count"] - before["apiserver_admission_webhook_rejection_count"]
	r.non200 = after["non200"] - before["non200"]
	// What the failures were, for the log: calls answered other than 200
	// by the API server's code label, and calls by duration bucket.
	for _, k := range slices.Sorted(maps.Keys(after)) {
		d := after[k] - before[k]
		switch {
		case d == 0 || k == requestTotal+"{code=200}":
		case strings.HasPrefix(k, requestTotal+"{code="):
			r.detail = append(r.detail, fmt.Sprintf("%s: %v", strings.TrimPrefix(k, requestTotal), d))
		case strings.HasPrefix(k, "apiserver_admission_webhook_admission_duration_seconds>"):
			r.detail = append(r.detail, fmt.Sprintf("%s: %v", strings.TrimPrefix(k, "apiserver_admission_webhook_admission_duration_seconds"), d))
		}
	}
	return r
}

// cpuOf sums the CPU time of procs.
func cpuOf(t *testing.T, procs []*proc) time.Duration {
	t.Helper()
	var sum time.Duration
	for _, p := range procs {
		c, err := p.cpuTime()
		if err != nil {
			t.Fatal(err)
		}
		sum += c
	}
	return sum
}

// servedBy reads how many admissions each podgrace process has answered
// (-1 when it cannot tell: the floor server, or a process that exited).
func servedBy(ctx context.Context, procs []*proc) []float64 {
	out := make([]float64, len(procs))
	for i, p := range procs {
		out[i] = -1
		if p.metric == 0 {
			continue
		}
		body, err := p.scrape(ctx)
		if err != nil {
			continue
		}
		c, err := counters(body, func(l map[string]string) bool { return l["webhook"] == "/mutate-v1-pod" && l["code"] == "200" }, "",
			"controller_runtime_webhook_requests_total")
		if err == nil {
			out[i] = c["controller_runtime_webhook_requests_total"]
		}
	}
	return out
}

// apiMetrics reads the API server's admission webhook counters for the
// webhooks named (every webhook when none is named: the no-webhook arm
// must not have called any), from its own /metrics.
func apiMetrics(ctx context.Context, t *testing.T, webhooks ...string) map[string]float64 {
	t.Helper()
	body, err := kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ours := func(l map[string]string) bool { return len(webhooks) == 0 || slices.Contains(webhooks, l["name"]) }
	out, err := counters(body, func(l map[string]string) bool { return ours(l) && l["type"] == "admit" }, "",
		"apiserver_admission_webhook_admission_duration_seconds",
		"apiserver_admission_webhook_fail_open_count",
		"apiserver_admission_webhook_rejection_count")
	if err != nil {
		t.Fatal(err)
	}
	requests, err := counters(body, ours, "code", requestTotal)
	if err != nil {
		t.Fatal(err)
	}
	maps.Copy(out, requests)
	out["non200"] = requests[requestTotal] - requests[requestTotal+"{code=200}"]
	return out
}

// requestTotal counts the API server's webhook calls, labeled by the HTTP
// code of the answer (0: none, a timeout or a connection error).
const requestTotal = "apiserver_admission_webhook_request_total"

// evictor evicts replica pods[0] through the Eviction API and then does
// what the endpoint controller and the kubelet would.
type evictor struct {
	ns, service, slice, ip string
	pods                   []string
	replica                *proc
	summary                string
}

func (e *evictor) run(ctx context.Context, t *testing.T, stormStart time.Time, exited chan<- time.Time) {
	since := func() string { return fmt.Sprintf("%.1fs", time.Since(stormStart).Seconds()) }
	var steps []string
	fail := func(format string, args ...any) {
		t.Errorf("evicting %s: "+format, append([]any{e.pods[0]}, args...)...)
	}
	policyV1 := kube.PolicyV1()
	err := policyV1.Evictions(e.ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: e.pods[0], Namespace: e.ns}})
	if err != nil {
		fail("the Eviction API refused: %v", err)
		return
	}
	steps = append(steps, "evicted at "+since())
	p, err := kube.CoreV1().Pods(e.ns).Get(ctx, e.pods[0], metav1.GetOptions{})
	if err != nil || p.DeletionTimestamp == nil {
		fail("the evicted pod is not terminating (%v)", err)
		return
	}
	// The endpoint controller: the endpoint of a terminating pod is not
	// ready, still serving, terminating.
	publish(ctx, t, e.ns, e.service, e.slice, e.ip, e.replica.port, endpointTerminating)
	// The kubelet: SIGTERM; podgrace drains for its drain delay.
	if err := e.replica.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		fail("SIGTERM: %v", err)
		return
	}
	steps = append(steps, "endpoint terminating and SIGTERM at "+since())
	// The PDB now holds the last replica.
	err = policyV1.Evictions(e.ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: e.pods[1], Namespace: e.ns}})
	if !apierrors.IsTooManyRequests(err) {
		fail("evicting the other replica too: %v, want 429 Too Many Requests (the PodDisruptionBudget)", err)
	} else {
		steps = append(steps, "the other replica's eviction refused (429)")
	}
	select {
	case <-e.replica.done:
	case <-time.After(drainDelay + 30*time.Second):
		fail("the replica did not exit within %v of SIGTERM", drainDelay+30*time.Second)
		return
	}
	exited <- e.replica.exited
	steps = append(steps, fmt.Sprintf("exited at %.1fs (%v)", e.replica.exited.Sub(stormStart).Seconds(), e.replica.err))
	// The kubelet removes the pod once its containers are gone; the
	// endpoint controller drops the endpoint.
	if err := kube.CoreV1().Pods(e.ns).Delete(ctx, e.pods[0], metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))}); err != nil {
		fail("%v", err)
	}
	publish(ctx, t, e.ns, e.service, e.slice, e.ip, e.replica.port, nil)
	e.summary = strings.Join(steps, ", ")
}

// Endpoint conditions the test publishes.
var (
	endpointReady       = &discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)}
	endpointTerminating = &discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
)

// publish creates or updates the EndpointSlice name of service: one
// endpoint at ip:port with conditions, none when conditions is nil.
func publish(ctx context.Context, t *testing.T, ns, service, name, ip string, port int, conditions *discoveryv1.EndpointConditions) {
	t.Helper()
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name: service + "-" + name, Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "podgrace-storm"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if conditions != nil {
		slice.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: *conditions, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: name}}}
	}
	client := kube.DiscoveryV1().EndpointSlices(ns)
	cur, err := client.Get(ctx, slice.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = client.Create(ctx, slice, metav1.CreateOptions{})
	case err == nil:
		slice.ResourceVersion = cur.ResourceVersion
		_, err = client.Update(ctx, slice, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Errorf("publishing EndpointSlice %s: %v", slice.Name, err)
	}
}

// replicaPod creates the Pod object of a replica, bound to stormNode and
// ready, as the scheduler and the kubelet would have left it.
func replicaPod(ctx context.Context, t *testing.T, ns, name string, labels map[string]string) {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			NodeName:                      stormNode,
			TerminationGracePeriodSeconds: ptr.To(int64(30)),
			Containers:                    []corev1.Container{{Name: "podgrace", Image: "podgrace"}},
		},
	}
	p, err := kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	p.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}}
	if _, err := kube.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// pdbStatus sets the status the disruption controller would compute for
// n healthy replicas under the chart's minAvailable.
func pdbStatus(ctx context.Context, t *testing.T, ns, name string, n int) {
	t.Helper()
	pdb, err := kube.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	desired := int32(pdb.Spec.MinAvailable.IntValue())
	pdb.Status = policyv1.PodDisruptionBudgetStatus{
		ObservedGeneration: pdb.Generation, CurrentHealthy: int32(n), DesiredHealthy: desired,
		ExpectedPods: int32(n), DisruptionsAllowed: int32(n) - desired,
	}
	if _, err := kube.PolicyV1().PodDisruptionBudgets(ns).UpdateStatus(ctx, pdb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// armNamespace creates a fresh namespace selected by a's webhook.
func armNamespace(ctx context.Context, t *testing.T, a arm) string {
	t.Helper()
	labels := map[string]string{}
	switch a.webhook {
	case "":
	case noopWebhook:
		labels = map[string]string{policy.LabelInject: policy.InjectEnabled, armLabel: "noop"}
	default:
		labels = map[string]string{policy.LabelInject: policy.InjectEnabled, armLabel: "podgrace"}
	}
	n, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "storm-" + a.name + "-", Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n.Name
}

// checkStored lists the arm's pods as stored: all of them, each mutated
// when the arm mutates.
func checkStored(ctx context.Context, t *testing.T, ns string, a arm) {
	t.Helper()
	var count, unmutated int
	opts := metav1.ListOptions{Limit: 1000}
	for {
		l, err := kube.CoreV1().Pods(ns).List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		for i := range l.Items {
			count++
			if a.mutated && !isMutated(&l.Items[i]) {
				unmutated++
			}
		}
		if opts.Continue = l.Continue; opts.Continue == "" {
			break
		}
	}
	if count != stormPods || unmutated != 0 {
		t.Errorf("%s: %d pods stored (want %d), %d without podgrace's mutation", a.name, count, stormPods, unmutated)
	}
}

// deletePods deletes the storm's n pods of ns from stormClients concurrent
// clients (one DeleteCollection would answer with every pod deleted, more
// than the API server sends in one response here).
func deletePods(ctx context.Context, t *testing.T, ns string, n int) {
	t.Helper()
	var (
		next   atomic.Int64
		failed atomic.Int64
		wg     sync.WaitGroup
	)
	for range stormClients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				err := kube.CoreV1().Pods(ns).Delete(ctx, fmt.Sprintf("s-%05d", i), metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
				if err != nil && !apierrors.IsNotFound(err) {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("deleting the pods of %s: %d deletes failed", ns, failed.Load())
	}
}

// isMutated says whether p carries podgrace's mutation: its status
// annotation and a preStop hook on every container.
func isMutated(p *corev1.Pod) bool {
	if _, ok := p.Annotations[policy.AnnotationStatus]; !ok {
		return false
	}
	for _, c := range p.Spec.Containers {
		if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
			return false
		}
	}
	return true
}

// typicalPod is the pod of the typical bench review
// (test/bench/testdata/reviews), as a client creates it.
func typicalPod(t *testing.T) *corev1.Pod {
	t.Helper()
	raw, err := os.ReadFile("../../bench/testdata/reviews/typical.json")
	if err != nil {
		t.Fatal(err)
	}
	var rev admissionv1.AdmissionReview
	if err := json.Unmarshal(raw, &rev); err != nil {
		t.Fatal(err)
	}
	var p corev1.Pod
	if err := json.Unmarshal(rev.Request.Object.Raw, &p); err != nil {
		t.Fatal(err)
	}
	p.Namespace, p.GenerateName = "", ""
	p.OwnerReferences = nil // no ReplicaSet here
	return &p
}

func serverVersion() string {
	v, err := kube.Discovery().ServerVersion()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return v.GitVersion
}
