// Package manifest applies podgrace's mutation to Kubernetes manifests
// offline, for `podgrace inject`. Its promise is differential: decoding the
// output the way `kubectl apply -f` does gives, object by object, the input
// object where podgrace does not act and exactly the webhook's mutation (the
// core's JSON patch applied to the object kubectl decoded) where it does. The
// output is checked against that before it is returned; when the check fails
// nothing is returned but an error naming the document.
//
// Documents podgrace does not change are copied byte for byte. A changed YAML
// document keeps its key order, comments and quoting: only the patch is
// applied to its node tree. When that cannot be proven right (anchors and
// aliases under the pod, duplicate keys, merge keys) the document is written
// again from its decoded form instead, and a warning says so.
package manifest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	jsonpatch5 "github.com/evanphx/json-patch/v5"
	"go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	kjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/workload"
)

// Options configure an offline injection.
type Options struct {
	Config *policy.Config
	// NamespaceAnnotations stand in for the namespace the manifests go to.
	NamespaceAnnotations map[string]string
	// HookAction is sleep or exec; auto counts as sleep.
	HookAction policy.HookAction
	// Images reads image configs (`--inspect-images`); nil leaves argvs that
	// come from an image alone.
	Images inject.ImageLookup
}

// DocResult reports what happened to one object kubectl would read.
type DocResult struct {
	// Index counts documents (YAML documents or JSON values) from 1, as
	// kubectl's decoder counts them.
	Index int
	// Item is "items[N]" for an item of a List, else "".
	Item string
	// Name is "Kind/name" (or "Kind" when unnamed).
	Name     string
	Changed  bool
	Status   inject.Status
	Warnings []string
	// NotHandled says why an object whose kind names a workload was left
	// alone (its apiVersion is not one podgrace mutates).
	NotHandled string
}

// Where says which document (and List item) a result is about.
func (d *DocResult) Where() string {
	s := fmt.Sprintf("document %d", d.Index)
	if d.Item != "" {
		s += " " + d.Item
	}
	if d.Name != "" {
		s += " (" + d.Name + ")"
	}
	return s
}

// Inject reads a stream of manifests and returns it with every pod mutated.
// On any error nothing is returned but the error, which names the document:
// a half-written or misread stream must never reach kubectl apply.
func Inject(ctx context.Context, r io.Reader, o Options) ([]byte, []DocResult, error) {
	src, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, err
	}
	var results []DocResult
	var out bytes.Buffer
	out.Grow(len(src) + len(src)/4)
	if err := InjectTo(ctx, &out, src, o, func(d *DocResult) { results = append(results, *d) }); err != nil {
		return nil, nil, err
	}
	return out.Bytes(), results, nil
}

// InjectTo is Inject for a large stream: it walks src one document at a
// time and writes the output to w as it goes (each unchanged document and
// everything between documents as src's own bytes, each changed one as its
// rewritten text), and passes each object's result to report as soon as it
// is known (report must not keep d). Nothing of a document is kept once it
// is written, so memory is src and one document's work, however many
// documents src holds (docs/reference/cli.md, issue 23). On an error, what
// was written to w is a prefix of a stream that must not be used: the
// caller writes to a buffer or a temporary file and prints it only when
// InjectTo succeeds.
func InjectTo(ctx context.Context, w io.Writer, src []byte, o Options, report func(d *DocResult)) error {
	last, units := 0, 0
	err := eachUnit(src, func(u *unit) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		units++
		if u.raw == nil {
			return nil
		}
		text, err := injectUnit(ctx, u, units, o, report)
		if err != nil || text == nil {
			return err
		}
		if _, err := w.Write(src[last:u.start]); err != nil {
			return err
		}
		if _, err := w.Write(text); err != nil {
			return err
		}
		last = u.end
		return nil
	})
	if err != nil {
		return err
	}
	_, err = w.Write(src[last:])
	return err
}

// injectUnit mutates one unit (document) and returns its new text, or nil
// when it does not change.
func injectUnit(ctx context.Context, u *unit, idx int, o Options, report func(d *DocResult)) ([]byte, error) {
	objs, err := objectsOf(idx, u.raw)
	if err != nil {
		return nil, fmt.Errorf("document %d: %w", idx, err)
	}
	var ops []inject.PatchOp
	results := make([]DocResult, 0, len(objs))
	for _, ob := range objs {
		res, objOps, err := injectObject(ctx, ob, o)
		results = append(results, res)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", res.Where(), err)
		}
		ops = append(ops, objOps...)
	}
	var text []byte
	if len(ops) > 0 {
		var expected []*unstructured.Unstructured
		var note string
		text, expected, note, err = rewriteUnit(u, idx, ops)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", idx, err)
		}
		if note != "" {
			results[0].Warnings = append(results[0].Warnings, note)
		}
		// The differential check, on the real decoder: what kubectl will
		// read from the rewritten document is exactly what was meant.
		got, err := kubectlObjects(text)
		if err != nil {
			return nil, fmt.Errorf("document %d: podgrace's output would not read back (a bug, please report it): %w", idx, err)
		}
		if err := sameObjects(got, expected); err != nil {
			return nil, fmt.Errorf("document %d: podgrace's output would not read back as intended (a bug, please report it): %w", idx, err)
		}
	}
	for i := range results {
		report(&results[i])
	}
	return text, nil
}

