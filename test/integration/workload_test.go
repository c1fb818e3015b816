package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/webhook"
	"github.com/podgrace/podgrace/pkg/workload"
)

// workloadClients are a typed and a dynamic client that share one
// collector of the API server's warnings.
func workloadClients(t *testing.T) (*kubernetes.Clientset, dynamic.Interface, *warnings) {
	t.Helper()
	cs, w := client(t)
	cfg := rest.CopyConfig(restConfig)
	cfg.WarningHandler = w
	return cs, dynamic.NewForConfigOrDie(cfg), w
}

// createWorkload creates a workload of kind k around tmpl, as a user would
// write it (workloadOf), through the dynamic client.
func createWorkload(ctx context.Context, dyn dynamic.Interface, k workload.Kind, ns, name string, tmpl corev1.PodTemplateSpec, o metav1.CreateOptions) error {
	obj, err := workloadOf(k, name, tmpl)
	if err != nil {
		return err
	}
	_, err = dyn.Resource(k.GroupVersionResource()).Namespace(ns).Create(ctx, &unstructured.Unstructured{Object: obj}, o)
	return err
}

// template is a pod template with one shell-form container and annotations.
func template(annotations map[string]string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Annotations: annotations},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{shellContainer("app", "bundle exec puma")}},
	}
}

// serveWorkloads starts an instance and registers its workload check, from
// the chart's ValidatingWebhookConfiguration, for the namespaces labeled
// with name.
func serveWorkloads(t *testing.T, name string, cfg *policy.Config) {
	t.Helper()
	in, err := startInstance(t.Context(), name, cfg, certDir, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.stop() })
	dir, err := chart.Dir()
	if err != nil {
		t.Fatal(err)
	}
	vwc, err := chart.WorkloadWebhook(dir, chart.WebhookOptions{
		Name:                   "podgrace-" + name,
		URL:                    strings.TrimSuffix(in.url, webhook.Path) + webhook.WorkloadPath,
		CABundle:               tlsAssets.caPEM,
		ExtraNamespaceSelector: instanceSelector(name),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := vwc.Webhooks[0]; got.Name != webhook.WorkloadWebhookName || *got.FailurePolicy != admissionregistrationv1.Ignore {
		t.Fatalf("the chart's workload check: name %s failurePolicy %s", got.Name, *got.FailurePolicy)
	}
	api := admin.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := api.Create(t.Context(), vwc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Delete(context.Background(), vwc.Name, metav1.DeleteOptions{}) })
}

// waitForWorkloadCheck waits until a dry-run Deployment in ns with an
// invalid key is answered by the workload check (warned or denied).
func waitForWorkloadCheck(ctx context.Context, dyn dynamic.Interface, warned *warnings, ns string) error {
	deployment, _ := workload.Lookup("apps/v1", "Deployment")
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		err := createWorkload(ctx, dyn, deployment, ns, "probe", template(map[string]string{policy.AnnotationPreStopSleep: "abc"}),
			metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if apierrors.IsForbidden(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		return len(warned.Take()) > 0, nil
	})
}

