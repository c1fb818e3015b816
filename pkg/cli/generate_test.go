package cli

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/podgrace/podgrace/pkg/admissionpolicy"
)

// TestGeneratePolicy: the output opens with what the policy does not do,
// then the five objects, the parameters carrying the --config file's values.
// (test/integration creates them on the API server and proves them
// equivalent to the webhook; test/chart compares them with the chart's.)
func TestGeneratePolicy(t *testing.T) {
	t.Parallel()
	cfg := writeFile(t, "config.yaml", "preStopSleep: 20s\nstrict: true\nsidecars: [envoy]\n")
	code, out, errOut := runCLI(t, "", "generate", "policy", "--config", cfg, "-n", "platform", "--cluster-wide")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.HasPrefix(out, admissionpolicy.Header()) || !strings.Contains(out, "no exec-form rewrite") || !strings.Contains(out, "no image inspection") {
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
		byKind[u.GetKind()] = &u
	}
	want := "ConfigMap MutatingAdmissionPolicy MutatingAdmissionPolicyBinding ValidatingAdmissionPolicy ValidatingAdmissionPolicyBinding"
	if strings.Join(kinds, " ") != want {
		t.Fatalf("kinds %v, want %s", kinds, want)
	}
	data, _, _ := unstructured.NestedStringMap(byKind["ConfigMap"].Object, "data")
	if data["preStopSleep"] != "20s" || data["sidecars"] != "envoy" || byKind["ConfigMap"].GetNamespace() != "platform" {
		t.Errorf("parameters %v in %s", data, byKind["ConfigMap"].GetNamespace())
	}
	actions, _, _ := unstructured.NestedStringSlice(byKind["ValidatingAdmissionPolicyBinding"].Object, "spec", "validationActions")
	if strings.Join(actions, ",") != "Deny" {
		t.Errorf("strict mode: validationActions %v, want [Deny]", actions)
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
