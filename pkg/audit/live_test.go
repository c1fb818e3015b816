package audit

import (
	"bytes"
	"context"
	"strings"
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
