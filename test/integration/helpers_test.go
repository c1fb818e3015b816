package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/internal/freeport"
	"github.com/podgrace/podgrace/internal/kubewarn"
	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/webhook"
)

// certs is the suite's CA; serving certificates for 127.0.0.1 and localhost
// are signed by it, and its PEM is the webhook configurations' caBundle.
type certs struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	caPEM []byte
}

func newCerts() (*certs, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "podgrace-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &certs{ca: ca, caKey: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// writeServing writes tls.crt and tls.key for 127.0.0.1/localhost into dir,
// each replaced atomically (as kubelet's projected volumes do).
func (c *certs) writeServing(dir string, serial int64) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "podgrace-webhook"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ca, &key.PublicKey, c.caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"tls.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"tls.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	for _, name := range []string{"tls.key", "tls.crt"} {
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, files[name], 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// clientTLS trusts the suite's CA.
func (c *certs) clientTLS() *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(c.ca)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// instance is a podgrace webhook server running in this process.
type instance struct {
	server  *webhook.Server
	url     string // https://127.0.0.1:PORT/mutate-v1-pod
	addr    string // 127.0.0.1:PORT
	probes  string // http://127.0.0.1:PORT (healthz, readyz)
	metrics string // http://127.0.0.1:PORT/metrics (https with MetricsSecure)
	cancel  context.CancelFunc
	// stopped is closed when Start has returned, with its error in err.
	stopped chan struct{}
	err     error
}

// startInstance starts a podgrace webhook server, exactly as `podgrace
// webhook` does, and waits until /readyz passes and /metrics answers.
func startInstance(ctx context.Context, name string, cfg *policy.Config, certDir string, drain time.Duration) (*instance, error) {
	return startInstanceWith(ctx, name, webhook.Options{Config: cfg, CertDir: certDir, DrainDelay: drain})
}

// startInstanceWith starts an instance with o; the REST config, addresses
// and logger are the test's.
func startInstanceWith(ctx context.Context, name string, o webhook.Options) (*instance, error) {
	// A port can still be taken by another process between Take and the
	// manager's bind; such a start fails with "address already in use" and
	// is retried on new ports.
	var err error
	for range 3 {
		var in *instance
		in, err = startInstanceOnce(ctx, name, o)
		if err == nil {
			return in, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
	}
	return nil, err
}

func startInstanceOnce(ctx context.Context, name string, o webhook.Options) (*instance, error) {
	ports, err := freeport.Take(3)
	if err != nil {
		return nil, err
	}
	if o.Port != 0 {
		ports[0] = o.Port // the test's own webhook port
	}
	if o.RESTConfig == nil {
		o.RESTConfig = restConfig // else the test's own API server
	}
	log := logger().WithName(name)
	o.Host, o.Port, o.Logger = "127.0.0.1", ports[0], &log
	o.MetricsBindAddress = "127.0.0.1:" + strconv.Itoa(ports[1])
	o.HealthProbeBindAddress = "127.0.0.1:" + strconv.Itoa(ports[2])
	srv, err := webhook.NewServer(ctx, o)
	if err != nil {
		return nil, err
	}
	metricsScheme, metricsReady := "http", http.StatusOK
	if o.MetricsSecure {
		// Without a token the secured endpoint answers 401.
		metricsScheme, metricsReady = "https", http.StatusUnauthorized
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	in := &instance{
		server:  srv,
		addr:    "127.0.0.1:" + strconv.Itoa(ports[0]),
		url:     "https://127.0.0.1:" + strconv.Itoa(ports[0]) + webhook.Path,
		probes:  "http://127.0.0.1:" + strconv.Itoa(ports[2]),
		metrics: metricsScheme + "://127.0.0.1:" + strconv.Itoa(ports[1]) + "/metrics",
		cancel:  cancel,
		stopped: make(chan struct{}),
	}
	go func() {
		in.err = srv.Start(runCtx)
		close(in.stopped)
	}()
	// Ready means /readyz passes and /metrics answers (200, or 401 over TLS
	// when secured): the manager starts its metrics and probe servers
	// independently, so a passing /readyz does not show that the metrics
	// port is this instance's.
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		select {
		case <-in.stopped:
			return false, fmt.Errorf("instance %s stopped while starting: %w", name, in.err)
		default:
		}
		ready, _ := probe(in.probes + "/readyz")
		metrics, _ := probe(in.metrics)
		return ready == http.StatusOK && metrics == metricsReady, nil
	})
	if err != nil {
		cancel()
		<-in.stopped
		return nil, fmt.Errorf("instance %s not ready: %w", name, err)
	}
	return in, nil
}

// stop cancels the instance (SIGTERM) and waits for it to return.
func (in *instance) stop() error {
	in.cancel()
	<-in.stopped
	return in.err
}

// testCAClient is an HTTP client that trusts the test CA, which signed every
// instance's serving certificate.
var testCAClient = sync.OnceValue(func() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(tlsAssets.caPEM)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
})

func probe(url string) (int, string) {
	resp, err := testCAClient().Get(url) //nolint:noctx // a local probe
	if err != nil {
		return 0, err.Error()
	}
	defer func() { _ = resp.Body.Close() }()
	var b strings.Builder
	_, _ = fmt.Fprint(&b, resp.Status)
	return resp.StatusCode, b.String()
}

// warnings collects the warnings the API server returns to a client.
type warnings = kubewarn.Collector

// client returns a clientset whose warnings the test reads.
func client(t *testing.T) (*kubernetes.Clientset, *warnings) {
	t.Helper()
	w := &warnings{}
	cfg := rest.CopyConfig(restConfig)
	cfg.WarningHandler = w
	return kubernetes.NewForConfigOrDie(cfg), w
}

func createNamespace(ctx context.Context, labels, annotations map[string]string) (string, error) {
	ns, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "pg-", Labels: labels, Annotations: annotations},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return ns.Name, nil
}

