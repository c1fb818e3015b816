package inject

import (
	"math"
	"path"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podgrace/podgrace/pkg/policy"
)

// DefaultGracePeriod is what the API server sets when a pod leaves
// terminationGracePeriodSeconds unset; `podgrace inject` sees manifests
// before that defaulting, so it counts an unset value as this.
const DefaultGracePeriod int64 = 30

// sizeSleep returns the sleep S for a container, before the grace period is
// taken into account (docs/design.md §4): `auto` gives clamp(ratio·T, min,
// max), a fixed value is used as written. Fractions of a second are dropped:
// the sleep action counts whole seconds and the shorter sleep keeps more of
// the grace period for the app.
func sizeSleep(s policy.Sleep, grace int64, cfg *policy.Config) int64 {
	if s.Mode == policy.SleepModeFixed {
		return s.Seconds
	}
	// float64(grace) rounds up near MaxInt64, and a float64 out of int64's
	// range converts to anything: clamp before converting.
	v := int64(min(math.Floor(cfg.Ratio*float64(grace)), math.MaxInt64/2))
	minS, maxS := seconds(cfg.Min.Duration), seconds(cfg.Max.Duration)
	return min(max(v, minS), maxS)
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

// addSat adds two non-negative durations in seconds, saturating at
// math.MaxInt64: a hostile pod can declare a hook or a drain of
// 9223372036854775807 seconds, and a wrapped sum would place a sleep longer
// than the grace period (FuzzMutate's checkGrace).
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// placeSleeps decides the preStop sleeps of this pass's targets and returns
// the grace period the pod needs (docs/design.md §2, §4). With T the grace
// period, S the longest app sleep, B the shutdown budget and SB the sidecars'
// drain: app containers sleep S, listed sidecars S + B so that they outlive
// the app's drain, and the pod needs N = max(S + B, the longest sidecar
// sleep) + SB. T is raised to N (extendGrace) but not above maxGracePeriod;
// what still does not fit shrinks: first this pass's app sleeps, then the
// sidecars' (never below S, so a sidecar never stops before the app).
// Containers an earlier pass handled are never touched: their sleeps are
// fixed terms of the sum.
func (m *mutation) placeSleeps(targets []target, reports []ContainerReport, grace int64, prev *Status) int64 {
	p := sleepPlan{targets: targets, reports: reports, grace: grace, budget: seconds(m.in.Config.ShutdownBudget.Duration)}
	p.want, p.fixedSidecar = m.wants(targets, reports, grace)
	newNative := newNativeSidecars(targets)
	if grace <= 0 || !anyWanted(p.want) && (len(newNative) == 0 || len(prev.Containers) == 0) {
		return grace
	}
	prevApp := prevAppSleep(prev, grace)
	ownHook, hasSidecar := m.sidecarHooks()
	if hasSidecar {
		p.drain = m.sidecarDrain()
	}
	m.fitLimit(&p, max(prevApp, p.wantApp()), ownHook)

	s := m.placeAppSleeps(&p, prevApp)
	placed := m.placeSidecarSleeps(&p, s, ownHook)
	if placed == 0 {
		return grace
	}
	out := max(grace, min(addSat(placed, p.drain), p.limit))
	if placed > 0 && addSat(placed, p.drain) > out && len(newNative) > 0 && len(prev.Containers) > 0 {
		m.warnf(WarnDrainShortened, "%s: the grace period %ds leaves the sidecar %ds of its %ds drain", strings.Join(newNative, ","), out, max(out-placed, 0), p.drain)
	}
	return out
}

// sleepPlan is what placeSleeps decides with: the targets and their
// reports, T, B and SB, what each target wants, and the grace period the
// pod can have.
type sleepPlan struct {
	targets []target
	reports []ContainerReport
	// grace is T, budget B, drain SB, in seconds.
	grace, budget, drain int64
	// want[i] > 0 is a sleep still to be fitted, -1 a sidecar's sized once S
	// is known, 0 none; fixedSidecar[i] marks a sidecar's own duration.
	want         []int64
	fixedSidecar []bool // nil: none
	// limit is the grace period the pod can have; capped says maxGracePeriod
	// cut it, and maxGrace is that bound.
	limit, maxGrace int64
	capped          bool
}

// wantApp is the longest sleep this pass's app containers want.
func (p *sleepPlan) wantApp() int64 {
	var w int64
	for i, t := range p.targets {
		if t.cp.Role == policy.RoleApp {
			w = max(w, p.want[i])
		}
	}
	return w
}

// isFixedSidecar: target i is a sidecar with its own duration.
func (p *sleepPlan) isFixedSidecar(i int) bool { return p.fixedSidecar != nil && p.fixedSidecar[i] }

// wants decides what each target wants, and records why a target gets no
// sleep at all.
func (m *mutation) wants(targets []target, reports []ContainerReport, grace int64) (want []int64, fixedSidecar []bool) {
	cfg, pp := m.in.Config, m.in.Policy
	want = make([]int64, len(targets))
	// fixedSidecar marks a per-container duration on a sidecar; made only
	// when a pod has one, as most have none.
	for i, t := range targets {
		r := &reports[i]
		if t.cp.Skip != "" || t.cp.Role == policy.RoleNativeSidecar {
			continue
		}
		sl := t.cp.Sleep
		switch {
		case t.cp.Role == policy.RoleSidecar && sl.Source != policy.SourceContainer:
			// Pod, namespace and cluster sleeps are the app's; a sidecar
			// follows the app (S + B) unless its own annotation says otherwise.
			want[i] = -1 // sized once S is known
		case sl.Value.Mode == policy.SleepModeOff:
			r.PreStopSkipped = SkipOff
			continue
		case t.cp.Role == policy.RoleSidecar && sl.Value.Mode == policy.SleepModeFixed:
			if fixedSidecar == nil {
				fixedSidecar = make([]bool, len(targets))
			}
			want[i], fixedSidecar[i] = sl.Value.Seconds, true
		case t.cp.Role == policy.RoleSidecar:
			want[i] = -1
		case pp.RunToCompletion && !cfg.SleepRunToCompletion &&
			(sl.Value.Mode != policy.SleepModeFixed || sl.Source == policy.SourceCluster):
			r.PreStopSkipped = SkipRunToCompletion
			continue
		default:
			want[i] = sizeSleep(sl.Value, grace, cfg)
		}
		switch {
		case t.c.Lifecycle != nil && t.c.Lifecycle.PreStop != nil:
			r.PreStopSkipped, want[i] = SkipExistingPreStop, 0
		case grace <= 0: // negative: the API server rejects or raises it; nothing fits
			r.PreStopSkipped, want[i] = SkipGraceZero, 0
		}
	}
	return want, fixedSidecar
}

// newNativeSidecars names the native sidecars of this pass. One that arrives
// on reinvocation (a mesh injector ran after podgrace) needs no hook, but
// its drain joins the grace period.
func newNativeSidecars(targets []target) []string {
	var names []string
	for _, t := range targets {
		if t.cp.Skip == "" && t.cp.Role == policy.RoleNativeSidecar {
			names = append(names, t.c.Name)
		}
	}
	return names
}

// prevAppSleep is the longest app sleep of earlier passes: a fixed term.
func prevAppSleep(prev *Status, grace int64) int64 {
	var s int64
	for i := range prev.Containers {
		if r := &prev.Containers[i]; r.Role == "" && !r.Init {
			s = max(s, min(r.PreStopSleep, grace))
		}
	}
	return s
}

// sidecarHooks is the longest sleep of the listed sidecars' own hooks
// (podgrace's of earlier passes included), and whether the pod has a
// sidecar at all.
func (m *mutation) sidecarHooks() (ownHook int64, hasSidecar bool) {
	pp := m.in.Policy
	for i := range pp.Containers {
		cp := &pp.Containers[i]
		if cp.Skip != "" || cp.Role != policy.RoleSidecar {
			continue
		}
		hasSidecar = true
		if i < len(m.in.Pod.Spec.Containers) {
			ownHook = max(ownHook, hookSeconds(&m.in.Pod.Spec.Containers[i]))
		}
	}
	for i := range pp.InitContainers {
		hasSidecar = hasSidecar || pp.InitContainers[i].Skip == ""
	}
	return ownHook, hasSidecar
}

// sidecarDrain is SB: the config's sidecar budget, or the drain the mesh's
// annotations declare.
func (m *mutation) sidecarDrain() int64 {
	drain := seconds(m.in.Config.SidecarShutdownBudget.Duration)
	d, declared, warns := policy.DeclaredDrain(m.in.Pod.Annotations)
	for _, w := range warns {
		m.warn = append(m.warn, Warning{Code: WarnDrainIgnored, Message: Truncate(w)})
	}
	if declared {
		drain = d
	}
	return drain
}

// fitLimit computes N from S (s) and the sidecars' own hooks, and the grace
// period the pod can have: T raised to N when extendGrace is on, capped at
// maxGracePeriod.
func (m *mutation) fitLimit(p *sleepPlan, s, ownHook int64) {
	autoSidecar := false
	need := ownHook
	for i := range p.targets {
		if p.isFixedSidecar(i) {
			need = max(need, p.want[i])
		}
		autoSidecar = autoSidecar || p.want[i] < 0
	}
	if s > 0 || autoSidecar {
		need = max(need, addSat(s, p.budget))
	}
	need = addSat(need, p.drain)
	p.limit = p.grace
	p.maxGrace = seconds(m.in.Config.MaxGracePeriod.Duration)
	if need > p.grace && m.in.Policy.ExtendGrace.Value {
		p.limit = need
		if p.maxGrace > 0 && p.limit > max(p.maxGrace, p.grace) {
			p.limit, p.capped = max(p.maxGrace, p.grace), true
		}
	}
}

// placeAppSleeps places this pass's app sleeps first, each within
// limit − B − SB, and returns S, the longest app sleep.
func (m *mutation) placeAppSleeps(p *sleepPlan, prevApp int64) int64 {
	s := prevApp
	for i, t := range p.targets {
		if p.want[i] <= 0 || t.cp.Role != policy.RoleApp {
			continue
		}
		v := min(p.want[i], p.limit-addSat(p.budget, p.drain))
		if v < 1 {
			p.reports[i].PreStopSkipped = SkipGraceTooShort
			if p.drain > 0 {
				m.warnf(WarnNoSleep, "%s: no preStop sleep: grace period %ds leaves under 1s after the %ds shutdown budget and %ds sidecar drain", t.c.Name, p.limit, p.budget, p.drain)
			} else {
				m.warnf(WarnNoSleep, "%s: no preStop sleep: grace period %ds leaves under 1s after the %ds shutdown budget", t.c.Name, p.limit, p.budget)
			}
			continue
		}
		if p.capped && v < p.want[i] {
			m.warnf(WarnSleepShortened, "%s: preStop sleep shortened to %ds to fit the grace period %ds (maxGracePeriod %ds)", t.c.Name, v, p.limit, p.maxGrace)
		}
		m.setSleep(t.idx, v, &p.reports[i])
		s = max(s, v)
	}
	return s
}

// placeSidecarSleeps places the sidecars' sleeps after the app's: S + B (or
// their own duration) within limit − SB; an automatic one never below S, so
// that it outlives the app's sleep. It returns the longest of S + B and the
// sidecars' sleeps, their own hooks included (0: there is nothing to fit).
func (m *mutation) placeSidecarSleeps(p *sleepPlan, s, ownHook int64) int64 {
	placed := ownHook
	if s > 0 {
		placed = max(placed, addSat(s, p.budget))
	}
	for i, t := range p.targets {
		if p.want[i] == 0 || t.cp.Role != policy.RoleSidecar {
			continue
		}
		w, floor := addSat(s, p.budget), min(s, p.limit)
		if p.isFixedSidecar(i) {
			w, floor = p.want[i], 0
		}
		v := max(min(w, p.limit-p.drain), floor)
		if v < 1 {
			p.reports[i].PreStopSkipped = SkipGraceTooShort
			m.warnf(WarnNoSleep, "%s: no preStop sleep: grace period %ds leaves under 1s after the sidecar's %ds drain", t.c.Name, p.limit, p.drain)
			continue
		}
		if v < w {
			m.warnf(WarnSleepShortened, "%s: sidecar's preStop sleep shortened to %ds (wanted %ds) to fit the grace period %ds", t.c.Name, v, w, p.limit)
		}
		m.setSleep(t.idx, v, &p.reports[i])
		placed = max(placed, v)
	}
	return placed
}

func anyWanted(want []int64) bool {
	for _, w := range want {
		if w != 0 {
			return true
		}
	}
	return false
}

// setSleep adds the sleep to a regular container and records it.
func (m *mutation) setSleep(idx int, s int64, r *ContainerReport) {
	m.injectPreStop(idx, s)
	r.PreStopSleep, r.Hook = s, string(m.hook())
}

// hookSeconds is how long a container's own preStop hook sleeps, when it is
// a plain sleep: the native action, `sleep N` (Linkerd's proxy-wait-before-
// exit-seconds writes `/bin/sleep N`) or `sh -c "sleep N"`. Any other hook
// counts as 0: its length cannot be known.
func hookSeconds(c *corev1.Container) int64 {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		return 0
	}
	h := c.Lifecycle.PreStop
	if h.Sleep != nil {
		return max(h.Sleep.Seconds, 0)
	}
	if h.Exec == nil {
		return 0
	}
	argv := h.Exec.Command
	if len(argv) == 3 && (path.Base(argv[0]) == "sh" || path.Base(argv[0]) == "bash") && argv[1] == "-c" {
		argv = strings.Fields(argv[2])
	}
	if len(argv) != 2 || path.Base(argv[0]) != "sleep" {
		return 0
	}
	n, err := strconv.ParseInt(strings.TrimSuffix(argv[1], "s"), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return n
}
