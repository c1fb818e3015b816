package chart_test

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"helm.sh/helm/v4/pkg/chart/v2/lint/support"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/internal/testkube"
	"github.com/podgrace/podgrace/pkg/admissionpolicy"
	"github.com/podgrace/podgrace/pkg/policy"
)

// policyCases are value sets rendered with admission: policy.
func policyCases() map[string]map[string]any {
	return map[string]map[string]any{
		"defaults": {"admission": "policy"},
		"cluster-wide-strict": {
			"admission": "policy",
			"webhook": map[string]any{
				"mode":                         "cluster-wide",
				"namespaceSelectorExpressions": []any{map[string]any{"key": "team", "operator": "Exists"}},
			},
			"config": map[string]any{
				"strict": true, "preStopSleep": "15s", "hookAction": "exec", "ratio": 0.25, "min": "2s", "max": "90s",
				"shutdownBudget": "3s", "extendGrace": false, "sidecars": []any{"envoy", "istio-proxy"},
			},
		},
	}
}

// TestPolicyModeRender: with admission: policy the chart renders the
// generated policies (files/policy.yaml) with its values compiled in, and
// the bindings, exactly as `podgrace generate policy` prints them for the
// same cluster config; no parameter object, Deployment, Service,
// certificate, RBAC or webhook.
func TestPolicyModeRender(t *testing.T) {
	t.Parallel()
	for name, values := range policyCases() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, m := range chart.Lint(chartDir(t), rel.Namespace, values) {
				if m.Severity >= support.WarningSev {
					t.Errorf("lint: %s", m.Error())
				}
			}
			r := render(t, rel, values)
			got := kinds(r)
			want := []string{"MutatingAdmissionPolicy/podgrace", "MutatingAdmissionPolicyBinding/podgrace", "ValidatingAdmissionPolicy/podgrace-exec-form", "ValidatingAdmissionPolicy/podgrace-warnings", "ValidatingAdmissionPolicy/podgrace-workload-warnings",
				"ValidatingAdmissionPolicyBinding/podgrace-exec-form", "ValidatingAdmissionPolicyBinding/podgrace-warnings", "ValidatingAdmissionPolicyBinding/podgrace-workload-warnings"}
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("rendered %v, want exactly %v (no parameter object)", got, want)
			}
			// The cluster config the webhook would read from the same values.
			webhookValues := map[string]any{}
			if c, ok := values["config"]; ok {
				webhookValues["config"] = c
			}
			full, err := chart.Render(chartDir(t), rel, webhookValues)
			if err != nil {
				t.Fatal(err)
			}
			var cm corev1.ConfigMap
			if err := chart.Into(full.Find("ConfigMap", "podgrace"), &cm); err != nil {
				t.Fatal(err)
			}
			cfg, err := policy.ParseConfig([]byte(cm.Data["config.yaml"]))
			if err != nil {
				t.Fatal(err)
			}
			wh, _ := values["webhook"].(map[string]any)
			o := admissionpolicy.Options{Namespace: rel.Namespace, ClusterWide: wh["mode"] == "cluster-wide"}
			for _, e := range asList(wh["namespaceSelectorExpressions"]) {
				m := e.(map[string]any)
				o.ExtraNamespaceSelector = append(o.ExtraNamespaceSelector, metav1.LabelSelectorRequirement{Key: m["key"].(string), Operator: metav1.LabelSelectorOperator(m["operator"].(string))})
			}
			var (
				mp admissionregistrationv1.MutatingAdmissionPolicy
				mb admissionregistrationv1.MutatingAdmissionPolicyBinding
				vp admissionregistrationv1.ValidatingAdmissionPolicy
				vb admissionregistrationv1.ValidatingAdmissionPolicyBinding
				ep admissionregistrationv1.ValidatingAdmissionPolicy
				eb admissionregistrationv1.ValidatingAdmissionPolicyBinding
			)
			for obj, kn := range map[any][2]string{
				&mp: {"MutatingAdmissionPolicy", admissionpolicy.MutatingName}, &mb: {"MutatingAdmissionPolicyBinding", admissionpolicy.MutatingName},
				&vp: {"ValidatingAdmissionPolicy", admissionpolicy.ValidatingName}, &vb: {"ValidatingAdmissionPolicyBinding", admissionpolicy.ValidatingName},
				&ep: {"ValidatingAdmissionPolicy", admissionpolicy.ExecFormName}, &eb: {"ValidatingAdmissionPolicyBinding", admissionpolicy.ExecFormName},
			} {
				if err := chart.Into(r.Find(kn[0], kn[1]), obj); err != nil {
					t.Fatal(err)
				}
			}
			var wp admissionregistrationv1.ValidatingAdmissionPolicy
			var wb admissionregistrationv1.ValidatingAdmissionPolicyBinding
			for obj, kn := range map[any][2]string{&wp: {"ValidatingAdmissionPolicy", admissionpolicy.WorkloadName}, &wb: {"ValidatingAdmissionPolicyBinding", admissionpolicy.WorkloadName}} {
				if err := chart.Into(r.Find(kn[0], kn[1]), obj); err != nil {
					t.Fatal(err)
				}
			}
			// The settings the chart compiled in (its podgrace.dev/config
			// annotation) are the webhook's config: Helm passes durations
			// on as written (90s), Go prints them as time.Duration does.
			var settings admissionpolicy.Settings
			if err := json.Unmarshal([]byte(mp.Annotations[admissionpolicy.AnnotationConfig]), &settings); err != nil {
				t.Fatalf("%s: %v", admissionpolicy.AnnotationConfig, err)
			}
			same(t, "compiled-in settings", durationsNormalized(t, settings), durationsNormalized(t, admissionpolicy.SettingsOf(&cfg)))
			back, err := admissionpolicy.ConfigOf(&mp)
			if err != nil {
				t.Fatal(err)
			}
			same(t, "config read back from the policy", admissionpolicy.SettingsOf(&back), admissionpolicy.SettingsOf(&cfg))
			// The chart's substitution is the generator's for the same strings.
			gen, err := admissionpolicy.GenerateSettings(settings, o)
			if err != nil {
				t.Fatal(err)
			}
			same(t, "MutatingAdmissionPolicy annotations", mp.Annotations, gen.Mutating.Annotations)
			same(t, "MutatingAdmissionPolicy", mp.Spec, gen.Mutating.Spec)
			same(t, "MutatingAdmissionPolicyBinding", mb.Spec, gen.MutatingBinding.Spec)
			same(t, "ValidatingAdmissionPolicy", vp.Spec, gen.Validating.Spec)
			same(t, "ValidatingAdmissionPolicyBinding", vb.Spec, gen.ValidatingBinding.Spec)
			same(t, "exec-form ValidatingAdmissionPolicy", ep.Spec, gen.ExecForm.Spec)
			same(t, "exec-form ValidatingAdmissionPolicyBinding", eb.Spec, gen.ExecFormBinding.Spec)
			same(t, "workload ValidatingAdmissionPolicy", wp.Spec, gen.WorkloadValidating.Spec)
			same(t, "workload ValidatingAdmissionPolicyBinding", wb.Spec, gen.WorkloadValidatingBinding.Spec)
		})
	}
}

