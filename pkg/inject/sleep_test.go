package inject

import (
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podgrace/podgrace/pkg/policy"
)

// TestSizeSleep checks the sizing before the grace period is fitted; the
// fitting (extend, shrink, cap, sidecars) is shown by the golden files.
func TestSizeSleep(t *testing.T) {
	t.Parallel()
	cfg := policy.Default() // ratio 0.5, min 5s, max 60s
	auto := policy.Sleep{Mode: policy.SleepModeAuto}
	cases := []struct {
		name  string
		sleep policy.Sleep
		grace int64
		wantS int64
	}{
		{"auto half of 30", auto, 30, 15},
		{"auto floors 0.5×15", auto, 15, 7},
		{"auto min", auto, 8, 5},
		{"auto max", auto, 1000, 60},
		{"fixed as written", policy.Sleep{Mode: policy.SleepModeFixed, Seconds: 26}, 30, 26},
		{"fixed above max is kept", policy.Sleep{Mode: policy.SleepModeFixed, Seconds: 120}, 30, 120},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if s := sizeSleep(tc.sleep, tc.grace, &cfg); s != tc.wantS {
				t.Errorf("got sleep %d, want %d", s, tc.wantS)
			}
		})
	}
	wide := policy.Default()
	wide.Ratio, wide.Min.Duration, wide.Max.Duration = 2, 0, 10*time.Minute
	if s := sizeSleep(auto, 30, &wide); s != 60 {
		t.Errorf("ratio 2 of 30 = %d, want 60", s)
	}
}

func TestHookSeconds(t *testing.T) {
	t.Parallel()
	exec := func(argv ...string) *corev1.Container {
		return &corev1.Container{Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: argv}}}}
	}
	cases := map[string]struct {
		c    *corev1.Container
		want int64
	}{
		"none":          {&corev1.Container{}, 0},
		"sleep action":  {&corev1.Container{Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 12}}}}, 12},
		"linkerd":       {exec("/bin/sleep", "40"), 40},
		"sleep 5s":      {exec("sleep", "5s"), 5},
		"sh -c":         {exec("/bin/sh", "-c", "sleep 20"), 20},
		"other command": {exec("pilot-agent", "request", "POST", "quitquitquit"), 0},
		"script":        {exec("sh", "-c", "sleep 5 && kill 1"), 0},
		"http":          {&corev1.Container{Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{}}}}, 0},
	}
	for name, tc := range cases {
		if got := hookSeconds(tc.c); got != tc.want {
			t.Errorf("%s: hookSeconds = %d, want %d", name, got, tc.want)
		}
	}
}

// TestGraceOverflow: grace periods, hooks and drains at the ends of int64
// (issue 23, finding 9) never wrap: every sleep stays within the final grace
// period (checkGrace), which is never negative when it did not start so.
func TestGraceOverflow(t *testing.T) {
	t.Parallel()
	const maxI, minI = "9223372036854775807", "-9223372036854775808"
	pods := []string{
		`{"spec":{"terminationGracePeriodSeconds":` + minI + `,"containers":[{"name":"app"},{"name":"istio-proxy","lifecycle":{"preStop":{"exec":{"command":["sleep","` + maxI + `"]}}}}]}}`,
		`{"spec":{"terminationGracePeriodSeconds":` + maxI + `,"containers":[{"name":"app"},{"name":"istio-proxy","lifecycle":{"preStop":{"exec":{"command":["sleep","` + maxI + `"]}}}}]}}`,
		`{"metadata":{"annotations":{"proxy.istio.io/config":"terminationDrainDuration: 2562047h"}},"spec":{"terminationGracePeriodSeconds":` + maxI + `,"containers":[{"name":"app"},{"name":"istio-proxy"}]}}`,
		`{"metadata":{"annotations":{"podgrace.dev/prestop-sleep":"2562047h"}},"spec":{"terminationGracePeriodSeconds":-1,"containers":[{"name":"app"},{"name":"istio-proxy"}]}}`,
	}
	for _, js := range pods {
		var pod corev1.Pod
		if err := json.Unmarshal([]byte(js), &pod); err != nil {
			t.Fatal(err)
		}
		for _, maxGrace := range []time.Duration{0, time.Hour, 1<<63 - 1} {
			cfg := policy.Default()
			cfg.MaxGracePeriod.Duration = maxGrace
			res := run(&pod, nil, &cfg)
			checkGrace(t, &pod, nil, &cfg, &res)
			checkPatch(t, &pod, &res)
		}
	}
}
