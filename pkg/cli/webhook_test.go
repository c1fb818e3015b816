package cli

import (
	"strings"
	"testing"
)

func TestWebhookCommandFlags(t *testing.T) {
	code, out, errOut := runCLI(t, "", "webhook", "--help")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, flag := range []string{"--cert-dir", "--port", "--config", "--metrics-bind-address", "--health-probe-bind-address",
		"--metrics-secure", "--drain-delay", "--pprof-bind-address", "--kubeconfig", "--zap-log-level", "--selfcert-secret", "--client-ca-file",
		"--webhook-timeout", "--max-connections", "--max-in-flight", "--max-body-memory", "--read-timeout"} {
		if !strings.Contains(out, flag) {
			t.Errorf("webhook --help does not list %s", flag)
		}
	}
	for _, def := range []string{`(default 9443)`, `(default 5s)`, `(default ":8080")`, `(default ":8081")`} {
		if !strings.Contains(out, def) {
			t.Errorf("webhook --help does not show %s", def)
		}
	}
}

// TestWebhookCommandRejectsABadConfig: a broken cluster config stops the
// webhook before it reaches for the API server.
func TestWebhookCommandRejectsABadConfig(t *testing.T) {
	cfg := writeFile(t, "config.yaml", "preStopSleep: forever\nhookAction: sometimes\n")
	code, _, errOut := runCLI(t, "", "webhook", "--config", cfg, "--kubeconfig", "/nonexistent")
	if code != 1 || !strings.Contains(errOut, "cluster config") || !strings.Contains(errOut, "hookAction") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
