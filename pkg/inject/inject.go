// Package inject is podgrace's pure mutation core: a pod and its resolved
// policy in, the mutated pod, a JSON patch of exactly podgrace's changes and a
// report of what was done and why anything was skipped out. It does no I/O:
// the webhook and `podgrace inject` fetch what it needs (namespace
// annotations, image configs) and pass it in, so both run the same code.
package inject

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"

	"github.com/podgrace/podgrace/pkg/policy"
)

// ImageInfo is what the caller learned of a container image whose config
// provides the argv (the container has no command).
type ImageInfo struct {
	Entrypoint, Cmd []string
	// Pinned is the image reference pinned to the inspected digest, used
	// when the config's PinDigest is set and the command was rewritten.
	Pinned string
	// Err is why the config could not be read; the container is then left
	// alone with a warning.
	Err error
}

// Input is everything the core needs.
type Input struct {
	Pod    *corev1.Pod
	Policy *policy.PodPolicy
	Config *policy.Config
	// HookAction is HookSleep or HookExec (HookAuto counts as HookSleep).
	HookAction policy.HookAction
	// Images holds the inspected image configs, keyed by the container's
	// image string; ImagesNeeded says which are wanted.
	Images map[string]ImageInfo
	// Previous is the pod's status annotation as read by ReadPrevious; nil
	// means Mutate reads it itself.
	Previous *Previous
}

// Result is what the core decided.
type Result struct {
	// Pod is the mutated pod. It shares unchanged parts with the input pod,
	// which is never modified.
	Pod *corev1.Pod
	// Patch holds only podgrace's changes, as JSON patch operations against
	// the input pod.
	Patch []PatchOp
	// Status is the record written to the status annotation.
	Status Status
	// Warnings are short admission warnings, each with a code and a message
	// starting with "podgrace:".
	Warnings []Warning
	// Denied is set in strict mode when a setting is invalid: the pod must be
	// rejected with this message and nothing else applies.
	Denied string
	// Previous is how many of Status.Containers earlier passes wrote: the
	// rest are this pass's.
	Previous int
	// Err is set by Pod when its context ended before the mutation was
	// decided: the caller answers with a failure (the webhook's failurePolicy
	// then applies), never with a partial result.
	Err error
}

// Changed reports whether the pod was changed.
func (r *Result) Changed() bool { return len(r.Patch) > 0 }

// MaxWarningLen bounds a warning: the API server truncates long ones anyway,
// and a warning is read in a terminal.
const MaxWarningLen = 120

// ImagesNeeded lists the images whose configs the rewrite needs: those of
// selected containers with exec-form on, no command and no status record yet
// (listed sidecars are never rewritten).
func ImagesNeeded(pod *corev1.Pod, pp *policy.PodPolicy, prev *Previous) []string {
	var out []string
	seen := map[string]bool{}
	listed := prev.Status.lists()
	visit := func(_ int, c *corev1.Container, cp *policy.ContainerPolicy) {
		if cp.Skip != "" || cp.Listed || !cp.ExecForm.Value || len(c.Command) > 0 || listed(c.Name, cp.Init) || seen[c.Image] {
			return
		}
		seen[c.Image] = true
		out = append(out, c.Image)
	}
	forEach(pod, pp, visit)
	return out
}

// target is a container this pass acts on: its index in spec.containers or,
// for a native sidecar, in spec.initContainers.
type target struct {
	idx int
	c   *corev1.Container
	cp  *policy.ContainerPolicy
}

// forEach visits the native sidecars and the app containers, in pod order,
// with their policies (Resolve lists them in the same order).
func forEach(pod *corev1.Pod, pp *policy.PodPolicy, visit func(idx int, c *corev1.Container, cp *policy.ContainerPolicy)) {
	j := 0
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if policy.IsNativeSidecar(c) && j < len(pp.InitContainers) {
			visit(i, c, &pp.InitContainers[j])
			j++
		}
	}
	for i := range pod.Spec.Containers {
		if i < len(pp.Containers) {
			visit(i, &pod.Spec.Containers[i], &pp.Containers[i])
		}
	}
}

// mutation accumulates the edits of one pass.
type mutation struct {
	in    *Input
	pod   *corev1.Pod
	patch []PatchOp
	warn  []Warning
}

func (m *mutation) add(path string, v any) {
	m.patch = append(m.patch, PatchOp{Operation: "add", Path: path, Value: v})
}

func (m *mutation) warnf(code WarningCode, format string, args ...any) {
	m.warn = append(m.warn, Warning{Code: code, Message: Truncate("podgrace: " + fmt.Sprintf(format, args...))})
}

