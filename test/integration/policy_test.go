package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/pkg/admissionpolicy"
	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// meshLabel selects the namespaces where the test's mesh injector adds an
// istio-proxy container after podgrace (its configuration's name sorts
// after "podgrace"; MutatingAdmissionPolicies run before every webhook), so
// podgrace and the policy are both reinvoked for it.
const meshLabel = "podgrace-test/mesh"

// installPolicy creates the generated objects for cfg, selecting the
// namespaces labeled for instance name; a policy the API server rejects
// fails the test. It returns the objects.
func installPolicy(t *testing.T, name string, cfg *policy.Config) *admissionpolicy.Objects {
	t.Helper()
	objs, err := admissionpolicy.Generate(cfg, admissionpolicy.Options{
		Namespace: namespace(t, nil, nil), NamePrefix: name + "-", ExtraNamespaceSelector: instanceSelector(name),
	})
	if err != nil {
		t.Fatal(err)
	}
	installObjects(t, objs)
	return objs
}

// installObjects creates generated objects; a policy the API server rejects
// fails the test.
func installObjects(t *testing.T, objs *admissionpolicy.Objects) {
	t.Helper()
	ctx := t.Context()
	ar := admin.AdmissionregistrationV1()
	if _, err := ar.MutatingAdmissionPolicies().Create(ctx, objs.Mutating, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the API server rejects the generated MutatingAdmissionPolicy: %v", err)
	}
	if _, err := ar.MutatingAdmissionPolicyBindings().Create(ctx, objs.MutatingBinding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the API server rejects the generated MutatingAdmissionPolicyBinding: %v", err)
	}
	if _, err := ar.ValidatingAdmissionPolicies().Create(ctx, objs.Validating, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the API server rejects the generated ValidatingAdmissionPolicy: %v", err)
	}
	if _, err := ar.ValidatingAdmissionPolicyBindings().Create(ctx, objs.ValidatingBinding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the API server rejects the generated ValidatingAdmissionPolicyBinding: %v", err)
	}
	if _, err := ar.ValidatingAdmissionPolicies().Create(ctx, objs.ExecForm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the API server rejects the generated exec-form ValidatingAdmissionPolicy: %v", err)
	}
	if _, err := ar.ValidatingAdmissionPolicyBindings().Create(ctx, objs.ExecFormBinding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the API server rejects the generated exec-form ValidatingAdmissionPolicyBinding: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = ar.MutatingAdmissionPolicyBindings().Delete(ctx, objs.MutatingBinding.Name, metav1.DeleteOptions{})
		_ = ar.MutatingAdmissionPolicies().Delete(ctx, objs.Mutating.Name, metav1.DeleteOptions{})
		_ = ar.ValidatingAdmissionPolicyBindings().Delete(ctx, objs.ValidatingBinding.Name, metav1.DeleteOptions{})
		_ = ar.ValidatingAdmissionPolicies().Delete(ctx, objs.Validating.Name, metav1.DeleteOptions{})
		_ = ar.ValidatingAdmissionPolicyBindings().Delete(ctx, objs.ExecFormBinding.Name, metav1.DeleteOptions{})
		_ = ar.ValidatingAdmissionPolicies().Delete(ctx, objs.ExecForm.Name, metav1.DeleteOptions{})
	})
}

// meshInjector registers a webhook that appends an istio-proxy container
// to pods in namespaces labeled meshLabel, as a mesh's injector does.
func meshInjector(t *testing.T, native bool) {
	t.Helper()
	proxy := corev1.Container{Name: "istio-proxy", Image: "registry.example/proxyv2:1", Args: []string{"proxy", "sidecar"}}
	path, label, name := "/spec/containers/-", "true", "zz-podgrace-test-mesh"
	if native { // Istio's native sidecar mode: an init container that keeps running
		always := corev1.ContainerRestartPolicyAlways
		proxy.RestartPolicy = &always
		path, label, name = "/spec/initContainers/-", "native", "zz-podgrace-test-mesh-native"
	}
	srv := patchingWebhook(t, func(p *corev1.Pod) []map[string]any {
		has := func(c corev1.Container) bool { return c.Name == proxy.Name }
		if slices.ContainsFunc(p.Spec.Containers, has) || slices.ContainsFunc(p.Spec.InitContainers, has) {
			return nil
		}
		if native && len(p.Spec.InitContainers) == 0 {
			return []map[string]any{{"op": "add", "path": "/spec/initContainers", "value": []corev1.Container{proxy}}}
		}
		return []map[string]any{{"op": "add", "path": path, "value": proxy}}
	})
	url := srv.URL
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	never := admissionregistrationv1.NeverReinvocationPolicy
	register(t, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    label + ".mesh.podgrace-test.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: tlsAssets.caPEM},
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &none,
			FailurePolicy:           &fail,
			ReinvocationPolicy:      &never,
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{meshLabel: label}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
		}},
	})
}

