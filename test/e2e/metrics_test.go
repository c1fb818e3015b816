//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/hack/manifests/chart"
)

// TestSecureMetrics scrapes the installed podgrace (chart value
// metrics.secure) the way Prometheus does in a cluster: through the chart's
// metrics Service (kube-proxy), over TLS verified with the CA cert-manager
// issued, with a service-account token that podgrace has the real API
// server review. The kubelet mounted the certificate from the Secret; the
// token is a bound service-account token from the TokenRequest API.
func TestSecureMetrics(t *testing.T) {
	requirePodgrace(t)
	ctx := context.Background()
	rel := chart.DefaultRelease

	secret, err := kube.CoreV1().Secrets(pg.Namespace).Get(ctx, rel.Name+"-webhook-tls", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(secret.Data["ca.crt"]) {
		t.Fatalf("no CA in %s", secret.Name)
	}
	svc, err := kube.CoreV1().Services(pg.Namespace).Get(ctx, rel.Name+"-metrics", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Spec.Ports) != 1 {
		t.Fatalf("metrics Service ports %+v", svc.Spec.Ports)
	}
	url := "https://" + net.JoinHostPort(svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port))) + "/metrics"
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		// A new connection per scrape, so kube-proxy spreads them over both replicas.
		DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{
			RootCAs: pool, ServerName: rel.Name + "-webhook." + pg.Namespace + ".svc", MinVersion: tls.VersionTLS12,
		},
	}}

	ns := newNamespace(t, "e2e-metrics", false)
	sa, err := kube.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "prometheus"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := kube.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scrape := func(token string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}

	// The install waits for the webhook Service only; the metrics Service
	// refused connections for a few seconds after it in one run of five:
	// wait until it answers at all, then check what it answers.
	var lastErr error
	if err := poll(ctx, 60*time.Second, func(context.Context) (bool, error) {
		_, _, lastErr = scrape("")
		return lastErr == nil, nil
	}); err != nil {
		t.Fatalf("the metrics Service %s never answered (last: %v): %v", url, lastErr, err)
	}
	if code, body, err := scrape(""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("without a token: %d %.100q %v, want 401", code, body, err)
	}
	if code, body, err := scrape(tr.Status.Token); err != nil || code != http.StatusForbidden {
		t.Errorf("scraper not bound yet: %d %.100q %v, want 403", code, body, err)
	}

	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-prometheus"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: rel.Name + "-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: sa.Name}},
	}
	if _, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = kube.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
	})
	// A replica remembers the 403 for 10 s; then the binding counts. Both
	// replicas must answer 200 a few times in a row.
	start := time.Now()
	var last string
	ok := 0
	if err := poll(ctx, 60*time.Second, func(context.Context) (bool, error) {
		code, body, err := scrape(tr.Status.Token)
		if err != nil || code != http.StatusOK {
			last, ok = fmt.Sprintf("%d %.100q %v", code, body, err), 0
			return false, nil
		}
		if !strings.Contains(body, "podgrace_pods_mutated_total") {
			last, ok = "200 without podgrace_pods_mutated_total", 0
			return false, nil
		}
		ok++
		return ok == 10, nil
	}); err != nil {
		t.Fatalf("the bound scraper never read /metrics 10 times in a row (last: %s): %v", last, err)
	}
	t.Logf("bound scraper: 10 scrapes in a row through the Service %.1fs after the binding", time.Since(start).Seconds())
}
