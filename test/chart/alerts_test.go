package chart_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// promtool returns $PROMTOOL, built into bin/ by the Makefile; it fails the
// test when it is missing.
func promtool(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("PROMTOOL")
	if bin == "" {
		t.Fatal("PROMTOOL is not set: run `make test-alerts` (it builds promtool into bin/ and sets it)")
	}
	if _, err := exec.LookPath(bin); err != nil {
		t.Fatalf("PROMTOOL=%s: %v (`make test-alerts` builds it)", bin, err)
	}
	return bin
}

// TestAlertRules runs Prometheus's own `promtool test rules` ($PROMTOOL,
// built into bin/ by the Makefile) on the chart's PrometheusRule: the unit
// tests in testdata/alerts make each alert fire on series that should fire it
// and stay silent on the others. Every alert of the rule must be tested.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	r := render(t, rel, map[string]any{"metrics": map[string]any{"prometheusRule": map[string]any{"enabled": true}}})
	objs := r.OfKind("PrometheusRule")
	if len(objs) != 1 {
		t.Fatalf("the chart renders %d PrometheusRules", len(objs))
	}
	spec, ok := objs[0].Object["spec"].(map[string]any)
	if !ok {
		t.Fatal("the PrometheusRule has no spec")
	}
	rules, err := yaml.Marshal(spec) // {groups: …}: a Prometheus rule file
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o600); err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join("testdata", "alerts", "podgrace_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "podgrace_test.yaml"), tests, 0o600); err != nil {
		t.Fatal(err)
	}

	// Every alert has a test that fires it.
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(rules, &file); err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				alerts = append(alerts, r.Alert)
			}
		}
	}
	if len(alerts) == 0 {
		t.Fatal("the PrometheusRule has no alerts")
	}
	for _, a := range alerts {
		if !strings.Contains(string(tests), "alertname: "+a+"\n        exp_alerts:\n          - exp_labels") {
			t.Errorf("alert %s has no promtool test that fires it (testdata/alerts/podgrace_test.yaml)", a)
		}
	}

	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "podgrace_test.yaml"}} {
		cmd := exec.CommandContext(t.Context(), bin, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
			continue
		}
		t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	}
}
