package integration

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/podgrace/podgrace/pkg/admissionpolicy"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/workload"
)

// deploymentKind is workload.Kinds' apps/v1 Deployment row.
func deploymentKind(t *testing.T) workload.Kind {
	t.Helper()
	k, ok := workload.Lookup("apps/v1", "Deployment")
	if !ok {
		t.Fatal("no apps/v1 Deployment in workload.Kinds")
	}
	return k
}

// installWorkloadPolicy creates the generated ValidatingAdmissionPolicy on
// workload kinds and its binding for cfg, selecting the namespaces labeled
// for instance name; the API server must accept both.
func installWorkloadPolicy(t *testing.T, name string, cfg *policy.Config) {
	t.Helper()
	objs, err := admissionpolicy.Generate(cfg, admissionpolicy.Options{
		Namespace: namespace(t, nil, nil), NamePrefix: name + "-", ExtraNamespaceSelector: instanceSelector(name),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	ar := admin.AdmissionregistrationV1()
	if _, err := ar.ValidatingAdmissionPolicies().Create(ctx, objs.WorkloadValidating, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the API server rejects the generated workload ValidatingAdmissionPolicy: %v", err)
	}
	if _, err := ar.ValidatingAdmissionPolicyBindings().Create(ctx, objs.WorkloadValidatingBinding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the API server rejects the generated workload ValidatingAdmissionPolicyBinding: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = ar.ValidatingAdmissionPolicyBindings().Delete(ctx, objs.WorkloadValidatingBinding.Name, metav1.DeleteOptions{})
		_ = ar.ValidatingAdmissionPolicies().Delete(ctx, objs.WorkloadValidating.Name, metav1.DeleteOptions{})
	})
}

// TestPolicyWorkloadWarnings: in policy mode, creating any workload kind
// whose pod template has an invalid or unknown podgrace key returns the
// pod policy's warning to the client that creates it, from the generated
// ValidatingAdmissionPolicy on the real API server; a template labeled
// podgrace.dev/inject=disabled and a clean one get none; a scale (the
// template unchanged) gets none.
func TestPolicyWorkloadWarnings(t *testing.T) {
	needsPolicyAPI(t)
	t.Parallel()
	cfg := baseConfig()
	installWorkloadPolicy(t, "pworkloads", &cfg)
	ns := namespace(t, forInstance("pworkloads"), nil)
	cs, dyn, warned := workloadClients(t)
	if err := waitForWorkloadCheck(t.Context(), dyn, warned, ns); err != nil {
		t.Fatalf("the workload policy never answered: %v", err)
	}
	warned.Take()

	const (
		invalid = `podgrace: podgrace.dev/prestop-sleep="abc" is not a duration, "auto" or "off"`
		unknown = `podgrace: podgrace.dev/prestop-slep="10s" is not a podgrace key; ignored`
	)
	bad := map[string]string{policy.AnnotationPreStopSleep: "abc", "podgrace.dev/prestop-slep": "10s"}
	for _, k := range workload.Templated() {
		name := strings.ToLower(k.Kind)
		if err := createWorkload(t.Context(), dyn, k, ns, name, template(bad), metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: %v", k.Kind, err)
		}
		ws := warned.Take()
		for _, want := range []string{invalid, unknown} {
			if !slices.ContainsFunc(ws, func(w string) bool { return strings.Contains(w, want) }) {
				t.Errorf("%s: warnings %q, want one containing %q", k.Kind, ws, want)
			}
		}
		quietTemplates(t, k, dyn, warned, ns, name, bad)
	}
	// A scale leaves the template alone: not checked again.
	if _, err := cs.AppsV1().Deployments(ns).UpdateScale(t.Context(), "deployment", &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: "deployment", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: 3},
	}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if ws := warned.Take(); len(ws) != 0 {
		t.Errorf("scale: warnings %q, want none", ws)
	}
}

