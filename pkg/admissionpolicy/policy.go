// Package admissionpolicy generates podgrace's policy as in-tree admission
// policies (docs/design.md §10): a MutatingAdmissionPolicy whose CEL adds the
// preStop sleeps, raises the grace period, rewrites the shell forms whose
// exec form CEL reproduces exactly (execPlan) and writes the status
// annotation; a ValidatingAdmissionPolicy that names invalid settings as
// warnings (or denies them in strict mode); and one that names the shell
// forms left as they are (always a warning). The cluster config is compiled into the CEL:
// each setting is a string literal of the expressions (Settings), so no
// parameter object exists (docs/operate/policy.md says why). The chart cannot run
// this generator: it installs the text PoliciesYAML writes, whose literals
// are placeholders it replaces with the same strings from its values.
package admissionpolicy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
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
	// ExecFormName names the ValidatingAdmissionPolicy that names the shell
	// forms the mutating policy leaves, and its binding (always Warn: the
	// webhook warns about them in strict mode too).
	ExecFormName = "podgrace-exec-form"
	// DefaultNamespace is podgrace's own namespace unless told otherwise
	// (never selected, like the webhook's).
	DefaultNamespace = registration.DefaultNamespace
	// AnnotationConfig, on the MutatingAdmissionPolicy, holds the Settings
	// compiled into its CEL as JSON, for the CLIs (ConfigOf reads it); the
	// CEL never reads it.
	AnnotationConfig = policy.Prefix + "/config"
)

// SystemNamespaces are never selected, as by the webhook: their pods (DNS,
// CNI, the control plane) are not podgrace's to change.
var SystemNamespaces = registration.SystemNamespaces

// NotDone lists what the policy does not do; it heads the generated output,
// and README.md and docs/operate/policy.md repeat it.
var NotDone = []string{
	"the exec-form rewrite only of a `SHELL -c` script that is one command of literal words or an && chain of them (the webhook's result for those, exactly); any other shell form is left as it is and named in a warning, and one in the image is neither rewritten nor named (the policy cannot read images)",
	"no image inspection (imageInspection.* is ignored) and no digest pinning",
	"hookAction auto is the native sleep action (every 1.36 API server serves it); exec gives `sleep N`",
	"no metrics and no logs: the API server's own admission metrics count the policy",
	"warnings come from the companion ValidatingAdmissionPolicy, one warning that lists every invalid setting; the webhook's notes about what it did (a sleep shortened to fit, a mesh drain it cannot read) are not given",
	"status records carry execForm but no execFormSkipped or image",
}

// Options place the generated objects.
type Options struct {
	// Namespace is podgrace's own namespace, excluded from the selection
	// like the webhook's.
	Namespace string
	// NamePrefix is prepended to every object name (tests install several).
	NamePrefix string
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
	Mutating          *admissionregistrationv1.MutatingAdmissionPolicy
	MutatingBinding   *admissionregistrationv1.MutatingAdmissionPolicyBinding
	Validating        *admissionregistrationv1.ValidatingAdmissionPolicy
	ValidatingBinding *admissionregistrationv1.ValidatingAdmissionPolicyBinding
	ExecForm          *admissionregistrationv1.ValidatingAdmissionPolicy
	ExecFormBinding   *admissionregistrationv1.ValidatingAdmissionPolicyBinding
	// WorkloadValidating and its binding warn about workloads' pod
	// templates (workload.go).
	WorkloadValidating        *admissionregistrationv1.ValidatingAdmissionPolicy
	WorkloadValidatingBinding *admissionregistrationv1.ValidatingAdmissionPolicyBinding
}

// CheckConfig reports settings of the cluster config the policy cannot carry.
func CheckConfig(cfg *policy.Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	for _, s := range cfg.Sidecars {
		if errs := validation.IsDNS1123Label(s); len(errs) > 0 {
			return fmt.Errorf("sidecars: %q is not a container name, so no pod can have it (the policy compiles the list in as one comma-separated string)", s)
		}
	}
	return nil
}

// Settings are the cluster config as the policies compile it in: one string
// per SettingKeys entry, embedded as a CEL string literal wherever the
// expressions use it. The chart builds the same strings from its values.
type Settings map[string]string