// nsVariant is a pair of namespaces (webhook, policy) with the same
// annotations and mesh label.
type nsVariant struct {
	name        string
	annotations map[string]string
	mesh        string // "", "true" (a container) or "native" (an init container)
	webhook     string
	policy      string
}

// TestPolicyEquivalence creates the same generated pods through podgrace's
// webhook in one namespace and through the generated admission policies in
// another (and, in mesh namespaces, through a second webhook that injects a
// sidecar afterwards): no pod may be rejected, every container's lifecycle
// and the grace period must be identical, the status annotations equal in
// every field the policy writes, and both must warn about the same keys.
func TestPolicyEquivalence(t *testing.T) {
	needsPolicyAPI(t)
	t.Parallel()
	meshInjector(t, false)
	meshInjector(t, true)
	strict := baseConfig()
	strict.Strict = true
	other := baseConfig()
	other.HookAction, other.ExtendGrace, other.SleepRunToCompletion = policy.HookExec, false, true
	other.Ratio, other.Min.Duration, other.Max.Duration = 0.3, 2*time.Second, 90*time.Second
	other.MaxGracePeriod.Duration, other.SidecarShutdownBudget.Duration, other.ShutdownBudget.Duration = 120*time.Second, 3*time.Second, 4*time.Second
	other.Sidecars = []string{"istio-proxy", "cloud-sql-proxy"}
	for _, c := range []struct {
		name string
		cfg  policy.Config
		pods int
	}{
		{"defaults", baseConfig(), 360},
		{"strict", strict, 120},
		{"exec-no-extend", other, 120},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			equivalence(t, c.name, c.cfg, c.pods)
		})
	}
}

// equivRuns numbers the equivalence runs of this process.
var equivRuns atomic.Int32

