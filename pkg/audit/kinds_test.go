package audit

import (
	"context"
	"os"
	"slices"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/kubernetes/fake"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/workload"
)

// TestManifestsCoverEveryKind: `podgrace audit -f` reports an object of
// every kind of the workload table, with the change podgrace makes to its
// pod, and skips an object a workload of the table controls. (The live scan:
// TestAuditCoversEveryKind in test/integration, on a real API server.)
func TestManifestsCoverEveryKind(t *testing.T) {
	cfg := policy.Default()
	var stream []byte
	for _, k := range workload.Kinds {
		pod := map[string]any{"spec": map[string]any{"containers": []any{map[string]any{"name": "app", "image": "app", "command": []any{"/app"}}}}}
		obj := k.Object("w", pod)
		doc, err := sigsyaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		stream = append(append(stream, "---\n"...), doc...)
		// The same kind controlled by a workload: its controller is audited.
		md := obj["metadata"].(map[string]any)
		md["name"] = "owned"
		md["ownerReferences"] = []any{map[string]any{"apiVersion": "apps/v1", "kind": "Deployment", "name": "w", "uid": "1", "controller": true}}
		doc, _ = sigsyaml.Marshal(obj)
		stream = append(append(stream, "---\n"...), doc...)
	}
	rep := Manifests(context.Background(), []Source{{Name: "all.yaml", Data: stream}}, ManifestOptions{Env: Env{Config: &cfg, HookAction: policy.HookSleep}})
	got := byName(rep)
	for _, k := range workload.Kinds {
		w := got["default/"+k.Kind+"/w"]
		if w == nil || len(w.Changes) == 0 {
			t.Errorf("%s %s: %+v, want audited with its changes; errors %v", k.APIVersion, k.Kind, w, rep.Errors)
		}
		owned := got["default/"+k.Kind+"/owned"]
		if k.Kind == "Pod" && owned == nil || k.Kind != "Pod" && owned != nil {
			t.Errorf("%s controlled by a Deployment: reported %v (a pod keeps its entry, others go to their controller)", k.Kind, owned != nil)
		}
	}
}

// TestListersCoverEveryKind: the live scan has a list call for every kind of
// the workload table, and the documented ClusterRole
// (docs/operate/audit-clusterrole.yaml) lets it make each.
func TestListersCoverEveryKind(t *testing.T) {
	list := listers(fake.NewClientset())
	raw, err := os.ReadFile("../../docs/operate/audit-clusterrole.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := sigsyaml.UnmarshalStrict(raw, &role); err != nil {
		t.Fatal(err)
	}
	for _, k := range workload.Kinds {
		if list[k.Resource] == nil {
			t.Errorf("no list call for %s", k.Resource)
		}
		gvr := k.GroupVersionResource()
		if !slices.ContainsFunc(role.Rules, func(r rbacv1.PolicyRule) bool {
			return slices.Contains(r.APIGroups, gvr.Group) && slices.Contains(r.Resources, gvr.Resource) && slices.Contains(r.Verbs, "list")
		}) {
			t.Errorf("audit-clusterrole.yaml does not allow list on %s", gvr.GroupResource())
		}
	}
}
