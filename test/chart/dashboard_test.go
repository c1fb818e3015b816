package chart_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/pkg/dashboard"
)

// TestGrafanaDashboard: with metrics.grafanaDashboard.enabled the chart
// renders one ConfigMap labeled for Grafana's dashboard sidecar holding the
// generated dashboard; it is off by default; and Prometheus's own promtool
// parses every expression the dashboard queries (each written as a
// recording rule, then `promtool check rules`).
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	bin := promtool(t)
	if n := len(render(t, rel, nil).OfKind("ConfigMap")); n != 1 {
		t.Fatalf("default values render %d ConfigMaps, want podgrace's config only", n)
	}
	r := render(t, rel, map[string]any{"metrics": map[string]any{"grafanaDashboard": map[string]any{
		"enabled": true, "annotations": map[string]any{"grafana_folder": "platform"}}}})
	var cm map[string]any
	for _, o := range r.OfKind("ConfigMap") {
		if o.GetLabels()["grafana_dashboard"] != "" {
			if cm != nil {
				t.Fatal("two ConfigMaps labeled grafana_dashboard")
			}
			cm = o.Object
			if o.GetLabels()["grafana_dashboard"] != "1" || o.GetAnnotations()["grafana_folder"] != "platform" {
				t.Errorf("dashboard ConfigMap labels %v annotations %v", o.GetLabels(), o.GetAnnotations())
			}
		}
	}
	if cm == nil {
		t.Fatal("no ConfigMap labeled grafana_dashboard")
	}
	data, _ := cm["data"].(map[string]any)
	body, _ := data["podgrace.json"].(string)
	want, err := dashboard.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(body) != strings.TrimSpace(string(want)) {
		t.Fatal("the ConfigMap does not hold the generated dashboard (run `make manifests`)")
	}

	exprs, _, err := dashboard.Exprs([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) == 0 {
		t.Fatal("the dashboard has no expression")
	}
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	rules := make([]rule, len(exprs))
	for i, e := range exprs {
		rules[i] = rule{Record: fmt.Sprintf("podgrace:dashboard_expr_%d", i), Expr: dashboard.ForPromtool(e)}
	}
	file, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard.rules.yaml")
	if err := os.WriteFile(path, file, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), bin, "check", "rules", path).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules on the dashboard's expressions: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("%d rules found", len(exprs))) {
		t.Fatalf("promtool checked other than %d rules:\n%s", len(exprs), out)
	}
	t.Logf("promtool check rules: %d expressions\n%s", len(exprs), out)
}
