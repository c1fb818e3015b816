package chart_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

// TestSelectionMatchesChart: the chart's podgrace.namespaceSelector and
// podgrace.objectSelector, rendered by Helm into the webhook configuration
// and into the policy binding, are registration.Selection's, for each mode,
// excluded namespaces and extra expressions.
func TestSelectionMatchesChart(t *testing.T) {
	t.Parallel()
	extra := []metav1.LabelSelectorRequirement{{Key: "team", Operator: metav1.LabelSelectorOpIn, Values: []string{"a", "b"}}}
	for _, clusterWide := range []bool{false, true} {
		for _, exclude := range [][]string{nil, {"legacy", "kube-system"}} {
			for _, more := range [][]metav1.LabelSelectorRequirement{nil, extra} {
				want := registration.Selection{ClusterWide: clusterWide, Namespace: "platform", ExcludeNamespaces: exclude, Extra: more}
				hook := map[string]any{"mode": map[bool]string{false: "opt-in", true: "cluster-wide"}[clusterWide]}
				if exclude != nil {
					hook["excludeNamespaces"] = toAny(t, exclude)
				}
				if more != nil {
					hook["namespaceSelectorExpressions"] = toAny(t, more)
				}
				for _, admission := range []string{"webhook", "policy"} {
					r, err := chart.Render(chartDir(t), chart.Release{Name: "podgrace", Namespace: "platform"}, map[string]any{"admission": admission, "webhook": hook})
					if err != nil {
						t.Fatal(err)
					}
					var ns, obj any
					if admission == "webhook" {
						w := r.OfKind("MutatingWebhookConfiguration")[0].Object["webhooks"].([]any)[0].(map[string]any)
						ns, obj = w["namespaceSelector"], w["objectSelector"]
					} else {
						m := r.OfKind("MutatingAdmissionPolicyBinding")[0].Object["spec"].(map[string]any)["matchResources"].(map[string]any)
						ns, obj = m["namespaceSelector"], m["objectSelector"]
					}
					if got, w := toJSON(t, ns), toJSON(t, want.NamespaceSelector()); got != w {
						t.Errorf("%s %+v: the chart's namespaceSelector %s\nregistration.Selection's %s", admission, want, got, w)
					}
					if got, w := toJSON(t, obj), toJSON(t, registration.ObjectSelector()); got != w {
						t.Errorf("%s: the chart's objectSelector %s, registration's %s", admission, got, w)
					}
				}
			}
		}
	}
}

// toJSON is v as canonical JSON (through a generic value: key order sorted).
func toJSON(t *testing.T, v any) string {
	t.Helper()
	out, err := json.Marshal(toAny(t, v))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func toAny(t *testing.T, v any) any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
