package audit

import (
	"fmt"

	"github.com/google/cel-go/cel"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/podgrace/podgrace/pkg/registration"
)

// matcher decides, as the API server does, whether one of podgrace's webhooks
// is called for a pod: its namespaceSelector against the namespace's labels,
// its objectSelector against the pod's, its matchConditions (CEL) against the
// pod. Only Pod CREATE is audited, which is what podgrace's rules name.
type matcher struct {
	name       string // configuration name
	namespaces labels.Selector
	objects    labels.Selector
	conditions []condition
	err        error // a selector or condition the audit cannot evaluate
}

type condition struct {
	name string
	prg  cel.Program
}

// celEnv declares the variables a webhook matchCondition may use; one that
// uses the authorizer is reported as unknown rather than guessed.
var celEnv, celEnvErr = cel.NewEnv(
	cel.Variable("object", cel.DynType),
	cel.Variable("oldObject", cel.DynType),
	cel.Variable("request", cel.DynType),
)

func newMatcher(config string, wh *admissionregistrationv1.MutatingWebhook) *matcher {
	m := &matcher{name: config, namespaces: labels.Everything(), objects: labels.Everything()}
	var err error
	if wh.NamespaceSelector != nil {
		if m.namespaces, err = metav1.LabelSelectorAsSelector(wh.NamespaceSelector); err != nil {
			m.err = fmt.Errorf("namespaceSelector: %w", err)
		}
	}
	if wh.ObjectSelector != nil {
		if m.objects, err = metav1.LabelSelectorAsSelector(wh.ObjectSelector); err != nil {
			m.err = fmt.Errorf("objectSelector: %w", err)
		}
	}
	for _, mc := range wh.MatchConditions {
		if celEnvErr != nil {
			m.err = celEnvErr
			break
		}
		ast, iss := celEnv.Compile(mc.Expression)
		if iss.Err() != nil {
			m.err = fmt.Errorf("matchCondition %q not evaluated: %w", mc.Name, iss.Err())
			continue
		}
		prg, err := celEnv.Program(ast)
		if err != nil {
			m.err = fmt.Errorf("matchCondition %q not evaluated: %w", mc.Name, err)
			continue
		}
		m.conditions = append(m.conditions, condition{name: mc.Name, prg: prg})
	}
	return m
}

// served decides for a pod in a namespace with nsLabels (nil: unknown).
func (m *matcher) served(pod *corev1.Pod, nsLabels map[string]string) (Served, string) {
	if nsLabels == nil {
		return ServedUnknown, "namespace labels unknown"
	}
	if !m.namespaces.Matches(labels.Set(nsLabels)) {
		return ServedNo, "namespace not selected by " + m.name
	}
	if !m.objects.Matches(labels.Set(pod.Labels)) {
		return ServedNo, "pod labels not selected by " + m.name
	}
	if registration.IsMirrorPod(pod) {
		return ServedNo, "a mirror pod (a static pod's copy): podgrace leaves it alone"
	}
	if m.err != nil {
		return ServedUnknown, m.name + ": " + m.err.Error()
	}
	if len(m.conditions) > 0 {
		obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pod)
		if err != nil {
			return ServedUnknown, err.Error()
		}
		vars := map[string]any{
			"object": obj, "oldObject": nil,
			"request": map[string]any{
				"operation": "CREATE", "namespace": pod.Namespace, "name": pod.Name,
				"kind":     map[string]any{"group": "", "version": "v1", "kind": "Pod"},
				"resource": map[string]any{"group": "", "version": "v1", "resource": "pods"},
			},
		}
		for _, c := range m.conditions {
			out, _, err := c.prg.Eval(vars)
			if err != nil {
				return ServedUnknown, fmt.Sprintf("%s: matchCondition %q: %v", m.name, c.name, err)
			}
			if b, ok := out.Value().(bool); !ok || !b {
				return ServedNo, fmt.Sprintf("matchCondition %q of %s is false", c.name, m.name)
			}
		}
	}
	return ServedYes, "served by " + m.name
}

// servedBy combines the webhooks: served when one of them is called.
func servedBy(ms []*matcher, pod *corev1.Pod, nsLabels map[string]string) (Served, string) {
	if len(ms) == 0 {
		return ServedNo, "no podgrace webhook is registered"
	}
	best, why := ServedNo, ""
	for _, m := range ms {
		s, r := m.served(pod, nsLabels)
		switch {
		case s == ServedYes:
			return s, r
		case s == ServedUnknown:
			best, why = s, r
		case best == ServedNo && why == "":
			why = r
		}
	}
	return best, why
}