// TestWorkloadWarnings: applying a workload whose pod template has podgrace
// settings that are invalid, unknown or will not do what they say returns the
// pod path's warnings to the client that applies it, for every workload
// kind; nothing is mutated; a template labeled podgrace.dev/inject=disabled
// is not checked.
func TestWorkloadWarnings(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	serveWorkloads(t, "workloads", &cfg)
	ns := namespace(t, forInstance("workloads"), nil)
	cs, dyn, warned := workloadClients(t)
	if err := waitForWorkloadCheck(t.Context(), dyn, warned, ns); err != nil {
		t.Fatal(err)
	}
	warned.Take()

	const (
		invalid = `podgrace: podgrace.dev/prestop-sleep="abc" is not a duration, "auto" or "off"; using auto`
		unknown = `podgrace.dev/prestop-slep`
		kept    = `podgrace: app: shell-form command kept`
	)
	bad := map[string]string{policy.AnnotationPreStopSleep: "abc", "podgrace.dev/prestop-slep": "10s"}
	for _, k := range workload.Templated() {
		name := strings.ToLower(k.Kind)
		tmpl := template(bad)
		tmpl.Spec.Containers[0].Command = []string{"sh", "-c", "trap 'exit 0' TERM; bundle exec puma"}
		if err := createWorkload(t.Context(), dyn, k, ns, name, tmpl, metav1.CreateOptions{}); err != nil {
			t.Fatalf("%s: %v", k.Kind, err)
		}
		ws := warned.Take()
		for _, want := range []string{invalid, unknown, kept} {
			if !slices.ContainsFunc(ws, func(w string) bool { return strings.Contains(w, want) }) {
				t.Errorf("%s: warnings %q, want one containing %q", k.Kind, ws, want)
			}
		}
		// A template that opts out is not checked (the chart's
		// matchCondition); a clean one gets no warning.
		quietTemplates(t, k, dyn, warned, ns, name, bad)
	}
	// Nothing was mutated: the stored template is what was sent.
	d, err := cs.AppsV1().Deployments(ns).Get(t.Context(), "deployment", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Lifecycle != nil || d.Spec.Template.Annotations[policy.AnnotationStatus] != "" || c.Command[0] != "sh" {
		t.Errorf("the workload check mutated the Deployment: %+v", d.Spec.Template)
	}
}

// TestWorkloadStrict: in strict mode a workload whose template the pod path
// would deny is denied on CREATE and on an UPDATE that changes the template,
// for every kind; an UPDATE that leaves the template alone (a scale through
// the object and through /scale, a label) is allowed, so no controller is
// ever stalled.
func TestWorkloadStrict(t *testing.T) {
	t.Parallel()
	cfg := baseConfig()
	cfg.Strict = true
	serveWorkloads(t, "wstrict", &cfg)
	ns := namespace(t, forInstance("wstrict"), nil)
	cs, dyn, warned := workloadClients(t)
	if err := waitForWorkloadCheck(t.Context(), dyn, warned, ns); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{policy.AnnotationPreStopSleep: "abc"}
	const denial = `admission webhook "` + webhook.WorkloadWebhookName + `" denied the request: pod template: podgrace: podgrace.dev/prestop-sleep="abc" is not a duration, "auto" or "off" (strict mode)`
	for _, k := range workload.Templated() {
		err := createWorkload(t.Context(), dyn, k, ns, strings.ToLower(k.Kind), template(bad), metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), denial) {
			t.Errorf("%s: strict mode: %v, want a denial %q", k.Kind, err, denial)
		}
	}

	// A Deployment written before its namespace was served: its template
	// is one strict mode denies.
	old := servedLater(t, dyn, "wstrict", template(bad))
	deployments := cs.AppsV1().Deployments(old)
	changeTemplate := func(dryRun bool) error {
		d, err := deployments.Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		d.Spec.Template.Spec.Containers[0].Image = "registry.example/app:2"
		o := metav1.UpdateOptions{}
		if dryRun {
			o.DryRun = []string{metav1.DryRunAll}
		}
		_, err = deployments.Update(t.Context(), d, o)
		return err
	}
	// Once the API server sees the new label, a template change is denied.
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		err := changeTemplate(true)
		if apierrors.IsForbidden(err) {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		t.Fatalf("a template change in strict mode was not denied: %v", err)
	}
	if err := changeTemplate(false); !apierrors.IsForbidden(err) {
		t.Errorf("template change: %v, want denied", err)
	}
	// A scale through the object, a label, and a scale through /scale.
	d, err := deployments.Get(t.Context(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Spec.Replicas = new(int32(5))
	d.Labels = map[string]string{"tier": "web"}
	if _, err := deployments.Update(t.Context(), d, metav1.UpdateOptions{}); err != nil {
		t.Errorf("scaling a Deployment strict mode would deny: %v", err)
	}
	if _, err := deployments.UpdateScale(t.Context(), "web", &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: old},
		Spec:       autoscalingv1.ScaleSpec{Replicas: 2},
	}, metav1.UpdateOptions{}); err != nil {
		t.Errorf("scaling through /scale: %v", err)
	}
	if d, err = deployments.Get(t.Context(), "web", metav1.GetOptions{}); err != nil || *d.Spec.Replicas != 2 {
		t.Errorf("after the scales: %v %v", err, fmt.Sprint(d.Spec.Replicas))
	}
}