// sameObjects compares what kubectl reads with what was meant, object by object.
func sameObjects(got, want []*unstructured.Unstructured) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d objects, want %d", len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i].Object, want[i].Object) {
			return fmt.Errorf("object %d (%s/%s) differs", i+1, want[i].GetKind(), want[i].GetName())
		}
	}
	return nil
}

// injectObject runs the core on one object's pod and returns its patch,
// with paths into the object's document.
func injectObject(ctx context.Context, ob object, o Options) (DocResult, []inject.PatchOp, error) {
	res := DocResult{Index: ob.unit, Name: ob.obj.GetKind()}
	if ob.path != "" {
		res.Item = "items[" + strings.TrimPrefix(ob.path, "/items/") + "]"
	}
	if n := ob.obj.GetName(); n != "" {
		res.Name += "/" + n
	}
	gvk := ob.obj.GroupVersionKind()
	kind, ok := workload.Lookup(gvk.GroupVersion().String(), gvk.Kind)
	if !ok {
		if want, same := workload.SameKind(gvk.Kind); same {
			res.NotHandled = fmt.Sprintf("apiVersion %q is not %s: not mutated", ob.obj.GetAPIVersion(), want.APIVersion)
		}
		return res, nil, nil
	}
	fields := kind.Template
	prefix := ""
	if len(fields) > 0 {
		prefix = "/" + strings.Join(fields, "/")
	}
	v, found, _ := unstructured.NestedFieldNoCopy(ob.obj.Object, fields...)
	podMap, isMap := v.(map[string]any)
	switch {
	case !found || v == nil:
		return res, nil, fmt.Errorf("no pod template at %s", prefix)
	case !isMap:
		return res, nil, fmt.Errorf("the pod template at %s is not an object", prefix)
	}
	// The whole object must be what its apiVersion and kind say, not only
	// its pod: kubectl sends it all (FuzzInject found `selector: 5`).
	if err := decodesAs(gvk, ob.obj.Object); err != nil {
		return res, nil, err
	}
	if err := checkNullEntries(podMap); err != nil {
		return res, nil, err
	}
	js, err := json.Marshal(podMap)
	if err != nil {
		return res, nil, err
	}
	var pod corev1.Pod
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, &pod); err != nil {
		if prefix == "" {
			return res, nil, fmt.Errorf("not a Pod: %w", err)
		}
		return res, nil, fmt.Errorf("the pod template at %s is not a Pod: %w", prefix, err)
	}
	result := inject.Pod(ctx, inject.PodInput{
		Pod: &pod, NamespaceAnnotations: o.NamespaceAnnotations, Config: o.Config, HookAction: o.HookAction, Images: o.Images,
	})
	res.Warnings, res.Status = inject.Messages(result.Warnings), result.Status
	if result.Denied != "" {
		return res, nil, errors.New(result.Denied)
	}
	if !result.Changed() {
		return res, nil, nil
	}
	res.Changed = true
	base := ob.path + prefix
	var ops []inject.PatchOp
	if m, ok := podMap["metadata"].(map[string]any); !ok || m == nil {
		// A template may omit its metadata; the core's patch adds to it.
		ops = append(ops, inject.PatchOp{Operation: "add", Path: base + "/metadata", Value: map[string]any{}})
	}
	for _, op := range result.Patch {
		op.Path = base + op.Path
		ops = append(ops, op)
	}
	return res, ops, nil
}

