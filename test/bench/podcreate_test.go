//go:build bench

package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/internal/freeport"
	"github.com/podgrace/podgrace/pkg/admissionpolicy"
	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// policyLabel selects the namespace the generated admission policies serve.
const policyLabel = "bench.podgrace.dev/policy"

// variantLabel names the podgrace variant (BENCH_VARIANTS) whose webhook
// serves a namespace; podgrace's own webhook serves those without it.
const variantLabel = "bench.podgrace.dev/variant"

// installPolicy creates what `podgrace generate policy` prints for the
// default cluster config (podgrace's namespace excluded), bound to
// the namespaces labeled policyLabel only: cluster-wide selection ANDed with
// that label, so the webhook's opt-in namespace is not the policy's.
func installPolicy(ctx context.Context, b *testing.B) {
	b.Helper()
	paramsNS, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-params-"}}, metav1.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	cfg := policy.Default()
	objs, err := admissionpolicy.Generate(&cfg, admissionpolicy.Options{
		Namespace: paramsNS.Name, NamePrefix: "bench-", ClusterWide: true,
		ExtraNamespaceSelector: []metav1.LabelSelectorRequirement{{Key: policyLabel, Operator: metav1.LabelSelectorOpExists}},
	})
	if err != nil {
		b.Fatal(err)
	}
	ar := kube.AdmissionregistrationV1()
	if _, err := ar.MutatingAdmissionPolicies().Create(ctx, objs.Mutating, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := ar.MutatingAdmissionPolicyBindings().Create(ctx, objs.MutatingBinding, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := ar.ValidatingAdmissionPolicies().Create(ctx, objs.Validating, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := ar.ValidatingAdmissionPolicyBindings().Create(ctx, objs.ValidatingBinding, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := ar.ValidatingAdmissionPolicies().Create(ctx, objs.ExecForm, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := ar.ValidatingAdmissionPolicyBindings().Create(ctx, objs.ExecFormBinding, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx := context.Background()
		_ = ar.MutatingAdmissionPolicyBindings().Delete(ctx, objs.MutatingBinding.Name, metav1.DeleteOptions{})
		_ = ar.MutatingAdmissionPolicies().Delete(ctx, objs.Mutating.Name, metav1.DeleteOptions{})
		_ = ar.ValidatingAdmissionPolicyBindings().Delete(ctx, objs.ValidatingBinding.Name, metav1.DeleteOptions{})
		_ = ar.ValidatingAdmissionPolicies().Delete(ctx, objs.Validating.Name, metav1.DeleteOptions{})
		_ = ar.ValidatingAdmissionPolicyBindings().Delete(ctx, objs.ExecFormBinding.Name, metav1.DeleteOptions{})
		_ = ar.ValidatingAdmissionPolicies().Delete(ctx, objs.ExecForm.Name, metav1.DeleteOptions{})
	})
}

// typicalPod is the pod of the typical bench review, as a client creates it.
func typicalPod(b *testing.B) *corev1.Pod {
	b.Helper()
	raw, err := os.ReadFile(typicalReview)
	if err != nil {
		b.Fatal(err)
	}
	var rev admissionv1.AdmissionReview
	if err := json.Unmarshal(raw, &rev); err != nil {
		b.Fatal(err)
	}
	var p corev1.Pod
	if err := json.Unmarshal(rev.Request.Object.Raw, &p); err != nil {
		b.Fatal(err)
	}
	p.Namespace = ""
	p.OwnerReferences = nil // no ReplicaSet in envtest
	return &p
}

// setup is one way pods are admitted.
type setup struct {
	name string // none, noop, podgrace, policy, or a variant's server name
	ns   string
}

// isPodgrace says whether a setup is served by podgrace or one of its variants.
func (s setup) isPodgrace() bool {
	return s.name != "none" && s.name != "noop" && !s.isReplay() && s.name != "policy"
}

// isReplay says whether a setup is a no-op answering with a fixed patch.
func (s setup) isReplay() bool { return strings.HasPrefix(s.name, "replay") }

// mutates says whether pods created in the setup's namespace are mutated.
func (s setup) mutates() bool { return s.name != "none" && s.name != "noop" }

// podgracePatch is podgrace's answer to the typical review: its JSON patch
// of the typical pod, fetched from the running podgrace.
func podgracePatch(ctx context.Context, b *testing.B) []byte {
	b.Helper()
	body, err := os.ReadFile(typicalReview)
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, podgrace.url, bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var rev admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&rev); err != nil || rev.Response == nil || len(rev.Response.Patch) == 0 {
		b.Fatalf("podgrace's answer to %s has no patch (%v)", typicalReview, err)
	}
	return rev.Response.Patch
}

// metadataOnly keeps the operations of a JSON patch on /metadata (podgrace's
// status annotation): a patch as small as a mutating webhook's can be.
func metadataOnly(b *testing.B, patch []byte) []byte {
	b.Helper()
	var ops []inject.PatchOp
	if err := json.Unmarshal(patch, &ops); err != nil {
		b.Fatal(err)
	}
	ops = slices.DeleteFunc(ops, func(op inject.PatchOp) bool { return !strings.HasPrefix(op.Path, "/metadata/") })
	if len(ops) == 0 {
		b.Fatalf("podgrace's patch %s has no operation on /metadata", patch)
	}
	out, err := json.Marshal(ops)
	if err != nil {
		b.Fatal(err)
	}
	return out
}

// startReplay starts the floor server answering every review with patch
// (baseline.Replay).
func startReplay(ctx context.Context, b *testing.B, name string, patch []byte) *server {
	b.Helper()
	patchFile := filepath.Join(workDir, name+".patch")
	if err := os.WriteFile(patchFile, patch, 0o600); err != nil {
		b.Fatal(err)
	}
	ports, err := freeport.Take(1)
	if err != nil {
		b.Fatal(err)
	}
	s, err := startServer(name, ports[0], floor.cmd.Path, "-cert-dir", workDir, "-port", strconv.Itoa(ports[0]), "-patch", patchFile)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.stop)
	if err := s.waitServing(ctx); err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: a no-op answering with a %d-byte patch: %s", name, len(patch), patch)
	return s
}

// preStopSleeps returns each container's native preStop sleep (0 without).
func preStopSleeps(p *corev1.Pod) []int64 {
	out := make([]int64, len(p.Spec.Containers))
	for i, c := range p.Spec.Containers {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			out[i] = c.Lifecycle.PreStop.Sleep.Seconds
		}
	}
	return out
}

// dryRun creates pod in ns as a dry run.
func dryRun(ctx context.Context, ns string, pod *corev1.Pod) (*corev1.Pod, error) {
	return kube.CoreV1().Pods(ns).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}

// BenchmarkPodCreate measures pod CREATE latency through the API server
// (client-go, one request at a time) in four namespaces: (i) none, which
// no webhook or policy selects; (ii) noop, opted in to the floor server
// (test/bench/floorserver: a mutating webhook that answers allowed with no
// patch) registered exactly as podgrace is: the least being a webhook costs;
// (iii) replay, the same no-op answering with podgrace's patch of the pod
// (what the patch costs the API server, without podgrace's decisions), and
// two ways of splitting that cost: replay-never, the same with
// reinvocationPolicy Never (what reinvocation costs), and replay-meta,
// answering with only the patch's /metadata operation, podgrace's status
// annotation (what any patch costs, against what this one's size does);
// (iv) podgrace, opted in to podgrace's webhook (the real binary,
// registered with its own configuration); (v) policy, served by the
// admission policies `podgrace generate policy` prints
// (MutatingAdmissionPolicy and ValidatingAdmissionPolicy). Rounds rotate
// the order; each block creates pods and then deletes them (no scheduler or
// kubelet: they never run). The latency each one adds is its quantile minus
// (i)'s; podgrace's is also reported as a ratio to the no-op's, at p50 and
// p90, with the range of the per-round ratios.
func BenchmarkPodCreate(b *testing.B) {
	const (
		block = 150
		warm  = 20
	)
	ctx := b.Context()
	pod := typicalPod(b)

	// MutatingAdmissionPolicy must be served (GA and on by default since
	// Kubernetes 1.36; envtest passes no feature gate or runtime-config).
	rl, err := kube.Discovery().ServerResourcesForGroupVersion("admissionregistration.k8s.io/v1")
	if err != nil {
		b.Fatal(err)
	}
	if !slices.ContainsFunc(rl.APIResources, func(r metav1.APIResource) bool { return r.Name == "mutatingadmissionpolicies" }) {
		b.Fatalf("kube-apiserver %s does not serve admissionregistration.k8s.io/v1 mutatingadmissionpolicies", serverVersion())
	}

	setups := []setup{{name: "none"}, {name: "noop"}, {name: "replay"}, {name: "podgrace"}, {name: "policy"}, {name: "replay-never"}, {name: "replay-meta"}}
	labels := map[string]map[string]string{
		"none": nil,
		// Opted in as podgrace's namespaces are, to the no-op webhooks.
		"noop":         {policy.LabelInject: policy.InjectEnabled, variantLabel: "noop"},
		"replay":       {policy.LabelInject: policy.InjectEnabled, variantLabel: "replay"},
		"replay-never": {policy.LabelInject: policy.InjectEnabled, variantLabel: "replay-never"},
		"replay-meta":  {policy.LabelInject: policy.InjectEnabled, variantLabel: "replay-meta"},
		"podgrace":     {policy.LabelInject: policy.InjectEnabled},
		"policy":       {policyLabel: "true"},
	}
	for _, v := range variants {
		setups = append(setups, setup{name: v.name})
		labels[v.name] = map[string]string{policy.LabelInject: policy.InjectEnabled, variantLabel: v.name}
	}
	for i := range setups {
		ns, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-" + setups[i].name + "-", Labels: labels[setups[i].name]},
		}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		setups[i].ns = ns.Name
	}

	register := func(name string, s *server, sel metav1.LabelSelectorRequirement, edit ...func(*admissionregistrationv1.MutatingWebhook)) {
		mwc := mustWebhook(chart.WebhookOptions{Name: name, URL: s.url, CABundle: caPEM, ExtraNamespaceSelector: []metav1.LabelSelectorRequirement{sel}})
		for _, e := range edit {
			e(&mwc.Webhooks[0])
		}
		if _, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_ = kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), mwc.Name, metav1.DeleteOptions{})
		})
	}
	register("podgrace-bench", podgrace, metav1.LabelSelectorRequirement{Key: variantLabel, Operator: metav1.LabelSelectorOpDoesNotExist})
	// The no-op: the floor server, same TLS, registered as podgrace is.
	register("bench-noop", floor, metav1.LabelSelectorRequirement{Key: variantLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"noop"}})
	patch := podgracePatch(ctx, b)
	replay := startReplay(ctx, b, "replay", patch)
	register("bench-replay", replay, metav1.LabelSelectorRequirement{Key: variantLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"replay"}})
	register("bench-replay-never", replay, metav1.LabelSelectorRequirement{Key: variantLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"replay-never"}},
		func(w *admissionregistrationv1.MutatingWebhook) {
			w.ReinvocationPolicy = ptr.To(admissionregistrationv1.NeverReinvocationPolicy)
		})
	register("bench-replay-meta", startReplay(ctx, b, "replay-meta", metadataOnly(b, patch)),
		metav1.LabelSelectorRequirement{Key: variantLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{"replay-meta"}})
	for _, v := range variants {
		register("bench-"+v.name, v, metav1.LabelSelectorRequirement{Key: variantLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{v.name}})
	}
	// The API server picks the configurations up through an informer.
	var sleep int64
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, s := range setups {
			if !s.isPodgrace() && !s.isReplay() {
				continue
			}
			p, err := dryRun(ctx, s.ns, pod)
			if err != nil {
				return false, err
			}
			if _, ok := p.Annotations[policy.AnnotationStatus]; !ok {
				return false, nil
			}
			if s.name != "replay-meta" {
				sleep = preStopSleeps(p)[0]
			}
		}
		return true, nil
	})
	if err != nil || sleep == 0 {
		b.Fatalf("podgrace does not mutate pods through the API server (sleep %d): %v", sleep, err)
	}

	installPolicy(ctx, b)
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := dryRun(ctx, setups[4].ns, pod)
		if err != nil {
			return false, err
		}
		return !slices.Contains(preStopSleeps(p), 0), nil
	})
	if err != nil {
		b.Fatalf("the generated admission policy does not mutate pods: %v", err)
	}
	// Each setup does what it should, and only that.
	for _, s := range setups {
		p, err := dryRun(ctx, s.ns, pod)
		if err != nil {
			b.Fatal(err)
		}
		_, annotated := p.Annotations[policy.AnnotationStatus]
		sleeps := preStopSleeps(p)
		want := []int64{sleep, sleep, sleep}
		if !s.mutates() || s.name == "replay-meta" {
			want = []int64{0, 0, 0}
		}
		if !slices.Equal(sleeps, want) || annotated != s.mutates() {
			b.Fatalf("%s: preStop sleeps %v (want %v), podgrace annotation %v", s.name, sleeps, want, annotated)
		}
	}

	pods := kube.CoreV1().Pods
	create := func(s setup, n int) []time.Duration {
		out := make([]time.Duration, 0, n)
		for range n {
			start := time.Now()
			if _, err := pods(s.ns).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			out = append(out, time.Since(start))
		}
		zero := int64(0)
		if err := pods(s.ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
			b.Fatal(err)
		}
		return out
	}
	for _, s := range setups {
		create(s, warm)
	}
	lat := map[string][]time.Duration{}
	perRound := map[string][][]time.Duration{} // per setup, each round's block
	rounds := 2 * len(setups)                  // each setup is first, second… equally often
	for r := range rounds {
		for i := range setups {
			s := setups[(r+i)%len(setups)]
			d := create(s, block)
			lat[s.name] = append(lat[s.name], d...)
			perRound[s.name] = append(perRound[s.name], d)
		}
	}

	if os.Getenv("BENCH_APISERVER_PROFILE") != "" {
		profileAPIServer(ctx, b, setups, func(s setup) int { return len(create(s, 10)) })
	}

	q := func(name string, p float64) float64 { return quantileMs(lat[name], p) }
	for _, s := range setups {
		b.Logf("%-18s p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  (%d pods)", s.name, q(s.name, 0.5), q(s.name, 0.9), q(s.name, 0.99), len(lat[s.name]))
		b.ReportMetric(q(s.name, 0.5), s.name+"-p50-ms")
		b.ReportMetric(q(s.name, 0.99), s.name+"-p99-ms")
	}
	none := q("none", 0.5)
	addedPG, addedPolicy := q("podgrace", 0.5)-none, q("policy", 0.5)-none
	b.ReportMetric(q("podgrace", 0.5)/none, "podgrace/none-p50")
	b.ReportMetric(q("policy", 0.5)/none, "policy/none-p50")
	b.ReportMetric(addedPG, "podgrace-added-ms")
	b.ReportMetric(addedPolicy, "policy-added-ms")
	b.ReportMetric(addedPG/addedPolicy, "podgrace-added/policy-added")
	// The floor of being a webhook: podgrace's added latency against the
	// no-op's, over all rounds and per round (their range is the spread);
	// the replay says how much of the difference is the patch.
	for _, p := range []float64{0.5, 0.9} {
		name := fmt.Sprintf("p%.0f", p*100)
		added := func(s string) float64 { return q(s, p) - q("none", p) }
		lo, hi := math.Inf(1), math.Inf(-1)
		for r := range rounds {
			none := quantileMs(perRound["none"][r], p)
			ratio := (quantileMs(perRound["podgrace"][r], p) - none) / (quantileMs(perRound["noop"][r], p) - none)
			lo, hi = min(lo, ratio), max(hi, ratio)
		}
		b.Logf("%s added: podgrace %+.2f ms, no-op webhook %+.2f ms, no-op with podgrace's patch %+.2f ms: podgrace/no-op %.2f× (per round %.2f–%.2f×), replay/no-op %.2f×",
			name, added("podgrace"), added("noop"), added("replay"), added("podgrace")/added("noop"), lo, hi, added("replay")/added("noop"))
		b.ReportMetric(added("noop"), "noop-added-"+name+"-ms")
		b.ReportMetric(added("replay"), "replay-added-"+name+"-ms")
		b.ReportMetric(added("podgrace")/added("noop"), "podgrace-added/noop-added-"+name)
		b.ReportMetric(lo, "podgrace-added/noop-added-"+name+"-min")
		b.ReportMetric(hi, "podgrace-added/noop-added-"+name+"-max")
		b.ReportMetric(added("replay")/added("noop"), "replay-added/noop-added-"+name)
		// Where the replay's cost goes: any patch at all (the status
		// annotation alone), the rest of podgrace's patch, reinvocation.
		b.Logf("%s added by the patch: any patch (the annotation alone) %+.2f ms, the rest of podgrace's patch %+.2f ms, reinvocation (IfNeeded against Never) %+.2f ms",
			name, added("replay-meta")-added("noop"), added("replay")-added("replay-meta"), added("replay")-added("replay-never"))
		b.ReportMetric(added("replay-meta")/added("noop"), "replay-meta-added/noop-added-"+name)
		b.ReportMetric(added("replay-never")/added("noop"), "replay-never-added/noop-added-"+name)
	}
	for _, s := range setups[7:] {
		added := q(s.name, 0.5) - none
		b.ReportMetric(added, s.name+"-added-ms")
		b.ReportMetric(addedPG/added, "podgrace-added/"+s.name+"-added")
	}
	b.ReportMetric(0, "ns/op")
}

