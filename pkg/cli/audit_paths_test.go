package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const pathsManifest = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
      - name: app
        image: registry.example/web:1
        command: ["/web"]
        readinessProbe: {httpGet: {path: /ready, port: 8080}}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
`

// TestAuditPathFlags: --min-sleep and --calibration set the sleep routed
// workloads need, --fail-on=path exits 2 on a shorter one, and bad input
// is refused before anything is read.
func TestAuditPathFlags(t *testing.T) {
	code, _, stderr := runCLI(t, pathsManifest, "audit", "-f", "-", "--min-sleep", "15s", "--fail-on=path")
	if code != 0 {
		t.Errorf("--min-sleep 15s (podgrace adds 15s): exit %d, %s", code, stderr)
	}
	code, stdout, stderr := runCLI(t, pathsManifest, "audit", "-f", "-", "--min-sleep", "16s", "--fail-on=path")
	if code != ExitFindings || !strings.Contains(stderr, "1 workloads with a sleep or grace period shorter than their path needs") ||
		!strings.Contains(stdout, "sleep-below-measured(app: 15s<16s)") {
		t.Errorf("--min-sleep 16s: exit %d\n%s\n%s", code, stdout, stderr)
	}

	dir := t.TempDir()
	cal := filepath.Join(dir, "calibration.json")
	if err := os.WriteFile(cal, []byte(`{"apiVersion":"calibrate.podgrace.dev/v1","kind":"CalibrationReport","propagationSeconds":14.2,"complete":true,"recommendation":{"sleepSeconds":17}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = runCLI(t, pathsManifest, "audit", "-f", "-", "--calibration", cal, "-o", "json", "--fail-on=path")
	if code != ExitFindings || !strings.Contains(stdout, `"type": "sleep-below-measured"`) || !strings.Contains(stdout, "recommended by "+cal) {
		t.Errorf("--calibration: exit %d\n%s", code, stdout)
	}

	notCal := filepath.Join(dir, "other.json")
	if err := os.WriteFile(notCal, []byte(`{"apiVersion":"v1","kind":"ConfigMap"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"audit", "-f", "-", "--min-sleep", "1500ms"},
		{"audit", "-f", "-", "--min-sleep", "-5s"},
		{"audit", "-f", "-", "--min-sleep", "20s", "--calibration", cal},
		{"audit", "-f", "-", "--calibration", filepath.Join(dir, "absent.json")},
		{"audit", "-f", "-", "--calibration", notCal},
		{"audit", "-f", "-", "--fail-on", "paths"},
	} {
		if code, _, _ := runCLI(t, pathsManifest, args...); code != 1 {
			t.Errorf("%q: exit %d, want 1", args, code)
		}
	}
}
