package chart_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/internal/kubewarn"
)

// warnings collects the API server's warnings (Pod Security admission
// warns on workloads whose pod template breaks the namespace's level).
type warnings = kubewarn.Collector

// TestCreateOnAPIServer creates every object each combination renders on a
// real kube-apiserver (with cert-manager's CRDs), in a fresh namespace that
// enforces the restricted Pod Security level: the chart is valid against the
// real API, not only well-formed YAML. A pod made from the Deployment's
// template is admitted under `restricted`, and the ServiceAccount can do
// exactly what the release needs (SubjectAccessReview).
func TestCreateOnAPIServer(t *testing.T) {
	t.Parallel()
	cfg := apiServer(t)
	for i, c := range cases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			warn := &warnings{}
			wcfg := rest.CopyConfig(cfg)
			wcfg.WarningHandlerWithContext = nil
			wcfg.WarningHandler = warn
			k := newClient(t, wcfg)

			r := chart.Release{Name: unique(fmt.Sprintf("podgrace-%d", i)), Namespace: unique(fmt.Sprintf("chart-%d", i))}
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.Namespace, Labels: map[string]string{
				"pod-security.kubernetes.io/enforce": "restricted",
				"pod-security.kubernetes.io/warn":    "restricted",
			}}}
			if err := k.Create(ctx, ns); err != nil {
				t.Fatal(err)
			}
			rendered := render(t, r, c.values)
			for _, o := range rendered.Objects {
				if err := k.Create(ctx, o); err != nil {
					t.Errorf("creating %s %s: %v", o.GetKind(), o.GetName(), err)
					continue
				}
				if o.GetNamespace() == "" {
					t.Cleanup(func() { _ = k.Delete(context.Background(), o) })
				}
			}
			if w := warn.Take(); len(w) > 0 {
				t.Errorf("API server warnings while creating the chart's objects: %q", w)
			}

			// Fields an older API server drops without a word: the
			// webhook's matchConditions (GA in 1.30) and reinvocationPolicy.
			var sent, kept admissionregistrationv1.MutatingWebhookConfiguration
			if err := chart.Into(rendered.Find("MutatingWebhookConfiguration", r.Name), &sent); err != nil {
				t.Fatal(err)
			}
			if err := k.Get(ctx, client.ObjectKey{Name: r.Name}, &kept); err != nil {
				t.Fatal(err)
			}
			// (The chart has none of its own; the cases with
			// webhook.matchConditions set check they are kept.)
			if s, g := sent.Webhooks[0], kept.Webhooks[0]; !equality.Semantic.DeepEqual(s.MatchConditions, g.MatchConditions) || *s.ReinvocationPolicy != *g.ReinvocationPolicy {
				t.Errorf("the API server changed the webhook: sent %+v / %v, stored %+v / %v",
					s.MatchConditions, *s.ReinvocationPolicy, g.MatchConditions, g.ReinvocationPolicy)
			}

			// The pod podgrace's Deployment would create, admitted under restricted.
			var d appsv1.Deployment
			if err := k.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: r.Name}, &d); err != nil {
				t.Fatal(err)
			}
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, GenerateName: r.Name + "-", Labels: d.Spec.Template.Labels, Annotations: d.Spec.Template.Annotations},
				Spec:       d.Spec.Template.Spec,
			}
			if err := k.Create(ctx, pod); err != nil {
				t.Errorf("a pod from the Deployment's template is rejected: %v", err)
			}
			if w := warn.Take(); len(w) > 0 {
				t.Errorf("API server warnings for podgrace's pod: %q", w)
			}

			checkAccess(ctx, t, cfg, r, c)
		})
	}
}

// checkAccess asks the API server's RBAC authorizer what the release's
// ServiceAccount may do.
func checkAccess(ctx context.Context, t *testing.T, cfg *rest.Config, r chart.Release, c chartCase) {
	t.Helper()
	cs := newClientset(t, cfg)
	user := "system:serviceaccount:" + r.Namespace + ":" + r.Name
	type access struct {
		verb, group, resource, namespace, name string
		want                                   bool
	}
	checks := []access{
		{"list", "", "namespaces", "", "", true},
		{"watch", "", "namespaces", "", "", true},
		{"get", "", "namespaces", "", "shop", true},
		{"update", "", "namespaces", "", "shop", false},
		{"list", "", "pods", "shop", "", false},
		// hookAction auto's dry-run probe, in the release's namespace only.
		{"create", "", "pods", r.Namespace, "", !c.hookFixed},
		{"create", "", "pods", "shop", "", false},
		{"delete", "", "pods", r.Namespace, "", false},
		{"get", "", "pods", r.Namespace, "", false},
		{"get", "", "secrets", "shop", "registry", c.pullSecrets},
		{"get", "", "serviceaccounts", "shop", "default", c.pullSecrets},
		{"list", "", "secrets", "shop", "", false},
		{"create", "", "secrets", r.Namespace, "", false},
		{"get", "", "secrets", r.Namespace, r.Name + "-webhook-tls", c.pullSecrets || !c.certManager},
		{"update", "", "secrets", r.Namespace, r.Name + "-webhook-tls", !c.certManager},
		{"update", "", "secrets", r.Namespace, "other", false},
		{"update", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", r.Name, !c.certManager},
		{"update", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "someone-else", false},
		// The workload check's caBundle, kept by podgrace's own CA.
		{"update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", r.Name, !c.certManager},
		{"update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "someone-else", false},
		{"create", "authentication.k8s.io", "tokenreviews", "", "", c.metricsSecure},
		{"create", "authorization.k8s.io", "subjectaccessreviews", "", "", c.metricsSecure},
	}
	for _, a := range checks {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:   user,
			Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + r.Namespace, "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: a.verb, Group: a.group, Resource: a.resource, Namespace: a.namespace, Name: a.name,
			},
		}}
		res, err := cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if res.Status.Allowed != a.want {
			where := strings.Trim(a.namespace+"/"+a.name, "/")
			t.Errorf("%s may %s %s %s: %t, want %t", r.Name, a.verb, a.resource, where, res.Status.Allowed, a.want)
		}
	}
}
