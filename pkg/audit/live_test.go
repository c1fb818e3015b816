package audit

import (
	"bytes"
	"context"
	"fmt"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podgrace/podgrace/pkg/policy"
)

// TestProgress: a slow scan reports progress on its Progress writer; a
// fast one says nothing. (Plumbing only: the scan itself is proven against
// a real API server in test/integration.)
func TestProgress(t *testing.T) {
	old := progressEvery
	progressEvery = 20 * time.Millisecond
	t.Cleanup(func() { progressEvery = old })
	run := func(delay time.Duration) string {
		cs := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
		cs.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			time.Sleep(delay)
			return true, &corev1.PodList{}, nil
		})
		var out bytes.Buffer
		cfg := policy.Default()
		Scan(context.Background(), cs, LiveOptions{Env: Env{Config: &cfg, HookAction: policy.HookSleep}, Namespace: "shop", Progress: &out})
		return out.String()
	}
	if got := run(200 * time.Millisecond); !strings.Contains(got, "podgrace audit: ") {
		t.Errorf("slow scan printed %q, want progress lines", got)
	}
	if got := run(0); got != "" {
		t.Errorf("fast scan printed %q", got)
	}
}

// TestScanHoldsAPageOfPods: the scan summarizes each pod as its page is
// read and lets the page go, so a cluster's pods are never all in memory
// at once (issue 25: `audit -A` kept every pod of 50,000 until the end).
// The pod pages (40 of 10) carry a cleanup; by the time the last page is
// asked for, the pages read before the pager's read-ahead must have been
// collected.
func TestScanHoldsAPageOfPods(t *testing.T) {
	const pages, chunk = 40, 10
	var collected atomic.Int64
	var atLast int64
	cs := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})
	cs.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		opts := a.(k8stesting.ListActionImpl).ListOptions
		if opts.Limit != chunk {
			return true, nil, fmt.Errorf("pods listed with limit %d, want %d", opts.Limit, chunk)
		}
		page := 0
		if opts.Continue != "" {
			page, _ = strconv.Atoi(opts.Continue)
		}
		list := &corev1.PodList{Items: make([]corev1.Pod, chunk)}
		for k := range list.Items {
			list.Items[k] = corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: fmt.Sprintf("p-%03d-%02d", page, k)},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1", Command: []string{"/app"}}}},
			}
		}
		// On the first pod's containers: the typed fake client copies the
		// list's items, but not what they point to.
		goruntime.AddCleanup(&list.Items[0].Spec.Containers[0], func(int) { collected.Add(1) }, page)
		if page+1 < pages {
			list.Continue = strconv.Itoa(page + 1)
		} else {
			// The pages behind the pager's read-ahead (10) are garbage now.
			for range 100 {
				goruntime.GC()
				if atLast = collected.Load(); atLast >= pages/2 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		return true, list, nil
	})
	cfg := policy.Default()
	rep := Scan(context.Background(), cs, LiveOptions{Env: Env{Config: &cfg, HookAction: policy.HookSleep}, Namespace: "shop", ChunkSize: chunk})
	if len(rep.Workloads) != pages*chunk {
		t.Fatalf("%d workloads, want %d bare pods; errors %v", len(rep.Workloads), pages*chunk, rep.Errors)
	}
	if atLast < pages/2 {
		t.Errorf("%d of %d pod pages collected when the last was read, want at least %d: the scan holds the pods it has read", atLast, pages, pages/2)
	}
}
