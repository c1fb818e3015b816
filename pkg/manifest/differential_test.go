package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/resource"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	kjson "sigs.k8s.io/json"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/workload"
)

// kubectlRead is what `kubectl apply -f -` reads from a stream: cli-runtime's
// own builder (the StreamVisitor over utilyaml.NewYAMLOrJSONDecoder,
// unstructured objects, Lists flattened), with no server to ask.
func kubectlRead(stream []byte) ([]*unstructured.Unstructured, error) {
	infos, err := resource.NewLocalBuilder().Unstructured().Stream(bytes.NewReader(stream), "stdin").Flatten().Do().Infos()
	if err != nil {
		return nil, err
	}
	out := make([]*unstructured.Unstructured, len(infos))
	for i, info := range infos {
		u, ok := info.Object.(*unstructured.Unstructured)
		if !ok {
			return nil, fmt.Errorf("object %d is a %T", i, info.Object)
		}
		out[i] = u
	}
	return out, nil
}

// checkInvariant is issue 14's differential invariant for one input. It
// returns whether Inject accepted the input.
func checkInvariant(t *testing.T, src []byte, o Options) bool {
	t.Helper()
	in, kerr := kubectlRead(src)
	out, docs, err := Inject(context.Background(), bytes.NewReader(src), o)
	if err != nil {
		if out != nil {
			t.Fatalf("output alongside an error: %v", err)
		}
		if !strings.HasPrefix(err.Error(), "document ") {
			t.Fatalf("the error does not name the document: %v", err)
		}
		if strings.Contains(err.Error(), "a bug") {
			t.Fatalf("podgrace's own check failed: %v", err)
		}
		return false
	}
	if kerr != nil {
		t.Fatalf("podgrace accepted a stream kubectl refuses (%v); output:\n%s", kerr, out)
	}
	got, err := kubectlRead(out)
	if err != nil {
		t.Fatalf("kubectl cannot read podgrace's output: %v\ninput:\n%q\noutput:\n%q", err, src, out)
	}
	if len(got) != len(in) {
		t.Fatalf("kubectl reads %d objects from the output, %d from the input\noutput:\n%s", len(got), len(in), out)
	}
	if len(docs) != len(in) {
		t.Fatalf("Inject reports %d objects, kubectl reads %d", len(docs), len(in))
	}
	changed := false
	for i := range in {
		want, pod := expectedObject(t, in[i], o)
		if !reflect.DeepEqual(got[i].Object, want.Object) {
			t.Fatalf("object %d (%s) as kubectl reads it:\n got %#v\nwant %#v\ninput:\n%q\noutput:\n%q", i+1, docs[i].Where(), got[i].Object, want.Object, src, out)
		}
		if (pod != nil) != docs[i].Changed {
			t.Fatalf("object %d: Changed = %v, core changed it: %v", i+1, docs[i].Changed, pod != nil)
		}
		if pod != nil {
			changed = true
			typedEqual(t, got[i], want, pod)
		}
	}
	again, _, err := Inject(context.Background(), bytes.NewReader(out), o)
	if err != nil {
		t.Fatalf("second pass: %v\noutput:\n%s", err, out)
	}
	if !bytes.Equal(again, out) {
		t.Fatalf("second pass changed the bytes:\n%q\n%q", out, again)
	}
	if !changed && !bytes.Equal(out, src) {
		t.Fatalf("nothing changed, yet the output differs from the input:\n%q\n%q", src, out)
	}
	return true
}