// equivalence runs the comparison for one cluster config.
func equivalence(t *testing.T, name string, cfg policy.Config, pods int) {
	// Names get the run's number: under -count=N the API server must not
	// meet a policy of an earlier run again under the same name.
	run := equivRuns.Add(1)
	whName, polName := fmt.Sprintf("eq%d-%s-webhook", run, name), fmt.Sprintf("eq%d-%s-policy", run, name)
	serve(t, whName, &cfg, 0)
	installPolicy(t, polName, &cfg)

	variants := []nsVariant{
		{name: "plain"},
		{name: "mesh", mesh: "true"},
		{name: "mesh-native", mesh: "native"},
		{name: "ns-annotated", annotations: map[string]string{policy.AnnotationPreStopSleep: "12s", policy.AnnotationExtendGrace: "false"}},
		{name: "ns-invalid", annotations: map[string]string{policy.AnnotationPreStopSleep: "soon", policy.AnnotationExtendGrace: "perhaps", policy.AnnotationExecForm: "x", policy.Prefix + "/typo": "1", policy.AnnotationContainers: "app"}},
		{name: "ns-off-mesh", mesh: "true", annotations: map[string]string{policy.AnnotationPreStopSleep: "off"}},
		{name: "ns-long-mesh", mesh: "true", annotations: map[string]string{policy.AnnotationPreStopSleep: "10m"}},
	}
	if cfg.Strict { // every pod there would be denied, the probe below too
		variants = slices.DeleteFunc(variants, func(v nsVariant) bool { return v.name == "ns-invalid" })
	}
	for i := range variants {
		v := &variants[i]
		for side, inst := range map[*string]string{&v.webhook: whName, &v.policy: polName} {
			labels := forInstance(inst)
			if v.mesh != "" {
				labels[meshLabel] = v.mesh
			}
			*side = namespace(t, labels, v.annotations)
		}
	}
	// Wait until both sides (and the injector) act on new pods.
	quiet := rest.CopyConfig(restConfig)
	quiet.WarningHandler = rest.NoWarnings{}
	probe := kubernetes.NewForConfigOrDie(quiet)
	for _, v := range variants {
		for _, ns := range []string{v.webhook, v.policy} {
			// The API server compiles a new policy in the background; on a
			// loaded machine that took over a minute once.
			var probed *corev1.Pod
			err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
				p, err := probe.CoreV1().Pods(ns).Create(ctx, pod("probe", 30), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
				if err != nil {
					return false, err
				}
				probed = p
				_, ok := p.Annotations[policy.AnnotationStatus]
				want := 1
				if v.mesh != "" {
					want = 2
				}
				return ok && len(p.Spec.Containers)+len(p.Spec.InitContainers) == want, nil
			})
			if err == nil && ns == v.policy {
				// The ValidatingAdmissionPolicy takes effect on its own
				// schedule: wait for its warning (or its denial) too.
				bad := pod("probe-warn", 30)
				bad.Annotations = map[string]string{"c.podgrace.dev/prestop-sleep": "x"}
				var last []string
				err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
					d, s := compareSides(ctx, nsVariant{webhook: v.webhook, policy: ns}, bad, true, cfg.Strict)
					last = d
					return len(d) == 0 && (len(s.keys) > 0), nil
				})
				if err != nil {
					err = fmt.Errorf("%w: its warnings differ: %q", err, last)
				}
			}
			if err != nil {
				var got any
				if probed != nil {
					got = map[string]any{"annotations": probed.Annotations, "containers": len(probed.Spec.Containers), "initContainers": len(probed.Spec.InitContainers)}
				}
				t.Fatalf("namespace %s (%s, %s) is not served: %v (last probe: %v)", ns, v.name, map[bool]string{true: "webhook", false: "policy"}[ns == v.webhook], err, got)
			}
		}
	}

	seed := time.Now().UnixNano()
	if env := os.Getenv("PODGRACE_EQUIV_SEED"); env != "" {
		var err error
		if seed, err = strconv.ParseInt(env, 10, 64); err != nil {
			t.Fatalf("PODGRACE_EQUIV_SEED: %v", err)
		}
	}
	t.Logf("pod generator seed %d (PODGRACE_EQUIV_SEED reruns it)", seed)

	// A control: the comparison sees a difference where there is one (a
	// pod through the webhook against the same pod through nothing).
	plain := namespace(t, map[string]string{instanceLabel: "none"}, nil)
	if d, _ := compareSides(t.Context(), nsVariant{webhook: variants[0].webhook, policy: plain}, pod("control", 30), true, false); len(d) == 0 {
		t.Fatal("the comparison finds no difference between a mutated and an unmutated pod")
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 17))
	// A large pod: the CEL's cost grows with containers and annotations,
	// and a policy over the API server's budget would silently do nothing.
	big := pod("big", 120)
	big.Spec.Containers = nil
	big.Annotations = map[string]string{}
	for i := range 40 {
		n := fmt.Sprintf("c%02d", i)
		big.Spec.Containers = append(big.Spec.Containers, corev1.Container{Name: n, Image: "registry.example/" + n + ":1"})
		big.Annotations[policy.ContainerAnnotation(n, policy.AnnotationPreStopSleep)] = []string{"auto", "20s", "1m30s", "off", "bad"}[i%5]
		big.Annotations[fmt.Sprintf("example.com/note-%d", i)] = strings.Repeat("x", 200)
	}
	big.Spec.Containers = append(big.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "registry.example/proxyv2:1"})
	if d, pol := compareSides(t.Context(), variants[0], big, true, cfg.Strict); len(d) > 0 {
		t.Errorf("a pod with 41 containers and 80 annotations: %s", strings.Join(d, "\n"))
	} else if !cfg.Strict && (pol.pod == nil || pol.pod.Annotations[policy.AnnotationStatus] == "") {
		t.Error("the policy did not mutate a pod with 41 containers and 80 annotations")
	}

	var (
		mu       sync.Mutex
		failures []string
		checked  int
		seen     = map[string]int{}
	)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range pods {
		p := genPod(rng, i)
		v := variants[i%len(variants)]
		if i%9 == 4 {
			// Injected beforehand with `podgrace inject` (GitOps): both
			// sides must read the webhook's status and add nothing but
			// what a mesh injector brings.
			if r := inject.Pod(t.Context(), inject.PodInput{Pod: p, NamespaceAnnotations: v.annotations, Config: &cfg, HookAction: cfg.HookAction}); r.Denied == "" {
				p = r.Pod.DeepCopy()
				p.Labels["podgrace-test/pre-injected"] = "true"
			}
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			diffs, pol := compareSides(t.Context(), v, p, i%5 != 0, cfg.Strict)
			mu.Lock()
			defer mu.Unlock()
			checked++
			for _, k := range pol.cover(p) {
				seen[k]++
			}
			if len(diffs) > 0 {
				in, _ := yaml.Marshal(p)
				failures = append(failures, fmt.Sprintf("pod %s in %s namespaces:\n  %s\ninput pod:\n%s", p.Name, v.name, strings.Join(diffs, "\n  "), in))
			}
		})
	}
	wg.Wait()
	reportFailures(t, failures, 20)
	t.Logf("%d pods compared, %d differ; cases seen: %v", checked, len(failures), seen)
	// The generator must have reached every rule, or equality proves little.
	if pods < 300 {
		return
	}
	for _, k := range []string{"sleep", "grace-raised", "grace-capped", "sidecar-sleep", "reinvoked", "reinvoked-native", "native-sidecar", "init-container",
		"existing-prestop", "run-to-completion", "pre-injected", "off", "grace-too-short", "grace-period-zero", "not-in-containers-annotation", "warned", "opted-out"} {
		if seen[k] == 0 {
			t.Errorf("no generated pod exercised %q", k)
		}
	}
}

