// Package workload is the one table of the workload kinds podgrace acts on:
// their apiVersion, kind and resource, and where each keeps its pod template.
// `podgrace inject`, `podgrace audit` (manifests and live) and the warnings
// about workloads read this table; a test of each proves it covers every row.
package workload

import (
	"maps"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Kind is one workload kind, chosen by apiVersion and kind together: a
// custom resource named Job in another group is not a Job.
type Kind struct {
	// APIVersion is the object's apiVersion ("apps/v1").
	APIVersion string
	// Kind is the object's kind ("Deployment").
	Kind string
	// Resource is the plural of the REST API, RBAC rules and list calls.
	Resource string
	// Template is the path of the pod template in the object; empty for a
	// Pod, which is its own.
	Template []string
}

// Kinds are the workloads podgrace mutates, in the order reports list them.
var Kinds = []Kind{
	{APIVersion: "apps/v1", Kind: "Deployment", Resource: "deployments", Template: []string{"spec", "template"}},
	{APIVersion: "apps/v1", Kind: "StatefulSet", Resource: "statefulsets", Template: []string{"spec", "template"}},
	{APIVersion: "apps/v1", Kind: "DaemonSet", Resource: "daemonsets", Template: []string{"spec", "template"}},
	{APIVersion: "apps/v1", Kind: "ReplicaSet", Resource: "replicasets", Template: []string{"spec", "template"}},
	{APIVersion: "v1", Kind: "ReplicationController", Resource: "replicationcontrollers", Template: []string{"spec", "template"}},
	{APIVersion: "batch/v1", Kind: "CronJob", Resource: "cronjobs", Template: []string{"spec", "jobTemplate", "spec", "template"}},
	{APIVersion: "batch/v1", Kind: "Job", Resource: "jobs", Template: []string{"spec", "template"}},
	{APIVersion: "v1", Kind: "Pod", Resource: "pods"},
}

// Templated returns the rows with a pod template: every kind but Pod, the
// kinds the workload check and policy mode's workload warnings cover.
func Templated() []Kind {
	var out []Kind
	for _, k := range Kinds {
		if len(k.Template) > 0 {
			out = append(out, k)
		}
	}
	return out
}

// Lookup returns the row of an apiVersion and kind.
func Lookup(apiVersion, kind string) (Kind, bool) {
	for _, k := range Kinds {
		if k.APIVersion == apiVersion && k.Kind == kind {
			return k, true
		}
	}
	return Kind{}, false
}

// SameKind returns the row whose kind is kind under any apiVersion, to name
// the apiVersion podgrace expects when an object has another one.
func SameKind(kind string) (Kind, bool) {
	for _, k := range Kinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return Kind{}, false
}

// Order is the position of a kind in Kinds (len(Kinds) when absent), to sort
// reports.
func Order(kind string) int {
	for i, k := range Kinds {
		if k.Kind == kind {
			return i
		}
	}
	return len(Kinds)
}

// GroupVersionKind is the row's apiVersion and kind.
func (k Kind) GroupVersionKind() schema.GroupVersionKind {
	gv, _ := schema.ParseGroupVersion(k.APIVersion) // every row's apiVersion parses (TestKinds)
	return gv.WithKind(k.Kind)
}

// GroupVersionResource is the row's apiVersion and resource.
func (k Kind) GroupVersionResource() schema.GroupVersionResource {
	gv, _ := schema.ParseGroupVersion(k.APIVersion)
	return gv.WithResource(k.Resource)
}

// TemplatePath is the pod template's path, dotted ("spec.template"); "" for
// a Pod.
func (k Kind) TemplatePath() string { return strings.Join(k.Template, ".") }

// Owner returns the workload row of a controller reference: an object
// controlled by another workload (a Deployment's ReplicaSet, a CronJob's
// Job) is audited through its controller's template.
func Owner(ref *metav1.OwnerReference) (Kind, bool) {
	if ref == nil {
		return Kind{}, false
	}
	k, ok := Lookup(ref.APIVersion, ref.Kind)
	return k, ok && k.Kind != "Pod"
}

// Object returns an object of the kind named name whose pod (its template,
// or the object itself for a Pod) is pod: a generic map, as a manifest
// decodes. Tests build one object of every kind with it.
func (k Kind) Object(name string, pod map[string]any) map[string]any {
	obj := map[string]any{"apiVersion": k.APIVersion, "kind": k.Kind, "metadata": map[string]any{"name": name}}
	if len(k.Template) == 0 {
		// The object is the pod: its labels and annotations are the object's.
		meta := map[string]any{}
		if m, ok := pod["metadata"].(map[string]any); ok {
			maps.Copy(meta, m)
		}
		meta["name"] = name
		obj["metadata"], obj["spec"] = meta, pod["spec"]
		return obj
	}
	m := obj
	for _, f := range k.Template[:len(k.Template)-1] {
		next, ok := m[f].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[f] = next
		}
		m = next
	}
	m[k.Template[len(k.Template)-1]] = pod
	return obj
}