// durationsNormalized writes every duration parameter as time.Duration
// prints it: Helm passes `90s` on as written, Go prints `1m30s`.
func durationsNormalized(t *testing.T, data admissionpolicy.Settings) admissionpolicy.Settings {
	t.Helper()
	out := maps.Clone(data)
	for _, k := range []string{"min", "max", "shutdownBudget", "sidecarShutdownBudget", "maxGracePeriod"} {
		d, err := time.ParseDuration(out[k])
		if err != nil {
			t.Errorf("parameter %s: %v", k, err)
		}
		out[k] = d.String()
	}
	return out
}

func asList(v any) []any {
	l, _ := v.([]any)
	return l
}

func same(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("%s: the chart renders\n%s\nbut podgrace generate policy prints\n%s", what, g, w)
	}
}

// TestPolicyModeNeeds136: admission: policy is refused below Kubernetes
// 1.36 with a message that says why; the webhook renders there.
func TestPolicyModeNeeds136(t *testing.T) {
	t.Parallel()
	_, err := chart.RenderFor(chartDir(t), rel, map[string]any{"admission": "policy"}, "v1.35.2")
	if err == nil || !strings.Contains(err.Error(), "admission: policy needs Kubernetes >= 1.36") || !strings.Contains(err.Error(), "v1.35.2") {
		t.Errorf("rendering for 1.35: %v", err)
	}
	if _, err := chart.RenderFor(chartDir(t), rel, nil, "v1.35.2"); err != nil {
		t.Errorf("the webhook does not render for 1.35: %v", err)
	}
	_, err = chart.Render(chartDir(t), rel, map[string]any{"admission": "policy", "webhook": map[string]any{"matchConditions": []any{map[string]any{"name": "x", "expression": "true"}}}})
	if err == nil || !strings.Contains(err.Error(), "webhook.matchConditions cannot apply") {
		t.Errorf("matchConditions with admission: policy: %v", err)
	}
	if _, err := chart.Render(chartDir(t), rel, map[string]any{"admission": "cel"}); err == nil {
		t.Error("the schema accepts admission: cel")
	}
}

