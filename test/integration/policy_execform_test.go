package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/internal/execformcases"
	"github.com/podgrace/podgrace/pkg/policy"
)

// execArgv is one container command of the exec-form cases.
type execArgv struct {
	from          string
	command, args []string
	env           []corev1.EnvVar
}

// goldenArgvs are the container commands of the manifest goldens' inputs
// (pkg/manifest/testdata/golden: the seeds' commands and the rewrite's
// documented cases), with their env.
func goldenArgvs(t *testing.T) []execArgv {
	t.Helper()
	files, err := filepath.Glob("../../pkg/manifest/testdata/golden/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifest goldens found: %v", err)
	}
	var out []execArgv
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Logf("%s: %v (the rest of the file skipped)", f, err)
				}
				break
			}
			for _, c := range containersIn(doc) {
				if len(c.Command)+len(c.Args) > 0 {
					out = append(out, execArgv{from: filepath.Base(f) + "/" + c.Name, command: c.Command, args: c.Args, env: c.Env})
				}
			}
		}
	}
	return out
}

// containersIn finds every container list in a decoded document (a pod or
// any workload's template).
func containersIn(v any) []corev1.Container {
	var out []corev1.Container
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == "containers" || k == "initContainers" {
				raw, _ := yaml.Marshal(e)
				var cs []corev1.Container
				if yaml.Unmarshal(raw, &cs) == nil {
					out = append(out, cs...)
				}
				continue
			}
			out = append(out, containersIn(e)...)
		}
	case []any:
		for _, e := range x {
			out = append(out, containersIn(e)...)
		}
	}
	return out
}

// generatedArgvs draws n shell-form argvs around the shapes' edges: literal
// words, paths, builtins, reserved words, assignments, quotes and
// expansions joined by &&, ||, ; or newlines, under several shells and
// argv layouts.
func generatedArgvs(rng *rand.Rand, n int) []execArgv {
	first := []string{"puma", "bundle", "node", "java", "gunicorn", "python3", "migrate", "./run.sh", "/app/bin/server",
		"cd", "echo", "exec", "trap", "sh", "env", "for", "FOO=1", "true", "'q'", "$(APP)", "a*"}
	rest := []string{"exec", "puma", "-p", "3000", "--port=8080", "/app", "app:main", "a=b", "-w", "4", "config.ru", "%d", "'x y'", "$HOME", "~", "x#y"}
	seps := []string{" && ", " && ", " && ", "&&", "\t&& ", " || ", "; ", "\n", " | ", " & "}
	shells := []string{"sh", "/bin/sh", "bash", "/bin/bash", "dash", "ash", "zsh"}
	out := make([]execArgv, 0, n)
	for i := range n {
		// Every other script draws only from the shapes' words (a path or
		// a builtin last still makes a difference), the others from all.
		f, r, sp := first, rest, seps
		if i%2 == 0 {
			f, r, sp = first[:9], rest[:12], seps[:5]
		}
		var cmds []string
		for range 1 + rng.IntN(3) {
			words := []string{f[rng.IntN(len(f))]}
			for range rng.IntN(4) {
				words = append(words, r[rng.IntN(len(r))])
			}
			cmds = append(cmds, strings.Join(words, " "))
		}
		script := cmds[0]
		for _, c := range cmds[1:] {
			script += sp[rng.IntN(len(sp))] + c
		}
		script = []string{"", "", " ", "\n"}[rng.IntN(4)] + script + []string{"", "", "\n", " "}[rng.IntN(4)]
		sh := shells[rng.IntN(len(shells))]
		a := execArgv{from: fmt.Sprintf("generated %d", i)}
		switch rng.IntN(5) {
		case 0:
			a.command, a.args = []string{sh, "-c"}, []string{script}
		case 1:
			a.command, a.args = []string{sh}, []string{"-c", script}
		default:
			a.command = []string{sh, "-c", script}
		}
		if rng.IntN(4) == 0 {
			a.env = []corev1.EnvVar{{Name: "BASH_ENV", Value: "/etc/profile"}}
		}
		out = append(out, a)
	}
	return out
}

