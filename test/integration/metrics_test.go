package integration

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/webhook"
)

// TestSecureMetrics: with MetricsSecure, /metrics is served over HTTPS with
// the webhook's certificate, and only to a caller whose service-account
// token the real API server authenticates and whose RBAC allows `get` on
// /metrics. No token or a bad one is 401, a user without the permission is
// 403, plain HTTP gets no metrics.
func TestSecureMetrics(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg := baseConfig()
	in, err := startInstanceWith(ctx, "secure-metrics", webhook.Options{Config: &cfg, CertDir: certDir, MetricsSecure: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.stop() })
	if !strings.HasPrefix(in.metrics, "https://") {
		t.Fatalf("metrics at %s, want https", in.metrics)
	}

	ns := namespace(t, nil, nil)
	token := func(sa string) string {
		t.Helper()
		if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	reader, stranger := token("prometheus"), token("stranger")
	// The ClusterRole the chart ships for scrapers, bound to one of them.
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-metrics-reader"},
		Rules:      []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-metrics-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "prometheus"}},
	}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), binding.Name, metav1.DeleteOptions{})
	})

	get := func(url, authorization string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if authorization != "" {
			req.Header.Set("Authorization", authorization)
		}
		resp, err := testCAClient().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, resp.Header, string(body)
	}

	for _, c := range []struct {
		name, authorization string
		code                int
		body                string
	}{
		{"no token", "", http.StatusUnauthorized, "a bearer token is required"},
		{"not a bearer token", "Basic cHJvbWV0aGV1czpzZWNyZXQ=", http.StatusUnauthorized, "a bearer token is required"},
		{"a token the API server does not know", "Bearer not-a-token", http.StatusUnauthorized, "the token was not authenticated"},
		{"a service account without the permission", "Bearer " + stranger, http.StatusForbidden,
			"user system:serviceaccount:" + ns + ":stranger may not get /metrics"},
		{"the scraper's service account", "Bearer " + reader, http.StatusOK, "go_goroutines"},
		{"the scheme in lower case", "bearer " + reader, http.StatusOK, "go_goroutines"},
	} {
		code, header, body := get(in.metrics, c.authorization)
		if code != c.code || !strings.Contains(body, c.body) {
			t.Errorf("%s: %d %.100q, want %d with %q", c.name, code, body, c.code, c.body)
		}
		if code == http.StatusUnauthorized && header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", c.name)
		}
	}
	// Plain HTTP gets the TLS server's refusal, not metrics.
	if code, body := probe(strings.Replace(in.metrics, "https://", "http://", 1)); code != http.StatusBadRequest {
		t.Errorf("plain HTTP: %d %s, want 400", code, body)
	}
}
