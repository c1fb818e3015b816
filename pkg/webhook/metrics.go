package webhook

import (
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podgrace/podgrace/pkg/inject"
)

// podgrace's own counters, served on /metrics next to controller-runtime's
// webhook request metrics (controller_runtime_webhook_requests_total,
// _latency_seconds, _requests_in_flight, labeled webhook="/mutate-v1-pod").
// Labels are bounded sets: skip reasons and warning kinds are fixed strings,
// never pod or container names.
var (
	podsMutatedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "podgrace_pods_mutated_total",
		Help: "Pod CREATE requests answered with a patch (dry runs included).",
	})
	podsDeniedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "podgrace_pods_denied_total",
		Help: "Pod CREATE requests denied in strict mode for an invalid podgrace setting.",
	})
	containersSkippedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podgrace_containers_skipped_total",
		Help: "Containers podgrace left alone, by action (container, prestop, exec-form) and reason.",
	}, []string{"action", "reason"})
	warningsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podgrace_warnings_total",
		Help: "Admission warnings returned, by kind (invalid-setting, mutation, namespace-unavailable, not-handled).",
	}, []string{"kind"})
	notHandledTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podgrace_requests_not_handled_total",
		Help: "Requests answered without running the mutation: HTTP errors for malformed reviews, allowed-unchanged for reviews that are not a Pod CREATE and for mirror pods, panics.",
	}, []string{"reason"})
	warnModePodsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podgrace_warn_mode_pods_total",
		Help: "Pod CREATE requests answered in warn mode (enforcement: warn), by namespace and outcome (would-mutate, would-deny, unchanged); nothing was patched.",
	}, []string{"namespace", "outcome"})
	workloadChecksTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podgrace_workload_checks_total",
		Help: "Workload CREATE/UPDATE reviews (the validating workload webhook) by result: clean, warned, denied (strict mode), template-unchanged, not-handled.",
	}, []string{"result"})
	namespaceLookupsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podgrace_namespace_lookups_total",
		Help: "Namespace annotation lookups by source: cache, api (not cached yet, read from the API server) or failed.",
	}, []string{"source"})
)

// namespaceLookupsFromCache is the hot path's child, resolved once.
var namespaceLookupsFromCache = namespaceLookupsTotal.WithLabelValues("cache")

func init() {
	register(podsMutatedTotal, podsDeniedTotal, containersSkippedTotal,
		warningsTotal, notHandledTotal, namespaceLookupsTotal, warnModePodsTotal, workloadChecksTotal)
}

// registered lists, in registration order, every collector podgrace adds to
// controller-runtime's registry (served on /metrics).
var registered []prometheus.Collector

// register adds podgrace's collectors to controller-runtime's registry, and
// to the list Collectors returns.
func register(cs ...prometheus.Collector) {
	ctrlmetrics.Registry.MustRegister(cs...)
	registered = append(registered, cs...)
}

// Collectors returns every collector podgrace registers: docs/reference/
// metrics.md is generated from them (`make manifests`).
func Collectors() []prometheus.Collector { return slices.Clone(registered) }

// Kinds of warnings (podgrace_warnings_total).
const (
	warnInvalidSetting = "invalid-setting"
	warnMutation       = "mutation"
	warnNamespace      = "namespace-unavailable"
	warnNotHandled     = "not-handled"
)

// Outcomes of a warn-mode admission (podgrace_warn_mode_pods_total).
const (
	warnWouldMutate = "would-mutate"
	warnWouldDeny   = "would-deny"
	warnUnchanged   = "unchanged"
)

// Actions a container can be skipped for (podgrace_containers_skipped_total).
const (
	actionContainer = "container"
	actionPreStop   = "prestop"
	actionExecForm  = "exec-form"
)

// observe counts the outcome of one pass of the core.
func observe(res *inject.Result) {
	for _, w := range res.Warnings {
		warningsTotal.WithLabelValues(warningKind(w.Code)).Inc()
	}
	if res.Denied != "" {
		podsDeniedTotal.Inc()
		return
	}
	if res.Changed() {
		podsMutatedTotal.Inc()
	}
	// The status lists earlier passes first; count this pass's reports only.
	reports := res.Status.Containers
	if n := res.Previous; n <= len(reports) {
		reports = reports[n:]
	}
	for i := range reports {
		r := &reports[i]
		if r.Skipped != "" {
			containersSkippedTotal.WithLabelValues(actionContainer, r.Skipped).Inc()
			continue
		}
		if r.PreStopSkipped != "" {
			containersSkippedTotal.WithLabelValues(actionPreStop, r.PreStopSkipped).Inc()
		}
		if r.ExecFormSkipped != "" {
			containersSkippedTotal.WithLabelValues(actionExecForm, r.ExecFormSkipped).Inc()
		}
	}
}

// warningKind is the podgrace_warnings_total kind of a warning of the core,
// from its code: a setting's problem or something about the mutation.
func warningKind(c inject.WarningCode) string {
	if c == inject.WarnInvalidSetting {
		return warnInvalidSetting
	}
	return warnMutation
}

// Codes of the webhook's own warnings, besides the core's
// (inject.WarningCodes).
const (
	codeNamespaceUnavailable inject.WarningCode = "namespace-unavailable"
	codeWarnMode             inject.WarningCode = "warn-mode"
)

// namespaceWarning says that the namespace's annotations could not be read.
func namespaceWarning(namespace string) inject.Warning {
	return inject.Warning{Code: codeNamespaceUnavailable, Message: fmt.Sprintf("podgrace: annotations of namespace %q unavailable; namespace defaults not applied", namespace)}
}
