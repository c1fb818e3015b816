// Package policy declares podgrace's public names (labels and annotations),
// the cluster configuration, and resolves them into a typed policy for each
// container of a pod, following the precedence of docs/design.md §3:
//
//	per-container pod annotation > pod annotation > namespace annotation > cluster config
//
// Every key is declared exactly once, in this file: adding one means a
// constant and an entry in Keys here, its parser (parse.go), the code that
// reads it, and a golden pair.
package policy

import "strings"

// Prefix is the domain every podgrace key lives under.
const Prefix = "podgrace.dev"

const (
	// LabelInject opts a namespace in (`enabled`) or out (`disabled`), and opts
	// a single pod out (`disabled`). It is read by the API server through the
	// webhook's namespaceSelector and objectSelector, so podgrace is not even
	// called for pods that are not opted in.
	LabelInject = Prefix + "/inject"

	// AnnotationPreStopSleep sets the preStop sleep: `auto` (sized from the
	// pod's terminationGracePeriodSeconds), a duration (`15s`, `1m30s`, `20`
	// meaning seconds) or `off`.
	AnnotationPreStopSleep = Prefix + "/prestop-sleep"

	// AnnotationExecForm turns the shell-form to exec-form rewrite `on` or `off`.
	AnnotationExecForm = Prefix + "/exec-form"

	// AnnotationExtendGrace says whether terminationGracePeriodSeconds may be
	// raised so that the sleep plus the shutdown budget fits (`true`/`false`).
	AnnotationExtendGrace = Prefix + "/extend-grace"

	// AnnotationContainers limits podgrace to the named containers (a comma
	// separated list of container names).
	AnnotationContainers = Prefix + "/containers"

	// AnnotationStatus is written by podgrace: a JSON record of what was
	// applied to each container, with the grace period before and after. Its
	// presence makes a second pass (reinvocation, `podgrace inject` of an
	// already injected manifest) a no-op for the containers it lists.
	AnnotationStatus = Prefix + "/status"
)

// Keys of other projects that podgrace reads (never writes): the drain a pod
// declares for its mesh proxy replaces sidecarShutdownBudget (docs/design.md §4).
const (
	// AnnotationIstioProxyConfig is Istio's per-pod ProxyConfig override, a
	// YAML or JSON document; podgrace reads its terminationDrainDuration.
	AnnotationIstioProxyConfig = "proxy.istio.io/config"
	// AnnotationLinkerdWaitBeforeExit is Linkerd's proxy-wait-before-exit-seconds.
	AnnotationLinkerdWaitBeforeExit = "config.alpha.linkerd.io/proxy-wait-before-exit-seconds"
)

// Values of LabelInject.
const (
	InjectEnabled  = "enabled"
	InjectDisabled = "disabled"
)

// Values of the prestop-sleep and exec-form annotations.
const (
	SleepAuto = "auto"
	SleepOff  = "off"
	SwitchOn  = "on"
	SwitchOff = "off"
)

// ContainerAnnotation returns the per-container form of a pod annotation,
// `<container>.podgrace.dev/<name>`. Container names are DNS labels, so the
// result is a valid annotation key prefix (a DNS subdomain).
func ContainerAnnotation(container, key string) string {
	return container + "." + key
}

// Level is where a key is read; a key may be valid at several.
type Level uint8

const (
	// OnNamespace is a label or annotation of the pod's namespace.
	OnNamespace Level = 1 << iota
	// OnPod is a label or annotation of the pod.
	OnPod
	// PerContainer is a pod annotation `<container>.podgrace.dev/<name>`.
	PerContainer
)

