package calibrate

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// The margin rule (docs/operate/sizing.md, "The margin"): S covers the
// slowest trial plus a quarter of it, and at least MinMargin more. A few
// trials sample the tail of a propagation poorly, and a controller's sync
// slows down with its queue (more Services, more changes at once during a
// rollout than one deletion at a time); the floor covers the jitter of the
// measurement itself at small values (the watch latency of the kubelet and
// of the EndpointSlice consumers, the client's request interval).
const (
	MarginRatio = 0.25
	MinMargin   = 2 * time.Second
)

// MarginRule is the rule in words, as the report states it.
var MarginRule = fmt.Sprintf("S = ceil(slowest + max(%s, %g × slowest)), at least 1s; T = S + shutdownBudget, at most maxGracePeriod",
	MinMargin, MarginRatio)

// Margin is what the rule adds to a measured propagation.
func Margin(propagation time.Duration) time.Duration {
	return max(MinMargin, time.Duration(MarginRatio*float64(propagation)))
}

// Recommend turns the measured propagation into S and T. T is what
// podgrace's own mutation (pkg/inject) gives a pod whose namespace asks for
// S, with extendGrace on, under cfg: S + shutdownBudget, capped at
// maxGracePeriod (then S shrinks, and Capped says so).
func Recommend(propagation time.Duration, cfg *policy.Config) Recommendation {
	margin := Margin(propagation)
	s := max(int64(1), int64(math.Ceil((propagation + margin).Seconds())))
	c := *cfg
	c.ExtendGrace = true
	c.Enforcement = policy.EnforcementMutate
	c.Strict = false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "calibrate", Namespace: "calibrate"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64(1)),
			Containers:                    []corev1.Container{{Name: "app", Image: "app", Command: []string{"/app"}}},
		},
	}
	res := inject.Pod(context.Background(), inject.PodInput{
		Pod:                  pod,
		NamespaceAnnotations: map[string]string{policy.AnnotationPreStopSleep: strconv.FormatInt(s, 10) + "s"},
		Config:               &c,
		HookAction:           policy.HookSleep,
	})
	t := s + int64(cfg.ShutdownBudget.Duration/time.Second)
	if g := res.Pod.Spec.TerminationGracePeriodSeconds; g != nil {
		t = *g
	}
	got := s
	if len(res.Status.Containers) > 0 {
		got = res.Status.Containers[0].PreStopSleep
	}
	r := Recommendation{
		SleepSeconds:          s,
		MarginSeconds:         secs(margin),
		GracePeriodSeconds:    t,
		ShutdownBudgetSeconds: int64(cfg.ShutdownBudget.Duration / time.Second),
		MaxGracePeriodSeconds: int64(cfg.MaxGracePeriod.Duration / time.Second),
		Capped:                got < s,
		Rule:                  MarginRule,
	}
	r.NamespaceCommand = fmt.Sprintf("kubectl annotate namespace NAMESPACE %s=%ds --overwrite", policy.AnnotationPreStopSleep, s)
	r.ClusterValues = fmt.Sprintf("--set config.min=%ds", s)
	if maxS := int64(cfg.Max.Duration / time.Second); s > maxS {
		r.ClusterValues += fmt.Sprintf(" --set config.max=%ds", s)
	}
	return r
}
