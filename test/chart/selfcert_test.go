package chart_test

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/pkg/cli"
	"github.com/podgrace/podgrace/pkg/selfcert"
)

// TestSelfManagedCA installs the chart with certManager.enabled=false and
// runs two podgrace replicas in process, each with the --selfcert-* flags
// the chart's Deployment passes and the chart ServiceAccount's permissions:
// they create the CA and the serving certificate in the chart's Secret,
// set the caBundle of the chart's webhook configuration, and the API server
// calls them over that TLS through the chart's Service. With lifetimes of
// seconds (selfSignedCA values), the serving certificate is renewed and the
// CA rotated while pods are being created: every pod is mutated.
func TestSelfManagedCA(t *testing.T) {
	ctx := context.Background()
	cfg := apiServer(t)
	cs := newClientset(t, cfg)
	name := unique("podgrace-sc")
	rel := chart.Release{Name: name, Namespace: name}
	r := installChart(ctx, t, cfg, rel, map[string]any{
		"certManager":  map[string]any{"enabled": false},
		"selfSignedCA": map[string]any{"caValidity": "36s", "certValidity": "15s"},
	})
	var d appsv1.Deployment
	if err := chart.Into(r.Find("Deployment", rel.Name), &d); err != nil {
		t.Fatal(err)
	}
	var flags []string
	for _, a := range d.Spec.Template.Spec.Containers[0].Args {
		if strings.HasPrefix(a, "--selfcert-") {
			flags = append(flags, a)
		}
	}
	// The pod's namespace comes from $POD_NAMESPACE in the chart; the check
	// interval is shortened for the test.
	flags = append(flags, "--selfcert-namespace="+rel.Namespace, "--selfcert-check-interval=500ms")
	t.Logf("replica flags: %q", flags)

	saCfg := asServiceAccount(cfg, rel.Namespace, rel.Name)
	var ports []int
	for i := range 2 {
		var sc cli.SelfCert
		fs := pflag.NewFlagSet("webhook", pflag.ContinueOnError)
		sc.AddFlags(fs)
		if err := fs.Parse(flags); err != nil {
			t.Fatal(err)
		}
		certDir := t.TempDir()
		rctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		if err := sc.Start(rctx, saCfg, certDir, logr.Discard()); err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		port := runPodgrace(rctx, t, cfg, r, rel, certDir).webhook
		routeService(ctx, t, cs, rel.Namespace, rel.Name+"-webhook", port)
		ports = append(ports, port)
	}

	shop := unique("shop-sc")
	optInNamespace(ctx, t, cs, shop)
	checkMutated(ctx, t, cs, shop, "first")

	served := map[string]bool{}
	cas := map[string]bool{}
	maxBundle := 0
	load := startPodLoad(cs, shop)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && (len(cas) < 2 || len(served) < 4) {
		for _, p := range ports {
			if c, err := servedCertificate(p); err == nil {
				served[c.SerialNumber.String()] = true
			}
		}
		mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, rel.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		bundle, err := selfcert.ParseCertificates(mwc.Webhooks[0].ClientConfig.CABundle)
		if err != nil {
			t.Fatalf("caBundle: %v", err)
		}
		maxBundle = max(maxBundle, len(bundle))
		for _, c := range bundle {
			cas[c.SerialNumber.String()] = true
		}
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	n := load.finish(t)
	t.Logf("%d pods admitted, all mutated, while %d serving certificates and %d CAs were used (caBundle of up to %d CAs)", n, len(served), len(cas), maxBundle)
	if len(served) < 3 || len(cas) < 2 || maxBundle < 2 {
		t.Errorf("expected renewals and a CA rotation within 30s: %d serving certificates, %d CAs, caBundle of up to %d", len(served), len(cas), maxBundle)
	}
	checkMutated(ctx, t, cs, shop, "after-rotation")

	// The Secret holds what the replicas serve.
	s, err := cs.CoreV1().Secrets(rel.Namespace).Get(ctx, rel.Name+"-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := selfcert.ParseCertificates(s.Data["tls.crt"])
	if err != nil {
		t.Fatal(err)
	}
	ca, err := selfcert.ParseCertificates(s.Data[selfcert.KeyCACert])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf[0].Verify(x509.VerifyOptions{Roots: pool(ca), DNSName: rel.Name + "-webhook." + rel.Namespace + ".svc"}); err != nil {
		t.Errorf("the Secret's serving certificate does not verify for the Service: %v", err)
	}
}

func pool(certs []*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}
