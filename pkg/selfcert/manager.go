package selfcert

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Keys of the Secret. tls.crt and tls.key are the serving pair, ca.crt and
// ca.key the current CA (the names cert-manager uses), previous-ca.crt the
// CAs replaced by a rotation that have not expired yet: a replica may still
// serve a certificate they signed until it reloads, so they stay trusted.
const (
	KeyCACert         = "ca.crt"
	KeyCAKey          = "ca.key"
	KeyPreviousCACert = "previous-ca.crt"
)

// Defaults of Options.
const (
	DefaultCAValidity   = 10 * 365 * 24 * time.Hour
	DefaultCertValidity = 365 * 24 * time.Hour
	DefaultInterval     = time.Minute
)

// Options configure a Manager.
type Options struct {
	// Client reads and updates the Secret and the webhook configuration.
	// It needs get and update on exactly those two objects (the chart's
	// Role and ClusterRole grant that, by name), and create on Secrets only
	// if the Secret does not exist yet.
	Client kubernetes.Interface
	// Namespace and SecretName locate the Secret shared by every replica.
	Namespace, SecretName string
	// WebhookConfiguration is the MutatingWebhookConfiguration whose
	// webhooks' caBundle is kept equal to the Secret's CAs, and the
	// ValidatingWebhookConfiguration of the same name (the workload check),
	// when it exists. Empty: none.
	WebhookConfiguration string
	// DNSNames of the serving certificate (the Service's names).
	DNSNames []string
	// CAValidity and CertValidity are the lifetimes of new certificates.
	CAValidity, CertValidity time.Duration
	// CertDir receives tls.crt and tls.key, swapped atomically together.
	CertDir string
	// Interval between checks; each check renews what has less than a third
	// of its lifetime left.
	Interval time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	// Log is the manager's logger.
	Log logr.Logger
}

// Manager keeps a self-signed CA, a serving certificate, the cert dir and the
// webhook configuration's caBundle current. Every replica runs one: they
// coordinate through the Secret with optimistic concurrency (an update made
// from a stale read fails and the loser re-reads), so no leader is needed.
type Manager struct {
	o       Options
	written []byte // tls.crt last written to CertDir
}

// New checks the options and returns a Manager.
func New(o Options) (*Manager, error) {
	switch {
	case o.Client == nil:
		return nil, errors.New("selfcert: no client")
	case o.Namespace == "" || o.SecretName == "":
		return nil, errors.New("selfcert: the Secret's namespace and name are required")
	case len(o.DNSNames) == 0:
		return nil, errors.New("selfcert: no DNS names for the serving certificate")
	case o.CertDir == "":
		return nil, errors.New("selfcert: no cert dir")
	}
	if o.CAValidity <= 0 {
		o.CAValidity = DefaultCAValidity
	}
	if o.CertValidity <= 0 {
		o.CertValidity = DefaultCertValidity
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Manager{o: o}, nil
}

// Start runs Ensure every Interval until ctx ends (a controller-runtime
// manager.Runnable). Failures are logged and retried: the certificate being
// served stays valid for a third of its lifetime after renewal is due.
func (m *Manager) Start(ctx context.Context) error {
	t := time.NewTicker(m.o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := m.Ensure(ctx); err != nil && ctx.Err() == nil {
			m.o.Log.Error(err, "Keeping the self-managed certificate current; retrying", "in", m.o.Interval)
		}
	}
}

// NeedLeaderElection is false: every replica keeps its own cert dir.
func (m *Manager) NeedLeaderElection() bool { return false }

// errRetry means the Secret changed under us: re-read and decide again.
var errRetry = errors.New("selfcert: the Secret changed concurrently")

// Ensure makes the Secret hold a CA and a serving certificate that are not
// due for renewal, the webhook configuration trust the Secret's CAs, and the
// cert dir hold the Secret's serving pair. Call it once before the webhook
// server starts (it needs the files), then let Start repeat it.
//
// The order makes a rotation safe without a leader: a new CA is first
// stored next to the previous one and trusted by the webhook configuration;
// a serving certificate is only issued by a CA the webhook configuration
// already trusts; the previous CA stays trusted until it expires.
func (m *Manager) Ensure(ctx context.Context) error {
	var err error
	for range 5 {
		if err = m.ensureOnce(ctx); !errors.Is(err, errRetry) {
			return err
		}
	}
	return err
}

func (m *Manager) ensureOnce(ctx context.Context) error {
	now := m.o.Now()
	secret, err := m.secret(ctx)
	if err != nil {
		return err
	}
	st := parseState(secret.Data)

	// 1. The CA, and the CAs it replaced while they are still valid.
	changed := false
	if st.ca == nil || dueForRenewal(st.ca.Cert, now) {
		ca, err := NewCA(fmt.Sprintf("podgrace-ca@%d", now.Unix()), m.o.CAValidity, now)
		if err != nil {
			return err
		}
		if st.ca != nil && now.Before(st.ca.Cert.NotAfter) {
			st.previous = append(st.previous, st.ca.Cert)
		}
		m.o.Log.Info("Created a CA", "reason", st.caReason(now), "notAfter", ca.Cert.NotAfter)
		st.ca, changed = ca, true
	}
	kept := st.previous[:0]
	for _, c := range st.previous {
		if now.Before(c.NotAfter) && !c.Equal(st.ca.Cert) {
			kept = append(kept, c)
		}
	}
	changed = changed || len(kept) != len(st.previous)
	st.previous = kept
	if changed {
		if secret, err = m.update(ctx, secret, st); err != nil {
			return err
		}
	}

	// 2. The webhook configuration trusts the CAs.
	trusted, err := m.ensureCABundle(ctx, st.bundle())
	if err != nil {
		return err
	}

	// 3. The serving certificate, from a trusted CA.
	if reason := m.leafReason(st, now); reason != "" {
		if !trusted {
			return fmt.Errorf("selfcert: the webhook configuration %s does not trust the new CA yet; not issuing from it", m.o.WebhookConfiguration)
		}
		leaf, err := st.ca.Issue(m.o.DNSNames, nil, m.o.CertValidity, now)
		if err != nil {
			return err
		}
		m.o.Log.Info("Issued a serving certificate", "reason", reason, "dnsNames", m.o.DNSNames, "notAfter", leaf.Cert.NotAfter)
		st.leaf = leaf
		if secret, err = m.update(ctx, secret, st); err != nil {
			return err
		}
	}

	// 4. The cert dir serves the Secret's pair.
	return m.writeCertDir(secret.Data[corev1.TLSCertKey], secret.Data[corev1.TLSPrivateKeyKey])
}

// secret reads the Secret, creating it when it does not exist (the chart
// creates it empty, so podgrace needs no create permission there).
func (m *Manager) secret(ctx context.Context) (*corev1.Secret, error) {
	secrets := m.o.Client.CoreV1().Secrets(m.o.Namespace)
	s, err := secrets.Get(ctx, m.o.SecretName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: m.o.SecretName, Namespace: m.o.Namespace, Labels: map[string]string{"app.kubernetes.io/name": "podgrace"}},
			Type:       corev1.SecretTypeOpaque,
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return nil, errRetry
		}
	}
	if err != nil {
		return nil, fmt.Errorf("selfcert: Secret %s/%s: %w", m.o.Namespace, m.o.SecretName, err)
	}
	return s, nil
}