// decodesAs checks that an object decodes as the built-in type of its
// apiVersion and kind, case-sensitively, as the API server decodes it.
func decodesAs(gvk schema.GroupVersionKind, obj map[string]any) error {
	typed, err := clientgoscheme.Scheme.New(gvk)
	if err != nil {
		return err
	}
	js, err := json.Marshal(obj)
	if err != nil {
		return err
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(js, typed); err != nil {
		return fmt.Errorf("not a %s %s: %w", gvk.GroupVersion(), gvk.Kind, err)
	}
	return nil
}

// checkNullEntries refuses a pod with a null container: the core sees a
// zero container there, and a patch into null does not apply.
func checkNullEntries(pod map[string]any) error {
	spec, _ := pod["spec"].(map[string]any)
	for _, f := range []string{"containers", "initContainers"} {
		list, _ := spec[f].([]any)
		for i, c := range list {
			if c == nil {
				return fmt.Errorf("spec.%s[%d] is null", f, i)
			}
		}
	}
	return nil
}

// rewriteUnit applies a document's patch and returns its new text and the
// objects kubectl must read from it. It first edits the document in place
// (YAML node tree, or the JSON with its key order); if what that gives does
// not decode to the expected objects, it writes the document again from its
// decoded form, and note says so.
func rewriteUnit(u *unit, idx int, ops []inject.PatchOp) (text []byte, expected []*unstructured.Unstructured, note string, err error) {
	var patchJSON bytes.Buffer
	enc := json.NewEncoder(&patchJSON)
	enc.SetEscapeHTML(false) // `&&` stays `&&` in a JSON document
	if err := enc.Encode(ops); err != nil {
		return nil, nil, "", err
	}
	patch, err := jsonpatch5.DecodePatch(patchJSON.Bytes())
	if err != nil {
		return nil, nil, "", err
	}
	applyOpts := jsonpatch5.NewApplyOptions()
	applyOpts.EscapeHTML = false
	// What kubectl reads, as canonical JSON (duplicate keys resolved as its
	// decoder resolves them), with the patch applied: the expected result.
	var canon any
	if err := utiljson.Unmarshal(u.raw, &canon); err != nil {
		return nil, nil, "", err
	}
	canonJSON, err := json.Marshal(canon)
	if err != nil {
		return nil, nil, "", err
	}
	patched, err := patch.ApplyWithOptions(canonJSON, applyOpts)
	if err != nil {
		return nil, nil, "", fmt.Errorf("the patch does not apply to the object kubectl reads: %w", err)
	}
	objs, err := objectsOf(idx, patched)
	if err != nil {
		return nil, nil, "", err
	}
	for _, ob := range objs {
		expected = append(expected, ob.obj)
	}

	// In place.
	var why error
	if u.isJSON {
		text, why = patch.ApplyWithOptions(u.text, applyOpts)
		if why == nil {
			text = jsonLike(u.text, text)
		}
	} else {
		text, why = editYAML(u.text, ops)
		text = sameLineEnds(u.crlf, text)
	}
	if why == nil {
		why = readsAs(u.isJSON, idx, text, expected)
	}
	if why == nil {
		return text, expected, "", nil
	}

	// From the decoded form.
	if u.isJSON {
		text = jsonLike(u.text, patched)
	} else if text, err = sigsyaml.JSONToYAML(patched); err != nil {
		return nil, nil, "", err
	} else {
		text = sameLineEnds(u.crlf, text)
	}
	if err := readsAs(u.isJSON, idx, text, expected); err != nil {
		return nil, nil, "", fmt.Errorf("cannot write the mutated document so that kubectl reads it back: %w", err)
	}
	return text, expected, fmt.Sprintf("podgrace: document rewritten from its decoded form, comments and key order not kept (%v)", why), nil
}

// sameLineEnds writes a YAML document's new text with CRLF line ends when
// the document had them.
func sameLineEnds(crlf bool, text []byte) []byte {
	if text == nil || !crlf {
		return text
	}
	return bytes.ReplaceAll(text, []byte("\n"), []byte("\r\n"))
}

// jsonLike indents out as orig is indented (two spaces when orig spans lines).
func jsonLike(orig, out []byte) []byte {
	if !bytes.Contains(orig, []byte("\n")) {
		return out
	}
	var b bytes.Buffer
	if err := json.Indent(&b, out, "", "  "); err != nil {
		return out
	}
	return b.Bytes()
}

// readsAs checks that a document's new text decodes, as kubectl decodes it,
// to the expected objects.
func readsAs(isJSON bool, idx int, text []byte, expected []*unstructured.Unstructured) error {
	var ext runtime.RawExtension
	var err error
	if isJSON {
		err = json.Unmarshal(text, &ext)
	} else {
		err = sigsyaml.Unmarshal(text, &ext)
	}
	if err != nil {
		return err
	}
	objs, err := objectsOf(idx, bytes.TrimSpace(ext.Raw))
	if err != nil {
		return err
	}
	got := make([]*unstructured.Unstructured, len(objs))
	for i := range objs {
		got[i] = objs[i].obj
	}
	return sameObjects(got, expected)
}

// editYAML applies ops to a YAML document's node tree and encodes it again.
func editYAML(text []byte, ops []inject.PatchOp) ([]byte, error) {
	var node yaml.Node
	if err := yaml.Unmarshal(text, &node); err != nil {
		return nil, err
	}
	if node.Kind != yaml.DocumentNode || len(node.Content) == 0 {
		return nil, errors.New("not a YAML document")
	}
	if err := applyPatch(&node, ops); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if compactSequences(text) {
		enc.CompactSeqIndent()
	}
	if err := enc.Encode(&node); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// compactSequences reports whether a document writes list items at the
// indentation of their key (`containers:\n- name: app`, kubectl's style) rather
// than indented under it, so that a changed document keeps its style. With
// no list to judge by, it says compact.
func compactSequences(raw []byte) bool {
	compact, indented := 0, 0
	lines := strings.Split(string(raw), "\n")
	for i := 0; i+1 < len(lines); i++ {
		key := strings.TrimRight(lines[i], " ")
		if !strings.HasSuffix(key, ":") || strings.HasPrefix(strings.TrimSpace(key), "#") {
			continue
		}
		next := lines[i+1]
		item := strings.TrimLeft(next, " ")
		if !strings.HasPrefix(item, "- ") && item != "-" {
			continue
		}
		keyIndent := len(key) - len(strings.TrimLeft(key, " "))
		if len(next)-len(item) == keyIndent {
			compact++
		} else {
			indented++
		}
	}
	return compact >= indented
}
