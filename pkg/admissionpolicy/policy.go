// Package admissionpolicy generates podgrace's policy as in-tree admission
// policies (docs/design.md §10): a MutatingAdmissionPolicy whose CEL adds the
// preStop sleeps, raises the grace period and writes the status annotation,
// and a ValidatingAdmissionPolicy that names invalid settings as warnings (or
// denies them in strict mode). The CEL text is static; the cluster config
// reaches it as the parameters, a ConfigMap named by the bindings' paramRef,
// so the chart installs the generated policies as they are and renders only
// the parameters and the bindings.
package admissionpolicy

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/registration"
)

// Names of the generated objects.
const (
	// MutatingName names the MutatingAdmissionPolicy and its binding.
	MutatingName = "podgrace"
	// ValidatingName names the ValidatingAdmissionPolicy and its binding.
	ValidatingName = "podgrace-warnings"
	// ParamsName names the parameter ConfigMap.
	ParamsName = "podgrace-policy-params"
	// DefaultNamespace holds the parameter ConfigMap unless told otherwise.
	DefaultNamespace = registration.DefaultNamespace
)

// SystemNamespaces are never selected, as by the webhook: their pods (DNS,
// CNI, the control plane) are not podgrace's to change.
var SystemNamespaces = registration.SystemNamespaces

// NotDone lists what the policy does not do; it heads the generated output,
// and README.md and docs/operate/policy.md repeat it.
var NotDone = []string{
	"no exec-form rewrite (" + policy.AnnotationExecForm + " is read only to warn about invalid values): shell-form commands keep a shell as PID 1",
	"no image inspection (imageInspection.* is ignored) and no digest pinning",
	"hookAction auto is the native sleep action (every 1.36 API server serves it); exec gives `sleep N`",
	"no metrics and no logs: the API server's own admission metrics count the policy",
	"warnings come from the companion ValidatingAdmissionPolicy, one warning that lists every invalid setting; the webhook's notes about what it did (a sleep shortened to fit, a mesh drain it cannot read) are not given",
	"status records carry no exec-form fields (execForm, execFormSkipped, image)",
}

// Options place the generated objects.
type Options struct {
	// Namespace holds the parameter ConfigMap; podgrace's own namespace,
	// excluded from the selection like the webhook's.
	Namespace string
	// NamePrefix is prepended to every object name (tests install several).
	NamePrefix string
	// ParamsName names the parameter ConfigMap (ParamsName when empty; the
	// chart names it after the release).
	ParamsName string
	// ClusterWide selects every namespace not labeled podgrace.dev/inject=disabled.
	ClusterWide bool
	// ExtraNamespaceSelector is ANDed with podgrace's own namespace expressions.
	ExtraNamespaceSelector []metav1.LabelSelectorRequirement
}

func (o *Options) namespace() string {
	if o.Namespace == "" {
		return DefaultNamespace
	}
	return o.Namespace
}

// Objects is the generated set, in the order it is applied.
type Objects struct {
	Params            *corev1.ConfigMap
	Mutating          *admissionregistrationv1.MutatingAdmissionPolicy
	MutatingBinding   *admissionregistrationv1.MutatingAdmissionPolicyBinding
	Validating        *admissionregistrationv1.ValidatingAdmissionPolicy
	ValidatingBinding *admissionregistrationv1.ValidatingAdmissionPolicyBinding
}

// CheckConfig reports settings of the cluster config the policy cannot carry.
func CheckConfig(cfg *policy.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	for _, s := range cfg.Sidecars {
		if errs := validation.IsDNS1123Label(s); len(errs) > 0 {
			return fmt.Errorf("sidecars: %q is not a container name, so no pod can have it (the policy passes the list as a comma-separated parameter)", s)
		}
	}
	return nil
}

// Params is the parameter ConfigMap's data for a cluster config: every
// value as the chart renders it from the same Helm values.
func Params(cfg *policy.Config) map[string]string {
	hook := string(cfg.HookAction)
	if cfg.HookAction == policy.HookAuto {
		hook = string(policy.HookSleep)
	}
	return map[string]string{
		"preStopSleep":          cfg.PreStopSleep,
		"extendGrace":           strconv.FormatBool(cfg.ExtendGrace),
		"ratio":                 strconv.FormatFloat(cfg.Ratio, 'f', -1, 64),
		"min":                   cfg.Min.Duration.String(),
		"max":                   cfg.Max.Duration.String(),
		"shutdownBudget":        cfg.ShutdownBudget.Duration.String(),
		"sidecarShutdownBudget": cfg.SidecarShutdownBudget.Duration.String(),
		"maxGracePeriod":        cfg.MaxGracePeriod.Duration.String(),
		"sleepRunToCompletion":  strconv.FormatBool(cfg.SleepRunToCompletion),
		"sidecars":              strings.Join(cfg.Sidecars, ","),
		"hookAction":            hook,
	}
}

