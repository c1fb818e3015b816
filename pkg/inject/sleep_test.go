package inject

import (
	"testing"
	"time"

	"github.com/podgrace/podgrace/pkg/policy"
)

func TestSizeAndFit(t *testing.T) {
	t.Parallel()
	cfg := policy.Default() // ratio 0.5, min 5s, max 60s, budget 5s
	auto := policy.Sleep{Mode: policy.SleepModeAuto}
	cases := []struct {
		name             string
		sleep            policy.Sleep
		grace            int64
		extend           bool
		wantS, wantGrace int64
	}{
		{"auto half of 30", auto, 30, true, 15, 30},
		{"auto floors 0.5×15", auto, 15, true, 7, 15},
		{"auto min", auto, 10, true, 5, 10},
		{"auto min extends", auto, 8, true, 5, 10},
		{"auto min shrinks", auto, 8, false, 3, 8},
		{"auto max", auto, 1000, true, 60, 1000},
		{"fixed fits", policy.Sleep{Mode: policy.SleepModeFixed, Seconds: 25}, 30, true, 25, 30},
		{"fixed extends", policy.Sleep{Mode: policy.SleepModeFixed, Seconds: 26}, 30, true, 26, 31},
		{"fixed shrinks", policy.Sleep{Mode: policy.SleepModeFixed, Seconds: 26}, 30, false, 25, 30},
		{"fixed above max is kept", policy.Sleep{Mode: policy.SleepModeFixed, Seconds: 120}, 30, true, 120, 125},
		{"too short", auto, 5, false, 0, 5},
		{"exactly one second left", auto, 6, false, 1, 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, g := fitGrace(sizeSleep(tc.sleep, tc.grace, &cfg), tc.grace, seconds(cfg.ShutdownBudget.Duration), tc.extend)
			if s != tc.wantS || g != tc.wantGrace {
				t.Errorf("got sleep %d grace %d, want %d and %d", s, g, tc.wantS, tc.wantGrace)
			}
		})
	}
	wide := policy.Default()
	wide.Ratio, wide.Min.Duration, wide.Max.Duration = 2, 0, 10*time.Minute
	if s := sizeSleep(auto, 30, &wide); s != 60 {
		t.Errorf("ratio 2 of 30 = %d, want 60", s)
	}
}