// reportFailures reports the first limit differing pods, in name order.
func reportFailures(t *testing.T, failures []string, limit int) {
	t.Helper()
	sort.Strings(failures)
	for i, f := range failures {
		if i == limit {
			t.Errorf("... and %d more pods differ", len(failures)-limit)
			break
		}
		t.Error(f)
	}
}

// side is what one admission path made of a pod.
type side struct {
	pod  *corev1.Pod
	keys []string
	// shellKept names the containers a warning says keep their shell form:
	// the webhook's "shell-form command kept", the policy's
	// admissionpolicy.ExecFormWarning.
	shellKept []string
	err       error
}

// cover names the rules a policy-side result shows, for the test's census.
func (s side) cover(in *corev1.Pod) []string {
	if s.err != nil || s.pod == nil {
		return nil
	}
	var out []string
	if len(s.keys) > 0 {
		out = append(out, "warned")
	}
	if in.Labels["podgrace-test/pre-injected"] == "true" {
		out = append(out, "pre-injected")
	}
	raw, ok := s.pod.Annotations[policy.AnnotationStatus]
	if !ok {
		return append(out, "opted-out")
	}
	if len(in.Spec.InitContainers) > 0 {
		out = append(out, "init-container")
	}
	if slices.ContainsFunc(in.Spec.InitContainers, func(c corev1.Container) bool { return c.RestartPolicy != nil }) {
		out = append(out, "native-sidecar")
	}
	var st struct {
		GraceBefore, GraceAfter int64
		Containers              []map[string]any
	}
	_ = json.Unmarshal([]byte(raw), &st)
	if st.GraceAfter > st.GraceBefore {
		out = append(out, "grace-raised")
	}
	if st.GraceAfter == 600 && st.GraceBefore < 600 {
		out = append(out, "grace-capped")
	}
	if len(s.pod.Spec.Containers) > len(in.Spec.Containers) && strings.Contains(raw, `"name":"istio-proxy","role":"sidecar","preStopSleep"`) {
		out = append(out, "reinvoked")
	}
	if len(s.pod.Spec.InitContainers) > len(in.Spec.InitContainers) && strings.Contains(raw, `"name":"istio-proxy","init":true`) {
		out = append(out, "reinvoked-native")
	}
	for _, c := range st.Containers {
		switch {
		case c["preStopSleep"] != nil && c["role"] == "sidecar":
			out = append(out, "sidecar-sleep")
		case c["preStopSleep"] != nil:
			out = append(out, "sleep")
		case c["preStopSkipped"] != nil:
			out = append(out, c["preStopSkipped"].(string))
		case c["skipped"] != nil:
			out = append(out, c["skipped"].(string))
		}
	}
	return out
}

