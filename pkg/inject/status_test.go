package inject

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
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

// hostilePod is a pod of n containers whose status annotation holds 10·n
// records of other containers.
func hostilePod(n int) *corev1.Pod {
	st := Status{V: StatusVersion, Containers: make([]ContainerReport, 10*n)}
	for i := range st.Containers {
		st.Containers[i].Name = "old-" + strconv.Itoa(i)
	}
	raw, _ := json.Marshal(&st)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Annotations: map[string]string{policy.AnnotationStatus: string(raw)}}}
	for i := range n {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "c-" + strconv.Itoa(i), Image: "img", Command: []string{"app"}})
	}
	return pod
}

// TestMutateLinear: a pass over a pod is linear in its containers and in the
// records of its status annotation, however hostile (issue 23, finding 3:
// a scan of the records per container made 20k containers against 200k
// records take 9 s). Counted, not timed: the status records the pass reads
// stay within a small multiple of containers + records (the quadratic scan
// read n·10n), and its allocations grow in proportion to the pod. Not
// parallel: recordReads is package state, and parallel tests wait for the
// sequential ones.
func TestMutateLinear(t *testing.T) {
	cfg := policy.Default()
	var reads atomic.Int64
	recordReads = &reads
	defer func() { recordReads = nil }()
	var prevAllocs float64
	for _, n := range []int{250, 500, 1000} {
		pod := hostilePod(n)
		reads.Store(0)
		if res := Pod(context.Background(), PodInput{Pod: pod, Config: &cfg, HookAction: policy.HookSleep}); !res.Changed() {
			t.Fatal("the pod was not mutated")
		}
		size := int64(n + 10*n) // containers + records
		r := reads.Load()
		if r < int64(n) || r > 3*size {
			t.Errorf("%d containers, %d records: the pass read %d records, want between %d and %d", n, 10*n, r, n, 3*size)
		}
		allocs := testing.AllocsPerRun(2, func() {
			_ = Pod(context.Background(), PodInput{Pod: pod, Config: &cfg, HookAction: policy.HookSleep})
		})
		if prevAllocs > 0 {
			if g := allocs / prevAllocs; g > 2.5 {
				t.Errorf("doubling the pod to %d containers multiplied the allocations by %.2f (%.0f → %.0f): not linear", n, g, prevAllocs, allocs)
			}
		}
		t.Logf("%d containers, %d records: %d records read, %.0f allocations", n, 10*n, r, allocs)
		prevAllocs = allocs
	}
}

// BenchmarkMutateSizes: a pass over hostilePod at growing sizes; ns/op
// doubling with the size is linear (compare the sizes within one run).
func BenchmarkMutateSizes(b *testing.B) {
	cfg := policy.Default()
	for _, n := range []int{500, 1000, 2000, 4000} {
		pod := hostilePod(n)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = Pod(context.Background(), PodInput{Pod: pod, Config: &cfg, HookAction: policy.HookSleep})
			}
		})
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