// SettingKeys are the Settings' keys: the cluster config fields
// (policy.ConfigFields) the policies read, and strict, which only picks the
// validating binding's action.
var SettingKeys = []string{"preStopSleep", "execForm", "extendGrace", "ratio", "min", "max", "shutdownBudget",
	"sidecarShutdownBudget", "maxGracePeriod", "sleepRunToCompletion", "hookAction", "sidecars", "strict"}

// settingText is what a setting may hold: the CEL embeds it between single
// quotes and the chart substitutes it into YAML, so no quote, backslash,
// space or newline may reach either. The chart refuses other values.
var settingText = regexp.MustCompile(`^[-+.,0-9A-Za-zµμ]*$`)

// SettingTextRE is settingText's pattern, for the chart's check.
const SettingTextRE = `^[-+.,0-9A-Za-zµμ]*$`

// SettingsOf is the Settings of a cluster config: every value as the chart
// renders it from the same Helm values.
func SettingsOf(cfg *policy.Config) Settings {
	hook := string(cfg.HookAction)
	if cfg.HookAction == policy.HookAuto {
		hook = string(policy.HookSleep)
	}
	return Settings{
		"preStopSleep":          cfg.PreStopSleep,
		"execForm":              strconv.FormatBool(cfg.ExecForm),
		"extendGrace":           strconv.FormatBool(cfg.ExtendGrace),
		"ratio":                 strconv.FormatFloat(cfg.Ratio, 'f', -1, 64),
		"min":                   cfg.Min.Duration.String(),
		"max":                   cfg.Max.Duration.String(),
		"shutdownBudget":        cfg.ShutdownBudget.Duration.String(),
		"sidecarShutdownBudget": cfg.SidecarShutdownBudget.Duration.String(),
		"maxGracePeriod":        cfg.MaxGracePeriod.Duration.String(),
		"sleepRunToCompletion":  strconv.FormatBool(cfg.SleepRunToCompletion),
		"hookAction":            hook,
		"sidecars":              strings.Join(cfg.Sidecars, ","),
		"strict":                strconv.FormatBool(cfg.Strict),
	}
}

// check reports a setting the CEL cannot embed; any value of the allowed
// text is safe: the CEL guards every parse (docs/operate/policy.md).
func (s Settings) check() error {
	for _, k := range SettingKeys {
		v, ok := s[k]
		if !ok {
			return fmt.Errorf("setting %s is missing", k)
		}
		if !settingText.MatchString(v) {
			return fmt.Errorf("%s: %q cannot be compiled into the admission policy (letters, digits and . + - , only)", k, v)
		}
	}
	return nil
}

// ConfigOf reads the cluster config back from a MutatingAdmissionPolicy's
// AnnotationConfig, for the CLIs: the fields the policy carries, the
// defaults for the others.
func ConfigOf(mp *admissionregistrationv1.MutatingAdmissionPolicy) (policy.Config, error) {
	raw, ok := mp.Annotations[AnnotationConfig]
	if !ok {
		return policy.Config{}, fmt.Errorf("MutatingAdmissionPolicy %s has no %s annotation", mp.Name, AnnotationConfig)
	}
	var s Settings
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return policy.Config{}, fmt.Errorf("%s of MutatingAdmissionPolicy %s: %w", AnnotationConfig, mp.Name, err)
	}
	doc := map[string]any{}
	for k, v := range s {
		switch k {
		case "execForm", "extendGrace", "sleepRunToCompletion", "strict":
			doc[k] = v == "true"
		case "ratio":
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return policy.Config{}, fmt.Errorf("%s of MutatingAdmissionPolicy %s: ratio %q: %w", AnnotationConfig, mp.Name, v, err)
			}
			doc[k] = f
		case "sidecars":
			doc[k] = strings.FieldsFunc(v, func(r rune) bool { return r == ',' })
		default:
			doc[k] = v
		}
	}
	text, err := json.Marshal(doc)
	if err != nil {
		return policy.Config{}, err
	}
	return policy.ParseConfig(text)
}

// Generate builds the policies, with the cluster config compiled in, and
// their bindings.
func Generate(cfg *policy.Config, o Options) (*Objects, error) {
	if err := CheckConfig(cfg); err != nil {
		return nil, fmt.Errorf("cluster config: %w", err)
	}
	return GenerateSettings(SettingsOf(cfg), o)
}

