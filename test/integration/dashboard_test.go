package integration

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/podgrace/podgrace/pkg/dashboard"
)

// TestDashboardAPIServerMetrics: the API server's metrics the Grafana
// dashboard queries (dashboard.APIServerMetrics) are exported by the real
// kube-apiserver. A webhook of this test's own, on a port nothing listens
// on with failurePolicy Ignore, fails open on a dry-run pod create, which
// makes the API server record both its admission latency and a fail-open.
// (pkg/dashboard's TestMetricsExist checks podgrace's own metrics.)
func TestDashboardAPIServerMetrics(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ns := namespace(t, map[string]string{instanceLabel: "dashboard"}, nil)
	name := "dashboard-" + ns
	hookName := "fail-open.dashboard.podgrace-test.dev"
	ignore, none := admissionregistrationv1.Ignore, admissionregistrationv1.SideEffectClassNone
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    hookName,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:1/unreachable")},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}},
			FailurePolicy:           &ignore,
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](2),
		}},
	}
	if _, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, cfg, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	})

	var missing []string
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		// The API server picks the configuration up asynchronously: call
		// until it has failed open on this webhook.
		p := pod("dashboard", 30, corev1.Container{Name: "app", Image: "app"})
		if _, err := admin.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			return false, err
		}
		raw, err := admin.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			return false, err
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
		if err != nil {
			return false, err
		}
		missing = missing[:0]
		for _, m := range dashboard.APIServerMetrics {
			found := false
			for _, series := range fams[m].GetMetric() {
				for _, l := range series.GetLabel() {
					found = found || l.GetName() == "name" && l.GetValue() == hookName
				}
			}
			if !found {
				missing = append(missing, m)
			}
		}
		return len(missing) == 0, nil
	})
	if err != nil {
		t.Fatalf("the API server's /metrics has no series of webhook %s for %v: %v", hookName, missing, err)
	}
}