// warningKey finds the podgrace keys named by the warnings about invalid
// settings. The webhook's notes about what it did (a sleep shortened to
// fit, a mesh drain it cannot read) are not compared: the policy does not
// give them (docs/operate/policy.md).
var warningKey = regexp.MustCompile(`podgrace: ((?:[a-z0-9-]+\.)?podgrace\.dev/[^\s="]+)="`)

// Warnings about a shell form left as it is: the webhook's names one
// container, the exec-form policy's all of them.
var (
	webhookShellKept = regexp.MustCompile(`podgrace: ([a-z0-9-]+): shell-form command kept`)
	policyShellKept  = regexp.MustCompile(`podgrace: ([a-z0-9, -]+): ` + regexp.QuoteMeta(admissionpolicy.ExecFormWarning) + `$`)
)

// compareSides creates p in both namespaces of v (as a dry run, or for
// real) and lists the differences. In strict mode both may deny the pod.
func compareSides(ctx context.Context, v nsVariant, p *corev1.Pod, dryRun, strict bool) ([]string, side) {
	create := func(ns string) side {
		w := &warnings{}
		cfg := *restConfig
		cfg.WarningHandler = w
		c := kubernetes.NewForConfigOrDie(&cfg)
		opts := metav1.CreateOptions{}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		got, err := c.CoreV1().Pods(ns).Create(ctx, p.DeepCopy(), opts)
		var keys, kept []string
		for _, s := range w.Take() {
			for _, m := range warningKey.FindAllStringSubmatch(s, -1) {
				keys = append(keys, m[1])
			}
			if m := webhookShellKept.FindStringSubmatch(s); m != nil {
				kept = append(kept, m[1])
			}
			if m := policyShellKept.FindStringSubmatch(s); m != nil {
				kept = append(kept, strings.Split(m[1], ", ")...)
			}
		}
		slices.Sort(keys)
		return side{got, slices.Compact(keys), kept, err}
	}
	wh, pol := create(v.webhook), create(v.policy)
	var diffs []string
	if strict && wh.err != nil && pol.err != nil && strings.Contains(wh.err.Error(), "(strict mode)") && strings.Contains(pol.err.Error(), "ValidatingAdmissionPolicy") {
		return nil, side{err: pol.err, keys: []string{"denied"}}
	}
	if wh.err != nil || pol.err != nil {
		return []string{fmt.Sprintf("create: webhook %v, policy %v", wh.err, pol.err)}, pol
	}
	if !slices.Equal(wh.keys, pol.keys) {
		diffs = append(diffs, fmt.Sprintf("warned keys: webhook %q, policy %q", wh.keys, pol.keys))
	}
	g := func(p *corev1.Pod) int64 {
		if p.Spec.TerminationGracePeriodSeconds == nil {
			return -1
		}
		return *p.Spec.TerminationGracePeriodSeconds
	}
	if g(wh.pod) != g(pol.pod) {
		diffs = append(diffs, fmt.Sprintf("terminationGracePeriodSeconds: webhook %d, policy %d", g(wh.pod), g(pol.pod)))
	}
	lists := [][2][]corev1.Container{{wh.pod.Spec.Containers, pol.pod.Spec.Containers}, {wh.pod.Spec.InitContainers, pol.pod.Spec.InitContainers}}
	for _, l := range lists {
		if len(l[0]) != len(l[1]) {
			diffs = append(diffs, fmt.Sprintf("containers: webhook %d, policy %d", len(l[0]), len(l[1])))
			continue
		}
		for i := range l[0] {
			a, b := l[0][i].Lifecycle, l[1][i].Lifecycle
			if !equality.Semantic.DeepEqual(a, b) {
				ja, _ := json.Marshal(a)
				jb, _ := json.Marshal(b)
				diffs = append(diffs, fmt.Sprintf("container %s lifecycle: webhook %s, policy %s", l[0][i].Name, ja, jb))
			}
		}
	}
	ws, ps := claimedStatus(wh.pod), claimedStatus(pol.pod)
	if ws != ps {
		diffs = append(diffs, fmt.Sprintf("status: webhook %s\n          policy  %s", ws, ps))
	}
	diffs = append(diffs, compareExecForm(p, wh, pol)...)
	return diffs, pol
}

