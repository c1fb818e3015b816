package cli

import (
	"fmt"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/podgrace/podgrace/pkg/admissionpolicy"
)

// TestGeneratePolicy: the output opens with what the policy does not do,
// then the six objects, the --config file's values compiled into the CEL.
// (test/integration creates them on the API server and proves them
// equivalent to the webhook; test/chart compares them with the chart's.)
func TestGeneratePolicy(t *testing.T) {
	t.Parallel()
	cfg := writeFile(t, "config.yaml", "preStopSleep: 20s\nstrict: true\nsidecars: [envoy]\n")
	code, out, errOut := runCLI(t, "", "generate", "policy", "--config", cfg, "-n", "platform", "--cluster-wide")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.HasPrefix(out, admissionpolicy.Header()) || !strings.Contains(out, "the exec-form rewrite only of") || !strings.Contains(out, "no image inspection") {
		t.Errorf("output does not open with what the policy does not do:\n%.600s", out)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(out), 4096)
	var kinds []string
	byKind := map[string]*unstructured.Unstructured{}
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		if u.Object == nil {
			continue
		}
		kinds = append(kinds, u.GetKind())
		if _, ok := byKind[u.GetKind()]; !ok { // the first of a kind: podgrace-warnings, not podgrace-exec-form
			byKind[u.GetKind()] = &u
		}
	}
	want := "MutatingAdmissionPolicy MutatingAdmissionPolicyBinding ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding" +
		" ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding" + // the exec-form warning policy
		" ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding" // the workload policy
	if strings.Join(kinds, " ") != want {
		t.Fatalf("kinds %v, want %s (no parameter object)", kinds, want)
	}
	// The config is compiled into the CEL, and readable from the annotation.
	var mp admissionregistrationv1.MutatingAdmissionPolicy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(byKind["MutatingAdmissionPolicy"].Object, &mp); err != nil {
		t.Fatal(err)
	}
	back, err := admissionpolicy.ConfigOf(&mp)
	if err != nil || back.PreStopSleep != "20s" || strings.Join(back.Sidecars, ",") != "envoy" || !back.Strict {
		t.Errorf("config read back from %s: %+v, %v", admissionpolicy.AnnotationConfig, back, err)
	}
	if !strings.Contains(out, "'20s'") || !strings.Contains(out, "'envoy'") {
		t.Errorf("the settings are not compiled into the CEL:\n%.3000s", out)
	}
	exclude, _, _ := unstructured.NestedSlice(byKind["MutatingAdmissionPolicyBinding"].Object, "spec", "matchResources", "namespaceSelector", "matchExpressions")
	if !strings.Contains(fmt.Sprint(exclude), "platform") {
		t.Errorf("-n platform is not excluded: %v", exclude)
	}
	actions, _, _ := unstructured.NestedStringSlice(byKind["ValidatingAdmissionPolicyBinding"].Object, "spec", "validationActions")
	if strings.Join(actions, ",") != "Deny" {
		t.Errorf("strict mode: validationActions %v, want [Deny]", actions)
	}
	if !strings.Contains(out, "policyName: podgrace-exec-form\n  validationActions:\n  - Warn\n") {
		t.Errorf("strict mode: the exec-form warning is not a warning:\n%s", out[strings.LastIndex(out, "---"):])
	}
	exprs, _, _ := unstructured.NestedSlice(byKind["MutatingAdmissionPolicyBinding"].Object, "spec", "matchResources", "namespaceSelector", "matchExpressions")
	if len(exprs) == 0 || exprs[0].(map[string]any)["operator"] != "NotIn" {
		t.Errorf("--cluster-wide: namespace selector %v", exprs)
	}
}

// TestGeneratePolicyBadConfig: a config the policy cannot carry, or an
// invalid one, is a clear error and nothing is printed.
func TestGeneratePolicyBadConfig(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]struct{ config, want string }{
		"sidecar name":  {"sidecars: [Istio_Proxy]\n", `sidecars: "Istio_Proxy" is not a container name`},
		"invalid value": {"ratio: -1\n", "ratio: -1 is outside [0, 10]"},
		"unknown key":   {"ratoi: 1\n", "ratoi"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCLI(t, "", "generate", "policy", "--config", writeFile(t, "c.yaml", c.config))
			if code != 1 || out != "" || !strings.Contains(errOut, c.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 1, nothing printed and %q", code, out, errOut, c.want)
			}
		})
	}
}
