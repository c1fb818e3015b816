package inject

import (
	"math"
	"time"

	"github.com/podgrace/podgrace/pkg/policy"
)

// DefaultGracePeriod is what the API server sets when a pod leaves
// terminationGracePeriodSeconds unset; `podgrace inject` sees manifests
// before that defaulting, so it counts an unset value as this.
const DefaultGracePeriod int64 = 30

// sizeSleep returns the sleep S for a container, before the grace period is
// taken into account (docs/design.md §4): `auto` gives clamp(ratio·T, min, max), a
// fixed value is used as written. Fractions of a second are dropped: the
// sleep action counts whole seconds and the shorter sleep keeps more of the
// grace period for the app.
func sizeSleep(s policy.Sleep, grace int64, cfg *policy.Config) int64 {
	if s.Mode == policy.SleepModeFixed {
		return s.Seconds
	}
	v := int64(math.Floor(cfg.Ratio * float64(grace)))
	minS, maxS := seconds(cfg.Min.Duration), seconds(cfg.Max.Duration)
	return min(max(v, minS), maxS)
}

// fitGrace fits a sleep S into the grace period T given the shutdown budget B:
// when S + B > T, either T becomes S + B (extend), or S becomes T − B. A sleep
// under one second is not worth a hook: it returns 0.
func fitGrace(sleep, grace, budget int64, extend bool) (newSleep, needGrace int64) {
	if sleep+budget <= grace {
		return sleep, grace
	}
	if extend {
		return sleep, sleep + budget
	}
	if s := grace - budget; s >= 1 {
		return s, grace
	}
	return 0, grace
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }
