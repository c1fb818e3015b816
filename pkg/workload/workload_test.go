package workload

import (
	"slices"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// TestKinds: every row is a built-in type of the API machinery whose pod
// template sits at the row's path, and whose resource is the plural the API
// serves it under.
func TestKinds(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, k := range Kinds {
		gvk := k.GroupVersionKind()
		if seen[k.Kind] {
			t.Errorf("%s is listed twice", k.Kind)
		}
		seen[k.Kind] = true
		obj, err := clientgoscheme.Scheme.New(gvk)
		if err != nil {
			t.Errorf("%s %s is not a built-in type: %v", k.APIVersion, k.Kind, err)
			continue
		}
		// A zero object's template is empty: set a container through the
		// path, then read it back through the typed object.
		u := map[string]any{"apiVersion": k.APIVersion, "kind": k.Kind}
		spec := map[string]any{"containers": []any{map[string]any{"name": "probe"}}}
		if err := unstructured.SetNestedField(u, spec, append(append([]string{}, k.Template...), "spec")...); err != nil {
			t.Fatal(err)
		}
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u, obj); err != nil {
			t.Errorf("%s: the path %q is not in the type: %v", k.Kind, k.TemplatePath(), err)
			continue
		}
		back, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
		if err != nil {
			t.Fatal(err)
		}
		got, _, _ := unstructured.NestedSlice(back, append(append([]string{}, k.Template...), "spec", "containers")...)
		if len(got) != 1 {
			t.Errorf("%s: no pod template at %q", k.Kind, k.TemplatePath())
		}
		if plural, _ := meta.UnsafeGuessKindToResource(gvk); k.GroupVersionResource() != plural {
			t.Errorf("%s: resource %v, the API's is %v", k.Kind, k.GroupVersionResource(), plural)
		}
	}
	if k, ok := Lookup("batch/v1", "Job"); !ok || k.TemplatePath() != "spec.template" {
		t.Errorf("Lookup(batch/v1, Job) = %v, %v", k, ok)
	}
	if _, ok := Lookup("example.com/v1", "Job"); ok {
		t.Error("a custom resource named Job is a workload")
	}
	if k, ok := Owner(&metav1.OwnerReference{APIVersion: "apps/v1", Kind: "ReplicaSet"}); !ok || k.Kind != "ReplicaSet" {
		t.Errorf("Owner(ReplicaSet) = %v, %v", k, ok)
	}
	if _, ok := Owner(&metav1.OwnerReference{APIVersion: "example.com/v1", Kind: "Deployment"}); ok {
		t.Error("a custom Deployment owns as a workload")
	}
}

// TestKindsPinned: the table changes only on purpose (docs/reference/cli.md
// lists it for users).
func TestKindsPinned(t *testing.T) {
	t.Parallel()
	want := []string{
		"apps/v1 Deployment spec.template",
		"apps/v1 StatefulSet spec.template",
		"apps/v1 DaemonSet spec.template",
		"apps/v1 ReplicaSet spec.template",
		"v1 ReplicationController spec.template",
		"batch/v1 CronJob spec.jobTemplate.spec.template",
		"batch/v1 Job spec.template",
		"v1 Pod ",
	}
	var got []string
	for _, k := range Kinds {
		got = append(got, k.APIVersion+" "+k.Kind+" "+k.TemplatePath())
	}
	if !slices.Equal(got, want) {
		t.Errorf("Kinds = %q\nwant %q", got, want)
	}
}
