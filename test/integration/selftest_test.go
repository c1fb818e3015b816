package integration

import (
	"strings"
	"testing"
)

// TestSelftest: `podgrace selftest` (the chart's helm test) passes where
// podgrace serves the namespace it creates, and fails naming the cause where
// the namespace it is told to use is not served.
func TestSelftest(t *testing.T) {
	t.Parallel()
	kubeconfig := writeKubeconfig(t, restConfig)
	code, out, errOut := runAudit(t, "selftest", "--kubeconfig", kubeconfig)
	if code != 0 || !strings.Contains(out, "selftest: OK") {
		t.Errorf("selftest in a namespace it creates: exit %d\n%s\n%s", code, out, errOut)
	}
	unserved := namespace(t, nil, nil)
	code, _, errOut = runAudit(t, "selftest", "--kubeconfig", kubeconfig, "--target-namespace", unserved, "--timeout", "1s")
	if code != 1 || !strings.Contains(errOut, "selftest: FAILED: the pod came back without podgrace.dev/status") ||
		!strings.Contains(errOut, "namespace "+unserved+" is not selected") {
		t.Errorf("selftest in an unserved namespace: exit %d\n%s", code, errOut)
	}
}
