package registration

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/policy"
)

// SystemNamespaces are never selected: their pods (DNS, CNI, the control
// plane) are not podgrace's to change.
var SystemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// Selection says which pods the API server sends to podgrace: the webhook's
// namespaceSelector and objectSelector, and the same for the admission
// policies' bindings. The chart's podgrace.namespaceSelector and
// podgrace.objectSelector templates write the same (TestSelectionMatchesChart
// in test/chart renders both and compares).
type Selection struct {
	// ClusterWide selects every namespace not labeled podgrace.dev/inject=disabled;
	// otherwise only those labeled podgrace.dev/inject=enabled.
	ClusterWide bool
	// Namespace is podgrace's own, never selected (its pods must start without it).
	Namespace string
	// ExcludeNamespaces are never selected either.
	ExcludeNamespaces []string
	// Extra is ANDed with podgrace's own namespace expressions.
	Extra []metav1.LabelSelectorRequirement
}

// NamespaceSelector selects the namespaces.
func (s Selection) NamespaceSelector() *metav1.LabelSelector {
	optIn := metav1.LabelSelectorRequirement{Key: policy.LabelInject, Operator: metav1.LabelSelectorOpIn, Values: []string{policy.InjectEnabled}}
	if s.ClusterWide {
		optIn = metav1.LabelSelectorRequirement{Key: policy.LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{policy.InjectDisabled}}
	}
	var excluded []string
	for _, ns := range slices.Concat(SystemNamespaces, []string{s.Namespace}, s.ExcludeNamespaces) {
		if !slices.Contains(excluded, ns) {
			excluded = append(excluded, ns)
		}
	}
	exprs := []metav1.LabelSelectorRequirement{optIn, {Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: excluded}}
	return &metav1.LabelSelector{MatchExpressions: append(exprs, s.Extra...)}
}

// ObjectSelector selects the pods: every one not labeled podgrace.dev/inject=disabled.
func ObjectSelector() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: policy.LabelInject, Operator: metav1.LabelSelectorOpNotIn, Values: []string{policy.InjectDisabled}},
	}}
}

// IsMirrorPod says whether pod is a mirror pod, the API server's copy of a
// static pod file on a node (annotated kubernetes.io/config.mirror):
// podgrace leaves it alone, since a change made to the copy is not what the
// kubelet runs. The webhook's handler tests this itself instead of the
// registration carrying a matchCondition: a matchCondition makes the API
// server convert the whole pod for CEL on every call, about 1 ms of its CPU
// per pod (twice for a pod podgrace mutates, on reinvocation), for pods
// that are nearly never mirror pods (docs/develop/performance.md).
func IsMirrorPod(pod *corev1.Pod) bool {
	_, ok := pod.Annotations[corev1.MirrorPodAnnotationKey]
	return ok
}
