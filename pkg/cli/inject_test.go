package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/internal/imagetest"
)

const pumaDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: puma
spec:
  selector:
    matchLabels: {app: puma}
  template:
    metadata:
      labels: {app: puma}
    spec:
      containers:
      - name: puma
        image: example.com/puma:6
        command: ["sh", "-c", "cd /app && bundle exec puma"]
`

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(append([]string{"podgrace"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The acceptance example: a 15 s native sleep and `exec` spliced in.
func TestInjectPumaDeployment(t *testing.T) {
	t.Parallel()
	code, out, errOut := runCLI(t, "", "inject", "-f", writeFile(t, "d.yaml", pumaDeployment))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var d appsv1.Deployment
	if err := yaml.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("output is not a Deployment: %v\n%s", err, out)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds != 15 {
		t.Errorf("preStop = %+v, want a native 15s sleep", c.Lifecycle)
	}
	if want := []string{"sh", "-c", "cd /app && exec bundle exec puma"}; strings.Join(c.Command, "|") != strings.Join(want, "|") {
		t.Errorf("command = %q, want %q", c.Command, want)
	}
	if d.Spec.Template.Annotations["podgrace.dev/status"] == "" {
		t.Error("no status annotation on the template")
	}
}

func TestInjectStdinAndNamespaceAnnotations(t *testing.T) {
	t.Parallel()
	code, out, errOut := runCLI(t, pumaDeployment, "inject", "-f", "-", "--namespace-annotations", "podgrace.dev/prestop-sleep=20s,podgrace.dev/exec-form=off")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "seconds: 20") || strings.Contains(out, "exec bundle") {
		t.Errorf("namespace annotations not applied:\n%s", out)
	}
}

func TestInjectConfigAndHookAction(t *testing.T) {
	t.Parallel()
	cfg := writeFile(t, "config.yaml", "ratio: 0.2\nhookAction: exec\n")
	code, out, errOut := runCLI(t, pumaDeployment, "inject", "-f", "-", "--config", cfg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "- sleep\n") || !strings.Contains(out, "- '6'") {
		t.Errorf("want exec [sleep 6] (0.2 × 30):\n%s", out)
	}
	code, out, _ = runCLI(t, pumaDeployment, "inject", "-f", "-", "--config", cfg, "--hook-action", "sleep")
	if code != 0 || !strings.Contains(out, "seconds: 6") {
		t.Errorf("--hook-action sleep should override the config:\n%s", out)
	}
}

func TestInjectDiff(t *testing.T) {
	t.Parallel()
	code, out, errOut := runCLI(t, pumaDeployment, "inject", "-f", "-", "--diff")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"--- stdin\n", "+++ stdin (podgrace)\n", "+              seconds: 15\n", "+        command: [\"sh\", \"-c\", \"cd /app && exec bundle exec puma\"]\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}
}

func TestInjectWarningsGoToStderr(t *testing.T) {
	t.Parallel()
	in := strings.Replace(pumaDeployment, "labels: {app: puma}\n", "labels: {app: puma}\n      annotations: {podgrace.dev/prestop-sleep: abc}\n", 1)
	code, out, errOut := runCLI(t, in, "inject", "-f", "-")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := `stdin: document 1 (Deployment/puma): podgrace: podgrace.dev/prestop-sleep="abc" is not a duration, "auto" or "off"; using auto`
	if !strings.Contains(errOut, want) {
		t.Errorf("stderr = %q, want %q", errOut, want)
	}
	if strings.Contains(out, "is not a duration") {
		t.Error("a warning reached stdout")
	}
}

func TestInjectErrors(t *testing.T) {
	t.Parallel()
	strict := writeFile(t, "strict.yaml", "strict: true\n")
	cases := map[string]struct {
		stdin   string
		args    []string
		wantErr string
	}{
		"bad yaml in the second document": {stdin: pumaDeployment + "---\nkind: Pod\nmetadata: [\n", args: []string{"-f", "-"}, wantErr: "stdin: document 2: invalid YAML"},
		"pod template not an object":      {stdin: "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template: 3\n", args: []string{"-f", "-"}, wantErr: "document 1 (Deployment/x)"},
		"unknown flag":                    {args: []string{"-f", "-", "--frobnicate"}, wantErr: "unknown flag: --frobnicate"},
		"missing -f":                      {args: []string{}, wantErr: `required flag(s) "filename" not set`},
		"missing file":                    {args: []string{"-f", "/nonexistent/x.yaml"}, wantErr: "no such file"},
		"bad config":                      {args: []string{"-f", "-", "--config", writeFile(t, "bad.yaml", "ratoi: 1\n")}, wantErr: `bad.yaml: cluster config: unknown key "ratoi"`},
		"bad hook action":                 {args: []string{"-f", "-", "--hook-action", "http"}, wantErr: `--hook-action: "http" is not sleep or exec`},
		"bad namespace annotations":       {args: []string{"-f", "-", "--namespace-annotations", "novalue"}, wantErr: "namespace-annotations"},
		"JSON stream then garbage":        {stdin: `{"kind":"ConfigMap","apiVersion":"v1"}{"kind":"ConfigMap","apiVersion":"v1"}]`, args: []string{"-f", "-"}, wantErr: "stdin: document 3: invalid character ']'"},
		"null container":                  {stdin: "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [null]\n", args: []string{"-f", "-"}, wantErr: "stdin: document 1 (Pod/p): spec.containers[0] is null"},
		"a boolean in a command":          {stdin: "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: a, command: [yes]}]\n", args: []string{"-f", "-"}, wantErr: "stdin: document 1 (Pod/p): not a v1 Pod: json: cannot unmarshal bool"},
		"kubectl cannot read it":          {stdin: "apiVersion: v1\nmetadata: {name: p}\n", args: []string{"-f", "-"}, wantErr: "stdin: document 1: Object 'Kind' is missing"},
		"strict denial": {
			stdin:   strings.Replace(pumaDeployment, "labels: {app: puma}\n", "labels: {app: puma}\n      annotations: {podgrace.dev/exec-form: maybe}\n", 1),
			args:    []string{"-f", "-", "--config", strict},
			wantErr: `podgrace.dev/exec-form="maybe" is not "on" or "off" (strict mode)`,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCLI(t, tc.stdin, append([]string{"inject"}, tc.args...)...)
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if out != "" {
				t.Errorf("stdout not empty on error:\n%s", out)
			}
			if !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr = %q, want it to contain %q", errOut, tc.wantErr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, "", "version")
	if code != 0 || strings.TrimSpace(out) == "" {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}

// --inspect-images reads the image config from a real registry (served on
// loopback by go-containerregistry's registry) and rewrites the inherited
// shell-form CMD, pinning the image to the inspected digest.
func TestInjectInspectImages(t *testing.T) {
	reg := imagetest.NewRegistry(t)
	// Set before the parallel phase; no other test inspects images.
	testLoopbackRegistries = []string{reg.Host}
	t.Parallel()
	digest := reg.Push(t, "shop/ruby", "1.2", imagetest.Image{Cmd: []string{"/bin/sh", "-c", "ruby server.rb --port $PORT"}})
	pod := "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers:\n  - name: web\n    image: " + reg.Ref("shop/ruby:1.2") + "\n"

	code, out, errOut := runCLI(t, pod, "inject", "-f", "-", "--inspect-images")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"image: " + reg.Ref("shop/ruby@"+digest), "- exec ruby server.rb --port $$PORT"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// Without the flag the argv from the image is left alone.
	code, out, _ = runCLI(t, pod, "inject", "-f", "-")
	if code != 0 || strings.Contains(out, "exec ruby") || !strings.Contains(out, "image-not-inspected") {
		t.Errorf("without --inspect-images: exit %d\n%s", code, out)
	}

	// A registry that is down: a warning, the pod admitted untouched but for the sleep.
	reg.Close()
	code, out, errOut = runCLI(t, pod, "inject", "-f", "-", "--inspect-images")
	if code != 0 || strings.Contains(out, "exec ruby") || !strings.Contains(errOut, "image config of "+reg.Ref("shop/ruby:1.2")+" unreadable") {
		t.Errorf("registry down: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

// Issue 14's examples through the CLI: a YAML 1.1 word in a rewritten argv
// stays a string, both objects of a JSON stream are printed, a List's items
// are mutated, and a kind Job of another group passes through untouched
// (reported by --diff).
func TestInjectKubectlStreams(t *testing.T) {
	t.Parallel()
	redis := "apiVersion: v1\nkind: Pod\nmetadata: {name: r}\nspec:\n  containers:\n  - name: redis\n    image: redis:7\n    command: [\"sh\", \"-c\", \"redis-server --appendonly yes\"]\n"
	code, out, errOut := runCLI(t, redis, "inject", "-f", "-")
	if code != 0 || !strings.Contains(out, `command: ["redis-server", "--appendonly", "yes"]`) {
		t.Errorf("redis: exit %d, stderr %q:\n%s", code, errOut, out)
	}
	code2, out2, _ := runCLI(t, out, "inject", "-f", "-")
	if code2 != 0 || out2 != out {
		t.Errorf("second pass: exit %d, changed:\n%s", code2, out2)
	}

	stream := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},"spec":{"containers":[{"name":"app","image":"app"}]}}` +
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"b"},"spec":{"containers":[{"name":"app","image":"app"}]}}`
	code, out, errOut = runCLI(t, stream, "inject", "-f", "-")
	if code != 0 || strings.Count(out, `"seconds":15`) != 2 || !strings.HasPrefix(out, "{") {
		t.Errorf("JSON stream: exit %d, stderr %q:\n%s", code, errOut, out)
	}

	list := "apiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: d}\n  spec:\n    template:\n      spec:\n        containers: [{name: app, image: app}]\n" +
		"---\napiVersion: example.com/v1\nkind: Job\nmetadata: {name: custom}\nspec: {template: 3}\n"
	code, out, errOut = runCLI(t, list, "inject", "-f", "-", "--diff")
	if code != 0 || !strings.Contains(out, "lifecycle: {preStop: {sleep: {seconds: 15}}}") {
		t.Errorf("List: exit %d, stderr %q:\n%s", code, errOut, out)
	}
	if want := `stdin: document 2 (Job/custom): apiVersion "example.com/v1" is not batch/v1: not mutated`; !strings.Contains(errOut, want) {
		t.Errorf("--diff stderr = %q, want %q", errOut, want)
	}
}
