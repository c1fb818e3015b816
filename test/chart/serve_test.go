package chart_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/internal/freeport"
	"github.com/podgrace/podgrace/internal/testkube"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/webhook"
)

// installChart creates a namespace and every object the chart renders for
// rel and values, and removes the cluster-scoped ones when the test ends.
func installChart(ctx context.Context, t *testing.T, cfg *rest.Config, rel chart.Release, values map[string]any) *chart.Rendered {
	t.Helper()
	k := newClient(t, cfg)
	ns := &corev1.Namespace{}
	ns.Name = rel.Namespace
	if err := k.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	r := render(t, rel, values)
	for _, o := range r.Objects {
		if err := k.Create(ctx, o); err != nil {
			t.Fatalf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		if o.GetNamespace() == "" {
			t.Cleanup(func() { _ = k.Delete(context.Background(), o) })
		}
	}
	return r
}

// routeService points the chart's Service at a podgrace listening on this
// machine: an EndpointSlice with the host's address, which the API server
// (run with --enable-aggregator-routing) calls instead of the cluster IP no
// kube-proxy routes here. TLS is still verified for the Service's DNS name,
// <service>.<namespace>.svc, as in a cluster.
func routeService(ctx context.Context, t *testing.T, cs kubernetes.Interface, namespace, service string, port int) {
	t.Helper()
	ip, err := testkube.HostIP()
	if err != nil {
		t.Fatal(err)
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s-local-%d", service, port),
			Namespace: namespace,
			Labels:    map[string]string{discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "podgrace-test"},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(namespace).Create(ctx, slice, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Up to 1.33 at least, the API server's service resolver reads v1
	// Endpoints; 1.36 reads EndpointSlices (1.34 and 1.35 are not tested:
	// they get both).
	info, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v, err := utilversion.ParseGeneric(info.GitVersion); err != nil || v.AtLeast(utilversion.MajorMinor(1, 36)) {
		return
	}
	subset := corev1.EndpointSubset{ //nolint:staticcheck // v1 Endpoints is what these servers read
		Addresses: []corev1.EndpointAddress{{IP: ip}},
		Ports:     []corev1.EndpointPort{{Name: "https", Port: int32(port), Protocol: corev1.ProtocolTCP}},
	}
	eps, err := cs.CoreV1().Endpoints(namespace).Get(ctx, service, metav1.GetOptions{})
	if err != nil {
		eps = &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: service, Namespace: namespace}} //nolint:staticcheck // as above
		eps.Subsets = []corev1.EndpointSubset{subset}                                               //nolint:staticcheck // as above
		_, err = cs.CoreV1().Endpoints(namespace).Create(ctx, eps, metav1.CreateOptions{})
	} else {
		eps.Subsets = append(eps.Subsets, subset)
		_, err = cs.CoreV1().Endpoints(namespace).Update(ctx, eps, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// secretVolume mirrors a Secret into a directory the way the kubelet's
// secret volume does (its AtomicWriter): the files are symlinks through
// ..data to a timestamped directory, and an update swaps ..data in one
// rename, so tls.crt and tls.key always change together.
type secretVolume struct {
	dir string
	mu  sync.Mutex
	gen int
}

func (v *secretVolume) write(data map[string][]byte) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.gen++
	ts := fmt.Sprintf("..%d", v.gen)
	if err := os.MkdirAll(filepath.Join(v.dir, ts), 0o755); err != nil {
		return err
	}
	for k, val := range data {
		if err := os.WriteFile(filepath.Join(v.dir, ts, k), val, 0o600); err != nil {
			return err
		}
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(ts, tmp); err != nil {
		return err
	}
	old, _ := os.Readlink(filepath.Join(v.dir, "..data"))
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		return err
	}
	for k := range data {
		link := filepath.Join(v.dir, k)
		if _, err := os.Lstat(link); err != nil {
			if err := os.Symlink(filepath.Join("..data", k), link); err != nil {
				return err
			}
		}
	}
	if old != "" {
		return os.RemoveAll(filepath.Join(v.dir, old))
	}
	return nil
}

// mountSecret keeps dir in sync with a Secret until the test ends, as the
// kubelet does for a pod's secret volume (it polls; so does this).
func mountSecret(ctx context.Context, t *testing.T, cs kubernetes.Interface, namespace, name, dir string) {
	t.Helper()
	v := &secretVolume{dir: dir}
	var last string
	copySecret := func() (bool, error) {
		s, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if len(s.Data[corev1.TLSCertKey]) == 0 || s.ResourceVersion == last {
			return false, nil
		}
		last = s.ResourceVersion
		return true, v.write(map[string][]byte{corev1.TLSCertKey: s.Data[corev1.TLSCertKey], corev1.TLSPrivateKeyKey: s.Data[corev1.TLSPrivateKeyKey]})
	}
	waitFor(ctx, t, 60*time.Second, "Secret "+namespace+"/"+name+" with a certificate", func() (bool, error) {
		return copySecret()
	})
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := copySecret(); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
				t.Logf("syncing the secret volume: %v", err)
			}
		}
	}()
}

// podgraceAddrs is where runPodgrace's podgrace listens.
type podgraceAddrs struct {
	webhook int
	// metrics is the port of the secured /metrics when the chart's
	// Deployment passes --metrics-secure, else 0 (metrics off).
	metrics int
}