// TestPolicyModeOnAPIServer creates what admission: policy renders on the
// real API server, which compiles every CEL expression: a policy it rejects
// fails the test, and so does any warning. On a server that does not serve
// MutatingAdmissionPolicy v1 (before 1.36, discovery decides) it asserts
// instead that the chart refuses admission: policy for that server's
// version, and says so (testkube.NotApplicable).
func TestPolicyModeOnAPIServer(t *testing.T) {
	t.Parallel()
	cfg, srv := anyAPIServer(t)
	if !srv.policyAPI {
		testkube.NotApplicable(t, srv.name, testkube.PolicyGroupVersion+" "+testkube.PolicyResource+
			" is not served; asserted instead: the chart refuses admission: policy for "+srv.gitVersion)
		for name, values := range policyCases() {
			_, err := chart.RenderFor(chartDir(t), rel, values, srv.gitVersion)
			if err == nil || !strings.Contains(err.Error(), "admission: policy needs Kubernetes >= 1.36") || !strings.Contains(err.Error(), srv.gitVersion) {
				t.Errorf("%s: admission: policy for %s, which does not serve %s %s: got %v, want the chart's refusal naming the version",
					name, srv.gitVersion, testkube.PolicyGroupVersion, testkube.PolicyResource, err)
			}
		}
		return
	}
	for name, values := range policyCases() {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			warn := &warnings{}
			wcfg := rest.CopyConfig(cfg)
			wcfg.WarningHandlerWithContext = nil
			wcfg.WarningHandler = warn
			k := newClient(t, wcfg)
			r := chart.Release{Name: "podgrace", Namespace: unique("policy-" + name)}
			if err := k.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.Namespace}}); err != nil {
				t.Fatal(err)
			}
			// Rendered for this server's version, as helm install does.
			rendered, err := chart.RenderFor(chartDir(t), r, values, srv.gitVersion)
			if err != nil {
				t.Fatalf("the chart refuses admission: policy for %s, which serves %s %s: %v", srv.gitVersion, testkube.PolicyGroupVersion, testkube.PolicyResource, err)
			}
			for _, o := range rendered.Objects {
				if err := k.Create(ctx, o); err != nil {
					y, _ := yaml.Marshal(o.Object)
					t.Fatalf("the API server rejects %s %s: %v\n%.2000s", o.GetKind(), o.GetName(), err, y)
				}
				if o.GetNamespace() == "" {
					t.Cleanup(func() { _ = k.Delete(context.Background(), o) })
				}
			}
			if w := warn.Take(); len(w) > 0 {
				t.Errorf("API server warnings: %q", w)
			}
		})
	}
}
