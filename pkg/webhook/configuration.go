package webhook

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/policy"
)

// The names the API server and the chart use to reach podgrace.
const (
	// Path is where the mutating handler is served.
	Path = "/mutate-v1-pod"
	// ConfigurationName is the default name of the MutatingWebhookConfiguration.
	// The API server calls configurations in name order.
	ConfigurationName = "podgrace"
	// WebhookName is the name of podgrace's webhook inside the configuration
	// (a fully qualified name, as the API server requires).
	WebhookName = "pods.podgrace.dev"
	// TimeoutSeconds bounds one call: the API server gives up after it and,
	// with failurePolicy Ignore, admits the pod unmutated.
	TimeoutSeconds int32 = 5
)

// SystemNamespaces are never selected: their pods (DNS, CNI, the control
// plane) must come up even when podgrace cannot, and they are not ours to change.
var SystemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// ConfigurationOptions says where the API server reaches podgrace and which
// namespaces it serves. The Helm chart renders the same object from its values.
type ConfigurationOptions struct {
	// Name of the MutatingWebhookConfiguration; ConfigurationName when empty.
	Name string
	// Service is how the API server reaches podgrace in the cluster (its
	// path is set to Path, its port defaults to 443). Exactly one of
	// Service and URL is set.
	Service *admissionregistrationv1.ServiceReference
	// URL reaches podgrace outside the cluster (tests, local development).
	URL string
	// CABundle is the PEM bundle that signs podgrace's serving certificate.
	// With cert-manager it is left empty and injected by cainjector.
	CABundle []byte
	// Namespace is podgrace's own namespace: its own pods never go through
	// it, or a podgrace rollout could wait for podgrace.
	Namespace string
	// ClusterWide selects every namespace not labeled
	// podgrace.dev/inject=disabled; by default only namespaces labeled
	// podgrace.dev/inject=enabled are selected (opt-in).
	ClusterWide bool
	// ExtraNamespaceSelector is ANDed with podgrace's own namespace
	// expressions (the chart's webhook.namespaceSelector.matchExpressions).
	ExtraNamespaceSelector []metav1.LabelSelectorRequirement
}

// MutatingWebhookConfiguration builds podgrace's webhook registration: the one
// place its settings are written down (docs/webhook.md explains each).
//
//   - failurePolicy Ignore: podgrace improves shutdowns; it must never be the
//     reason a pod cannot be created. If it is down, slow or broken, pods are
//     admitted as they are.
//   - timeoutSeconds 5: well under the API server's own request timeout, and
//     long enough for an image config lookup (2 s deadline).
//   - sideEffects None: the handler only computes a patch, so dry-run
//     requests are sent to it and mutated like real ones.
//   - reinvocationPolicy IfNeeded: a later webhook (a mesh injecting its
//     proxy, say) may add containers; podgrace is called again and handles
//     only the containers its status annotation does not list yet.
//   - namespaceSelector: opt-in by label, never the system namespaces nor
//     podgrace's own; objectSelector: a pod labeled podgrace.dev/inject=disabled
//     is not even sent.
//   - rules: Pod CREATE only. Updates cannot change what podgrace sets
//     (containers and lifecycle are immutable) and it never needs to see them.
func MutatingWebhookConfiguration(o ConfigurationOptions) *admissionregistrationv1.MutatingWebhookConfiguration {
	name := o.Name
	if name == "" {
		name = ConfigurationName
	}
	cc := admissionregistrationv1.WebhookClientConfig{CABundle: o.CABundle}
	if o.Service != nil {
		svc := *o.Service
		path := Path
		svc.Path = &path
		if svc.Port == nil {
			port := int32(443)
			svc.Port = &port
		}
		cc.Service = &svc
	} else {
		url := o.URL
		cc.URL = &url
	}

	excluded := append([]string(nil), SystemNamespaces...)
	if o.Namespace != "" {
		excluded = append(excluded, o.Namespace)
	}
	optIn := metav1.LabelSelectorRequirement{Key: policy.LabelInject, Operator: metav1.LabelSelectorOpIn, Values: []string{policy.InjectEnabled}}
	if o.ClusterWide {
		optIn = metav1.LabelSelectorRequirement{Key: policy.LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{policy.InjectDisabled}}
	}
	nsExpr := []metav1.LabelSelectorRequirement{
		optIn,
		// kubernetes.io/metadata.name is set by the API server on every
		// namespace (1.21+), so namespaces can be excluded by name.
		{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: excluded},
	}
	nsExpr = append(nsExpr, o.ExtraNamespaceSelector...)

	failurePolicy := admissionregistrationv1.Ignore
	sideEffects := admissionregistrationv1.SideEffectClassNone
	reinvocation := admissionregistrationv1.IfNeededReinvocationPolicy
	matchPolicy := admissionregistrationv1.Equivalent
	scope := admissionregistrationv1.NamespacedScope
	timeout := TimeoutSeconds

	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{"app.kubernetes.io/name": "podgrace"},
		},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    WebhookName,
			ClientConfig:            cc,
			AdmissionReviewVersions: []string{"v1"},
			SideEffects:             &sideEffects,
			FailurePolicy:           &failurePolicy,
			TimeoutSeconds:          &timeout,
			ReinvocationPolicy:      &reinvocation,
			MatchPolicy:             &matchPolicy,
			NamespaceSelector:       &metav1.LabelSelector{MatchExpressions: nsExpr},
			ObjectSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
				{Key: policy.LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{policy.InjectDisabled}},
			}},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{""},
					APIVersions: []string{"v1"},
					Resources:   []string{"pods"},
					Scope:       &scope,
				},
			}},
		}},
	}
}
