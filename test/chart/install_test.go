package chart_test

import (
	"testing"

	"github.com/podgrace/podgrace/hack/manifests/chart"
)

// TestConfigMapNamedAsWebhook: the chart names podgrace's ConfigMap as its
// MutatingWebhookConfiguration and serves the webhook from the release
// namespace, which is how the CLI finds the config podgrace runs with
// (findInstallation in pkg/cli), whatever the release is called.
func TestConfigMapNamedAsWebhook(t *testing.T) {
	t.Parallel()
	for _, vals := range []map[string]any{nil, {"fullnameOverride": "grace"}} {
		r, err := chart.Render(chartDir(t), chart.Release{Name: "pg", Namespace: "platform"}, vals)
		if err != nil {
			t.Fatal(err)
		}
		mwcs, cms := r.OfKind("MutatingWebhookConfiguration"), r.OfKind("ConfigMap")
		if len(mwcs) != 1 || len(cms) != 1 {
			t.Fatalf("%v: %d configurations, %d ConfigMaps", vals, len(mwcs), len(cms))
		}
		if mwcs[0].GetName() != cms[0].GetName() || cms[0].GetNamespace() != "platform" {
			t.Errorf("%v: configuration %s, ConfigMap %s/%s", vals, mwcs[0].GetName(), cms[0].GetNamespace(), cms[0].GetName())
		}
	}
}