// compareExecForm holds the policy's exec-form rewrite to the webhook's
// (docs/operate/policy.md): a container the policy rewrites, the webhook
// rewrites the same way (command, args and the status's execForm); one the
// policy leaves and the webhook rewrites, the policy's warning names; one
// the webhook warns about keeping, the policy's warning names too.
func compareExecForm(in *corev1.Pod, wh, pol side) []string {
	var diffs []string
	orig := map[string]corev1.Container{}
	for _, c := range slices.Concat(in.Spec.Containers, in.Spec.InitContainers) {
		orig[c.Name] = c
	}
	whRec, polRec := execFormRecords(wh.pod), execFormRecords(pol.pod)
	byName := func(p *corev1.Pod) map[string]corev1.Container {
		m := map[string]corev1.Container{}
		for _, c := range slices.Concat(p.Spec.Containers, p.Spec.InitContainers) {
			m[c.Name] = c
		}
		return m
	}
	whC, polC := byName(wh.pod), byName(pol.pod)
	argv := func(c corev1.Container) string { b, _ := json.Marshal([][]string{c.Command, c.Args}); return string(b) }
	for name, pc := range polC {
		wc, ok := whC[name]
		if !ok {
			continue // the container counts differ: reported already
		}
		o, had := orig[name]
		switch {
		case polRec[name] != "":
			if polRec[name] != whRec[name] || argv(pc) != argv(wc) {
				diffs = append(diffs, fmt.Sprintf("container %s: the policy rewrites (%s) %s, the webhook (%q) gives %s", name, polRec[name], argv(pc), whRec[name], argv(wc)))
			}
		case had && argv(pc) != argv(o):
			diffs = append(diffs, fmt.Sprintf("container %s: the policy changes the command to %s without recording it", name, argv(pc)))
		case whRec[name] != "" && !slices.Contains(pol.shellKept, name):
			diffs = append(diffs, fmt.Sprintf("container %s: the webhook rewrites (%s) %s, the policy neither rewrites nor names it in a warning", name, whRec[name], argv(wc)))
		}
		if slices.Contains(wh.shellKept, name) && !slices.Contains(pol.shellKept, name) {
			diffs = append(diffs, fmt.Sprintf("container %s: the webhook warns that it keeps the shell form %s, the policy does not", name, argv(pc)))
		}
	}
	return diffs
}

// execFormRecords reads every container's execForm from a status annotation.
func execFormRecords(p *corev1.Pod) map[string]string {
	var st inject.Status
	_ = json.Unmarshal([]byte(p.Annotations[policy.AnnotationStatus]), &st)
	out := map[string]string{}
	for _, c := range st.Containers {
		out[c.Name] = c.ExecForm
	}
	return out
}

// claimedFields are the status fields the policy writes for each container
// (and execForm, which compareExecForm compares).
var claimedFields = []string{"name", "init", "role", "skipped", "preStopSleep", "hook", "preStopSkipped"}

// claimedStatus is the part of a status annotation the policy claims to
// write: the grace periods and, for every container, the fields above.
func claimedStatus(p *corev1.Pod) string {
	raw, ok := p.Annotations[policy.AnnotationStatus]
	if !ok {
		return "(none)"
	}
	var st struct {
		GraceBefore int64            `json:"graceBefore"`
		GraceAfter  int64            `json:"graceAfter"`
		Containers  []map[string]any `json:"containers"`
	}
	if err := json.Unmarshal([]byte(raw), &st); err != nil {
		return "unreadable: " + raw
	}
	var out []map[string]any
	for _, c := range st.Containers {
		m := map[string]any{}
		for _, f := range claimedFields {
			if x, ok := c[f]; ok {
				m[f] = x
			}
		}
		out = append(out, m)
	}
	b, _ := json.Marshal(map[string]any{"graceBefore": st.GraceBefore, "graceAfter": st.GraceAfter, "containers": out})
	return string(b)
}

