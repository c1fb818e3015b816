package audit

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"

	"github.com/podgrace/podgrace/pkg/execform"
	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// Env is what the analysis of a template needs besides the template.
type Env struct {
	Config *policy.Config
	// HookAction is sleep or exec.
	HookAction policy.HookAction
	// Images reads image configs (--inspect-images); nil leaves argvs that
	// come from an image unchecked.
	Images inject.ImageLookup
	// Path configures the check of S and T against the traffic path (paths.go).
	Path PathOptions
}

// outcome is what the core did to a pod template.
type outcome struct {
	after    *corev1.Pod // nil: unchanged
	status   inject.Status
	changed  bool
	warnings []string
	denied   string
}

// mutate runs the core on a template, as the webhook would on its pods.
func mutate(ctx context.Context, env *Env, tmpl *corev1.Pod, nsAnnotations map[string]string) outcome {
	res := inject.Pod(ctx, inject.PodInput{
		Pod: tmpl, NamespaceAnnotations: nsAnnotations, Config: env.Config, HookAction: env.HookAction, Images: env.Images,
	})
	out := outcome{status: res.Status, changed: res.Changed(), warnings: inject.Messages(res.Warnings), denied: res.Denied}
	if res.Denied == "" && res.Changed() {
		out.after = res.Pod
	}
	return out
}

// analyze fills w's mutation, changes and risks from a pod template (as a
// pod) and what the core made of it. selected says whether a Service
// selects its pods.
func analyze(ctx context.Context, env *Env, w *Workload, tmpl *corev1.Pod, out outcome, selected bool) {
	w.Warnings = append(w.Warnings, out.warnings...)
	var before *inject.Status
	if prev := inject.ReadPrevious(tmpl); prev.Valid {
		before = &prev.Status
	}
	w.Mutation = &Mutation{GraceBefore: out.status.GraceBefore, GraceAfter: out.status.GraceAfter, Containers: out.status.Containers, Denied: out.denied}
	w.Changes = []string{}
	if out.denied == "" && out.changed {
		w.Changes = inject.Describe(before, &out.status)
	}

	images := imageConfigs(ctx, env, tmpl)
	after := tmpl
	if out.after != nil {
		after = out.after
	}
	was := risksOf(tmpl, env.Config, images, selected)
	now := risksOf(after, env.Config, images, selected)
	served := w.Served == ServedYes || w.Served == ServedAssumed
	w.Risks = []Risk{}
	for _, r := range was {
		if r.Type == riskImageUnchecked {
			w.Warnings = append(w.Warnings, r.Message)
			continue
		}
		r.FixedByPodgrace = !slices.ContainsFunc(now, func(n Risk) bool { return n.Type == r.Type && n.Container == r.Container })
		r.Remains = !r.FixedByPodgrace || !served
		w.Risks = append(w.Risks, r)
	}
}

// imageConfigs reads, with --inspect-images, the configs of the images whose
// argv the pod does not set.
func imageConfigs(ctx context.Context, env *Env, pod *corev1.Pod) map[string]inject.ImageInfo {
	if env.Images == nil {
		return nil
	}
	var need []string
	for _, c := range allContainers(pod) {
		if len(c.Command) == 0 && !slices.Contains(need, c.Image) {
			need = append(need, c.Image)
		}
	}
	if len(need) == 0 {
		return nil
	}
	return env.Images(ctx, pod, need)
}

func allContainers(pod *corev1.Pod) []*corev1.Container {
	var out []*corev1.Container
	for i := range pod.Spec.InitContainers {
		if policy.IsNativeSidecar(&pod.Spec.InitContainers[i]) {
			out = append(out, &pod.Spec.InitContainers[i])
		}
	}
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}