// Generate builds the policies, their bindings and the parameters.
func Generate(cfg *policy.Config, o Options) (*Objects, error) {
	if err := CheckConfig(cfg); err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	ns := o.namespace()
	params := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: o.NamePrefix + cmp.Or(o.ParamsName, ParamsName), Namespace: ns},
		Data:       Params(cfg),
	}
	// The same selection as the webhook's (the chart's
	// mutatingwebhookconfiguration.yaml; test/chart checks that the chart
	// renders these bindings): opt-in (or cluster-wide) label, the system
	// namespaces and podgrace's own excluded, the pod opt-out label.
	match := &admissionregistrationv1.MatchResources{
		NamespaceSelector: registration.Selection{ClusterWide: o.ClusterWide, Namespace: ns, Extra: o.ExtraNamespaceSelector}.NamespaceSelector(),
		ObjectSelector:    registration.ObjectSelector(),
	}
	podCreate := &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
		RuleWithOperations: admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
		},
	}}}
	paramKind := &admissionregistrationv1.ParamKind{APIVersion: "v1", Kind: "ConfigMap"}
	allow := admissionregistrationv1.AllowAction
	paramRef := &admissionregistrationv1.ParamRef{Name: params.Name, Namespace: ns, ParameterNotFoundAction: &allow}
	ignore := admissionregistrationv1.Ignore

	mp := &admissionregistrationv1.MutatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: o.NamePrefix + MutatingName},
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			ParamKind:        paramKind,
			MatchConstraints: podCreate.DeepCopy(),
			MatchConditions:  matchConditions(),
			Variables:        mutatingVars(mutationVariables()),
			Mutations: []admissionregistrationv1.Mutation{{
				PatchType: admissionregistrationv1.PatchTypeJSONPatch,
				JSONPatch: &admissionregistrationv1.JSONPatch{Expression: expandBind(mutationExpression)},
			}},
			FailurePolicy:      &ignore,
			ReinvocationPolicy: admissionregistrationv1.IfNeededReinvocationPolicy,
		},
	}
	mb := &admissionregistrationv1.MutatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: o.NamePrefix + MutatingName},
		Spec: admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{
			PolicyName: mp.Name, ParamRef: paramRef, MatchResources: match.DeepCopy(),
		},
	}
	vp := &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: o.NamePrefix + ValidatingName},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			MatchConstraints: podCreate.DeepCopy(),
			MatchConditions:  matchConditions(),
			Variables:        validatingVars(validationVariables()),
			Validations: []admissionregistrationv1.Validation{{
				Expression:        "variables.problems.size() == 0",
				MessageExpression: "variables.problems.join('; ')",
			}},
			FailurePolicy: &ignore,
		},
	}
	actions := []admissionregistrationv1.ValidationAction{admissionregistrationv1.Warn}
	if cfg.Strict {
		actions = []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}
	}
	vb := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: o.NamePrefix + ValidatingName},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName: vp.Name, MatchResources: match.DeepCopy(), ValidationActions: actions,
		},
	}
	return &Objects{Params: params, Mutating: mp, MutatingBinding: mb, Validating: vp, ValidatingBinding: vb}, nil
}

// matchConditions are the webhook's: mirror pods reflect static pod files on
// a node, so a change made here would not be what the kubelet runs.
func matchConditions() []admissionregistrationv1.MatchCondition {
	return []admissionregistrationv1.MatchCondition{{
		Name:       "not-a-mirror-pod",
		Expression: "!has(object.metadata.annotations) || !('kubernetes.io/config.mirror' in object.metadata.annotations)",
	}}
}

func mutatingVars(vs []variable) []admissionregistrationv1.Variable {
	out := make([]admissionregistrationv1.Variable, len(vs))
	for i, x := range vs {
		out[i] = admissionregistrationv1.Variable{Name: x.name, Expression: expandBind(x.expr)}
	}
	return out
}

func validatingVars(vs []variable) []admissionregistrationv1.Variable { return mutatingVars(vs) }

// Header is the comment that opens the generated output.
func Header() string {
	var b strings.Builder
	b.WriteString("# podgrace's policy as in-tree admission policies (Kubernetes >= 1.36),\n")
	b.WriteString("# generated by `podgrace generate policy`; see docs/operate/policy.md.\n#\n")
	b.WriteString("# What it does not do, compared with the podgrace webhook:\n")
	for _, s := range NotDone {
		b.WriteString("#   - " + s + "\n")
	}
	return b.String()
}

// YAML renders the objects as one multi-document stream with the header.
func (o *Objects) YAML() ([]byte, error) {
	return toYAML(o.Params, o.Mutating, o.MutatingBinding, o.Validating, o.ValidatingBinding)
}

// PoliciesYAML renders only the two policies, which do not depend on the
// cluster config: the chart installs this text as it is (files/policy.yaml)
// and renders the parameters and the bindings from its values.
func PoliciesYAML() ([]byte, error) {
	cfg := policy.Default()
	objs, err := Generate(&cfg, Options{})
	if err != nil {
		return nil, err
	}
	return toYAML(objs.Mutating, objs.Validating)
}

func toYAML(objs ...any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(Header())
	for _, obj := range objs {
		raw, err := yaml.Marshal(obj)
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(stripCreationTimestamp(raw))
	}
	return b.Bytes(), nil
}

// stripCreationTimestamp drops the null creationTimestamp and empty status
// metav1 types marshal, which kubectl would show as a diff.
func stripCreationTimestamp(raw []byte) []byte {
	lines := strings.Split(string(raw), "\n")
	lines = slices.DeleteFunc(lines, func(l string) bool {
		t := strings.TrimSpace(l)
		return t == "creationTimestamp: null" || l == "status: {}"
	})
	return []byte(strings.Join(lines, "\n"))
}
