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
	cfg, pp := m.in.Config, m.in.Policy
	budget := seconds(cfg.ShutdownBudget.Duration)

	// What each target wants: want[i] > 0 is a sleep still to be fitted.
	want := make([]int64, len(targets))
	fixedSidecar := make([]bool, len(targets)) // a per-container duration on a sidecar
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
	var wantApp int64
	for i, t := range targets {
		if t.cp.Role == policy.RoleApp {
			wantApp = max(wantApp, want[i])
		}
	}
	// A native sidecar that arrives on reinvocation (a mesh injector ran
	// after podgrace) needs no hook, but its drain joins the grace period.
	var newNative []string
	for _, t := range targets {
		if t.cp.Skip == "" && t.cp.Role == policy.RoleNativeSidecar {
			newNative = append(newNative, t.c.Name)
		}
	}
	if grace <= 0 || !anyWanted(want) && (len(newNative) == 0 || len(prev.Containers) == 0) {
		return grace
	}

	// The fixed terms: app sleeps of earlier passes, sidecars' own hooks
	// (podgrace's of earlier passes included), the sidecars' drain.
	var prevApp int64
	for i := range prev.Containers {
		if r := &prev.Containers[i]; r.Role == "" && !r.Init {
			prevApp = max(prevApp, min(r.PreStopSleep, grace))
		}
	}
	var ownHook int64
	hasSidecar := false
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
	var drain int64
	if hasSidecar {
		drain = seconds(cfg.SidecarShutdownBudget.Duration)
		d, declared, warns := policy.DeclaredDrain(m.in.Pod.Annotations)
		for _, w := range warns {
			m.warn = append(m.warn, Warning{Code: WarnDrainIgnored, Message: Truncate(w)})
		}
		if declared {
			drain = d
		}
	}

	// N, and the grace period it can have.
	s := max(prevApp, wantApp)
	autoSidecar := false
	need := ownHook
	for i := range targets {
		if fixedSidecar[i] {
			need = max(need, want[i])
		}
		autoSidecar = autoSidecar || want[i] < 0
	}
	if s > 0 || autoSidecar {
		need = max(need, addSat(s, budget))
	}
	need = addSat(need, drain)
	limit := grace
	maxGrace := seconds(cfg.MaxGracePeriod.Duration)
	capped := false
	if need > grace && pp.ExtendGrace.Value {
		limit = need
		if maxGrace > 0 && limit > max(maxGrace, grace) {
			limit, capped = max(maxGrace, grace), true
		}
	}

	// This pass's app sleeps first: each fits limit − B − SB.
	s = prevApp
	for i, t := range targets {
		if want[i] <= 0 || t.cp.Role != policy.RoleApp {
			continue
		}
		v := min(want[i], limit-addSat(budget, drain))
		if v < 1 {
			reports[i].PreStopSkipped = SkipGraceTooShort
			if drain > 0 {
				m.warnf(WarnNoSleep, "%s: no preStop sleep: grace period %ds leaves under 1s after the %ds shutdown budget and %ds sidecar drain", t.c.Name, limit, budget, drain)
			} else {
				m.warnf(WarnNoSleep, "%s: no preStop sleep: grace period %ds leaves under 1s after the %ds shutdown budget", t.c.Name, limit, budget)
			}
			continue
		}
		if capped && v < want[i] {
			m.warnf(WarnSleepShortened, "%s: preStop sleep shortened to %ds to fit the grace period %ds (maxGracePeriod %ds)", t.c.Name, v, limit, maxGrace)
		}
		m.setSleep(t.idx, v, &reports[i])
		s = max(s, v)
	}
	// Then the sidecars: S + B (or their own duration) within limit − SB;
	// an automatic one never below S, so that it outlives the app's sleep.
	placed := ownHook
	if s > 0 {
		placed = max(placed, addSat(s, budget))
	}
	for i, t := range targets {
		if want[i] == 0 || t.cp.Role != policy.RoleSidecar {
			continue
		}
		w, floor := addSat(s, budget), min(s, limit)
		if fixedSidecar[i] {
			w, floor = want[i], 0
		}
		v := max(min(w, limit-drain), floor)
		if v < 1 {
			reports[i].PreStopSkipped = SkipGraceTooShort
			m.warnf(WarnNoSleep, "%s: no preStop sleep: grace period %ds leaves under 1s after the sidecar's %ds drain", t.c.Name, limit, drain)
			continue
		}
		if v < w {
			m.warnf(WarnSleepShortened, "%s: sidecar's preStop sleep shortened to %ds (wanted %ds) to fit the grace period %ds", t.c.Name, v, w, limit)
		}
		m.setSleep(t.idx, v, &reports[i])
		placed = max(placed, v)
	}
	if placed == 0 {
		return grace
	}
	out := max(grace, min(addSat(placed, drain), limit))
	if placed > 0 && addSat(placed, drain) > out && len(newNative) > 0 && len(prev.Containers) > 0 {
		m.warnf(WarnDrainShortened, "%s: the grace period %ds leaves the sidecar %ds of its %ds drain", strings.Join(newNative, ","), out, max(out-placed, 0), drain)
	}
	return out
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
