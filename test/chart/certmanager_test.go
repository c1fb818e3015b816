package chart_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	apiutil "github.com/cert-manager/cert-manager/pkg/api/util"
	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	cmcontroller "github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/cainjector"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"go.uber.org/zap/zapcore"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	ctrlconfig "sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	// cert-manager's controllers register themselves with
	// cmcontroller.Known(), its issuer kinds with the issuer factory.
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	_ "github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	_ "github.com/cert-manager/cert-manager/pkg/controller/issuers"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/pkg/selfcert"
)

// certManagerControllers are the cert-manager controllers that issue a
// Certificate from a SelfSigned or CA Issuer, as cert-manager's controller
// binary runs them (its --controllers default, minus ACME, Vault, Venafi and
// the ingress/gateway shims).
var certManagerControllers = []string{
	"issuers",
	"certificaterequests-approver",
	"certificaterequests-issuer-ca",
	"certificaterequests-issuer-selfsigned",
	"certificates-trigger",
	"certificates-key-manager",
	"certificates-request-manager",
	"certificates-issuing",
	"certificates-readiness",
	"certificates-revision-manager",
}

// startCertManager runs cert-manager's issuing controllers and its
// cainjector (MutatingWebhookConfigurations only) against the API server,
// in this process, until the test ends.
func startCertManager(t *testing.T, cfg *rest.Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, len(certManagerControllers)+1)
	t.Cleanup(func() {
		cancel()
		for range len(certManagerControllers) + 1 {
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Log("a cert-manager controller did not stop within 30s")
				return
			}
		}
	})
	// cert-manager logs transient errors (an Issuer not ready yet…) as
	// errors: its log is shown with PODGRACE_TEST_VERBOSE only.
	level := zapcore.DPanicLevel
	if os.Getenv("PODGRACE_TEST_VERBOSE") != "" {
		level = zapcore.DebugLevel
	}
	log := zap.New(zap.WriteTo(testWriter{t}), zap.Level(level))
	ctx = logf.NewContext(ctx, log.WithName("cert-manager"))

	// cert-manager's controllers read a kubeconfig, as its binary does.
	user, err := env.AddUser(envtest.User{Name: "cert-manager", Groups: []string{"system:masters"}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "cert-manager.kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	factory, err := cmcontroller.NewContextFactory(ctx, cmcontroller.ContextOptions{
		Kubeconfig:         kubeconfig,
		KubernetesAPIQPS:   100,
		KubernetesAPIBurst: 200,
		IssuerOptions:      cmcontroller.IssuerOptions{ClusterResourceNamespace: "cert-manager"},
		CertificateOptions: cmcontroller.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: time.Second,
			CertificateRequestMaximumBackoffDuration: 10 * time.Second,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	known := cmcontroller.Known()
	var ifaces []cmcontroller.Interface
	for _, name := range certManagerControllers {
		newController, ok := known[name]
		if !ok {
			t.Fatalf("cert-manager controller %q is not registered", name)
		}
		c, err := newController(factory)
		if err != nil {
			t.Fatalf("cert-manager controller %s: %v", name, err)
		}
		ifaces = append(ifaces, c)
	}
	for i, c := range ifaces {
		go func() {
			defer func() { done <- struct{}{} }()
			if err := c.Run(2, ctx); err != nil {
				t.Errorf("cert-manager controller %s: %v", certManagerControllers[i], err)
			}
		}()
	}
	shared, err := factory.Build()
	if err != nil {
		t.Fatal(err)
	}
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.SharedInformerFactory.Start(ctx.Done())

	// cainjector: a controller-runtime manager, as cert-manager's cainjector
	// binary builds it, with only the MutatingWebhookConfiguration injector.
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, cmapi.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	// cainjector applies with a field manager named after its user agent.
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "cert-manager-cainjector/v1.21.2"
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 log.WithName("cainjector"),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// controller-runtime refuses a controller name used before in the
		// process; a repeated run (-count=N) starts cainjector again.
		Controller: ctrlconfig.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := cainjector.RegisterAllInjectors(ctx, mgr, cainjector.SetupOptions{
		EnableCertificatesDataSource: true,
		EnabledReconcilersFor:        map[string]bool{cainjector.MutatingWebhookConfigurationName: true},
	}); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer func() { done <- struct{}{} }()
		if err := mgr.Start(ctx); err != nil {
			t.Errorf("cainjector: %v", err)
		}
	}()
}

// testWriter sends logs to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// zapLevel is the log level of in-process components: errors only, unless
// PODGRACE_TEST_VERBOSE is set.
func zapLevel() zapcore.Level {
	if os.Getenv("PODGRACE_TEST_VERBOSE") != "" {
		return zapcore.DebugLevel
	}
	return zapcore.ErrorLevel
}