// update writes st into the Secret read as s; a conflict means another
// replica wrote first.
func (m *Manager) update(ctx context.Context, s *corev1.Secret, st *state) (*corev1.Secret, error) {
	s = s.DeepCopy()
	if s.Data == nil {
		s.Data = map[string][]byte{}
	}
	s.Data[KeyCACert], s.Data[KeyCAKey] = st.ca.CertPEM, st.ca.KeyPEM
	s.Data[KeyPreviousCACert] = EncodeCertificates(st.previous)
	if len(st.previous) == 0 {
		delete(s.Data, KeyPreviousCACert)
	}
	if st.leaf != nil {
		s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey] = st.leaf.CertPEM, st.leaf.KeyPEM
	}
	got, err := m.o.Client.CoreV1().Secrets(m.o.Namespace).Update(ctx, s, metav1.UpdateOptions{FieldManager: "podgrace"})
	if apierrors.IsConflict(err) {
		return nil, errRetry
	}
	if err != nil {
		return nil, fmt.Errorf("selfcert: updating Secret %s/%s: %w", m.o.Namespace, m.o.SecretName, err)
	}
	return got, nil
}

// ensureCABundle sets the caBundle of every webhook of the configurations to
// bundle, and reports whether the mutating configuration now trusts it (true
// when there is no configuration to keep: nothing calls the webhook then).
// The validating configuration of the same name (the workload check, which
// only warns) is kept current too when it exists.
func (m *Manager) ensureCABundle(ctx context.Context, bundle []byte) (bool, error) {
	if m.o.WebhookConfiguration == "" {
		return true, nil
	}
	api := m.o.Client.AdmissionregistrationV1()
	trusted, err := keepCABundle(ctx, m, "MutatingWebhookConfiguration", api.MutatingWebhookConfigurations(), bundle,
		func(c *admissionregistrationv1.MutatingWebhookConfiguration) []*admissionregistrationv1.WebhookClientConfig {
			out := make([]*admissionregistrationv1.WebhookClientConfig, len(c.Webhooks))
			for i := range c.Webhooks {
				out[i] = &c.Webhooks[i].ClientConfig
			}
			return out
		})
	if err != nil {
		return false, err
	}
	if _, err := keepCABundle(ctx, m, "ValidatingWebhookConfiguration", api.ValidatingWebhookConfigurations(), bundle,
		func(c *admissionregistrationv1.ValidatingWebhookConfiguration) []*admissionregistrationv1.WebhookClientConfig {
			out := make([]*admissionregistrationv1.WebhookClientConfig, len(c.Webhooks))
			for i := range c.Webhooks {
				out[i] = &c.Webhooks[i].ClientConfig
			}
			return out
		}); err != nil {
		return false, err
	}
	return trusted, nil
}

