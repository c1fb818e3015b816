package chart

import (
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// WebhookOptions says how tests reach a podgrace that runs outside the
// cluster.
type WebhookOptions struct {
	// Name of the MutatingWebhookConfiguration (and of the release it is
	// rendered for); "podgrace" when empty.
	Name string
	// URL replaces the chart's Service reference.
	URL string
	// CABundle signs podgrace's serving certificate.
	CABundle []byte
	// ClusterWide renders webhook.mode=cluster-wide instead of opt-in.
	ClusterWide bool
	// ExtraNamespaceSelector is webhook.namespaceSelectorExpressions.
	ExtraNamespaceSelector []metav1.LabelSelectorRequirement
}

// Webhook renders the chart's MutatingWebhookConfiguration, the one
// definition of podgrace's registration, for a podgrace reached at a URL:
// tests register exactly what `helm install` does, but for their own server.
func Webhook(chartDir string, o WebhookOptions) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	r, err := renderWebhooks(chartDir, o)
	if err != nil {
		return nil, err
	}
	objs := r.OfKind("MutatingWebhookConfiguration")
	if len(objs) != 1 {
		return nil, fmt.Errorf("the chart renders %d MutatingWebhookConfigurations", len(objs))
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := Into(objs[0], &mwc); err != nil {
		return nil, err
	}
	for i := range mwc.Webhooks {
		url := o.URL
		mwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: o.CABundle}
	}
	return &mwc, nil
}

// Served is what the chart renders to serve podgrace's webhook through its
// Service, as `helm install` does: the API server calls the Service (the
// MutatingWebhookConfiguration's clientConfig.service, caBundle set), and
// the PodDisruptionBudget guards the replicas behind it.
type Served struct {
	Webhook *admissionregistrationv1.MutatingWebhookConfiguration
	Service *corev1.Service
	PDB     *policyv1.PodDisruptionBudget
}

// ServedWebhook renders the chart's registration, Service and
// PodDisruptionBudget for release o.Name in DefaultRelease.Namespace (o.URL
// is ignored: the registration keeps the chart's Service reference).
func ServedWebhook(chartDir string, o WebhookOptions) (*Served, error) {
	r, err := renderWebhooks(chartDir, o)
	if err != nil {
		return nil, err
	}
	out := &Served{Webhook: &admissionregistrationv1.MutatingWebhookConfiguration{}, Service: &corev1.Service{}, PDB: &policyv1.PodDisruptionBudget{}}
	if err := intoOne(r, "MutatingWebhookConfiguration", out.Webhook); err != nil {
		return nil, err
	}
	if err := intoOne(r, "PodDisruptionBudget", out.PDB); err != nil {
		return nil, err
	}
	if len(out.Webhook.Webhooks) != 1 || out.Webhook.Webhooks[0].ClientConfig.Service == nil {
		return nil, fmt.Errorf("the chart's MutatingWebhookConfiguration has %d webhooks, the first without a Service", len(out.Webhook.Webhooks))
	}
	name := out.Webhook.Webhooks[0].ClientConfig.Service.Name
	svc := r.Find("Service", name)
	if svc == nil {
		return nil, fmt.Errorf("the chart renders no Service %s", name)
	}
	if err := Into(svc, out.Service); err != nil {
		return nil, err
	}
	for i := range out.Webhook.Webhooks {
		out.Webhook.Webhooks[i].ClientConfig.CABundle = o.CABundle
	}
	return out, nil
}

// intoOne decodes the one object of kind that r holds into obj.
func intoOne(r *Rendered, kind string, obj any) error {
	objs := r.OfKind(kind)
	if len(objs) != 1 {
		return fmt.Errorf("the chart renders %d %ss", len(objs), kind)
	}
	return Into(objs[0], obj)
}

// WorkloadWebhook renders the chart's ValidatingWebhookConfiguration (the
// workload check) for a podgrace reached at a URL, as Webhook does for the
// pod webhook: o.URL is the workload check's URL.
func WorkloadWebhook(chartDir string, o WebhookOptions) (*admissionregistrationv1.ValidatingWebhookConfiguration, error) {
	r, err := renderWebhooks(chartDir, o)
	if err != nil {
		return nil, err
	}
	objs := r.OfKind("ValidatingWebhookConfiguration")
	if len(objs) != 1 {
		return nil, fmt.Errorf("the chart renders %d ValidatingWebhookConfigurations", len(objs))
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := Into(objs[0], &vwc); err != nil {
		return nil, err
	}
	for i := range vwc.Webhooks {
		url := o.URL
		vwc.Webhooks[i].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: o.CABundle}
	}
	return &vwc, nil
}

// renderWebhooks renders the chart for a test's podgrace.
func renderWebhooks(chartDir string, o WebhookOptions) (*Rendered, error) {
	name := o.Name
	if name == "" {
		name = DefaultRelease.Name
	}
	mode := "opt-in"
	if o.ClusterWide {
		mode = "cluster-wide"
	}
	exprs := make([]any, 0, len(o.ExtraNamespaceSelector))
	for _, e := range o.ExtraNamespaceSelector {
		m := map[string]any{"key": e.Key, "operator": string(e.Operator)}
		if len(e.Values) > 0 {
			vals := make([]any, len(e.Values))
			for i, v := range e.Values {
				vals[i] = v
			}
			m["values"] = vals
		}
		exprs = append(exprs, m)
	}
	return Render(chartDir, Release{Name: name, Namespace: DefaultRelease.Namespace}, map[string]any{
		"fullnameOverride": name,
		"certManager":      map[string]any{"enabled": false},
		"webhook":          map[string]any{"mode": mode, "namespaceSelectorExpressions": exprs},
	})
}