// namespace creates a namespace for one test.
func namespace(t *testing.T, labels, annotations map[string]string) string {
	t.Helper()
	ns, err := createNamespace(t.Context(), labels, annotations)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
	return ns
}

// deleteLater deletes a pod of the shared main namespace when the test
// ends, so the test can run again against the same control plane
// (-count=N). Pods without a node are deleted at once.
func deleteLater(t *testing.T, ns, name string) {
	t.Helper()
	t.Cleanup(func() {
		if err := admin.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting pod %s/%s: %v", ns, name, err)
		}
	})
}

func optedIn() map[string]string { return map[string]string{policy.LabelInject: policy.InjectEnabled} }

// forInstance labels a namespace for an instance other than the main one.
func forInstance(name string) map[string]string {
	return map[string]string{policy.LabelInject: policy.InjectEnabled, instanceLabel: name}
}

// instanceSelector is the extra namespace selector of an instance's configuration.
func instanceSelector(name string) []metav1.LabelSelectorRequirement {
	return []metav1.LabelSelectorRequirement{{Key: instanceLabel, Operator: metav1.LabelSelectorOpIn, Values: []string{name}}}
}

// pod is a Pod with one container running a shell-form command.
func pod(name string, grace int64, containers ...corev1.Container) *corev1.Pod {
	if len(containers) == 0 {
		containers = []corev1.Container{shellContainer("app", "bundle exec puma")}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Containers:                    containers,
		},
	}
}

func shellContainer(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: "registry.example/" + name + ":1", Command: []string{"sh", "-c", script}}
}

// waitForMutation waits until podgrace mutates pods in ns: the API server
// reads webhook configurations through an informer, so a new one takes
// effect a moment after it is created. Dry runs leave nothing behind.
func waitForMutation(ctx context.Context, ns string) error {
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := admin.CoreV1().Pods(ns).Create(ctx, pod("probe", 30), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err
		}
		_, ok := p.Annotations[policy.AnnotationStatus]
		return ok, nil
	})
}

// status reads podgrace's status annotation.
func status(t *testing.T, p *corev1.Pod) inject.Status {
	t.Helper()
	raw, ok := p.Annotations[policy.AnnotationStatus]
	if !ok {
		t.Fatalf("pod %s has no %s annotation: %v", p.Name, policy.AnnotationStatus, p.Annotations)
	}
	var st inject.Status
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		t.Fatalf("status annotation %q: %v", raw, err)
	}
	return st
}

// sleepOf returns a container's preStop sleep (-1 when it has none) in the
// form this API server takes (wantHook): the native sleep action, or
// `exec: [sleep, S]` where the server has the sleep action off. A hook of
// the other form counts as none, so every caller checks the form too.
func sleepOf(c *corev1.Container) int64 {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return -1
	}
	ps := c.Lifecycle.PreStop
	switch {
	case wantHook == policy.HookSleep && ps.Sleep != nil && ps.Exec == nil:
		return ps.Sleep.Seconds
	case wantHook == policy.HookExec && ps.Sleep == nil && ps.Exec != nil &&
		len(ps.Exec.Command) == 2 && ps.Exec.Command[0] == "sleep":
		if n, err := strconv.ParseInt(ps.Exec.Command[1], 10, 64); err == nil {
			return n
		}
	}
	return -1
}

// scrape reads counters from a /metrics endpoint: the sum of every series of
// each named family whose labels include match.
func scrape(t *testing.T, url string, match map[string]string, names ...string) map[string]float64 {
	t.Helper()
	return scrapeFamilies(t, url, match, false, names...)
}

// scrapeVec is scrape for counter vectors that expose nothing until their
// first count: a family not served reads as 0.
func scrapeVec(t *testing.T, url string, match map[string]string, names ...string) map[string]float64 {
	t.Helper()
	return scrapeFamilies(t, url, match, true, names...)
}

func scrapeFamilies(t *testing.T, url string, match map[string]string, absentIsZero bool, names ...string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url) //nolint:noctx // a local scrape
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, name := range names {
		fam, ok := fams[name]
		if !ok && !absentIsZero {
			t.Fatalf("%s does not serve %s", url, name)
		}
	series:
		for _, m := range fam.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range match {
				if lv, ok := labels[k]; ok && lv != v {
					continue series
				}
			}
			out[name] += m.GetCounter().GetValue()
		}
	}
	return out
}

// isConnRefused reports whether dialing failed because nothing listens.
func isConnRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "connection refused")
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
