package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/pkg/audit"
	"github.com/podgrace/podgrace/pkg/cli"
)

// TestAuditPaths: `podgrace audit` reads the load-balancer settings of the
// Services and Ingresses routing to a workload from a real API server, first
// without GKE's BackendConfig CRD (the BackendConfig a Service names is
// reported unchecked, the scan has no error), then with the CRD and the
// object, as a user bound to docs/operate/audit-clusterrole.yaml.
func TestAuditPaths(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ns := namespace(t, optedIn(), nil)
	if err := waitForMutation(ctx, ns); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	if _, err := admin.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To[int64](30), // podgrace: sleep 15s
				Containers: []corev1.Container{{Name: "app", Image: "registry.example/web:1", Command: []string{"/web"},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8080)}}}}},
			}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Annotations: map[string]string{
			"service.beta.kubernetes.io/aws-load-balancer-healthcheck-interval":            "10",
			"service.beta.kubernetes.io/aws-load-balancer-healthcheck-unhealthy-threshold": "3",
			"cloud.google.com/backend-config":                                              `{"default": "web"}`,
		}},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.NetworkingV1().Ingresses(ns).Create(ctx, &networkingv1.Ingress{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Annotations: map[string]string{"alb.ingress.kubernetes.io/healthcheck-interval-seconds": "20"}},
		Spec: networkingv1.IngressSpec{DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
			Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig := writeKubeconfig(t, restConfig)
	webOf := func(stdout string) *audit.Workload {
		t.Helper()
		var rep audit.Report
		if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
			t.Fatalf("%v\n%s", err, stdout)
		}
		if len(rep.Errors) > 0 {
			t.Errorf("scan errors %+v", rep.Errors)
		}
		for i := range rep.Workloads {
			if w := &rep.Workloads[i]; w.Kind == "Deployment" && w.Name == "web" && w.Path != nil {
				return w
			}
		}
		t.Fatalf("no Deployment/web with a path check in %s", stdout)
		return nil
	}
	types := func(w *audit.Workload) []string {
		var out []string
		for _, f := range w.Path.Findings {
			out = append(out, fmt.Sprintf("%s:%d<%d", f.Type, f.Seconds, f.Needed))
		}
		return out
	}

	// No BackendConfig CRD in this cluster.
	code, stdout, stderr := runAudit(t, "audit", "--kubeconfig", kubeconfig, "-n", ns, "-o", "json")
	if code != 0 {
		t.Fatalf("audit exit %d: %s", code, stderr)
	}
	web := webOf(stdout)
	if got, want := types(web), []string{"sleep-below-health-check:15<30", "sleep-below-health-check:15<40"}; !slices.Equal(got, want) {
		t.Errorf("findings %q, want %q (bounds %+v)", got, want, web.Path.Bounds)
	}
	if !slices.Equal(web.Path.Routes, []string{"Service/web", "Ingress/shop → Service/web"}) {
		t.Errorf("routes %q", web.Path.Routes)
	}
	if u := web.Path.Unchecked; len(u) != 1 || !strings.Contains(u[0], "BackendConfig/web") {
		t.Errorf("unchecked %q: want the BackendConfig the CRD-less cluster cannot hold", u)
	}

	// GKE's CRD (its group, kind and scope), and the BackendConfig.
	dyn := dynamic.NewForConfigOrDie(restConfig)
	crdRes := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	crd := &unstructured.Unstructured{}
	if err := sigsyaml.Unmarshal([]byte(backendConfigCRD), &crd.Object); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(crdRes).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dyn.Resource(crdRes).Delete(context.Background(), crd.GetName(), metav1.DeleteOptions{}) })
	bc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "cloud.google.com/v1", "kind": "BackendConfig",
		"metadata": map[string]any{"name": "web", "namespace": ns},
		"spec":     map[string]any{"connectionDraining": map[string]any{"drainingTimeoutSec": int64(60)}},
	}}
	bcRes := schema.GroupVersionResource{Group: "cloud.google.com", Version: "v1", Resource: "backendconfigs"}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := dyn.Resource(bcRes).Namespace(ns).Create(ctx, bc, metav1.CreateOptions{})
		return err == nil, nil // the CRD is served a moment after it is created
	}); err != nil {
		t.Fatalf("creating the BackendConfig: %v", err)
	}

	// As a user with the documented ClusterRole only.
	user := bindAuditRole(t, ns)
	code, stdout, stderr = runAudit(t, "audit", "--kubeconfig", kubeconfig, "--as", user, "-n", ns, "-o", "json", "--min-sleep", "20s")
	if code != 0 {
		t.Fatalf("audit exit %d: %s", code, stderr)
	}
	web = webOf(stdout)
	want := []string{"sleep-below-measured:15<20", "sleep-below-health-check:15<30", "sleep-below-health-check:15<40", "grace-below-drain:30<60"}
	if got := types(web); !slices.Equal(got, want) {
		t.Errorf("findings %q, want %q (bounds %+v)", got, want, web.Path.Bounds)
	}
	if len(web.Path.Unchecked) > 0 {
		t.Errorf("unchecked %q with the CRD and the BackendConfig present", web.Path.Unchecked)
	}
	code, stdout, stderr = runAudit(t, "audit", "--kubeconfig", kubeconfig, "--as", user, "-n", ns, "--fail-on=path")
	if code != cli.ExitFindings || !strings.Contains(stderr, "1 workloads with a sleep or grace period shorter than their path needs") ||
		!strings.Contains(stdout, "grace-below-drain(pod: 30s<60s)") {
		t.Errorf("--fail-on=path: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if code, _, stderr := runAudit(t, "audit", "--kubeconfig", kubeconfig, "--as", user, "-n", ns, "--fail-on=risk"); code != 0 {
		t.Errorf("--fail-on=risk: exit %d (%s): path findings are not risks", code, stderr)
	}
}

// bindAuditRole binds docs/operate/audit-clusterrole.yaml to a new user across the
// cluster and returns the user's name.
func bindAuditRole(t *testing.T, suffix string) string {
	t.Helper()
	role := createAuditRole(t, "podgrace-audit-"+suffix)
	user := "auditor-" + suffix
	crb := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, Name: user, APIGroup: rbacv1.GroupName}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name}}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(t.Context(), crb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.RbacV1().ClusterRoleBindings().Delete(context.Background(), crb.Name, metav1.DeleteOptions{})
	})
	return user
}

// createAuditRole creates docs/operate/audit-clusterrole.yaml under another name,
// deleted when the test ends.
func createAuditRole(t *testing.T, name string) *rbacv1.ClusterRole {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "docs", "operate", "audit-clusterrole.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := sigsyaml.UnmarshalStrict(raw, &role); err != nil {
		t.Fatal(err)
	}
	role.Name = name
	if _, err := admin.RbacV1().ClusterRoles().Create(t.Context(), &role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.RbacV1().ClusterRoles().Delete(context.Background(), role.Name, metav1.DeleteOptions{})
	})
	return &role
}

// backendConfigCRD is GKE's BackendConfig CRD as far as the audit depends on
// it: its group, version, kind, plural and scope (the schema is GKE's own;
// here any spec is kept).
const backendConfigCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: backendconfigs.cloud.google.com
spec:
  group: cloud.google.com
  names: {kind: BackendConfig, listKind: BackendConfigList, plural: backendconfigs, singular: backendconfig}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`
