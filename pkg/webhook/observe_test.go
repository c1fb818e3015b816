package webhook

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// TestObserveCountsThisPassOnly: on reinvocation the status lists the first
// pass's containers too; the skip counters move for this pass's only (the
// core says how many were there before: the status is read once). Not
// parallel, so that no other test moves the same counters meanwhile.
func TestObserveCountsThisPassOnly(t *testing.T) {
	cfg := policy.Default()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
			policy.AnnotationStatus: `{"v":1,"graceBefore":30,"graceAfter":30,"containers":[{"name":"app","preStopSkipped":"off","execFormSkipped":"sidecar"}]}`,
			policy.ContainerAnnotation("istio-proxy", policy.AnnotationPreStopSleep): "off",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: "istio-proxy"}}},
	}
	res := inject.Pod(context.Background(), inject.PodInput{Pod: pod, Config: &cfg, HookAction: policy.HookSleep})
	if res.Previous != 1 || len(res.Status.Containers) != 2 {
		t.Fatalf("Previous = %d, status %+v; want 1 of 2", res.Previous, res.Status.Containers)
	}
	prestop := containersSkippedTotal.WithLabelValues(actionPreStop, inject.SkipOff)
	execForm := containersSkippedTotal.WithLabelValues(actionExecForm, inject.SkipSidecar)
	p0, e0 := testutil.ToFloat64(prestop), testutil.ToFloat64(execForm)
	observe(&res)
	if d := testutil.ToFloat64(prestop) - p0; d != 1 {
		t.Errorf("prestop/off moved by %v, want 1 (the new istio-proxy, not the app of the first pass)", d)
	}
	if d := testutil.ToFloat64(execForm) - e0; d != 1 {
		t.Errorf("exec-form/sidecar moved by %v, want 1", d)
	}
}