// TestPolicyWorkloadStrict: in strict mode the workload policy denies a
// CREATE of every kind whose template has an invalid key, and an UPDATE
// that changes such a template; an UPDATE that leaves the template alone
// (a scale through /scale) is allowed, so controllers are never stalled.
func TestPolicyWorkloadStrict(t *testing.T) {
	needsPolicyAPI(t)
	t.Parallel()
	cfg := baseConfig()
	cfg.Strict = true
	installWorkloadPolicy(t, "pwstrict", &cfg)
	ns := namespace(t, forInstance("pwstrict"), nil)
	cs, dyn, _ := workloadClients(t)
	bad := map[string]string{policy.AnnotationPreStopSleep: "abc"}
	const denial = `podgrace: podgrace.dev/prestop-sleep="abc" is not a duration, "auto" or "off"`
	// The API server picks the policy up shortly: dry-run until it denies.
	if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		err := createWorkload(ctx, dyn, deploymentKind(t), ns, "probe", template(bad), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), denial), nil
	}); err != nil {
		t.Fatalf("the workload policy never denied: %v", err)
	}
	for _, k := range workload.Templated() {
		err := createWorkload(t.Context(), dyn, k, ns, strings.ToLower(k.Kind), template(bad), metav1.CreateOptions{})
		if err == nil || !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), denial) {
			t.Errorf("%s: strict mode: %v, want a denial containing %q", k.Kind, err, denial)
		}
	}

	// A Deployment written before its namespace was served.
	old := servedLater(t, dyn, "pwstrict", template(bad))
	deployments := cs.AppsV1().Deployments(old)
	changeTemplate := func() error {
		d, err := deployments.Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Image = "registry.example/app:2"
		_, err = deployments.Update(t.Context(), d, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}})
		return err
	}
	// The namespace's new label reaches the API server's selection shortly.
	if err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return changeTemplate() != nil, nil
	}); err != nil {
		t.Fatalf("a template change of the Deployment was never denied: %v", err)
	}
	if err := changeTemplate(); err == nil || !strings.Contains(err.Error(), denial) {
		t.Errorf("template change: %v, want a denial containing %q", err, denial)
	}
	for i := int32(1); i <= 2; i++ {
		if _, err := deployments.UpdateScale(t.Context(), "web", &autoscalingv1.Scale{
			ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: old}, Spec: autoscalingv1.ScaleSpec{Replicas: i},
		}, metav1.UpdateOptions{}); err != nil {
			t.Errorf("scale to %d in strict mode: %v, want allowed (the template is unchanged)", i, err)
		}
	}
}

// servedLater creates a namespace opted in but not selected for instance,
// a Deployment "web" in it with tmpl, then labels the namespace for the
// instance: a workload written before its namespace was served.
func servedLater(t *testing.T, dyn dynamic.Interface, instance string, tmpl corev1.PodTemplateSpec) string {
	t.Helper()
	ns := namespace(t, map[string]string{policy.LabelInject: policy.InjectEnabled}, nil)
	if err := createWorkload(t.Context(), dyn, deploymentKind(t), ns, "web", tmpl, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n, err := admin.CoreV1().Namespaces().Get(t.Context(), ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels[instanceLabel] = instance
	if _, err := admin.CoreV1().Namespaces().Update(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// quietTemplates creates a workload of kind k whose template has the bad
// annotations but opts out (podgrace.dev/inject=disabled), and one with a
// clean template: neither may be warned about.
func quietTemplates(t *testing.T, k workload.Kind, dyn dynamic.Interface, warned *warnings, ns, name string, bad map[string]string) {
	t.Helper()
	off := template(bad)
	off.Labels = map[string]string{policy.LabelInject: policy.InjectDisabled}
	for suffix, tmpl := range map[string]corev1.PodTemplateSpec{"-off": off, "-clean": template(nil)} {
		if err := createWorkload(t.Context(), dyn, k, ns, name+suffix, tmpl, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s%s: %v", k.Kind, suffix, err)
		}
		if ws := warned.Take(); len(ws) != 0 {
			t.Errorf("%s%s: warnings %q, want none", k.Kind, suffix, ws)
		}
	}
}
