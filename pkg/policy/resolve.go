package policy

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Source names the level a setting was taken from.
type Source string

// The levels of the precedence, highest first.
const (
	SourceContainer Source = "container-annotation"
	SourcePod       Source = "pod-annotation"
	SourceNamespace Source = "namespace-annotation"
	SourceCluster   Source = "cluster-config"
)

// SkipNotSelected is why podgrace leaves a container alone that the
// containers annotation does not name.
const SkipNotSelected = "not-in-containers-annotation"

// Role is what a container is to podgrace (docs/design.md §2).
type Role string

// The roles; the status annotation records the sidecars' (the app's is "").
const (
	// RoleApp is a regular container not in the sidecar list: it gets the sleep.
	RoleApp Role = ""
	// RoleSidecar is a regular container named in the sidecar list: it gets
	// a sleep that outlives the app's, never the exec-form rewrite.
	RoleSidecar Role = "sidecar"
	// RoleNativeSidecar is an init container with restartPolicy Always: the
	// kubelet stops it after the app containers, so it needs no hook.
	RoleNativeSidecar Role = "native-sidecar"
)

// Problem is an invalid or unknown podgrace setting: a warning, or in strict
// mode the reason the pod is denied.
type Problem struct {
	Key   string
	Value string
	// Msg says what is wrong, e.g. `"abc" is not a duration, "auto" or "off"`.
	Msg string
	// Fallback is the value used instead ("" when nothing replaces it).
	Fallback string
}

// String is the warning text; it starts with "podgrace:" like every warning.
func (p Problem) String() string {
	s := p.Denial()
	if p.Fallback != "" {
		s += "; using " + p.Fallback
	}
	return s
}

// Denial is the text without the fallback, for strict mode, where nothing
// falls back.
func (p Problem) Denial() string {
	return "podgrace: " + p.Key + "=" + strconv.Quote(p.Value) + " " + p.Msg
}

// Setting is a resolved value and the level it came from.
type Setting[T any] struct {
	Value  T
	Source Source
}

// ContainerPolicy is the resolved policy of one container.
type ContainerPolicy struct {
	Name string
	// Init is true for a native sidecar (an init container with
	// restartPolicy Always): it takes part in the exec-form rewrite only.
	Init bool
	Role Role
	// Listed is true when the name is in the sidecar list (a native sidecar
	// can be listed too): such a container is never exec-form rewritten.
	Listed bool
	// Skip is why podgrace leaves the container alone entirely ("" = acts on it).
	Skip     string
	Sleep    Setting[Sleep]
	ExecForm Setting[bool]
}

// PodPolicy is the resolved policy of a pod.
type PodPolicy struct {
	ExtendGrace Setting[bool]
	// RunToCompletion is set for restartPolicy Never or OnFailure: its app
	// containers get only an explicit pod or namespace duration as sleep,
	// unless the config's SleepRunToCompletion says otherwise.
	RunToCompletion bool
	// Containers holds spec.containers, in order.
	Containers []ContainerPolicy
	// InitContainers holds the native sidecars among spec.initContainers, in
	// order; plain init containers are never touched and are not listed.
	InitContainers []ContainerPolicy
	// Problems lists every invalid or unknown setting, sorted by key.
	Problems []Problem
}

// level is one layer of annotations, lowest precedence first in a stack.
type level struct {
	annotations map[string]string
	key         string
	source      Source
}

// resolveSetting applies the precedence bottom-up: each level that holds a
// valid value overrides the one below; an invalid value is reported with the
// value of the level below as its fallback, so "the next level applies".
func resolveSetting[T any](def Setting[T], levels []level, parse func(string) (T, error), format func(T) string, problems *[]Problem) Setting[T] {
	cur := def
	for _, l := range levels {
		raw, ok := l.annotations[l.key]
		if !ok {
			continue
		}
		v, err := parse(raw)
		if err != nil {
			*problems = append(*problems, Problem{Key: l.key, Value: raw, Msg: errMsg(err, raw), Fallback: format(cur.Value)})
			continue
		}
		cur = Setting[T]{Value: v, Source: l.source}
	}
	return cur
}

// errMsg strips the quoted value from a parser error: Problem.String prints it once already.
func errMsg(err error, raw string) string {
	return strings.TrimPrefix(err.Error(), strconv.Quote(raw)+" ")
}

func formatSwitch(b bool) string {
	if b {
		return SwitchOn
	}
	return SwitchOff
}

