package cli

import (
	"encoding/json"
	"strings"
	"testing"
)

const auditManifest = `apiVersion: v1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{port: 80}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: app
          image: registry.example/web:1
          command: [sh, -c, "bundle exec puma"]
          readinessProbe: {httpGet: {path: /, port: 80}}
`

// TestAuditManifestsCLI: `podgrace audit -f -` reads stdin, prints the
// table or the versioned report, and --fail-on sets the exit code.
func TestAuditManifestsCLI(t *testing.T) {
	code, stdout, stderr := runCLI(t, auditManifest, "audit", "-f", "-")
	if code != 0 || !strings.Contains(stdout, "Deployment/web") || !strings.Contains(stdout, "app: sleep 15s+drop-shell") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	code, stdout, _ = runCLI(t, auditManifest, "audit", "-f", "-", "-o", "json", "--fail-on=risk")
	if code != 0 {
		t.Errorf("--fail-on=risk: exit %d; podgrace fixes every risk of this Deployment", code)
	}
	var rep struct {
		APIVersion, Kind string
		Workloads        []struct {
			Served string
			Risks  []struct {
				Type            string
				FixedByPodgrace bool
			}
		}
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.APIVersion != "audit.podgrace.dev/v1alpha1" || rep.Kind != "AuditReport" {
		t.Fatalf("%v: %s", err, stdout)
	}
	if len(rep.Workloads) != 1 || rep.Workloads[0].Served != "assumed" || len(rep.Workloads[0].Risks) != 2 {
		t.Errorf("report %+v, want one workload, assumed served, with shell-pid1 and no-prestop-sleep fixed", rep)
	}

	// Not opted in according to the values: the risks remain.
	values := writeFile(t, "values.yaml", "webhook:\n  mode: opt-in\n")
	code, _, stderr = runCLI(t, auditManifest, "audit", "-f", "-", "--values", values, "--fail-on", "risk")
	if code != ExitFindings || !strings.Contains(stderr, "1 workloads with risks") {
		t.Errorf("--values, --fail-on risk: exit %d, stderr %q", code, stderr)
	}
	code, _, _ = runCLI(t, auditManifest, "audit", "-f", "-", "--values", values, "--namespace-labels", "podgrace.dev/inject=enabled", "--fail-on", "risk")
	if code != 0 {
		t.Errorf("opted-in namespace: exit %d", code)
	}

	for _, args := range [][]string{
		{"audit", "-f", "-", "--fail-on", "risky"},
		{"audit", "-f", "-", "-o", "xml"},
		{"audit", "-f", "-", "--hook-action", "http"},
		{"audit", "-f", "/nonexistent"},
	} {
		if code, _, _ := runCLI(t, auditManifest, args...); code != 1 {
			t.Errorf("%v: exit %d, want 1", args, code)
		}
	}
}
