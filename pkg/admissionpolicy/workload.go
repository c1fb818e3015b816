package admissionpolicy

import (
	"regexp"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/workload"
)

// WorkloadName names the ValidatingAdmissionPolicy on workload kinds and
// its binding: policy mode's counterpart of the webhook's workload check
// (docs/design.md §7). It gives the warnings of the pod policy
// (ValidatingName) for a workload's pod template, to the person who writes
// the workload; the controller that creates its pods drops theirs.
const WorkloadName = "podgrace-workload-warnings"

// workloadRules match CREATE and UPDATE of every workload kind, one rule
// per API group in the order of pkg/workload.
func workloadRules() []admissionregistrationv1.NamedRuleWithOperations {
	var rules []admissionregistrationv1.NamedRuleWithOperations
	byGV := map[schema.GroupVersion]int{}
	for _, k := range workload.Templated() {
		gv := k.GroupVersionResource().GroupVersion()
		i, ok := byGV[gv]
		if !ok {
			i = len(rules)
			byGV[gv] = i
			rules = append(rules, admissionregistrationv1.NamedRuleWithOperations{RuleWithOperations: admissionregistrationv1.RuleWithOperations{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{gv.Group}, APIVersions: []string{gv.Version}, Resources: []string{}, Scope: ptr.To(admissionregistrationv1.NamespacedScope)},
			}})
		}
		rules[i].Resources = append(rules[i].Resources, k.Resource)
	}
	return rules
}

// templateOf is the pod template of the workload obj (a CEL expression:
// object or oldObject), by kind from pkg/workload's template paths, or {}
// when the object has none (a ReplicationController may omit it).
func templateOf(obj string) string {
	path := func(p []string) string {
		return obj + "." + strings.Join(p[:len(p)-1], ".?") + ".?" + p[len(p)-1] + ".orValue({})"
	}
	// The most common path is the default; the others go by kind.
	count := map[string]int{}
	for _, k := range workload.Templated() {
		count[k.TemplatePath()]++
	}
	var def []string
	for _, k := range workload.Templated() {
		if def == nil || count[k.TemplatePath()] > count[strings.Join(def, ".")] {
			def = k.Template
		}
	}
	var b strings.Builder
	b.WriteString("(")
	for _, k := range workload.Templated() {
		if k.TemplatePath() != strings.Join(def, ".") {
			b.WriteString(obj + ".kind == " + lit(k.Kind) + " ? " + path(k.Template) + " : ")
		}
	}
	b.WriteString(path(def) + ")")
	return b.String()
}

// podRef finds `object.spec` and `object.metadata` in the pod policy's CEL.
var podRef = regexp.MustCompile(`\bobject\.(spec|metadata)\b`)

// onTemplate rewrites an expression of the pod policy to read the pod
// template (variables.template) where it reads the pod.
func onTemplate(expr string) string {
	return podRef.ReplaceAllStringFunc(expr, func(m string) string {
		if strings.HasSuffix(m, "metadata") {
			return "variables.template.?metadata.orValue({})"
		}
		return "variables.template.spec"
	})
}

// workloadValidating builds the ValidatingAdmissionPolicy on workload kinds
// and its binding: the pod policy's checks (validationVariables) on the pod
// template, for a CREATE or an UPDATE that changes the template (an
// UPDATE that leaves it alone — a scale, a finalizer, status — is not
// matched, so it never warns twice and strict mode never stalls a
// controller). Actions as the pod policy's: Warn, or Deny in strict mode.
func workloadValidating(s Settings, o Options, match *admissionregistrationv1.MatchResources) (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	ignore := admissionregistrationv1.Ignore
	vars := []admissionregistrationv1.Variable{{Name: "template", Expression: templateOf("object")}}
	for _, v := range validatingVars(validationVariables()) {
		v.Expression = onTemplate(v.Expression)
		vars = append(vars, v)
	}
	// The opt-out label is on the pod template: the objectSelector would
	// see the workload's own labels.
	optOut := sub(`!({k} in {t}.?metadata.?labels.orValue({}) && {t}.metadata.labels[{k}] == {v})`,
		"k", lit(policy.LabelInject), "v", lit(policy.InjectDisabled), "t", templateOf("object"))
	vp := &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: o.NamePrefix + WorkloadName},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: workloadRules()},
			MatchConditions: []admissionregistrationv1.MatchCondition{
				{Name: "template-not-opted-out", Expression: optOut},
				{Name: "template-written", Expression: "request.operation == " + lit(string(admissionregistrationv1.Create)) + " || oldObject == null || " + templateOf("object") + " != " + templateOf("oldObject")},
			},
			Variables:     vars,
			Validations:   problemsValidation(),
			FailurePolicy: &ignore,
		},
	}
	vb := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: o.NamePrefix + WorkloadName},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			// The namespaces of the pod policies; no objectSelector (above).
			PolicyName: vp.Name, MatchResources: &admissionregistrationv1.MatchResources{NamespaceSelector: match.NamespaceSelector.DeepCopy()},
			ValidationActions: validationActions(s),
		},
	}
	return vp, vb
}

// problemsValidation fails when the validation variables found a problem,
// with every problem in one message (the pod and the workload policies).
func problemsValidation() []admissionregistrationv1.Validation {
	return []admissionregistrationv1.Validation{{
		Expression:        "variables.problems.size() == 0",
		MessageExpression: "variables.problems.join('; ')",
	}}
}

// validationActions are the validating bindings' actions: warnings, or
// denials in strict mode.
func validationActions(s Settings) []admissionregistrationv1.ValidationAction {
	if s["strict"] == "true" {
		return []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}
	}
	return []admissionregistrationv1.ValidationAction{admissionregistrationv1.Warn}
}
