package selfcert

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

const (
	ns     = "podgrace-system"
	secret = "podgrace-webhook-tls"
	mwc    = "podgrace"
)

var dnsNames = []string{"podgrace-webhook.podgrace-system.svc"}

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newFixture(t *testing.T, objs ...runtime.Object) (*fake.Clientset, *clock) {
	t.Helper()
	if objs == nil {
		objs = []runtime.Object{
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secret, Namespace: ns}, Type: corev1.SecretTypeOpaque},
			&admissionregistrationv1.MutatingWebhookConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: mwc},
				Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "pods.podgrace.dev"}},
			},
		}
	}
	return fake.NewClientset(objs...), &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func newManager(t *testing.T, cs *fake.Clientset, c *clock, certDir string) *Manager {
	t.Helper()
	m, err := New(Options{
		Client: cs, Namespace: ns, SecretName: secret, WebhookConfiguration: mwc, DNSNames: dnsNames,
		CAValidity: 300 * time.Hour, CertValidity: 30 * time.Hour, CertDir: certDir, Now: c.Now, Log: logr.Discard(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// snapshot is what the cluster and the cert dir hold.
type snapshot struct {
	ca, leaf *x509.Certificate
	previous []*x509.Certificate
	bundle   []*x509.Certificate
	served   *x509.Certificate
}

func read(t *testing.T, cs *fake.Clientset, certDir string) snapshot {
	t.Helper()
	ctx := context.Background()
	s, err := cs.CoreV1().Secrets(ns).Get(ctx, secret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := parseState(s.Data)
	if st.ca == nil || st.leaf == nil {
		t.Fatalf("Secret lacks a valid CA or serving pair: keys %v", keys(s.Data))
	}
	w, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, mwc, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := ParseCertificates(w.Webhooks[0].ClientConfig.CABundle)
	if err != nil {
		t.Fatalf("caBundle: %v", err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, "tls.crt"), filepath.Join(certDir, "tls.key"))
	if err != nil {
		t.Fatalf("cert dir: %v", err)
	}
	return snapshot{ca: st.ca.Cert, leaf: st.leaf.Cert, previous: st.previous, bundle: bundle, served: pair.Leaf}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// trusted: the served certificate verifies against the caBundle for the
// Service's name at time now, as the API server checks it.
func trusted(t *testing.T, s snapshot, now time.Time) {
	t.Helper()
	pool := x509.NewCertPool()
	for _, c := range s.bundle {
		pool.AddCert(c)
	}
	if _, err := s.served.Verify(x509.VerifyOptions{Roots: pool, DNSName: dnsNames[0], CurrentTime: now}); err != nil {
		t.Fatalf("the served certificate is not trusted by the caBundle: %v", err)
	}
}

func TestEnsureBootstrap(t *testing.T) {
	t.Parallel()
	cs, c := newFixture(t)
	dir := t.TempDir()
	m := newManager(t, cs, c, dir)
	if err := m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := read(t, cs, dir)
	trusted(t, s, c.Now())
	if !s.served.Equal(s.leaf) || len(s.bundle) != 1 || !s.bundle[0].Equal(s.ca) {
		t.Errorf("cert dir or caBundle differ from the Secret")
	}
	if s.leaf.NotAfter.Sub(c.Now()) != 30*time.Hour || s.ca.NotAfter.Sub(c.Now()) != 300*time.Hour {
		t.Errorf("lifetimes: leaf until %v, CA until %v", s.leaf.NotAfter, s.ca.NotAfter)
	}
	for _, name := range []string{"tls.crt", "tls.key"} {
		if fi, err := os.Lstat(filepath.Join(dir, name)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s is not a symlink through ..data: %v %v", name, fi, err)
		}
	}

	// A second pass changes nothing.
	cs.ClearActions()
	if err := m.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, a := range cs.Actions() {
		if a.GetVerb() != "get" {
			t.Errorf("second pass made a %s of %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
}

func TestEnsureRenewsLeafThenRotatesCA(t *testing.T) {
	t.Parallel()
	cs, c := newFixture(t)
	dir := t.TempDir()
	m := newManager(t, cs, c, dir)
	ctx := context.Background()
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	first := read(t, cs, dir)

	// Not yet due: two thirds of 30h (plus the 3h backdate) have not passed.
	c.Add(15 * time.Hour)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if s := read(t, cs, dir); !s.leaf.Equal(first.leaf) {
		t.Fatal("renewed too early")
	}
	// Due: a third of the lifetime left.
	c.Add(5 * time.Hour)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	renewed := read(t, cs, dir)
	if renewed.leaf.Equal(first.leaf) || !renewed.ca.Equal(first.ca) || !renewed.served.Equal(renewed.leaf) {
		t.Fatal("the serving certificate was not renewed from the same CA")
	}
	trusted(t, renewed, c.Now())

	// Just before the CA is due (two thirds of 300h + 5m backdate, ~200h),
	// the serving certificate has been renewed again by the first CA.
	c.Add(175 * time.Hour)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	before := read(t, cs, dir)
	if !before.ca.Equal(first.ca) || before.leaf.Equal(renewed.leaf) {
		t.Fatal("expected a third serving certificate from the first CA")
	}
	c.Add(10 * time.Hour)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	rotated := read(t, cs, dir)
	if rotated.ca.Equal(first.ca) {
		t.Fatal("the CA was not rotated")
	}
	if len(rotated.previous) != 1 || !rotated.previous[0].Equal(first.ca) || len(rotated.bundle) != 2 {
		t.Fatalf("the previous CA is not kept in the bundle: previous %d, bundle %d", len(rotated.previous), len(rotated.bundle))
	}
	if err := rotated.leaf.CheckSignatureFrom(rotated.ca); err != nil {
		t.Fatalf("the serving certificate is not from the new CA: %v", err)
	}
	trusted(t, rotated, c.Now())
	// A replica still serving the old certificate is still trusted.
	trusted(t, snapshot{bundle: rotated.bundle, served: before.leaf}, c.Now())

	// Once the previous CA expires it leaves the bundle.
	c.Add(120 * time.Hour)
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if s := read(t, cs, dir); len(s.previous) != 0 || len(s.bundle) != 1 {
		t.Errorf("the expired CA is still trusted: previous %d, bundle %d", len(s.previous), len(s.bundle))
	}
}

// Two replicas start together: one CA and one serving certificate win, and
// both serve it.
func TestEnsureReplicasAgree(t *testing.T) {
	t.Parallel()
	cs, c := newFixture(t)
	optimisticConcurrency(cs)
	dirs := []string{t.TempDir(), t.TempDir()}
	ms := []*Manager{newManager(t, cs, c, dirs[0]), newManager(t, cs, c, dirs[1])}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, m := range ms {
		wg.Go(func() { errs[i] = m.Ensure(context.Background()) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	a, b := read(t, cs, dirs[0]), read(t, cs, dirs[1])
	if !a.served.Equal(b.served) || !a.served.Equal(a.leaf) {
		t.Error("the replicas serve different certificates")
	}
	trusted(t, a, c.Now())
}

// optimisticConcurrency makes the fake clientset check resourceVersions on
// Secret updates, as the API server does (the fake's tracker does not): an
// update from a stale read fails with a conflict.
func optimisticConcurrency(cs *fake.Clientset) {
	var mu sync.Mutex
	gvr := corev1.SchemeGroupVersion.WithResource("secrets")
	cs.PrependReactor("update", "secrets", func(a clienttesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		obj := a.(clienttesting.UpdateAction).GetObject().(*corev1.Secret).DeepCopy()
		cur, err := cs.Tracker().Get(gvr, obj.Namespace, obj.Name)
		if err != nil {
			return true, nil, err
		}
		rv := cur.(*corev1.Secret).ResourceVersion
		if obj.ResourceVersion != rv {
			return true, nil, newConflict()
		}
		n, _ := strconv.Atoi(rv)
		obj.ResourceVersion = strconv.Itoa(n + 1)
		return true, obj, cs.Tracker().Update(gvr, obj, obj.Namespace)
	})
}

// Without the Secret, podgrace creates it; without the webhook
// configuration, the bundle is set when it appears.
func TestEnsureCreatesSecretAndWaitsForConfiguration(t *testing.T) {
	t.Parallel()
	cs, c := newFixture(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	dir := t.TempDir()
	m := newManager(t, cs, c, dir)
	ctx := context.Background()
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: mwc},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "pods.podgrace.dev"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Ensure(ctx); err != nil {
		t.Fatal(err)
	}
	trusted(t, read(t, cs, dir), c.Now())
}

func TestEnsureReportsForbidden(t *testing.T) {
	t.Parallel()
	cs, c := newFixture(t, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	cs.PrependReactor("create", "secrets", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, newForbidden()
	})
	err := newManager(t, cs, c, t.TempDir()).Ensure(context.Background())
	if err == nil || !strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("error %v does not name the Secret and the denial", err)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	cs, _ := newFixture(t)
	for name, o := range map[string]Options{
		"no client":    {Namespace: ns, SecretName: secret, DNSNames: dnsNames, CertDir: "/x"},
		"no secret":    {Client: cs, Namespace: ns, DNSNames: dnsNames, CertDir: "/x"},
		"no dns names": {Client: cs, Namespace: ns, SecretName: secret, CertDir: "/x"},
		"no cert dir":  {Client: cs, Namespace: ns, SecretName: secret, DNSNames: dnsNames},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func newConflict() error {
	return apierrors.NewConflict(schema.GroupResource{Resource: "secrets"}, secret, errors.New("the object has been modified"))
}

func newForbidden() error {
	return apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, secret, errors.New("RBAC: not allowed"))
}