// webhookConfigs is the part of a typed client of webhook configurations
// keepCABundle uses.
type webhookConfigs[T any] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
}

// keepCABundle sets the caBundle of every webhook of one configuration.
func keepCABundle[T any](ctx context.Context, m *Manager, kind string, configs webhookConfigs[T], bundle []byte, clientConfigs func(T) []*admissionregistrationv1.WebhookClientConfig) (bool, error) {
	name := m.o.WebhookConfiguration
	wc, err := configs.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		m.o.Log.Info("Webhook configuration not found; its caBundle will be set when it exists", "kind", kind, "name", name)
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("selfcert: %s %s: %w", kind, name, err)
	}
	stale := false
	for _, cc := range clientConfigs(wc) {
		if !bytes.Equal(cc.CABundle, bundle) {
			cc.CABundle = bundle
			stale = true
		}
	}
	if !stale {
		return true, nil
	}
	if _, err := configs.Update(ctx, wc, metav1.UpdateOptions{FieldManager: "podgrace"}); err != nil {
		if apierrors.IsConflict(err) {
			return false, errRetry
		}
		return false, fmt.Errorf("selfcert: updating the caBundle of %s %s: %w", kind, name, err)
	}
	m.o.Log.Info("Updated the webhook configuration's caBundle", "kind", kind, "name", name, "cas", strconv.Itoa(bytes.Count(bundle, []byte("BEGIN CERTIFICATE"))))
	return true, nil
}

// leafReason says why the serving certificate must be (re)issued, or "".
func (m *Manager) leafReason(st *state, now time.Time) string {
	switch {
	case st.leaf == nil:
		return "missing or invalid"
	case st.leaf.Cert.CheckSignatureFrom(st.ca.Cert) != nil:
		return "not signed by the current CA"
	case dueForRenewal(st.leaf.Cert, now):
		return "due for renewal"
	case !sameNames(st.leaf.Cert.DNSNames, m.o.DNSNames):
		return "DNS names changed"
	}
	return ""
}

// writeCertDir puts the serving pair into CertDir the way the kubelet
// updates a secret volume: the files are symlinks through ..data into a
// versioned directory, and ..data is swapped with one rename, so the webhook
// server's certificate watcher never reads a certificate with another key.
func (m *Manager) writeCertDir(cert, key []byte) error {
	if len(cert) == 0 || len(key) == 0 {
		return errors.New("selfcert: the Secret has no serving certificate")
	}
	if bytes.Equal(cert, m.written) {
		return nil
	}
	dir := m.o.CertDir
	version := fmt.Sprintf("..%d", m.o.Now().UnixNano())
	if err := os.MkdirAll(filepath.Join(dir, version), 0o700); err != nil {
		return err
	}
	for name, data := range map[string][]byte{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key} {
		if err := os.WriteFile(filepath.Join(dir, version, name), data, 0o600); err != nil {
			return err
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(version, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for _, name := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey} {
		link := filepath.Join(dir, name)
		if target, err := os.Readlink(link); err == nil && target == filepath.Join("..data", name) {
			continue
		}
		_ = os.Remove(link)
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			return err
		}
	}
	if old != "" && old != version {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
	m.written = slices.Clone(cert)
	return nil
}

// state is what the Secret holds, parsed; invalid entries are nil.
type state struct {
	ca, leaf *KeyPair
	previous []*x509.Certificate
}

func parseState(data map[string][]byte) *state {
	st := &state{}
	if ca, err := ParseKeyPair(data[KeyCACert], data[KeyCAKey]); err == nil && ca.Cert.IsCA {
		st.ca = ca
	}
	if leaf, err := ParseKeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey]); err == nil {
		st.leaf = leaf
	}
	if prev, err := ParseCertificates(data[KeyPreviousCACert]); err == nil {
		st.previous = prev
	}
	return st
}

func (st *state) caReason(now time.Time) string {
	if st.ca == nil {
		return "missing or invalid"
	}
	if !now.Before(st.ca.Cert.NotAfter) {
		return "expired"
	}
	return "due for renewal"
}

// bundle is the caBundle: the current CA, then the previous ones.
func (st *state) bundle() []byte {
	return EncodeCertificates(append([]*x509.Certificate{st.ca.Cert}, st.previous...))
}

// dueForRenewal: less than a third of the certificate's lifetime is left.
func dueForRenewal(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return !now.Before(c.NotAfter.Add(-life / 3))
}

func sameNames(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
