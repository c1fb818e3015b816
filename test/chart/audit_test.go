package chart_test

import (
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/pkg/audit"
)

// TestAuditValuesMatchChart: `podgrace audit -f --values` decides "served"
// with the webhook the chart renders from the same values, for every case.
func TestAuditValuesMatchChart(t *testing.T) {
	t.Parallel()
	for _, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := render(t, rel, c.values)
			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			if err := chart.Into(r.Find("MutatingWebhookConfiguration", "podgrace"), &mwc); err != nil {
				t.Fatal(err)
			}
			raw, err := yaml.Marshal(c.values)
			if err != nil {
				t.Fatal(err)
			}
			v, _, err := audit.ParseValues(raw, rel.Namespace)
			if err != nil {
				t.Fatal(err)
			}
			got, want := v.MutatingWebhook(), &mwc.Webhooks[0]
			if got.Name != want.Name ||
				!equality.Semantic.DeepEqual(got.NamespaceSelector, want.NamespaceSelector) ||
				!equality.Semantic.DeepEqual(got.ObjectSelector, want.ObjectSelector) ||
				!equality.Semantic.DeepEqual(got.MatchConditions, want.MatchConditions) {
				t.Errorf("audit's webhook from the values:\n%+v\n%+v\n%+v\nthe chart's:\n%+v\n%+v\n%+v",
					got.NamespaceSelector, got.ObjectSelector, got.MatchConditions, want.NamespaceSelector, want.ObjectSelector, want.MatchConditions)
			}
		})
	}
}
