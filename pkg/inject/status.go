package inject

import (
	"encoding/json"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"

	"github.com/podgrace/podgrace/pkg/policy"
)

// StatusVersion is the format version written in every status annotation
// (`"v":1`), so that a reader can tell records of different podgrace
// versions and of the generated admission policy apart; records written
// before it was introduced read as 0.
const StatusVersion = 1

// Status is the content of the podgrace.dev/status annotation: what podgrace
// applied to each container and the grace period before and after. It is the
// record that makes a second pass a no-op: a container it lists is never
// touched again, so reinvocation only handles containers added since.
type Status struct {
	// V is the format version, StatusVersion when podgrace writes it.
	V int `json:"v"`
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
	// Role is "sidecar" for a listed sidecar, "native-sidecar" for a native
	// one; empty for an app container.
	Role string `json:"role,omitempty"`
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
	SkipOff             = "off"
	SkipExistingPreStop = "existing-prestop"
	SkipGraceZero       = "grace-period-zero"
	SkipGraceTooShort   = "grace-too-short"
	// SkipNoArgv: neither the container nor its image (when inspected) says
	// what to run. Distinct from execform.ReasonNoCommand ("no-command"), a
	// script whose last statement has no command word.
	SkipNoArgv            = "no-argv"
	SkipImageNotInspected = "image-not-inspected"
	SkipImageLookup       = "image-lookup-failed"
	// SkipRunToCompletion: a pod with restartPolicy Never or OnFailure gets
	// no sleep unless the pod or namespace sets a duration.
	SkipRunToCompletion = "run-to-completion"
	// SkipSidecar: a listed sidecar's command belongs to the mesh.
	SkipSidecar = "sidecar"
)

// Previous is the status annotation a pod arrived with, read once per
// admission and shared by ImagesNeeded and Mutate.
type Previous struct {
	Status Status
	// Present says the pod has the annotation, Valid that it is podgrace's
	// JSON. A missing or unreadable one means "nothing applied yet".
	Present, Valid bool
}

// ReadPrevious reads a pod's status annotation.
func ReadPrevious(pod *corev1.Pod) Previous {
	raw, ok := pod.Annotations[policy.AnnotationStatus]
	if !ok {
		return Previous{}
	}
	p := Previous{Present: true}
	if raw != "" && json.Unmarshal([]byte(raw), &p.Status) == nil {
		p.Valid = true
	} else {
		p.Status = Status{}
	}
	return p
}

// recordReads, when a test sets it, counts the status records lists reads:
// TestMutateLinear proves with it that a pass reads each record a bounded
// number of times, however many containers ask.
var recordReads *atomic.Int64

// listedMax is the number of records up to which lists scans them: a
// pod's own status holds a few, and a map would cost more than it saves.
const listedMax = 8

func listsNone(string, bool) bool { return false }

// lists returns a test of whether the status lists a container. Above
// listedMax records it indexes them once, so that a pass over a pod is
// linear however many records a (hostile) annotation holds: a scan per
// container made 20k containers against 200k records take seconds
// (issue 23, finding 3).
func (s *Status) lists() func(name string, init bool) bool {
	if len(s.Containers) == 0 { // a pod's first admission: no closure to allocate
		return listsNone
	}
	if len(s.Containers) <= listedMax {
		return func(name string, init bool) bool {
			if recordReads != nil {
				recordReads.Add(int64(len(s.Containers)))
			}
			for i := range s.Containers {
				if s.Containers[i].Name == name && s.Containers[i].Init == init {
					return true
				}
			}
			return false
		}
	}
	type key struct {
		name string
		init bool
	}
	set := make(map[key]struct{}, len(s.Containers))
	for i := range s.Containers {
		set[key{s.Containers[i].Name, s.Containers[i].Init}] = struct{}{}
	}
	if recordReads != nil {
		recordReads.Add(int64(len(s.Containers)))
	}
	return func(name string, init bool) bool {
		if recordReads != nil {
			recordReads.Add(1)
		}
		_, ok := set[key{name, init}]
		return ok
	}
}
