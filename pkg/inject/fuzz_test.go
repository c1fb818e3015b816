package inject

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/pkg/policy"
)

// FuzzMutate feeds arbitrary pods (as JSON), namespace annotations and a few
// cluster config values to the core. Invariants: it never panics; the JSON
// patch applied to the input gives exactly the returned pod (the webhook
// sends the patch, the CLI prints the pod: they must agree); a second pass
// changes nothing; warnings are short; and the grace arithmetic holds
// (checkGrace).
func FuzzMutate(f *testing.F) {
	seeds, _ := filepath.Glob("../manifest/testdata/golden/*.yaml")
	for _, s := range seeds {
		raw, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		var pod corev1.Pod
		if yaml.Unmarshal(raw, &pod) == nil && pod.Kind == "Pod" {
			js, _ := json.Marshal(&pod)
			f.Add(js, "", "", uint16(600), uint8(5))
		}
	}
	f.Add([]byte(`{"spec":{"containers":[{"name":"a","command":["sh","-c","cd / && exec x"],"lifecycle":{}}],"terminationGracePeriodSeconds":-4}}`), "podgrace.dev/prestop-sleep", "1h", uint16(600), uint8(5))
	f.Add([]byte(`{"metadata":{"annotations":{"podgrace.dev/status":"{\"containers\":[{\"name\":\"a\"}]}"}},"spec":{"containers":[{"name":"a"},{"name":"a"}]}}`), "podgrace.dev/extend-grace", "false", uint16(600), uint8(5))
	f.Add([]byte(`{"spec":{"initContainers":[{"name":"s","restartPolicy":"Always","command":["bash","-c","x"]}],"containers":[]}}`), "podgrace.dev/exec-form", "off", uint16(600), uint8(5))
	f.Add([]byte(`{"metadata":{"annotations":{"podgrace.dev/prestop-sleep":"50m","proxy.istio.io/config":"terminationDrainDuration: 90s"}},"spec":{"containers":[{"name":"app"},{"name":"istio-proxy"},{"name":"linkerd-proxy","lifecycle":{"preStop":{"exec":{"command":["/bin/sleep","900"]}}}}]}}`), "", "", uint16(60), uint8(30))
	f.Add([]byte(`{"metadata":{"annotations":{"podgrace.dev/status":"{\"containers\":[{\"name\":\"app\",\"preStopSleep\":25}]}"}},"spec":{"terminationGracePeriodSeconds":30,"containers":[{"name":"app","lifecycle":{"preStop":{"sleep":{"seconds":25}}}},{"name":"cloud-sql-proxy"}]}}`), "podgrace.dev/extend-grace", "false", uint16(600), uint8(20))
	f.Add([]byte(`{"spec":{"terminationGracePeriodSeconds":-9223372036854775808,"containers":[{"name":"app"},{"name":"istio-proxy","lifecycle":{"preStop":{"exec":{"command":["sleep","9223372036854775807"]}}}}]}}`), "", "", uint16(600), uint8(5))
	f.Add([]byte(`{"spec":{"restartPolicy":"Never","terminationGracePeriodSeconds":3,"containers":[{"name":"job"},{"name":"daprd"}]}}`), "podgrace.dev/prestop-sleep", "2", uint16(600), uint8(5))

	f.Fuzz(func(t *testing.T, podJSON []byte, nsKey, nsValue string, maxGrace uint16, sidecarBudget uint8) {
		var pod corev1.Pod
		if err := json.Unmarshal(podJSON, &pod); err != nil {
			return
		}
		cfg := policy.Default()
		cfg.SidecarShutdownBudget.Duration = time.Duration(sidecarBudget%60) * time.Second
		cfg.MaxGracePeriod.Duration = time.Duration(maxGrace) * time.Second
		if cfg.Validate() != nil {
			return
		}
		ns := map[string]string{nsKey: nsValue}
		first := run(&pod, ns, &cfg)
		if first.Denied != "" {
			t.Fatalf("denied without strict mode: %s", first.Denied)
		}
		for _, w := range first.Warnings {
			if len(w.Message) > MaxWarningLen {
				t.Fatalf("warning over %d bytes: %q", MaxWarningLen, w)
			}
		}
		checkPatch(t, &pod, &first)
		checkGrace(t, &pod, ns, &cfg, &first)
		second := run(first.Pod, ns, &cfg)
		if second.Changed() {
			t.Fatalf("second pass changed the pod: %v", second.Patch)
		}
	})
}