// Resolve turns the cluster config, the namespace's annotations and the pod's
// annotations into a policy for every container of the pod. It never fails:
// an invalid value falls back to the next level and is listed in Problems.
func Resolve(cfg *Config, nsAnnotations map[string]string, pod *corev1.Pod) PodPolicy {
	var pp PodPolicy
	podAnn := pod.Annotations
	pp.RunToCompletion = pod.Spec.RestartPolicy == corev1.RestartPolicyNever || pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure

	clusterSleep, err := ParseSleep(cfg.PreStopSleep)
	if err != nil { // Validate rejects this at load; stay safe if a caller skipped it.
		clusterSleep = Sleep{Mode: SleepModeAuto}
	}

	pp.ExtendGrace = resolveSetting(Setting[bool]{cfg.ExtendGrace, SourceCluster},
		[]level{{nsAnnotations, AnnotationExtendGrace, SourceNamespace}, {podAnn, AnnotationExtendGrace, SourcePod}},
		ParseBool, strconv.FormatBool, &pp.Problems)

	// Pod-wide sleep and exec-form, then per container on top.
	podSleep := resolveSetting(Setting[Sleep]{clusterSleep, SourceCluster},
		[]level{{nsAnnotations, AnnotationPreStopSleep, SourceNamespace}, {podAnn, AnnotationPreStopSleep, SourcePod}},
		ParseSleep, Sleep.String, &pp.Problems)
	podExec := resolveSetting(Setting[bool]{cfg.ExecForm, SourceCluster},
		[]level{{nsAnnotations, AnnotationExecForm, SourceNamespace}, {podAnn, AnnotationExecForm, SourcePod}},
		ParseSwitch, formatSwitch, &pp.Problems)

	var selected map[string]bool
	if raw, ok := podAnn[AnnotationContainers]; ok {
		names, err := ParseContainers(raw)
		if err != nil {
			pp.Problems = append(pp.Problems, Problem{Key: AnnotationContainers, Value: raw, Msg: errMsg(err, raw), Fallback: "all containers"})
		} else {
			selected = make(map[string]bool, len(names))
			for _, n := range names {
				selected[n] = true
			}
		}
	}

	known := map[string]bool{}
	forContainer := func(c *corev1.Container, init bool) ContainerPolicy {
		known[c.Name] = true
		cp := ContainerPolicy{Name: c.Name, Init: init, Listed: cfg.IsSidecar(c.Name)}
		switch {
		case init:
			cp.Role = RoleNativeSidecar
		case cp.Listed:
			cp.Role = RoleSidecar
		}
		if selected != nil && !selected[c.Name] {
			cp.Skip = SkipNotSelected
		}
		cp.Sleep = resolveSetting(podSleep,
			[]level{{podAnn, ContainerAnnotation(c.Name, AnnotationPreStopSleep), SourceContainer}},
			ParseSleep, Sleep.String, &pp.Problems)
		cp.ExecForm = resolveSetting(podExec,
			[]level{{podAnn, ContainerAnnotation(c.Name, AnnotationExecForm), SourceContainer}},
			ParseSwitch, formatSwitch, &pp.Problems)
		return cp
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if IsNativeSidecar(c) {
			pp.InitContainers = append(pp.InitContainers, forContainer(c, true))
		} else {
			known[c.Name] = true
		}
	}
	for i := range pod.Spec.Containers {
		pp.Containers = append(pp.Containers, forContainer(&pod.Spec.Containers[i], false))
	}
	// In name order: the same pod gets the same warnings, and the same
	// strict-mode denial, at every admission.
	// (Resolve runs for every pod: most have no selection and no problem,
	// and pay nothing for the ordering.)
	if len(selected) > 0 {
		for _, n := range slices.Sorted(maps.Keys(selected)) {
			if !known[n] {
				pp.Problems = append(pp.Problems, Problem{Key: AnnotationContainers, Value: podAnn[AnnotationContainers], Msg: fmt.Sprintf("names no container %q", n)})
			}
		}
	}
	pp.Problems = append(pp.Problems, unknownKeys(podAnn, known, true)...)
	pp.Problems = append(pp.Problems, unknownKeys(nsAnnotations, nil, false)...)
	slices.SortStableFunc(pp.Problems, func(a, b Problem) int { return strings.Compare(a.Key, b.Key) })
	return pp
}

// unknownKeys reports podgrace keys that mean nothing where they stand (Keys
// says where each is read): a typo like `podgrace.dev/prestop-seep`, a key
// at a level that does not read it, or a per-container key naming no
// container. Silence here is what makes users distrust annotations.
func unknownKeys(ann map[string]string, containers map[string]bool, onPod bool) []Problem {
	var out []Problem
	here := OnNamespace
	if onPod {
		here = OnPod
	}
	for k, v := range ann {
		prefix, name, ok := strings.Cut(k, "/")
		if !ok {
			continue
		}
		var msg string
		switch {
		case prefix == Prefix:
			key, known := annotationKey(k)
			switch {
			case !known:
				msg = "is not a podgrace key; ignored"
			case key.Levels&here == 0:
				msg = "is only read on " + levelNames(key.Levels&(OnPod|OnNamespace)) + "; ignored"
			}
		case strings.HasSuffix(prefix, "."+Prefix):
			container := strings.TrimSuffix(prefix, "."+Prefix)
			key, known := annotationKey(Prefix + "/" + name)
			switch {
			case !known || key.Levels&PerContainer == 0:
				msg = "is not a per-container podgrace key; ignored"
			case !onPod:
				msg = "is only read on pods; ignored"
			case !containers[container]:
				msg = fmt.Sprintf("names no container %q; ignored", container)
			}
		}
		if msg != "" {
			out = append(out, Problem{Key: k, Value: v, Msg: msg})
		}
	}
	return out
}

// levelNames names pod and namespace levels for a warning.
func levelNames(l Level) string {
	switch l {
	case OnPod:
		return "pods"
	case OnNamespace:
		return "namespaces"
	}
	return "pods and namespaces"
}

// IsNativeSidecar reports whether an init container is a native sidecar
// (restartPolicy Always): it runs for the pod's whole life.
func IsNativeSidecar(c *corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}
