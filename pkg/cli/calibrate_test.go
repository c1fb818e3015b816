package cli

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// TestCalibrateDryRun: --dry-run with --image needs no cluster and prints
// the probe's manifests: the opt-out label, no preStop hook, the grace
// period the window needs, the probe command.
func TestCalibrateDryRun(t *testing.T) {
	code, out, errs := runCLI(t, "", "calibrate", "--dry-run", "--image", "ghcr.io/podgrace/podgrace:v9", "--window", "30s", "-n", "calib")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	docs := strings.Split(out, "\n---\n")
	if len(docs) != 4 {
		t.Fatalf("%d documents, want namespace, service, deployment, client pod:\n%s", len(docs), out)
	}
	var d appsv1.Deployment
	if err := yaml.Unmarshal([]byte(docs[2]), &d); err != nil {
		t.Fatal(err)
	}
	spec := d.Spec.Template.Spec
	c := spec.Containers[0]
	switch {
	case d.Namespace != "calib" || d.Spec.Template.Labels["podgrace.dev/inject"] != "disabled":
		t.Errorf("deployment in %q with pod labels %v; want namespace calib, podgrace.dev/inject=disabled", d.Namespace, d.Spec.Template.Labels)
	case *spec.TerminationGracePeriodSeconds != 50:
		t.Errorf("grace period %d; want window 30s + 20s", *spec.TerminationGracePeriodSeconds)
	case c.Lifecycle != nil:
		t.Errorf("probe has a lifecycle %+v; its termination must start at SIGTERM", c.Lifecycle)
	case c.Image != "ghcr.io/podgrace/podgrace:v9" || strings.Join(c.Args[:3], " ") != "probe --window 30s":
		t.Errorf("probe container %s %v", c.Image, c.Args)
	}
	if !strings.Contains(docs[3], "probe-client") || !strings.Contains(docs[0], "podgrace-calibrate") {
		t.Errorf("no client pod or no managed-by label:\n%s", out)
	}
}

func TestCalibrateBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--window", "11m"}, "longer than the grace period allows"},
		{[]string{"--window", "1s"}, "--window 1s: at least 5s"},
		{[]string{"--url", "ftp://x/"}, "is not an http(s) URL"},
		{[]string{"--replicas", "1"}, "at least 2"},
		{[]string{"-o", "yaml"}, `--output: "yaml" is not json`},
	} {
		args := append([]string{"calibrate", "--dry-run", "--image", "x:1"}, c.args...)
		code, out, errs := runCLI(t, "", args...)
		if code != 1 || out != "" || !strings.Contains(errs, c.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1, nothing on stdout, %q", c.args, code, out, errs, c.want)
		}
	}
}
