package inject

import (
	"encoding/json"
)

// Status is the content of the podgrace.dev/status annotation: what podgrace
// applied to each container and the grace period before and after. It is the
// record that makes a second pass a no-op: a container it lists is never
// touched again, so reinvocation only handles containers added since.
type Status struct {
	// GraceBefore is the grace period podgrace first saw (30 when unset).
	GraceBefore int64 `json:"graceBefore"`
	// GraceAfter is the grace period after podgrace.
	GraceAfter int64 `json:"graceAfter"`
	// Containers lists every container podgrace considered, in pod order
	// (native sidecars first, as in the pod).
	Containers []ContainerReport `json:"containers"`
}

// ContainerReport says what happened to one container and why anything was
// skipped. Skip reasons are stable kebab-case strings.
type ContainerReport struct {
	Name string `json:"name"`
	// Init marks a native sidecar (an init container with restartPolicy Always).
	Init bool `json:"init,omitempty"`
	// Skipped is set when podgrace left the whole container alone.
	Skipped string `json:"skipped,omitempty"`
	// PreStopSleep is the sleep added, in seconds, and Hook how (sleep or exec).
	PreStopSleep int64  `json:"preStopSleep,omitempty"`
	Hook         string `json:"hook,omitempty"`
	// PreStopSkipped says why no sleep was added.
	PreStopSkipped string `json:"preStopSkipped,omitempty"`
	// ExecForm is what the rewrite did: "exec" or "drop-shell".
	ExecForm string `json:"execForm,omitempty"`
	// ExecFormSkipped says why the command was left as it was.
	ExecFormSkipped string `json:"execFormSkipped,omitempty"`
	// Image is the digest-pinned image reference, when podgrace pinned it.
	Image string `json:"image,omitempty"`
}

// Reasons a preStop sleep or a rewrite was not applied (besides the
// execform.Reason values).
const (
	SkipOff               = "off"
	SkipExistingPreStop   = "existing-prestop"
	SkipGraceZero         = "grace-period-zero"
	SkipGraceTooShort     = "grace-too-short"
	SkipNoCommand         = "no-command"
	SkipImageNotInspected = "image-not-inspected"
	SkipImageLookup       = "image-lookup-failed"
)

// parseStatus reads a status annotation. A missing or unreadable one is
// treated as "nothing applied yet".
func parseStatus(raw string) (Status, bool) {
	if raw == "" {
		return Status{}, false
	}
	var s Status
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		return Status{}, false
	}
	return s, true
}

func (s *Status) has(name string, init bool) bool {
	for i := range s.Containers {
		if s.Containers[i].Name == name && s.Containers[i].Init == init {
			return true
		}
	}
	return false
}