// risksOf lists the termination risks of a pod as it would run.
func risksOf(pod *corev1.Pod, cfg *policy.Config, images map[string]inject.ImageInfo, selected bool) []Risk {
	var out []Risk
	grace := inject.DefaultGracePeriod
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	budget := int64(cfg.ShutdownBudget.Seconds())
	for _, c := range allContainers(pod) {
		if cfg.IsSidecar(c.Name) {
			continue
		}
		if r, ok := shellRisk(c, images); ok {
			out = append(out, r)
		}
		if policy.IsNativeSidecar(c) {
			continue
		}
		sleep, hasPreStop := preStopSleep(c)
		if selected && sleep == 0 && !hasPreStop && grace > 0 {
			out = append(out, Risk{Type: RiskNoPreStop, Container: c.Name,
				Message: c.Name + ": a Service selects the pods and there is no preStop hook: requests still routed to it fail after SIGTERM"})
		}
		if sleep > 0 && grace < sleep+budget {
			out = append(out, Risk{Type: RiskGraceTooShort, Container: c.Name,
				Message: fmt.Sprintf("%s: grace period %ds < preStop sleep %ds + shutdown budget %ds: SIGKILL before the app drains", c.Name, grace, sleep, budget)})
		}
		if selected && c.ReadinessProbe == nil {
			out = append(out, Risk{Type: RiskNoReadiness, Container: c.Name,
				Message: c.Name + ": a Service selects the pods and there is no readiness probe: traffic arrives before the app listens"})
		}
	}
	return out
}

// preStopSleep is the sleep of a container's preStop hook (the native action
// or exec sleep N) and whether it has a hook at all.
func preStopSleep(c *corev1.Container) (int64, bool) {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return 0, false
	}
	h := c.Lifecycle.PreStop
	switch {
	case h.Sleep != nil:
		return h.Sleep.Seconds, true
	case h.Exec != nil && len(h.Exec.Command) == 2 && (h.Exec.Command[0] == "sleep" || h.Exec.Command[0] == "/bin/sleep"):
		if n, err := strconv.ParseInt(h.Exec.Command[1], 10, 64); err == nil {
			return n, true
		}
	}
	return 0, true
}

// shellRisk reports a shell that will stay PID 1: a shell wrapper whose
// script does not end in exec (and sets no trap, which handles signals on
// purpose).
func shellRisk(c *corev1.Container, images map[string]inject.ImageInfo) (Risk, bool) {
	in := execform.Input{Command: c.Command, Args: c.Args, Defined: func(string) bool { return true }}
	if len(c.Command) == 0 {
		info, ok := images[c.Image]
		switch {
		case !ok:
			return Risk{Type: riskImageUnchecked, Container: c.Name,
				Message: c.Name + ": its command comes from image " + c.Image + ", not inspected (--inspect-images)"}, images != nil
		case info.Err != nil:
			return Risk{Type: riskImageUnchecked, Container: c.Name,
				Message: fmt.Sprintf("%s: image config of %s unreadable: %v", c.Name, c.Image, info.Err)}, true
		}
		in.Command = escape(info.Entrypoint)
		if len(c.Args) == 0 {
			in.Args = escape(info.Cmd)
		}
	}
	out := execform.Rewrite(in)
	switch out.Reason {
	case execform.ReasonNotShell, execform.ReasonAlreadyExec, execform.ReasonTrap, execform.ReasonEmpty:
		return Risk{}, false
	}
	detail := out.Detail
	if out.Kind != execform.KindNone || detail == "" {
		detail = "the script does not exec its last command"
	}
	return Risk{Type: RiskShellPID1, Container: c.Name,
		Message: c.Name + ": a shell is PID 1 and SIGTERM does not reach the app (" + detail + ")"}, true
}

func escape(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = execform.EscapeForKubelet(s)
	}
	return out
}

// podSummary adds a pod to a workload's summary.
func podSummary(ctx context.Context, env *Env, p *Pods, pod *corev1.Pod, nsAnnotations map[string]string) {
	p.Total++
	res := inject.Pod(ctx, inject.PodInput{Pod: pod, NamespaceAnnotations: nsAnnotations, Config: env.Config, HookAction: env.HookAction, Images: env.Images})
	would := res.Denied == "" && res.Changed()
	if would {
		p.WouldChange++
	}
	prev := inject.ReadPrevious(pod)
	if !prev.Valid {
		p.Unmutated++
		p.UnmutatedPods = append(p.UnmutatedPods, PodRef{Name: pod.Name, Created: pod.CreationTimestamp, WouldChange: would})
		return
	}
	p.Mutated++
	if p.StatusVersions == nil {
		p.StatusVersions = map[string]int{}
	}
	p.StatusVersions[strconv.Itoa(prev.Status.V)]++
}

func sortUnmutated(p *Pods) {
	slices.SortStableFunc(p.UnmutatedPods, func(a, b PodRef) int { return a.Created.Compare(b.Created.Time) })
}
