//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// podgrace's own rolling restart (issue 7, 3c): pods are created in an
// opted-in namespace, one every createInterval, while podgrace's Deployment
// rolls (what `kubectl rollout restart` does). With failurePolicy Ignore a
// webhook outage would not fail a creation, it would silently skip the
// mutation, so every created pod's status annotation is checked.
const (
	createInterval   = 150 * time.Millisecond
	createTimeout    = 30 * time.Second // a client's patience; the webhook itself times out after 5 s
	createMaxPods    = 1500
	createMaxTime    = 4 * time.Minute
	createLeadIn     = 3 * time.Second
	createTail       = 5 * time.Second
	createMinCreated = 100
)

func TestPodgraceRollingRestart(t *testing.T) {
	requirePodgrace(t)
	ctx := context.Background()
	ns := newNamespace(t, "e2e-restart", true)

	var mu sync.Mutex
	created, failed, unmutated := 0, 0, 0
	var samples []string
	stop := make(chan struct{})
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		tick := time.NewTicker(createInterval)
		defer tick.Stop()
		for i := 0; i < createMaxPods && time.Since(start) < createMaxTime; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			cctx, cancel := context.WithTimeout(ctx, createTimeout)
			pod, err := kube.CoreV1().Pods(ns).Create(cctx, probePod(fmt.Sprintf("p-%04d", i)), metav1.CreateOptions{})
			cancel()
			mu.Lock()
			switch {
			case err != nil:
				failed++
				if len(samples) < 10 {
					samples = append(samples, fmt.Sprintf("t=%.1fs create failed: %v", time.Since(start).Seconds(), err))
				}
			case pod.Annotations[statusAnnotation] == "":
				created++
				unmutated++
				if len(samples) < 10 {
					samples = append(samples, fmt.Sprintf("t=%.1fs %s admitted without %s", time.Since(start).Seconds(), pod.Name, statusAnnotation))
				}
			default:
				created++
			}
			mu.Unlock()
		}
	}()

	time.Sleep(createLeadIn)
	restartedAt := time.Now()
	patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, restartedAt.Format(time.RFC3339))
	_, err := kube.AppsV1().Deployments(pg.Namespace).Patch(ctx, pg.Deployment, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		close(stop)
		<-done
		t.Fatal(err)
	}
	rollErr := waitRollout(ctx, pg.Namespace, pg.Deployment)
	rolled := time.Since(restartedAt)
	d, err := kube.AppsV1().Deployments(pg.Namespace).Get(ctx, pg.Deployment, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sel := metav1.FormatLabelSelector(d.Spec.Selector)
	goneErr := waitOnlyPods(ctx, pg.Namespace, sel, int(*d.Spec.Replicas))
	gone := time.Since(restartedAt)
	time.Sleep(createTail)
	close(stop)
	<-done

	t.Logf("podgrace restart: rolled out %.1fs after the restart, old pods gone after %.1fs", rolled.Seconds(), gone.Seconds())
	for _, s := range samples {
		t.Logf("  %s", s)
	}
	t.Logf("RESULT podgrace rolling restart: %d pods created over %.1fs (one every %s), %d creations failed, %d admitted without %s (load average %s)",
		created+failed, time.Since(start).Seconds(), createInterval, failed, unmutated, statusAnnotation, loadAvg())
	if rollErr != nil {
		t.Fatal(rollErr)
	}
	if goneErr != nil {
		t.Fatal(goneErr)
	}
	if failed != 0 {
		t.Errorf("%d pod creations failed during podgrace's rolling restart", failed)
	}
	if unmutated != 0 {
		t.Errorf("%d pods were admitted without podgrace's mutation during its rolling restart", unmutated)
	}
	if created < createMinCreated {
		t.Errorf("only %d pods were created: not enough to cover the restart", created)
	}
}
