// Package policy declares podgrace's public names (labels and annotations),
// the cluster configuration, and resolves them into a typed policy for each
// container of a pod, following the precedence of DESIGN §3:
//
//	per-container pod annotation > pod annotation > namespace annotation > cluster config
//
// Every key is declared exactly once, in this file; the README's reference
// table is generated from Keys.
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

// Key documents one public name; Keys feeds the README's reference table.
type Key struct {
	Name   string
	Where  string
	Values string
	Doc    string
}

// Keys lists every public name in the order the README shows them.
var Keys = []Key{
	{LabelInject, "Namespace label", "`enabled` / `disabled`", "Opt a namespace in (default install mode: only labeled namespaces); `disabled` opts it out in cluster-wide mode."},
	{LabelInject, "Pod label", "`disabled`", "Skip this pod. It is the webhook's objectSelector, so the API server does not even call podgrace."},
	{AnnotationPreStopSleep, "Pod or Namespace annotation", "`auto`, a duration (`15s`, `1m30s`, `20` = seconds), `off`", "The preStop sleep; `auto` sizes it from terminationGracePeriodSeconds."},
	{AnnotationExecForm, "Pod or Namespace annotation", "`on`, `off`", "Rewrite shell-form commands into exec form."},
	{AnnotationExtendGrace, "Pod or Namespace annotation", "`true`, `false`", "May terminationGracePeriodSeconds be raised so that sleep + shutdown budget fits."},
	{AnnotationContainers, "Pod annotation", "comma list of container names", "Act on these containers only."},
	{ContainerAnnotation("<container>", AnnotationPreStopSleep), "Pod annotation", "as `" + AnnotationPreStopSleep + "`", "Per-container override of the sleep."},
	{ContainerAnnotation("<container>", AnnotationExecForm), "Pod annotation", "as `" + AnnotationExecForm + "`", "Per-container override of the exec-form rewrite."},
	{AnnotationStatus, "Pod annotation, written by podgrace", "JSON", "What was applied, per container (sidecars with their role), with the grace period before and after and a format version `v`; makes a second pass a no-op."},
}

// ReferenceTable renders Keys as the Markdown table the README embeds.
func ReferenceTable() string {
	var b strings.Builder
	b.WriteString("| key | where | values | meaning |\n|---|---|---|---|\n")
	for _, k := range Keys {
		b.WriteString("| `" + k.Name + "` | " + k.Where + " | " + k.Values + " | " + k.Doc + " |\n")
	}
	return b.String()
}