// TestPolicyExecForm creates the exec-form cases through podgrace's webhook
// and through the generated admission policies on the real API server: the
// PID 1 table (internal/execformcases), the commands of the manifest
// goldens and 240 generated scripts (seed 24), ten containers a pod, some
// as native sidecars or listed sidecars, some pods with the exec-form keys
// set on the pod or a container, or a containers selection. No pod may
// differ (compareSides): the policy rewrites only what the webhook
// rewrites, to the identical command and args, and names in its warning
// every shell form it leaves that the webhook rewrites or warns about.
func TestPolicyExecForm(t *testing.T) {
	needsPolicyAPI(t)
	t.Parallel()
	cfg := baseConfig()
	v := execFormSides(t, "ex", &cfg, nil)
	// A control: the comparison sees a rewrite the other side lacks.
	plain := namespace(t, map[string]string{instanceLabel: "none"}, nil)
	if d, _ := compareSides(t.Context(), nsVariant{webhook: v.webhook, policy: plain}, pod("control", 30), true, false); !slices.ContainsFunc(d, func(s string) bool {
		return strings.Contains(s, "neither rewrites nor names it")
	}) {
		t.Fatalf("the comparison misses a rewrite made on one side only: %q", d)
	}

	var argvs []execArgv
	for _, c := range execformcases.PID1Cases {
		a := execArgv{from: "PID 1 table: " + c.Name, command: c.Command, args: c.Args}
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range c.Env {
				if !yield(k) {
					return
				}
			}
		}) {
			a.env = append(a.env, corev1.EnvVar{Name: k, Value: c.Env[k]})
		}
		argvs = append(argvs, a)
	}
	argvs = append(argvs, goldenArgvs(t)...)
	argvs = append(argvs, generatedArgvs(rand.New(rand.NewPCG(24, 3)), 240)...)

	const perPod = 10
	var pods []*corev1.Pod
	for i := 0; i < len(argvs); i += perPod {
		n := len(pods)
		p := pod(fmt.Sprintf("exec-%02d", n), 30)
		p.Spec.Containers = nil
		p.Annotations = map[string]string{}
		for j, a := range argvs[i:min(i+perPod, len(argvs))] {
			c := corev1.Container{Name: fmt.Sprintf("c%d", j), Image: "registry.example/app:1", Command: a.command, Args: a.args, Env: a.env}
			switch {
			case j == 0 && n%6 == 1: // a native sidecar is rewritten too
				always := corev1.ContainerRestartPolicyAlways
				c.RestartPolicy = &always
				p.Spec.InitContainers = append(p.Spec.InitContainers, c)
				continue
			case j == 1 && n%5 == 2: // a listed sidecar never is
				c.Name = cfg.Sidecars[0]
			}
			p.Spec.Containers = append(p.Spec.Containers, c)
		}
		switch n % 7 {
		case 3:
			p.Annotations[policy.AnnotationExecForm] = policy.SwitchOff
			p.Annotations[policy.ContainerAnnotation("c2", policy.AnnotationExecForm)] = policy.SwitchOn
		case 4:
			p.Annotations[policy.ContainerAnnotation("c3", policy.AnnotationExecForm)] = " OFF"
		case 5:
			p.Annotations[policy.AnnotationContainers] = "c2,c4,c5"
		}
		pods = append(pods, p)
	}
	t.Logf("%d argvs (%d of the PID 1 table, %d of the goldens, 240 generated) in %d pods", len(argvs), len(execformcases.PID1Cases), len(argvs)-len(execformcases.PID1Cases)-240, len(pods))

	var (
		mu       sync.Mutex
		failures []string
		counts   = map[string]int{}
	)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, p := range pods {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			diffs, pol := compareSides(t.Context(), v, p, true, false)
			mu.Lock()
			defer mu.Unlock()
			if len(diffs) > 0 {
				in, _ := yaml.Marshal(p)
				failures = append(failures, fmt.Sprintf("pod %s:\n  %s\ninput pod:\n%s", p.Name, strings.Join(diffs, "\n  "), in))
			}
			if pol.pod == nil {
				return
			}
			for name, kind := range execFormRecords(pol.pod) {
				switch {
				case kind != "":
					counts["policy "+kind]++
				case slices.Contains(pol.shellKept, name):
					counts["left, warned"]++
				}
			}
		})
	}
	wg.Wait()
	reportFailures(t, failures, 10)
	t.Logf("%d pods compared, %d differ; containers: %v", len(pods), len(failures), counts)
	// Each outcome must be common, or agreement proves little.
	for _, k := range []string{"policy drop-shell", "policy exec", "left, warned"} {
		if counts[k] < 20 {
			t.Errorf("only %d containers %s: %v", counts[k], k, counts)
		}
	}
}

