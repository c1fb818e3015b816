//go:build scale

// Package growth measures what the cluster's size and its registries do to
// podgrace (issue 25 items 3 and 4; docs/develop/performance.md, `make
// bench-scale`), against a real kube-apiserver and etcd (envtest), the real
// `podgrace webhook` binary and go-containerregistry's registry:
//
//   - TestSlowRegistries: pods created by concurrent clients, every pod
//     naming one of 500 images with a shell-form CMD, the registry answering
//     after 200 ms, 1 s, 5 s or never: the latency podgrace adds, the
//     registry requests per image, fail-open and the warnings.
//   - TestMemoryGrowth: the webhook's RSS and live heap with 100, 1,000 and
//     10,000 namespaces, and with 100 and 10,000 images through its cache.
//   - TestAuditGrowth: `podgrace audit -A` on 5,000 and 50,000 pods with
//     their Deployments and ReplicaSets: wall time, peak RSS, list requests.
//
// The files carry the `scale` build tag: `make test` never runs them.
package growth

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/internal/freeport"
	"github.com/podgrace/podgrace/internal/procstat"
	"github.com/podgrace/podgrace/internal/testcert"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/webhook"
)

// The suite's state, set up by TestMain.
var (
	restConfig  *rest.Config
	kube        *kubernetes.Clientset
	workDir     string
	caPEM       []byte
	kubeconfig  string
	podgraceBin string
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "FAIL: KUBEBUILDER_ASSETS is unset: run `make bench-scale`")
		return 1
	}
	var err error
	workDir, err = os.MkdirTemp("", "podgrace-growth-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	keep := false
	defer func() {
		if !keep {
			_ = os.RemoveAll(workDir)
		}
	}()
	env := &envtest.Environment{ControlPlaneStartTimeout: 2 * time.Minute, ControlPlaneStopTimeout: time.Minute}
	if err := setUp(env); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: setting up:", err)
		_ = env.Stop()
		keep = true
		return 1
	}
	rc := m.Run()
	_ = env.Stop()
	if rc != 0 {
		fmt.Fprintln(os.Stderr, "logs in", workDir, "(kept)")
		keep = true
	}
	return rc
}

func setUp(env *envtest.Environment) error {
	podgraceBin = os.Getenv("PODGRACE_BIN")
	if podgraceBin == "" {
		podgraceBin = filepath.Join(workDir, "podgrace")
		cmd := exec.Command("go", "build", "-trimpath", "-o", podgraceBin, "github.com/podgrace/podgrace/cmd/podgrace")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building podgrace: %w\n%s", err, b)
		}
	} else if abs, err := filepath.Abs(podgraceBin); err == nil {
		podgraceBin = abs
	}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit: the API server is what is measured
	restConfig = cfg
	kube = kubernetes.NewForConfigOrDie(cfg)
	if caPEM, err = testcert.Write(workDir, "127.0.0.1"); err != nil {
		return err
	}
	user, err := env.AddUser(envtest.User{Name: "podgrace", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	kubeconfig = filepath.Join(workDir, "kubeconfig")
	return os.WriteFile(kubeconfig, kc, 0o600)
}

// server is a `podgrace webhook` process.
type server struct {
	name    string
	url     string // https://127.0.0.1:PORT/mutate-v1-pod
	metrics string // http://127.0.0.1:PORT/metrics
	pprof   string // http://127.0.0.1:PORT
	cmd     *exec.Cmd
	log     string
	done    chan struct{}
	err     error
}

// startWebhook starts `podgrace webhook` with the cluster config cfgYAML
// and waits until it answers reviews; it is stopped when t ends.
func startWebhook(t *testing.T, name, cfgYAML string) *server {
	t.Helper()
	cfgPath := filepath.Join(workDir, name+"-config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	ports, err := freeport.Take(4)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(workDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(podgraceBin, "webhook", "--config", cfgPath,
		"--cert-dir", workDir, "--port", strconv.Itoa(ports[0]), "--kubeconfig", kubeconfig,
		"--metrics-bind-address", "127.0.0.1:"+strconv.Itoa(ports[1]),
		"--health-probe-bind-address", "127.0.0.1:"+strconv.Itoa(ports[2]),
		"--pprof-bind-address", "127.0.0.1:"+strconv.Itoa(ports[3]),
		"--drain-delay", "0s", "--no-events")
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{
		name: name, url: "https://127.0.0.1:" + strconv.Itoa(ports[0]) + webhook.Path,
		metrics: "http://127.0.0.1:" + strconv.Itoa(ports[1]) + "/metrics",
		pprof:   "http://127.0.0.1:" + strconv.Itoa(ports[3]),
		cmd:     cmd, log: logPath, done: make(chan struct{}),
	}
	go func() {
		s.err = cmd.Wait()
		_ = f.Close()
		close(s.done)
	}()
	t.Cleanup(s.stop)
	ready := "http://127.0.0.1:" + strconv.Itoa(ports[2]) + "/readyz"
	err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-s.done:
			return false, fmt.Errorf("%s exited: %w (log %s)", name, s.err, logPath)
		default:
		}
		resp, err := http.Get(ready) //nolint:noctx // a loopback probe, bounded by the poll
		if err != nil {
			return false, nil //nolint:nilerr // not listening yet
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("%s not ready: %v", name, err)
	}
	return s
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// register makes the API server call s for pods in namespaces labeled
// opted in and carrying label sel (the chart's own registration); it is
// removed when t ends. It waits until a dry-run pod in ns is mutated.
func register(t *testing.T, s *server, ns string) {
	t.Helper()
	dir, err := chart.Dir()
	if err != nil {
		t.Fatal(err)
	}
	mwc, err := chart.Webhook(dir, chart.WebhookOptions{Name: s.name, URL: s.url, CABundle: caPEM,
		ExtraNamespaceSelector: []metav1.LabelSelectorRequirement{{Key: "growth.podgrace.dev/server", Operator: metav1.LabelSelectorOpIn, Values: []string{s.name}}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), mwc.Name, metav1.DeleteOptions{})
	})
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-"}, Spec: corev1.PodSpec{
		TerminationGracePeriodSeconds: new(int64(30)),
		Containers:                    []corev1.Container{{Name: "app", Image: "example.invalid/app:1", Command: []string{"/app"}}},
	}}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods(ns).Create(ctx, probe.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err
		}
		_, ok := p.Annotations[policy.AnnotationStatus]
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s does not mutate pods through the API server: %v", s.name, err)
	}
}