// runPodgrace runs podgrace's webhook server in this process, with the
// chart's cluster config and the chart ServiceAccount's permissions, on all
// addresses (the API server calls the host address), until the test ends.
// It returns its ports.
func runPodgrace(ctx context.Context, t *testing.T, cfg *rest.Config, r *chart.Rendered, rel chart.Release, certDir string) podgraceAddrs {
	t.Helper()
	var cm corev1.ConfigMap
	if err := chart.Into(r.Find("ConfigMap", rel.Name), &cm); err != nil {
		t.Fatal(err)
	}
	config, err := policy.ParseConfig([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := chart.Into(r.Find("Deployment", rel.Name), &d); err != nil {
		t.Fatal(err)
	}
	ports, err := freeport.Take(3)
	if err != nil {
		t.Fatal(err)
	}
	port, health := ports[0], ports[1]
	out := podgraceAddrs{webhook: port}
	metricsAddress := "0"
	if slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--metrics-secure") {
		out.metrics = ports[2]
		metricsAddress = "127.0.0.1:" + strconv.Itoa(out.metrics)
	}
	log := zap.New(zap.WriteTo(testWriter{t}), zap.Level(zapLevel()))
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	srv, err := webhook.NewServer(ctx, webhook.Options{
		RESTConfig: asServiceAccount(cfg, rel.Namespace, rel.Name),
		// As $POD_NAMESPACE gives it in the chart's pod.
		Namespace:              rel.Namespace,
		Config:                 &config,
		CertDir:                certDir,
		Port:                   port,
		MetricsBindAddress:     metricsAddress,
		MetricsSecure:          out.metrics != 0,
		HealthProbeBindAddress: "127.0.0.1:" + strconv.Itoa(health),
		Logger:                 &log,
	})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	// With the chart's RBAC the dry-run probe answers: the version fallback
	// would mean a permission is missing.
	if d := srv.HookDecision(); config.HookAction == policy.HookAuto && (d.Fallback || d.Action != wantHook(t, cfg)) {
		t.Errorf("hookAction auto under the chart's RBAC: %+v, want %s from the dry run", d, wantHook(t, cfg))
	}
	go func() { done <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("podgrace webhook: %v", err)
		}
	})
	waitFor(ctx, t, 60*time.Second, "podgrace /readyz", func() (bool, error) {
		select {
		case err := <-done:
			return false, fmt.Errorf("podgrace stopped: %w", err)
		default:
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", health))
		if err != nil {
			return false, nil //nolint:nilerr // not listening yet
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	return out
}

// servedCertificate is the leaf certificate podgrace serves on port.
func servedCertificate(port int) (*x509.Certificate, error) {
	conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only reads the served certificate
	if err != nil {
		return nil, err
	}
	defer func() { _ = conn.Close() }()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// podLoad creates pods in namespace until stopped, each of which podgrace
// must mutate: with failurePolicy Ignore a failed webhook call does not
// fail the request, it leaves the pod unmutated, so an unmutated pod is a
// failed admission.
type podLoad struct {
	cs        kubernetes.Interface
	namespace string
	stop      chan struct{}
	done      chan struct{}

	mu        sync.Mutex
	created   int
	unmutated []string
	errs      []error
}

func startPodLoad(cs kubernetes.Interface, namespace string) *podLoad {
	l := &podLoad{cs: cs, namespace: namespace, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			default:
			}
			l.createOne(i)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return l
}

func (l *podLoad) createOne(i int) {
	pod := samplePod(l.namespace, fmt.Sprintf("load-%d", i))
	got, err := l.cs.CoreV1().Pods(l.namespace).Create(context.Background(), pod, metav1.CreateOptions{})
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		l.errs = append(l.errs, err)
	case got.Annotations[policy.AnnotationStatus] == "":
		l.unmutated = append(l.unmutated, got.Name)
	}
	l.created++
}

// finish stops the load and reports what failed.
func (l *podLoad) finish(t *testing.T) int {
	t.Helper()
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 {
		t.Errorf("%d of %d pod creations failed, first: %v", len(l.errs), l.created, l.errs[0])
	}
	if len(l.unmutated) > 0 {
		t.Errorf("%d of %d pods were admitted without podgrace (its call failed): %v", len(l.unmutated), l.created, l.unmutated)
	}
	return l.created
}

// samplePod is a shell-form pod without a preStop hook.
func samplePod(namespace, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To(int64(30)),
			Containers: []corev1.Container{{
				Name:    "web",
				Image:   "registry.example.com/shop/web:1.4.2",
				Command: []string{"sh", "-c", "cd /app && bundle exec puma"},
			}},
		},
	}
}

// optInNamespace creates a namespace podgrace serves in opt-in mode.
func optInNamespace(ctx context.Context, t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{policy.LabelInject: policy.InjectEnabled}}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// checkMutated creates one pod and checks podgrace mutated it.
func checkMutated(ctx context.Context, t *testing.T, cs kubernetes.Interface, namespace, name string) {
	t.Helper()
	got, err := cs.CoreV1().Pods(namespace).Create(ctx, samplePod(namespace, name), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := got.Spec.Containers[0]
	if got.Annotations[policy.AnnotationStatus] == "" || c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatalf("pod %s was not mutated by podgrace: annotations %v, lifecycle %+v", name, got.Annotations, c.Lifecycle)
	}
	t.Logf("pod %s mutated: preStop sleep %ds, command %q", name, c.Lifecycle.PreStop.Sleep.Seconds, c.Command)
}

// waitFor polls cond until it is true, fails, or timeout passes.
func waitFor(ctx context.Context, t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("timed out after %v waiting for %s (last error: %v)", timeout, what, lastErr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