// execFormSides serves cfg through a webhook and the generated policies,
// each selecting a namespace of its own with the annotations nsAnn, and
// waits until both serve it.
func execFormSides(t *testing.T, prefix string, cfg *policy.Config, nsAnn map[string]string) nsVariant {
	t.Helper()
	run := equivRuns.Add(1)
	whName, polName := fmt.Sprintf("%s%d-webhook", prefix, run), fmt.Sprintf("%s%d-policy", prefix, run)
	serve(t, whName, cfg, 0)
	installPolicy(t, polName, cfg)
	v := nsVariant{name: prefix, webhook: namespace(t, forInstance(whName), nsAnn), policy: namespace(t, forInstance(polName), nsAnn)}
	waitExecFormServed(t, v)
	return v
}

// waitExecFormServed waits until both sides of v rewrite a shell form and
// the policy's exec-form warning is given: the API server compiles new
// policies in the background.
func waitExecFormServed(t *testing.T, v nsVariant) {
	t.Helper()
	probe := pod("probe", 30, shellContainer("app", "bundle exec puma"), shellContainer("worker", "a | b"))
	var last []string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		d, pol := compareSides(ctx, v, probe, true, false)
		last = d
		return len(d) == 0 && pol.pod != nil && len(pol.pod.Spec.Containers[0].Command) == 3 && slices.Contains(pol.shellKept, "worker"), nil
	})
	if err != nil {
		t.Fatalf("the exec-form rewrite is not served in %s and %s: %v (last differences: %q)", v.webhook, v.policy, err, last)
	}
}

// TestPolicyCost50 creates a pod of 50 containers, each with a shell-form
// command and every key set (pod, per container, namespace, the mesh
// drains), through the generated policies on the real API server: it must
// be admitted and mutated like through the webhook — every sleep and
// rewrite made, so no expression ran out of the API server's CEL budgets
// (per expression and per policy), which would silently skip the policy.
func TestPolicyCost50(t *testing.T) {
	needsPolicyAPI(t)
	t.Parallel()
	cfg := baseConfig()
	v := execFormSides(t, "cost", &cfg, map[string]string{policy.AnnotationPreStopSleep: "20s", policy.AnnotationExtendGrace: "true", policy.AnnotationExecForm: policy.SwitchOn})

	big := pod("big50", 45)
	big.Spec.Containers = nil
	big.Annotations = map[string]string{}
	var names []string
	for i := range 50 {
		n := fmt.Sprintf("container-%02d", i)
		names = append(names, n)
		script := fmt.Sprintf("cd /srv/app-%02d && bundle exec puma --port %d --workers 4 --threads 8:16 --environment production", i, 3000+i)
		if i%2 == 1 {
			script = fmt.Sprintf("gunicorn --bind 0.0.0.0:%d --workers 4 --timeout 30 app.wsgi:application", 8000+i)
		}
		big.Spec.Containers = append(big.Spec.Containers, shellContainer(n, script))
		big.Annotations[policy.ContainerAnnotation(n, policy.AnnotationPreStopSleep)] = []string{"auto", "15s", "1m", "7"}[i%4]
		big.Annotations[policy.ContainerAnnotation(n, policy.AnnotationExecForm)] = policy.SwitchOn
	}
	big.Annotations[policy.AnnotationPreStopSleep] = "25s"
	big.Annotations[policy.AnnotationExecForm] = policy.SwitchOn
	big.Annotations[policy.AnnotationExtendGrace] = "true"
	big.Annotations[policy.AnnotationContainers] = strings.Join(names, ",")
	big.Annotations[policy.AnnotationIstioProxyConfig] = `{"terminationDrainDuration":"12s"}`
	big.Annotations[policy.AnnotationLinkerdWaitBeforeExit] = "8"

	d, pol := compareSides(t.Context(), v, big, false, false)
	if len(d) > 0 {
		t.Errorf("a pod of 50 shell-form containers with every key set: %s", strings.Join(d, "\n"))
	}
	if pol.err != nil || pol.pod == nil {
		t.Fatalf("the pod is not admitted through the policy: %v", pol.err)
	}
	rec := execFormRecords(pol.pod)
	for _, c := range pol.pod.Spec.Containers {
		if sleepOf(&c) <= 0 {
			t.Errorf("container %s: no preStop sleep through the policy (lifecycle %+v)", c.Name, c.Lifecycle)
		}
		if rec[c.Name] == "" {
			t.Errorf("container %s: not rewritten through the policy (%q, status %q)", c.Name, c.Command, rec[c.Name])
		}
	}
	if len(rec) != 50 {
		t.Errorf("the policy's status records %d containers, want 50", len(rec))
	}
	ctx := context.Background()
	_ = admin.CoreV1().Pods(v.webhook).Delete(ctx, big.Name, metav1.DeleteOptions{})
	_ = admin.CoreV1().Pods(v.policy).Delete(ctx, big.Name, metav1.DeleteOptions{})
}