// GenerateSettings builds the objects from Settings as they are, in range
// or not (the chart's values, which its schema bounds; tests): the CEL stays
// safe whatever they hold.
func GenerateSettings(s Settings, o Options) (*Objects, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	return build(s, o)
}

// placeholder is a setting's stand-in in the chart's copy of the policies.
func placeholder(key string) string { return "@" + key + "@" }

// build builds the objects with s embedded as it is.
func build(s Settings, o Options) (*Objects, error) {
	ns := o.namespace()
	config, err := json.Marshal(s)
	if err != nil {
		return nil, err
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
	ignore := admissionregistrationv1.Ignore

	mp := &admissionregistrationv1.MutatingAdmissionPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingAdmissionPolicy"},
		ObjectMeta: metav1.ObjectMeta{Name: o.NamePrefix + MutatingName, Annotations: map[string]string{AnnotationConfig: string(config)}},
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: podCreate.DeepCopy(),
			MatchConditions:  matchConditions(),
			Variables:        mutatingVars(mutationVariables(s)),
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
			PolicyName: mp.Name, MatchResources: match.DeepCopy(),
		},
	}
	validating := func(name string, vars []variable, v []admissionregistrationv1.Validation, actions []admissionregistrationv1.ValidationAction, conds ...admissionregistrationv1.MatchCondition) (
		*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
		p := &admissionregistrationv1.ValidatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: o.NamePrefix + name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
				MatchConstraints: podCreate.DeepCopy(),
				MatchConditions:  append(matchConditions(), conds...),
				Variables:        validatingVars(vars),
				Validations:      v,
				FailurePolicy:    &ignore,
			},
		}
		return p, &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: o.NamePrefix + name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName: p.Name, MatchResources: match.DeepCopy(), ValidationActions: actions,
			},
		}
	}
	vp, vb := validating(ValidatingName, validationVariables(), problemsValidation(), validationActions(s))
	ep, eb := validating(ExecFormName, execWarnVariables(s), []admissionregistrationv1.Validation{{
		Expression:        "variables.left.size() == 0",
		MessageExpression: "'podgrace: ' + variables.left.join(', ') + ': ' + " + lit(ExecFormWarning),
	}}, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Warn}, execFormMatch())
	wp, wb := workloadValidating(s, o, match)
	return &Objects{Mutating: mp, MutatingBinding: mb, Validating: vp, ValidatingBinding: vb, ExecForm: ep, ExecFormBinding: eb,
		WorkloadValidating: wp, WorkloadValidatingBinding: wb}, nil
}

// matchConditions skip mirror pods: they reflect static pod files on a node,
// so a change made here would not be what the kubelet runs. (The webhook
// skips them in its handler, registration.IsMirrorPod; a policy's CEL runs
// on the pod anyway, so here a condition costs nothing more.)
func matchConditions() []admissionregistrationv1.MatchCondition {
	return []admissionregistrationv1.MatchCondition{{
		Name:       "not-a-mirror-pod",
		Expression: "!has(object.metadata.annotations) || !(" + lit(corev1.MirrorPodAnnotationKey) + " in object.metadata.annotations)",
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
	return toYAML(o.Mutating, o.MutatingBinding, o.Validating, o.ValidatingBinding, o.ExecForm, o.ExecFormBinding, o.WorkloadValidating, o.WorkloadValidatingBinding)
}

// PoliciesYAML renders the four policies with a placeholder (@KEY@) for
// each setting and @config@ for AnnotationConfig: the chart's
// files/policy.yaml, which its template fills from the values (Helm cannot
// run this generator) and test/chart compares with Generate.
func PoliciesYAML() ([]byte, error) {
	s := Settings{}
	for _, k := range SettingKeys {
		s[k] = placeholder(k)
	}
	objs, err := build(s, Options{})
	if err != nil {
		return nil, err
	}
	objs.Mutating.Annotations[AnnotationConfig] = placeholder("config")
	return toYAML(objs.Mutating, objs.Validating, objs.ExecForm, objs.WorkloadValidating)
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