// servedNamespace creates a namespace s serves.
func servedNamespace(t *testing.T, s *server) string {
	t.Helper()
	ns, err := kube.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		GenerateName: s.name + "-",
		Labels:       map[string]string{policy.LabelInject: policy.InjectEnabled, "growth.podgrace.dev/server": s.name},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// memory reads VmRSS and VmHWM (peak RSS) of s, in bytes.
func (s *server) memory() (rss, hwm int64, err error) { return procstat.Memory(s.cmd.Process.Pid) }

// settled is the webhook's memory after a forced collection: VmRSS, VmHWM
// and the live heap (go_memstats_heap_alloc_bytes right after the GC that
// /debug/pprof/heap?gc=1 runs).
type settled struct{ rss, hwm, heap int64 }

func (s *server) settle(t *testing.T) settled {
	t.Helper()
	for range 2 {
		resp, err := http.Get(s.pprof + "/debug/pprof/heap?gc=1") //nolint:noctx // loopback
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	time.Sleep(time.Second)
	fams := scrape(t, s.metrics)
	heap := int64(fams.sum("go_memstats_heap_alloc_bytes", nil))
	rss, hwm, err := s.memory()
	if err != nil {
		t.Fatal(err)
	}
	return settled{rss: rss, hwm: hwm, heap: heap}
}

// sample is one series of a Prometheus text exposition.
type sample struct {
	labels map[string]string
	value  float64
}

// families maps a metric family's name to its series.
type families map[string][]sample

// scrape reads a Prometheus text endpoint.
func scrape(t *testing.T, url string) families {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // loopback
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	return parse(t, resp.Body)
}

// apiMetrics reads the API server's /metrics.
func apiMetrics(t *testing.T) families {
	t.Helper()
	raw, err := kube.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("scraping the API server's /metrics: %v", err)
	}
	return parse(t, bytes.NewReader(raw))
}

func parse(t *testing.T, r io.Reader) families {
	t.Helper()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(r)
	if err != nil {
		t.Fatal(err)
	}
	out := families{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			s := sample{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				s.value = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				s.value = m.GetGauge().GetValue()
			case m.GetUntyped() != nil:
				s.value = m.GetUntyped().GetValue()
			case m.GetHistogram() != nil:
				h := m.GetHistogram()
				out[name+"_count"] = append(out[name+"_count"], sample{labels: s.labels, value: float64(h.GetSampleCount())})
				for _, b := range h.GetBucket() {
					l := maps.Clone(s.labels)
					l["le"] = strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)
					out[name+"_bucket"] = append(out[name+"_bucket"], sample{labels: l, value: float64(b.GetCumulativeCount())})
				}
				continue
			}
			out[name] = append(out[name], s)
		}
	}
	return out
}

// sum adds the values of a family's series whose labels include want.
func (f families) sum(name string, want map[string]string) float64 {
	var n float64
	for _, s := range f[name] {
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
			}
		}
		if match {
			n += s.value
		}
	}
	return n
}

// quantile of xs (sorted in place), in milliseconds.
func quantile(xs []time.Duration, q float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return float64(xs[min(len(xs)-1, int(q*float64(len(xs))))]) / float64(time.Millisecond)
}

// clients returns n clientsets, each with its own connection pool and its
// own warning handler, so that the warnings a client sees belong to the one
// request it has in flight.
func clients(n int) ([]*kubernetes.Clientset, []*warnings) {
	cs := make([]*kubernetes.Clientset, n)
	ws := make([]*warnings, n)
	for i := range n {
		c := rest.CopyConfig(restConfig)
		ws[i] = &warnings{}
		c.WarningHandler = ws[i]
		cs[i] = kubernetes.NewForConfigOrDie(c)
	}
	return cs, ws
}

// warnings keeps the warnings of one client's current request.
type warnings struct{ msgs []string }

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) { w.msgs = append(w.msgs, msg) }

// take returns and forgets the warnings seen so far.
func (w *warnings) take() []string {
	m := w.msgs
	w.msgs = nil
	return m
}

// tlsClient is an HTTPS client trusting the suite's CA.
func tlsClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: 64,
	}}
}