// Key declares one public name: where it is valid, what it takes, what it
// means. Keys is the only list; unknown-key warnings, the README's table and
// the tests derive from it.
type Key struct {
	Name string
	// Label is true for a label, false for an annotation.
	Label bool
	// Levels are where the key is read (or, for Written keys, written).
	Levels Level
	// Written keys are set by podgrace, not by users.
	Written bool
	Values  string
	// Example is a valid value that differs from the default (the tests
	// set it at every level and expect an effect exactly where it is valid).
	Example string
	Doc     string
	// Config is the cluster config field whose value applies where the key
	// is not set ("" when none does); Default says what applies otherwise.
	Config  string
	Default string
}

// Keys lists every public name in the order the README shows them.
var Keys = []Key{
	{Name: LabelInject, Label: true, Levels: OnNamespace, Values: "`enabled` / `disabled`", Example: InjectEnabled,
		Doc: "Opt a namespace in (default install mode: only labeled namespaces); `disabled` opts it out in cluster-wide mode.", Default: "the chart's `namespaceSelector` decides"},
	{Name: LabelInject, Label: true, Levels: OnPod, Values: "`disabled`", Example: InjectDisabled,
		Doc: "Skip this pod. It is the webhook's objectSelector, so the API server does not even call podgrace.", Default: "the pod is handled"},
	{Name: AnnotationPreStopSleep, Levels: OnNamespace | OnPod | PerContainer, Values: "`auto`, a duration (`15s`, `1m30s`, `20` = seconds), `off`", Example: "20s",
		Doc: "The preStop sleep; `auto` sizes it from terminationGracePeriodSeconds.", Config: "preStopSleep"},
	{Name: AnnotationExecForm, Levels: OnNamespace | OnPod | PerContainer, Values: "`on`, `off`", Example: SwitchOff,
		Doc: "Rewrite shell-form commands into exec form.", Config: "execForm"},
	{Name: AnnotationExtendGrace, Levels: OnNamespace | OnPod, Values: "`true`, `false`", Example: "false",
		Doc: "May terminationGracePeriodSeconds be raised so that sleep + shutdown budget fits.", Config: "extendGrace"},
	{Name: AnnotationContainers, Levels: OnPod, Values: "comma list of container names", Example: "app",
		Doc: "Act on these containers only.", Default: "all containers"},
	{Name: AnnotationStatus, Levels: OnPod, Written: true, Values: "JSON", Example: `{"v":1}`,
		Doc: "What was applied, per container (sidecars with their role), with the grace period before and after and a format version `v`; makes a second pass a no-op.", Default: "written by podgrace"},
}

// annotationKey returns the annotation named name, if Keys declares one.
func annotationKey(name string) (Key, bool) {
	for _, k := range Keys {
		if !k.Label && k.Name == name {
			return k, true
		}
	}
	return Key{}, false
}

// where describes the levels of k for the reference table.
func (k Key) where() string {
	var on []string
	if k.Levels&OnPod != 0 {
		on = append(on, "Pod")
	}
	if k.Levels&OnNamespace != 0 {
		on = append(on, "Namespace")
	}
	kind := " annotation"
	if k.Label {
		kind = " label"
	}
	s := strings.Join(on, " or ") + kind
	if k.Written {
		s += ", written by podgrace"
	}
	return s
}

// ReferenceTable renders Keys as the Markdown table the README embeds: one
// row per key, then one for each per-container form.
func ReferenceTable() string {
	var b strings.Builder
	b.WriteString("| key | where | values | meaning |\n|---|---|---|---|\n")
	row := func(name, where, values, doc string) {
		b.WriteString("| `" + name + "` | " + where + " | " + values + " | " + doc + " |\n")
	}
	for _, k := range Keys {
		if k.Levels&(OnPod|OnNamespace) != 0 {
			row(k.Name, k.where(), k.Values, k.Doc)
		}
	}
	for _, k := range Keys {
		if k.Levels&PerContainer != 0 {
			row(ContainerAnnotation("<container>", k.Name), "Pod annotation", "as `"+k.Name+"`", "Per-container override of `"+k.Name+"`.")
		}
	}
	return b.String()
}
