package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podgrace/podgrace/pkg/selfcert"
)

// SelfCert is the self-managed TLS of `podgrace webhook` (the chart's
// certManager.enabled=false): with --selfcert-secret set, podgrace creates
// and renews its CA and serving certificate itself (pkg/selfcert), writes
// the pair into --cert-dir before the server starts and keeps the webhook
// configuration's caBundle current. The webhook command wires it in with
// AddFlags and, once it has a REST config and before it serves, Start.
type SelfCert struct {
	secret, namespace, webhookConfiguration string
	dnsNames                                []string
	caValidity, certValidity, interval      time.Duration
}

// AddFlags registers the --selfcert-* flags.
func (s *SelfCert) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&s.secret, "selfcert-secret", "", "manage a self-signed CA and serving certificate in this Secret (cert-manager-less installs); empty: read --cert-dir as mounted")
	f.StringVar(&s.namespace, "selfcert-namespace", "", "namespace of --selfcert-secret (default: $POD_NAMESPACE)")
	f.StringVar(&s.webhookConfiguration, "selfcert-webhook-configuration", "", "MutatingWebhookConfiguration whose caBundle is kept equal to the Secret's CAs")
	f.StringSliceVar(&s.dnsNames, "selfcert-dns-names", nil, "DNS names of the serving certificate (the webhook Service's names)")
	f.DurationVar(&s.caValidity, "selfcert-ca-validity", selfcert.DefaultCAValidity, "lifetime of a new CA; it is rotated with a third left")
	f.DurationVar(&s.certValidity, "selfcert-cert-validity", selfcert.DefaultCertValidity, "lifetime of a new serving certificate; it is renewed with a third left")
	f.DurationVar(&s.interval, "selfcert-check-interval", selfcert.DefaultInterval, "how often the certificates are checked")
}

// Enabled reports whether --selfcert-secret was given.
func (s *SelfCert) Enabled() bool { return s.secret != "" }

// Start makes certDir hold a current serving certificate, when enabled
// (the webhook server needs it to start), then keeps everything current in
// the background until ctx ends. Disabled, it does nothing.
func (s *SelfCert) Start(ctx context.Context, cfg *rest.Config, certDir string, log logr.Logger) error {
	if !s.Enabled() {
		return nil
	}
	ns := s.namespace
	if ns == "" {
		ns = os.Getenv("POD_NAMESPACE")
	}
	if ns == "" {
		return errors.New("--selfcert-secret needs --selfcert-namespace or $POD_NAMESPACE")
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	m, err := selfcert.New(selfcert.Options{
		Client: cs, Namespace: ns, SecretName: s.secret, WebhookConfiguration: s.webhookConfiguration,
		DNSNames: s.dnsNames, CAValidity: s.caValidity, CertValidity: s.certValidity,
		CertDir: certDir, Interval: s.interval, Log: log.WithName("selfcert"),
	})
	if err != nil {
		return err
	}
	if err := m.Ensure(ctx); err != nil {
		return fmt.Errorf("self-managed certificate: %w", err)
	}
	go func() { _ = m.Start(ctx) }()
	return nil
}