// Values the generator draws from: valid and invalid, with the edges of
// each rule (the sizing bounds of docs/design.md §4, the 1 h limit, whole seconds).
var (
	sleepValues = []string{"auto", "AUTO", " off ", "off", "0", "0s", "-0", "15", "15s", "1m30s", "1h", "3600", "3601", "61m",
		"1.5s", "500ms", "2000ms", "0.5m", "abc", "-5s", "-1", "+7", " 12 ", "1h0m0s", "99999999999999999999", "1e3", "", "10S", "7s", "45s", "5m"}
	boolValues   = []string{"true", "false", "TRUE", " false", "maybe", ""}
	switchValues = []string{"on", "off", "OFF", "maybe"}
	graces       = []int64{0, 1, 2, 3, 5, 6, 9, 10, 11, 14, 15, 16, 29, 30, 31, 45, 59, 60, 61, 100, 119, 120, 121, 130, 300, 594, 595, 599, 600, 601, 1200, 3600, 7200, 14400}
	hooks        = []*corev1.LifecycleHandler{
		{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", "nginx -s quit"}}},
		{Exec: &corev1.ExecAction{Command: []string{"sleep", "20"}}},
		{HTTPGet: &corev1.HTTPGetAction{Path: "/drain", Port: intstr.FromInt32(8080)}},
		{Sleep: &corev1.SleepAction{Seconds: 3}},
		{Sleep: &corev1.SleepAction{Seconds: 25}},
	}
)

// genPod draws one pod.
func genPod(rng *rand.Rand, i int) *corev1.Pod {
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	chance := func(pct int) bool { return rng.IntN(100) < pct }
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("eq-%03d", i), Annotations: map[string]string{}, Labels: map[string]string{}}}
	if chance(85) {
		g := graces[rng.IntN(len(graces))]
		p.Spec.TerminationGracePeriodSeconds = &g
	}
	switch rng.IntN(6) {
	case 0:
		p.Spec.RestartPolicy = corev1.RestartPolicyNever
	case 1:
		p.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	case 2:
		p.Spec.RestartPolicy = corev1.RestartPolicyAlways
	}
	names := []string{"app"}
	if chance(40) {
		names = append(names, "worker")
	}
	if chance(30) {
		names = append(names, pick([]string{"istio-proxy", "linkerd-proxy", "cloud-sql-proxy"}))
	}
	if chance(15) {
		names = append(names, "web")
	}
	rng.Shuffle(len(names), func(a, b int) { names[a], names[b] = names[b], names[a] })
	for _, n := range names {
		c := corev1.Container{Name: n, Image: "registry.example/" + n + ":1"}
		switch rng.IntN(3) {
		case 0:
			c.Command = []string{"sh", "-c", "exec /" + n}
		case 1:
			c.Command = []string{"/" + n, "--serve"}
		default:
			c.Command = []string{"/bin/sh", "-c", "/" + n + " --serve"}
		}
		switch {
		case chance(20):
			h := hooks[rng.IntN(len(hooks))].DeepCopy()
			if h.Sleep != nil && p.Spec.TerminationGracePeriodSeconds != nil {
				// A sleep longer than the grace period is invalid as written.
				h.Sleep.Seconds = min(h.Sleep.Seconds, *p.Spec.TerminationGracePeriodSeconds)
			}
			c.Lifecycle = &corev1.Lifecycle{PreStop: h}
		case chance(8):
			c.Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
		}
		p.Spec.Containers = append(p.Spec.Containers, c)
	}
	if chance(25) {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "migrate", Image: "registry.example/migrate:1", Command: []string{"sh", "-c", "migrate up"}})
	}
	if chance(20) {
		always := corev1.ContainerRestartPolicyAlways
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "log-shipper", Image: "registry.example/fluent-bit:1", RestartPolicy: &always})
	}
	all := append(slices.Clone(names), "nope")
	if chance(45) {
		p.Annotations[policy.AnnotationPreStopSleep] = pick(sleepValues)
	}
	if chance(25) {
		p.Annotations[policy.AnnotationExtendGrace] = pick(boolValues)
	}
	if chance(15) {
		p.Annotations[policy.AnnotationExecForm] = pick(switchValues)
	}
	for range rng.IntN(3) {
		c := all[rng.IntN(len(all))]
		p.Annotations[policy.ContainerAnnotation(c, policy.AnnotationPreStopSleep)] = pick(sleepValues)
	}
	if chance(10) {
		p.Annotations[policy.ContainerAnnotation(pick(all), policy.AnnotationExecForm)] = pick(switchValues)
	}
	if chance(12) {
		p.Annotations[policy.AnnotationContainers] = pick([]string{names[0], strings.Join(names, ","), "App", ",,", names[0] + ",nope", " " + names[0] + " , worker"})
	}
	if chance(5) {
		p.Annotations[policy.Prefix+"/prestop-seep"] = "10s"
	}
	if chance(8) {
		p.Annotations[policy.AnnotationLinkerdWaitBeforeExit] = pick([]string{"10", "40", "x"})
	}
	if chance(8) {
		p.Annotations[policy.AnnotationIstioProxyConfig] = pick([]string{"terminationDrainDuration: 20s", `{"terminationDrainDuration":"45s"}`, "holdApplicationUntilProxyStarts: true"})
	}
	if chance(6) {
		p.Labels[policy.LabelInject] = policy.InjectDisabled
	}
	if chance(3) { // not podgrace's JSON: replaced (the webhook warns)
		p.Annotations[policy.AnnotationStatus] = "applied"
	}
	return p
}

