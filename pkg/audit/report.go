// Package audit reports, per workload, what podgrace does or would do and
// what it cannot fix (docs/design.md §9): whether the webhook serves the
// workload, the mutation of its pod template (the same core as the webhook
// and `podgrace inject`), on a live cluster whether its running pods carry
// podgrace's status, and the termination risks it can see. It only reads.
package audit

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/inject"
)

// The report's schema identity. The schema (docs/operate/audit.md) changes only with
// a new version: a field is never renamed or given another meaning in v1alpha1.
const (
	APIVersion = "audit.podgrace.dev/v1alpha1"
	Kind       = "AuditReport"
)

// Report is the output of one audit.
type Report struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Source is "cluster" or "manifests".
	Source string `json:"source"`
	// Webhooks names the webhook configurations whose selectors decided
	// "served" (live), or "values" (manifests with --values).
	Webhooks  []string   `json:"webhooks,omitempty"`
	Workloads []Workload `json:"workloads"`
	// Errors are failures not tied to one workload: a list that was
	// forbidden, a document that is not valid YAML. The scan goes on.
	Errors  []ScanError `json:"errors,omitempty"`
	Summary Summary     `json:"summary"`
}

// Served says whether podgrace's webhook is called for a workload's pods.
type Served string

// Values of Served.
const (
	ServedYes Served = "yes"
	ServedNo  Served = "no"
	// ServedUnknown: the selectors could not be evaluated (namespace
	// unreadable, a matchCondition outside what the audit evaluates).
	ServedUnknown Served = "unknown"
	// ServedAssumed: manifests without --values are audited as if served,
	// as `podgrace inject` treats them.
	ServedAssumed Served = "assumed"
)

// Workload is one audited workload.
type Workload struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	// Document is the manifest document (from 1) it came from.
	Document int    `json:"document,omitempty"`
	Served   Served `json:"served"`
	// ServedReason says why not, or by which configuration.
	ServedReason string `json:"servedReason,omitempty"`
	// Changes are what podgrace does to a pod created from the template now,
	// in the words of the webhook's warn mode.
	Changes []string `json:"changes"`
	// Mutation is the core's status record for the template.
	Mutation *Mutation `json:"mutation,omitempty"`
	// Pods summarizes the workload's pods (live clusters only).
	Pods  *Pods  `json:"pods,omitempty"`
	Risks []Risk `json:"risks"`
	// Warnings are the core's warnings for the template.
	Warnings []string `json:"warnings,omitempty"`
	Errors   []string `json:"errors,omitempty"`
}

// Mutation is the status record the core computed for a pod template.
type Mutation struct {
	GraceBefore int64                    `json:"graceBefore"`
	GraceAfter  int64                    `json:"graceAfter"`
	Containers  []inject.ContainerReport `json:"containers"`
	// Denied is the strict-mode denial the template's pods would get.
	Denied string `json:"denied,omitempty"`
}

// Pods summarizes the pods of a workload that have not terminated.
type Pods struct {
	Total int `json:"total"`
	// Mutated carry podgrace's status annotation.
	Mutated int `json:"mutated"`
	// Unmutated do not: created before the namespace was served, while
	// podgrace was unreachable (failurePolicy Ignore), or not served at all.
	Unmutated int `json:"unmutated"`
	// WouldChange is how many podgrace would change if they were created now.
	WouldChange int `json:"wouldChange"`
	// StatusVersions counts the status records by format version ("0": a
	// record from before the format carried a version).
	StatusVersions map[string]int `json:"statusVersions,omitempty"`
	// UnmutatedPods lists the unmutated pods, oldest first.
	UnmutatedPods []PodRef `json:"unmutatedPods,omitempty"`
}

// PodRef names a pod and when it was created (the API cannot say why it
// escaped the mutation; its age against the opt-in or an outage can).
type PodRef struct {
	Name        string      `json:"name"`
	Created     metav1.Time `json:"created"`
	WouldChange bool        `json:"wouldChange"`
}

// Risk types.
const (
	RiskShellPID1      = "shell-pid1"
	RiskNoPreStop      = "no-prestop-sleep"
	RiskGraceTooShort  = "grace-too-short"
	RiskNoReadiness    = "no-readiness-probe"
	riskImageUnchecked = "image-not-inspected"
)

// Risk is a termination risk seen in the pod template as stored.
type Risk struct {
	Type      string `json:"type"`
	Container string `json:"container,omitempty"`
	Message   string `json:"message"`
	// FixedByPodgrace: podgrace's mutation removes it from pods created now.
	FixedByPodgrace bool `json:"fixedByPodgrace"`
	// Remains: pods created now keep it (not fixed, or the workload is not served).
	Remains bool `json:"remains"`
}

// ScanError is a failure of part of the scan.
type ScanError struct {
	Namespace string `json:"namespace,omitempty"`
	Resource  string `json:"resource,omitempty"`
	Document  int    `json:"document,omitempty"`
	Message   string `json:"message"`
}

// Summary counts what --fail-on acts on.
type Summary struct {
	Workloads int `json:"workloads"`
	Served    int `json:"served"`
	// WithRisks is the number of workloads with a risk that remains.
	WithRisks int `json:"withRisks"`
	// UnmutatedPods is the number of unmutated pods of served workloads.
	UnmutatedPods int `json:"unmutatedPods"`
	Errors        int `json:"errors"`
}

func (r *Report) summarize() {
	s := Summary{Workloads: len(r.Workloads), Errors: len(r.Errors)}
	for i := range r.Workloads {
		w := &r.Workloads[i]
		served := w.Served == ServedYes || w.Served == ServedAssumed
		if served {
			s.Served++
		}
		for j := range w.Risks {
			if w.Risks[j].Remains {
				s.WithRisks++
				break
			}
		}
		if w.Pods != nil && served {
			s.UnmutatedPods += w.Pods.Unmutated
		}
		s.Errors += len(w.Errors)
	}
	r.Summary = s
}