// Mutate applies podgrace's policy to a pod: the preStop sleeps of app
// containers and listed sidecars and the grace period they need
// (docs/design.md §2, §4), and the exec-form rewrite (§5), for every
// selected container that the status annotation does not list yet.
func Mutate(in Input) Result {
	pp := in.Policy
	var res Result
	for _, p := range pp.Problems {
		res.Warnings = append(res.Warnings, Warning{Code: WarnInvalidSetting, Message: Truncate(p.String())})
	}
	if in.Config.Strict && len(pp.Problems) > 0 {
		res.Denied = denial(pp.Problems)
		res.Pod = in.Pod
		return res
	}

	// Copy on write: a shallow copy of the pod with fresh container slices;
	// each edit replaces a field of a copied container, never shared data.
	pod := *in.Pod
	pod.Spec.Containers = slices.Clone(in.Pod.Spec.Containers)
	pod.Spec.InitContainers = slices.Clone(in.Pod.Spec.InitContainers)
	m := &mutation{in: &in, pod: &pod}

	prev := in.Previous
	if prev == nil {
		p := ReadPrevious(in.Pod)
		prev = &p
	}
	if prev.Present && !prev.Valid {
		m.warnf(WarnStatusReplaced, "%s is not podgrace's JSON; replaced", policy.AnnotationStatus)
	}
	grace := DefaultGracePeriod
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	st := Status{V: StatusVersion, GraceBefore: grace, GraceAfter: grace, Containers: slices.Clip(prev.Status.Containers)}
	if prev.Valid {
		st.GraceBefore = prev.Status.GraceBefore
	}
	res.Previous = len(prev.Status.Containers)

	// The containers this pass acts on: those the status does not list yet.
	var targets []target
	listed := prev.Status.lists()
	forEach(in.Pod, pp, func(idx int, c *corev1.Container, cp *policy.ContainerPolicy) {
		if listed(c.Name, cp.Init) {
			return
		}
		targets = append(targets, target{idx: idx, c: c, cp: cp})
	})
	reports := make([]ContainerReport, len(targets))
	for i, t := range targets {
		reports[i] = ContainerReport{Name: t.c.Name, Init: t.cp.Init, Role: string(t.cp.Role), Skipped: t.cp.Skip}
	}
	if g := m.placeSleeps(targets, reports, grace, &prev.Status); g != grace {
		pod.Spec.TerminationGracePeriodSeconds = &g
		m.add("/spec/terminationGracePeriodSeconds", g)
		st.GraceAfter = g
	}

	for i, t := range targets {
		switch {
		case t.cp.Skip != "":
		case t.cp.Listed:
			reports[i].ExecFormSkipped = SkipSidecar
		case !t.cp.ExecForm.Value:
			reports[i].ExecFormSkipped = SkipOff
		default:
			m.rewriteShellForm(t.idx, t.cp.Init, &reports[i])
		}
	}

	if len(m.patch) == 0 && len(reports) == 0 {
		res.Pod, res.Status, res.Warnings = in.Pod, prev.Status, append(res.Warnings, m.warn...)
		return res
	}
	st.Containers = append(st.Containers, reports...)
	m.setStatus(&st)
	res.Pod, res.Patch, res.Status = &pod, m.patch, st
	res.Warnings = append(res.Warnings, m.warn...)
	return res
}

// hook is the preStop action to use.
func (m *mutation) hook() policy.HookAction {
	if m.in.HookAction == policy.HookExec {
		return policy.HookExec
	}
	return policy.HookSleep
}

// injectPreStop adds the sleep to container i, which has no preStop hook.
func (m *mutation) injectPreStop(i int, s int64) {
	h := &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: s}}
	if m.hook() == policy.HookExec {
		h = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"sleep", strconv.FormatInt(s, 10)}}}
	}
	c := &m.pod.Spec.Containers[i]
	base := "/spec/containers/" + strconv.Itoa(i) + "/lifecycle"
	if c.Lifecycle == nil {
		c.Lifecycle = &corev1.Lifecycle{PreStop: h}
		m.add(base, c.Lifecycle)
		return
	}
	lc := *c.Lifecycle
	lc.PreStop = h
	c.Lifecycle = &lc
	m.add(base+"/preStop", h)
}

// setStatus writes the status annotation.
func (m *mutation) setStatus(st *Status) {
	b, _ := json.Marshal(st) // ints, bools and strings: cannot fail
	raw := string(b)
	ann := make(map[string]string, len(m.pod.Annotations)+1)
	for k, v := range m.pod.Annotations {
		ann[k] = v
	}
	ann[policy.AnnotationStatus] = raw
	if len(m.in.Pod.Annotations) == 0 {
		m.add("/metadata/annotations", map[string]string{policy.AnnotationStatus: raw})
	} else {
		m.add("/metadata/annotations/"+escapePointer(policy.AnnotationStatus), raw)
	}
	m.pod.Annotations = ann
}

// pointerEscaper escapes a JSON pointer token (RFC 6901). It is built once:
// a Replacer per admission showed in the profile (docs/records/benchmarks.md).
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// escapePointer escapes a JSON pointer token (RFC 6901).
func escapePointer(s string) string {
	return pointerEscaper.Replace(s)
}

// Truncate keeps a warning to MaxWarningLen bytes, cut on a rune boundary;
// every warning podgrace returns goes through it.
func Truncate(s string) string { return truncateLen(s, MaxWarningLen) }

// truncateLen keeps s to n bytes, cut on a rune boundary and marked with "…".
func truncateLen(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// MaxDenialLen bounds a strict-mode denial, which becomes the 403's message
// and a log line: a hostile annotation value of megabytes must not
// (issue 23, finding 8). Each problem is cut to maxProblemLen.
const MaxDenialLen = 1024

const maxProblemLen = 256

// denial is the strict-mode message for the problems, within MaxDenialLen.
func denial(problems []policy.Problem) string {
	const suffix = " (strict mode)"
	var b strings.Builder
	for i, p := range problems {
		msg := truncateLen(p.Denial(), maxProblemLen)
		if i > 0 {
			msg = "; " + msg
		}
		if b.Len()+len(msg)+len(suffix) > MaxDenialLen {
			fmt.Fprintf(&b, "; … %d more", len(problems)-i)
			break
		}
		b.WriteString(msg)
	}
	return b.String() + suffix
}

func removeOp(path string) PatchOp {
	return PatchOp{Operation: "remove", Path: path}
}