// TestCertManager installs the chart with cert-manager TLS and runs the real
// cert-manager against the API server: its controllers issue the CA and the
// serving certificate from the chart's Issuers and Certificates, cainjector
// copies the CA into the chart's MutatingWebhookConfiguration, and the API
// server calls podgrace (in process, its cert dir fed from the issued Secret
// as the kubelet would) over that TLS, through the chart's Service, and a
// pod is mutated. Then the serving certificate is renewed (as `cmctl renew`
// does) while pods are being created: every one of them is mutated.
func TestCertManager(t *testing.T) {
	ctx := context.Background()
	cfg := apiServer(t)
	cs := newClientset(t, cfg)
	cm, err := cmclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	startCertManager(t, cfg)

	name := unique("podgrace-cm")
	rel := chart.Release{Name: name, Namespace: name}
	// Secured metrics too: podgrace reviews its scrapers' tokens with the
	// chart's RBAC, over the cert-manager certificate.
	r := installChart(ctx, t, cfg, rel, map[string]any{"metrics": map[string]any{"secure": true}})
	certName, secretName, webhookName := rel.Name+"-webhook", rel.Name+"-webhook-tls", rel.Name

	waitFor(ctx, t, 90*time.Second, "cert-manager to issue the serving certificate", func() (bool, error) {
		c, err := cm.CertmanagerV1().Certificates(rel.Namespace).Get(ctx, certName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return apiutil.CertificateHasCondition(c, cmapi.CertificateCondition{Type: cmapi.CertificateConditionReady, Status: cmmeta.ConditionTrue}), nil
	})
	secret, err := cs.CoreV1().Secrets(rel.Namespace).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	caPEM := secret.Data["ca.crt"]
	waitFor(ctx, t, 60*time.Second, "cainjector to inject the CA into the webhook configuration", func() (bool, error) {
		mwc, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, webhookName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return len(caPEM) > 0 && bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, caPEM), nil
	})
	leaf, err := selfcert.ParseCertificates(secret.Data[corev1.TLSCertKey])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("issued %s (serial %s, DNS %v) by %s", certName, leaf[0].SerialNumber, leaf[0].DNSNames, leaf[0].Issuer)

	certDir := t.TempDir()
	mountSecret(ctx, t, cs, rel.Namespace, secretName, certDir)
	addrs := runPodgrace(ctx, t, cfg, r, rel, certDir)
	port := addrs.webhook
	routeService(ctx, t, cs, rel.Namespace, rel.Name+"-webhook", port)

	shop := unique("shop-cm")
	optInNamespace(ctx, t, cs, shop)
	checkMutated(ctx, t, cs, shop, "first")
	checkSecureMetrics(ctx, t, cs, rel, addrs.metrics, caPEM)

	// Renew while admitting.
	load := startPodLoad(cs, shop)
	time.Sleep(time.Second)
	before := leaf[0].SerialNumber
	renew(ctx, t, cm, rel.Namespace, certName)
	waitFor(ctx, t, 60*time.Second, "the renewed certificate in the Secret", func() (bool, error) {
		s, err := cs.CoreV1().Secrets(rel.Namespace).Get(ctx, secretName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c, err := selfcert.ParseCertificates(s.Data[corev1.TLSCertKey])
		return err == nil && c[0].SerialNumber.Cmp(before) != 0, nil
	})
	waitFor(ctx, t, 30*time.Second, "podgrace to serve the renewed certificate", func() (bool, error) {
		c, err := servedCertificate(port)
		return err == nil && c.SerialNumber.Cmp(before) != 0, nil
	})
	served, _ := servedCertificate(port)
	waitFor(ctx, t, 30*time.Second, "the secured /metrics to serve the renewed certificate", func() (bool, error) {
		c, err := servedCertificate(addrs.metrics)
		return err == nil && c.SerialNumber.Cmp(served.SerialNumber) == 0, nil
	})
	time.Sleep(2 * time.Second)
	n := load.finish(t)
	t.Logf("renewed: serial %s → %s; %d pods admitted during the renewal, all mutated", before, served.SerialNumber, n)
	checkMutated(ctx, t, cs, shop, "after-renewal")
}

// checkSecureMetrics scrapes the secured /metrics as a Prometheus would: over
// TLS verified with the release's CA for the webhook Service's name, with a
// service-account token. Bound to the chart's metrics-reader ClusterRole the
// scraper gets the metrics; before that, 403.
func checkSecureMetrics(ctx context.Context, t *testing.T, cs kubernetes.Interface, rel chart.Release, port int, caPEM []byte) {
	t.Helper()
	if port == 0 {
		t.Fatal("the chart with metrics.secure did not pass --metrics-secure")
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "prometheus", Namespace: rel.Namespace}}
	if _, err := cs.CoreV1().ServiceAccounts(rel.Namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(rel.Namespace).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("no CA in the release's Secret")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool, ServerName: rel.Name + "-webhook." + rel.Namespace + ".svc", MinVersion: tls.VersionTLS12,
	}}}
	scrape := func() (int, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://127.0.0.1:"+strconv.Itoa(port)+"/metrics", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tr.Status.Token)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
	if code, body := scrape(); code != http.StatusForbidden {
		t.Fatalf("scraper without a binding: %d %.100q, want 403", code, body)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: rel.Name + "-prometheus"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: rel.Name + "-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: rel.Namespace, Name: sa.Name}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
	})
	// The 403 is cached for 10 s; the binding counts after that.
	var code int
	var body string
	waitFor(ctx, t, 30*time.Second, "the bound scraper to read /metrics", func() (bool, error) {
		code, body = scrape()
		return code == http.StatusOK, nil
	})
	if !strings.Contains(body, "podgrace_pods_mutated_total") {
		t.Errorf("/metrics without podgrace_pods_mutated_total: %.200q", body)
	}
}

// renew asks cert-manager to reissue a certificate now, as `cmctl renew`
// does: it sets the Issuing condition.
func renew(ctx context.Context, t *testing.T, cm cmclient.Interface, namespace, name string) {
	t.Helper()
	c, err := cm.CertmanagerV1().Certificates(namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	apiutil.SetCertificateCondition(c, c.Generation, cmapi.CertificateConditionIssuing, cmmeta.ConditionTrue, "ManuallyTriggered", "Certificate re-issuance manually triggered by the test")
	if _, err := cm.CertmanagerV1().Certificates(namespace).UpdateStatus(ctx, c, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
