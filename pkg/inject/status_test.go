package inject

import (
	"context"
	"encoding/json"
	"math"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/policy"
)

// TestTruncate: every warning is cut to MaxWarningLen bytes on a rune
// boundary, with an ellipsis; short ones are kept as they are.
func TestTruncate(t *testing.T) {
	t.Parallel()
	short := "podgrace: short"
	if got := Truncate(short); got != short {
		t.Errorf("Truncate(%q) = %q", short, got)
	}
	for _, s := range []string{strings.Repeat("a", 200), strings.Repeat("é", 100), "podgrace: " + strings.Repeat("日本", 60)} {
		got := Truncate(s)
		if len(got) > MaxWarningLen || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") || !strings.HasPrefix(s, strings.TrimSuffix(got, "…")) {
			t.Errorf("Truncate(%.20q…) = %q (%d bytes)", s, got, len(got))
		}
	}
}

// TestMutateLinear: a pass over a pod is linear in its containers and in the
// records of its status annotation, however hostile (issue 23, finding 3:
// a scan of the records per container made 20k containers against 200k
// records take 9 s). The pass is timed against what any pass must do with
// that pod, measured in the same run: read the status annotation and
// resolve the policy. Linear code costs a small multiple of that; the
// quadratic scan cost over 10× more at this size.
func TestMutateLinear(t *testing.T) {
	if testing.Short() {
		t.Skip("timing ratio; run without -short")
	}
	const n = 4000
	st := Status{V: StatusVersion, Containers: make([]ContainerReport, 10*n)}
	for i := range st.Containers {
		st.Containers[i].Name = "old-" + strconv.Itoa(i)
	}
	raw, _ := json.Marshal(&st)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Annotations: map[string]string{policy.AnnotationStatus: string(raw)}}}
	for i := range n {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "c-" + strconv.Itoa(i), Image: "img", Command: []string{"app"}})
	}
	cfg := policy.Default()
	best := func(f func()) time.Duration {
		d := time.Duration(math.MaxInt64)
		for range 3 {
			runtime.GC()
			start := time.Now()
			f()
			d = min(d, time.Since(start))
		}
		return d
	}
	floor := best(func() {
		_ = ReadPrevious(pod)
		_ = policy.Resolve(&cfg, nil, pod)
	})
	pass := best(func() {
		if res := Pod(context.Background(), PodInput{Pod: pod, Config: &cfg, HookAction: policy.HookSleep}); !res.Changed() {
			t.Fatal("the pod was not mutated")
		}
	})
	if ratio := float64(pass) / float64(floor); ratio > 25 {
		t.Errorf("the pass took %.1f× reading and resolving the pod (%v vs %v): not linear", ratio, pass, floor)
	} else {
		t.Logf("the pass took %.1f× reading and resolving the pod (%v vs %v)", ratio, pass, floor)
	}
}

// TestDenialBounded: a strict-mode denial stays within MaxDenialLen however
// long the values and however many the problems (issue 23, finding 8: a
// 6 MiB annotation value became a 6 MiB 403 message and log line).
func TestDenialBounded(t *testing.T) {
	t.Parallel()
	cfg := policy.Default()
	cfg.Strict = true
	ann := map[string]string{"podgrace.dev/prestop-sleep": strings.Repeat("x", 6<<20)}
	for i := range 500 {
		ann["podgrace.dev/unknown-"+strconv.Itoa(i)] = "v"
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Annotations: ann}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
	res := Pod(context.Background(), PodInput{Pod: pod, Config: &cfg, HookAction: policy.HookSleep})
	if res.Denied == "" || len(res.Denied) > MaxDenialLen || !strings.Contains(res.Denied, "…") || !strings.HasSuffix(res.Denied, "(strict mode)") || !utf8.ValidString(res.Denied) {
		t.Fatalf("denial of %d bytes: %.300q", len(res.Denied), res.Denied)
	}
	for _, w := range res.Warnings {
		if len(w.Message) > MaxWarningLen {
			t.Fatalf("warning of %d bytes", len(w.Message))
		}
	}
}

// TestPodStopsOnContext: a canceled admission is not decided.
func TestPodStopsOnContext(t *testing.T) {
	t.Parallel()
	cfg := policy.Default()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}
	res := Pod(ctx, PodInput{Pod: pod, Config: &cfg, HookAction: policy.HookSleep})
	if res.Err == nil || res.Changed() {
		t.Fatalf("canceled admission: err %v, %d operations", res.Err, len(res.Patch))
	}
}