// profileAPIServer takes a CPU profile of the API server (its
// /debug/pprof/profile, on by default) while each of the none, noop,
// replay-meta, replay and podgrace setups creates pods for the same time,
// in blocks of 10 (each deleted after, so the count is exact to 10 pods),
// and writes each to the work dir as
// apiserver-<setup>.pprof with the number of pods created: what the API
// server does for a pod a webhook patches, against one nobody does
// (`go tool pprof -top -diff_base apiserver-noop.pprof apiserver-replay.pprof`).
// BENCH_APISERVER_PROFILE=1 turns it on (with BENCH_KEEP=1 to keep them).
func profileAPIServer(ctx context.Context, b *testing.B, setups []setup, create func(setup) int) {
	b.Helper()
	const seconds = 15
	for _, s := range setups {
		if !slices.Contains([]string{"none", "noop", "replay-meta", "replay", "podgrace"}, s.name) {
			continue
		}
		var body []byte
		var err error
		done := make(chan struct{})
		go func() {
			defer close(done)
			body, err = kube.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").Param("seconds", strconv.Itoa(seconds)).DoRaw(ctx)
		}()
		pods, start := 0, time.Now()
		for time.Since(start) < seconds*time.Second {
			pods += create(s)
		}
		<-done
		if err != nil {
			b.Fatalf("profiling the API server: %v", err)
		}
		file := filepath.Join(workDir, "apiserver-"+s.name+".pprof")
		if err := os.WriteFile(file, body, 0o600); err != nil {
			b.Fatal(err)
		}
		b.Logf("API server profile while %s created %d pods (each block deleted after): %s", s.name, pods, file)
	}
}

// quantileMs is the p-quantile of ds, in milliseconds.
func quantileMs(ds []time.Duration, p float64) float64 {
	xs := slices.Clone(ds)
	slices.Sort(xs)
	return float64(xs[min(len(xs)-1, int(p*float64(len(xs))))]) / float64(time.Millisecond)
}

// mustWebhook renders the chart's registration for a podgrace at o.URL (the
// chart is the one definition of it); a chart that does not render is a bug
// in the repository, not in the test.
func mustWebhook(o chart.WebhookOptions) *admissionregistrationv1.MutatingWebhookConfiguration {
	dir, err := chart.Dir()
	if err == nil {
		var mwc *admissionregistrationv1.MutatingWebhookConfiguration
		if mwc, err = chart.Webhook(dir, o); err == nil {
			return mwc
		}
	}
	panic("rendering the chart's MutatingWebhookConfiguration: " + err.Error())
}
