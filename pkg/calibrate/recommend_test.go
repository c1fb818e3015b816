package calibrate

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/policy"
)

func TestRecommend(t *testing.T) {
	def := policy.Default()
	short := policy.Default()
	short.MaxGracePeriod = metav1.Duration{Duration: 30 * time.Second}
	cases := []struct {
		name        string
		propagation time.Duration
		cfg         *policy.Config
		s, tt       int64
		margin      float64
		capped      bool
		values      string
	}{
		// The floor of the margin: 0 + 2s.
		{"nothing after SIGTERM", 0, &def, 2, 7, 2, false, "--set config.min=2s"},
		// kube-proxy: about a second.
		{"kube-proxy", 1200 * time.Millisecond, &def, 4, 9, 2, false, "--set config.min=4s"},
		// Up to 8 s the floor wins: 8 + 2.
		{"floor", 8 * time.Second, &def, 10, 15, 2, false, "--set config.min=10s"},
		// Beyond it a quarter: 15.1 + 3.775 = 18.875 -> 19.
		{"ingress batching 15s", 15100 * time.Millisecond, &def, 19, 24, 3.775, false, "--set config.min=19s"},
		// Above the default max (60s), config.max must rise too.
		{"slow load balancer", 60 * time.Second, &def, 75, 80, 15, false, "--set config.min=75s --set config.max=75s"},
		// T never exceeds maxGracePeriod: the sleep would shrink.
		{"capped", 30 * time.Second, &short, 38, 30, 7.5, true, "--set config.min=38s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Recommend(c.propagation, c.cfg)
			if r.SleepSeconds != c.s || r.GracePeriodSeconds != c.tt || r.MarginSeconds != c.margin || r.Capped != c.capped {
				t.Errorf("Recommend(%s) = S %d, T %d, margin %g, capped %v; want S %d, T %d, margin %g, capped %v",
					c.propagation, r.SleepSeconds, r.GracePeriodSeconds, r.MarginSeconds, r.Capped, c.s, c.tt, c.margin, c.capped)
			}
			if r.ClusterValues != c.values {
				t.Errorf("cluster values %q; want %q", r.ClusterValues, c.values)
			}
			if !strings.Contains(r.NamespaceCommand, policy.AnnotationPreStopSleep+"=") {
				t.Errorf("namespace command %q does not set %s", r.NamespaceCommand, policy.AnnotationPreStopSleep)
			}
		})
	}
}

// TestFinish: the slowest trial sets the propagation; a trial that hit
// the window's end or saw failures makes the report incomplete.
func TestFinish(t *testing.T) {
	cfg := policy.Default()
	rep := &Report{WindowSeconds: 30, Trials: []Trial{
		{LastNewConnectionAfterSigtermSeconds: new(15.2)},
		{LastNewConnectionAfterSigtermSeconds: new(14.8)},
		{},
	}}
	finish(rep, &cfg)
	if rep.PropagationSeconds != 15.2 || !rep.Complete || rep.Recommendation.SleepSeconds != 19 {
		t.Errorf("report %+v; want propagation 15.2s, complete, S 19s", rep)
	}
	rep.Trials = append(rep.Trials, Trial{LastNewConnectionAfterSigtermSeconds: new(29.5), ReachedWindowEnd: true, ClientFailures: 3})
	finish(rep, &cfg)
	if rep.Complete || len(rep.Incomplete) != 2 || rep.PropagationSeconds != 29.5 {
		t.Errorf("report %+v; want incomplete for two reasons, propagation 29.5s", rep)
	}
}

func TestReportJSON(t *testing.T) {
	var b strings.Builder
	rep := &Report{APIVersion: ReportAPIVersion, Kind: ReportKind, PropagationSeconds: 3.5, Recommendation: Recommendation{SleepSeconds: 6}}
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	got, err := ReadReport([]byte(b.String()))
	if err != nil || got.PropagationSeconds != 3.5 || got.Recommendation.SleepSeconds != 6 {
		t.Fatalf("ReadReport = %+v, %v", got, err)
	}
	if _, err := ReadReport([]byte(`{"apiVersion":"v1","kind":"Pod"}`)); err == nil || !strings.Contains(err.Error(), "not a podgrace calibration report") {
		t.Errorf("ReadReport of a Pod: %v", err)
	}
}