// TestPolicyOutOfRange: settings the chart's schema refuses and the Go
// config check rejects (a ratio of 50, a minimum above the maximum, negative
// and huge durations, no grace cap, an unknown hook action), compiled into
// the policy as they are, never block a pod: every sleep still fits the
// grace period the policy writes (a longer one would fail pod validation
// whatever the failurePolicy), and a pod with 50 containers stays within
// the API server's CEL cost budgets.
func TestPolicyOutOfRange(t *testing.T) {
	needsPolicyAPI(t)
	t.Parallel()
	run := equivRuns.Add(1)
	name := fmt.Sprintf("eq%d-outofrange", run)
	cfg := baseConfig()
	s := admissionpolicy.SettingsOf(&cfg)
	s["preStopSleep"], s["ratio"], s["min"], s["max"] = "99999h", "50", "3h", "2h"
	s["shutdownBudget"], s["sidecarShutdownBudget"], s["maxGracePeriod"] = "999999h", "1.5s", "0s"
	s["extendGrace"], s["hookAction"], s["sidecars"] = "maybe", "curl", ",,app,"
	objs, err := admissionpolicy.GenerateSettings(s, admissionpolicy.Options{
		Namespace: namespace(t, nil, nil), NamePrefix: name + "-", ExtraNamespaceSelector: instanceSelector(name),
	})
	if err != nil {
		t.Fatal(err)
	}
	installObjects(t, objs)
	ns := namespace(t, forInstance(name), nil)
	big := pod("big", 45)
	big.Spec.Containers = nil
	for i := range 50 {
		big.Spec.Containers = append(big.Spec.Containers, shellContainer(fmt.Sprintf("c%02d", i), "bundle exec puma"))
	}
	var last *corev1.Pod
	for _, p := range []*corev1.Pod{pod("web", 30), pod("zero", 0), pod("long", 7200), big} {
		err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			got, err := admin.CoreV1().Pods(ns).Create(ctx, p.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				return false, fmt.Errorf("pod %s is rejected: %w", p.Name, err)
			}
			last = got
			_, ok := got.Annotations[policy.AnnotationStatus]
			return ok, nil
		})
		if err != nil {
			t.Fatalf("pod %s: %v (last: %v)", p.Name, err, last)
		}
		g := *last.Spec.TerminationGracePeriodSeconds
		for _, c := range last.Spec.Containers {
			// An unknown hook action counts as the native sleep action.
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil && c.Lifecycle.PreStop.Sleep.Seconds > g {
				t.Errorf("pod %s container %s sleeps %d s with a grace period of %d s", p.Name, c.Name, c.Lifecycle.PreStop.Sleep.Seconds, g)
			}
		}
		if p.Name == "web" && sleepOf(&last.Spec.Containers[0]) <= 0 {
			t.Errorf("pod web: no sleep (lifecycle %+v): the out-of-range policy does nothing", last.Spec.Containers[0].Lifecycle)
		}
	}
}
