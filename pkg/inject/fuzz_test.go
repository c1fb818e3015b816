package inject

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/pkg/policy"
)

// FuzzMutate feeds arbitrary pods (as JSON) and namespace annotations to the
// core. Invariants: it never panics; the JSON patch applied to the input gives
// exactly the returned pod (the webhook sends the patch, the CLI prints the
// pod: they must agree); a second pass changes nothing; warnings are short.
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
			f.Add(js, "", "")
		}
	}
	f.Add([]byte(`{"spec":{"containers":[{"name":"a","command":["sh","-c","cd / && exec x"],"lifecycle":{}}],"terminationGracePeriodSeconds":-4}}`), "podgrace.dev/prestop-sleep", "1h")
	f.Add([]byte(`{"metadata":{"annotations":{"podgrace.dev/status":"{\"containers\":[{\"name\":\"a\"}]}"}},"spec":{"containers":[{"name":"a"},{"name":"a"}]}}`), "podgrace.dev/extend-grace", "false")
	f.Add([]byte(`{"spec":{"initContainers":[{"name":"s","restartPolicy":"Always","command":["bash","-c","x"]}],"containers":[]}}`), "podgrace.dev/exec-form", "off")

	f.Fuzz(func(t *testing.T, podJSON []byte, nsKey, nsValue string) {
		var pod corev1.Pod
		if err := json.Unmarshal(podJSON, &pod); err != nil {
			return
		}
		cfg := policy.Default()
		ns := map[string]string{nsKey: nsValue}
		first := run(&pod, ns, &cfg)
		if first.Denied != "" {
			t.Fatalf("denied without strict mode: %s", first.Denied)
		}
		for _, w := range first.Warnings {
			if len(w) > MaxWarningLen {
				t.Fatalf("warning over %d bytes: %q", MaxWarningLen, w)
			}
		}
		checkPatch(t, &pod, &first)
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