// expectedObject computes, independently of Inject, what kubectl must read
// for one input object: the object itself, or, for a workload, the webhook's
// mutation of its pod (the core's patch applied to the pod's JSON as the API
// server applies it). pod is the core's mutated pod when it changed one.
func expectedObject(t *testing.T, in *unstructured.Unstructured, o Options) (*unstructured.Unstructured, *corev1.Pod) {
	t.Helper()
	kind, ok := workload.Lookup(in.GroupVersionKind().GroupVersion().String(), in.GetKind())
	if !ok {
		return in, nil
	}
	fields := kind.Template
	tmpl, _, _ := unstructured.NestedFieldNoCopy(in.Object, fields...)
	tm := tmpl.(map[string]any)
	var pod corev1.Pod
	js, _ := json.Marshal(tm)
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &pod); err != nil {
		t.Fatalf("Inject accepted a pod that does not decode: %v", err)
	}
	res := inject.Pod(context.Background(), inject.PodInput{Pod: &pod, NamespaceAnnotations: o.NamespaceAnnotations, Config: o.Config, HookAction: o.HookAction, Images: o.Images})
	if !res.Changed() {
		return in, nil
	}
	if m, ok := tm["metadata"].(map[string]any); !ok || m == nil {
		tm = runtime.DeepCopyJSONValue(tm).(map[string]any)
		tm["metadata"] = map[string]any{}
		js, _ = json.Marshal(tm)
	}
	patch, err := json.Marshal(res.Patch)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := p.Apply(js)
	if err != nil {
		t.Fatalf("the core's patch does not apply to the pod kubectl reads: %v\n%s\n%s", err, patch, js)
	}
	var pm map[string]any
	if err := kjson.UnmarshalCaseSensitivePreserveInts(patched, &pm); err != nil {
		t.Fatal(err)
	}
	want := in.DeepCopy()
	if len(fields) == 0 {
		want.Object = pm
	} else if err := unstructured.SetNestedField(want.Object, pm, fields...); err != nil {
		t.Fatal(err)
	}
	return want, res.Pod
}

// typedEqual checks the output as a typed object: the same as the expected
// one, and its pod the core's mutated pod.
func typedEqual(t *testing.T, got, want *unstructured.Unstructured, pod *corev1.Pod) {
	t.Helper()
	typed := func(u *unstructured.Unstructured) runtime.Object {
		obj, err := clientgoscheme.Scheme.New(u.GroupVersionKind())
		if err != nil {
			t.Fatal(err)
		}
		js, _ := json.Marshal(u.Object)
		if err := kjson.UnmarshalCaseSensitivePreserveInts(js, obj); err != nil {
			t.Fatalf("%s does not decode as a typed object: %v", u.GetKind(), err)
		}
		return obj
	}
	g, w := typed(got), typed(want)
	if !apiequality.Semantic.DeepEqual(g, w) {
		t.Fatalf("typed objects differ:\n got %#v\nwant %#v", g, w)
	}
	kind, _ := workload.Lookup(got.GroupVersionKind().GroupVersion().String(), got.GetKind())
	tmpl, _, _ := unstructured.NestedFieldNoCopy(got.Object, kind.Template...)
	js, _ := json.Marshal(tmpl)
	var gp corev1.Pod
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &gp); err != nil {
		t.Fatal(err)
	}
	// The core's pod carries the input's TypeMeta; a template has none.
	gp.TypeMeta = pod.TypeMeta
	if !apiequality.Semantic.DeepEqual(&gp, pod) {
		t.Fatalf("the pod kubectl reads is not the core's mutated pod:\n got %#v\nwant %#v", gp.Spec.Containers, pod.Spec.Containers)
	}
}

// checkSplit checks splitStream against the decoder it mirrors: the same
// values, in the same order, and an error exactly when the decoder fails.
func checkSplit(t *testing.T, src []byte) {
	t.Helper()
	units, err := splitStream(src)
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(src), jsonPeek)
	var want [][]byte
	var derr error
	for {
		var ext runtime.RawExtension
		if e := d.Decode(&ext); e != nil {
			if !errors.Is(e, io.EOF) {
				derr = e
			}
			break
		}
		want = append(want, bytes.TrimSpace(ext.Raw))
	}
	if (err != nil) != (derr != nil) {
		t.Fatalf("splitStream error %v, decoder error %v, input %q", err, derr, src)
	}
	if err != nil {
		return
	}
	if len(units) != len(want) {
		t.Fatalf("%d units, the decoder reads %d values, input %q", len(units), len(want), src)
	}
	for i, u := range units {
		if !bytes.Equal(u.raw, want[i]) && (u.raw != nil || len(want[i]) != 0) {
			t.Fatalf("unit %d: %q, the decoder reads %q, input %q", i+1, u.raw, want[i], src)
		}
		if u.start < 0 || u.end > len(src) || u.start > u.end {
			t.Fatalf("unit %d: range [%d, %d) outside the input", i+1, u.start, u.end)
		}
	}
}

