package chart_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/pkg/registration"
	"github.com/podgrace/podgrace/pkg/webhook"
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

// TestDefaultsAgree: the chart's defaults for what the binary also defaults
// are the binary's: the drain delay (--drain-delay) and the webhook's
// timeout, each declared once in Go.
func TestDefaultsAgree(t *testing.T) {
	t.Parallel()
	vals, err := chart.ReadValues(chartDir(t) + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	shutdown, _ := vals["shutdown"].(map[string]any)
	hook, _ := vals["webhook"].(map[string]any)
	if got := fmt.Sprint(shutdown["drainDelaySeconds"]); got != fmt.Sprint(int(webhook.DefaultDrainDelay/time.Second)) {
		t.Errorf("shutdown.drainDelaySeconds %s, the binary's --drain-delay default %v", got, webhook.DefaultDrainDelay)
	}
	if got := fmt.Sprint(hook["timeoutSeconds"]); got != fmt.Sprint(registration.TimeoutSeconds) {
		t.Errorf("webhook.timeoutSeconds %s, registration.TimeoutSeconds %d", got, registration.TimeoutSeconds)
	}
}