func run(pod *corev1.Pod, ns map[string]string, cfg *policy.Config) Result {
	pp := policy.Resolve(cfg, ns, pod)
	return Mutate(Input{Pod: pod, Policy: &pp, Config: cfg, HookAction: policy.HookSleep})
}

// checkGrace checks the sleeps of one pass against the grace period
// (docs/design.md §4): no sleep exceeds the final grace period (the API
// server would reject the pod); the grace period is never raised above
// maxGracePeriod (unless it already was) nor lowered; every sidecar sleep
// podgrace sized (no per-container annotation of its own) is at least every
// app sleep, so that the sidecar outlives the app's sleep.
func checkGrace(t *testing.T, in *corev1.Pod, ns map[string]string, cfg *policy.Config, res *Result) {
	t.Helper()
	before := DefaultGracePeriod
	if in.Spec.TerminationGracePeriodSeconds != nil {
		before = *in.Spec.TerminationGracePeriodSeconds
	}
	after := before
	if res.Pod.Spec.TerminationGracePeriodSeconds != nil {
		after = *res.Pod.Spec.TerminationGracePeriodSeconds
	}
	if after < before {
		t.Fatalf("grace period lowered from %d to %d", before, after)
	}
	if maxGrace := int64(cfg.MaxGracePeriod.Duration / time.Second); after > before && after > maxGrace {
		t.Fatalf("grace period raised from %d to %d, above maxGracePeriod %d", before, after, maxGrace)
	}
	pp := policy.Resolve(cfg, ns, in)
	own := map[string]bool{}
	for _, cp := range pp.Containers {
		own[cp.Name] = cp.Sleep.Source == policy.SourceContainer
	}
	var maxApp, minSidecar int64 = 0, math.MaxInt64
	// App sleeps of earlier passes count too (as the core reads them:
	// never more than the grace period the pod came with).
	for _, r := range res.Status.Containers[:res.Previous] {
		if r.Role == "" && !r.Init {
			maxApp = max(maxApp, min(r.PreStopSleep, before))
		}
	}
	for _, r := range res.Status.Containers[res.Previous:] {
		if r.PreStopSleep == 0 {
			continue
		}
		if r.PreStopSleep < 1 || r.PreStopSleep > after {
			t.Fatalf("%s: sleep %ds outside 1..grace period %d", r.Name, r.PreStopSleep, after)
		}
		switch {
		case r.Role == "":
			maxApp = max(maxApp, r.PreStopSleep)
		case r.Role == string(policy.RoleSidecar) && !own[r.Name]:
			minSidecar = min(minSidecar, r.PreStopSleep)
		case r.Role != string(policy.RoleSidecar):
			t.Fatalf("%s: role %q was given a sleep", r.Name, r.Role)
		}
	}
	if minSidecar < maxApp {
		t.Fatalf("a sidecar sleeps %ds, less than an app's %ds: it would stop first", minSidecar, maxApp)
	}
	for i := range res.Pod.Spec.Containers {
		c := &res.Pod.Spec.Containers[i]
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil && c.Lifecycle.PreStop.Sleep.Seconds > after &&
			(in.Spec.Containers[i].Lifecycle == nil || in.Spec.Containers[i].Lifecycle.PreStop == nil) {
			t.Fatalf("%s: added sleep %ds exceeds the grace period %d", c.Name, c.Lifecycle.PreStop.Sleep.Seconds, after)
		}
	}
}

// checkPatch applies the patch to the input's JSON and compares with the pod.
func checkPatch(t *testing.T, in *corev1.Pod, res *Result) {
	t.Helper()
	orig, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := json.Marshal(res.Patch)
	if err != nil {
		t.Fatal(err)
	}
	patch, err := jsonpatch.DecodePatch(ops)
	if err != nil {
		t.Fatalf("patch does not decode: %v", err)
	}
	patched, err := patch.Apply(orig)
	if err != nil {
		t.Fatalf("patch %s does not apply to %s: %v", ops, orig, err)
	}
	var got, want corev1.Pod
	if err := json.Unmarshal(patched, &got); err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(res.Pod)
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("patched input differs from the returned pod:\npatched: %s\npod:     %s", patched, out)
	}
}