func fuzzOptions() []Options {
	def := policy.Default()
	exec := policy.Default()
	return []Options{
		{Config: &def, HookAction: policy.HookSleep},
		{Config: &exec, HookAction: policy.HookExec, NamespaceAnnotations: map[string]string{policy.AnnotationPreStopSleep: "7s"}},
	}
}

// FuzzInject is issue 14's differential invariant: whatever stream kubectl
// reads, it reads from podgrace's output the same objects but for exactly
// the webhook's mutation of the workloads, a second pass prints the same
// bytes, and what podgrace refuses it refuses by name.
func FuzzInject(f *testing.F) {
	for _, s := range seedStreams(f) {
		f.Add(s)
	}
	opts := fuzzOptions()
	f.Fuzz(func(t *testing.T, src []byte) {
		checkSplit(t, src)
		for _, o := range opts {
			checkInvariant(t, src, o)
		}
	})
}

// TestInvariantSeeds names the seeds' expectations that the fuzzer cannot:
// which of them podgrace must accept and mutate.
func TestInvariantSeeds(t *testing.T) {
	t.Parallel()
	for name, c := range generatedSeeds() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			checkSplit(t, []byte(c.src))
			for _, o := range fuzzOptions() {
				ok := checkInvariant(t, []byte(c.src), o)
				if ok == c.refused {
					t.Fatalf("accepted = %v, want %v", ok, !c.refused)
				}
			}
		})
	}
}

// seedStreams are the golden inputs and the generated streams.
func seedStreams(tb testing.TB) [][]byte {
	inputs, err := filepath.Glob("testdata/golden/*.yaml")
	if err != nil || len(inputs) == 0 {
		tb.Fatalf("no golden inputs: %v", err)
	}
	var out [][]byte
	for _, in := range inputs {
		src, err := os.ReadFile(in)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, src)
	}
	for _, c := range generatedSeeds() {
		out = append(out, []byte(c.src))
	}
	return out
}

// TestInjectCoversEveryKind: podgrace inject mutates the pod of every row of
// the workload table, at the row's path, and leaves the same kind under
// another apiVersion alone, saying so.
func TestInjectCoversEveryKind(t *testing.T) {
	t.Parallel()
	o := fuzzOptions()[0]
	for _, k := range workload.Kinds {
		pod := map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "app"}}}}
		obj := k.Object("x", pod)
		src, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		out, res, err := Inject(context.Background(), bytes.NewReader(src), o)
		if err != nil || len(res) != 1 || !res[0].Changed {
			t.Errorf("%s %s: not mutated: %v %+v", k.APIVersion, k.Kind, err, res)
			continue
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		path := append(append([]string{}, k.Template...), "metadata", "annotations", policy.AnnotationStatus)
		if _, found, _ := unstructured.NestedString(got, path...); !found {
			t.Errorf("%s %s: no status at %v:\n%s", k.APIVersion, k.Kind, path, out)
		}
		obj["apiVersion"] = "example.com/v1"
		src, _ = json.Marshal(obj)
		if _, res, err := Inject(context.Background(), bytes.NewReader(src), o); err != nil || len(res) != 1 || res[0].Changed || res[0].NotHandled == "" {
			t.Errorf("example.com/v1 %s: %v %+v, want left alone and reported", k.Kind, err, res)
		}
	}
}

// A changed document keeps CRLF line ends, and a JSON stream stays JSON.
func TestLineEndsAndJSONKept(t *testing.T) {
	t.Parallel()
	o := fuzzOptions()[0]
	for name, check := range map[string]func(out string) bool{
		"crlf": func(out string) bool { return strings.Count(out, "\n") == strings.Count(out, "\r\n") },
		"json-stream-indented": func(out string) bool {
			return strings.HasPrefix(out, "{\n  \"apiVersion\"") && strings.Contains(out, "\"seconds\": 15")
		},
	} {
		out, _, err := Inject(context.Background(), strings.NewReader(generatedSeeds()[name].src), o)
		if err != nil || !check(string(out)) {
			t.Errorf("%s: %v\n%q", name, err, out)
		}
	}
}
