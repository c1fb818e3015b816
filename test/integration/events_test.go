package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/webhook"
)

// TestEventsOnTheDeployment: the pods of a Deployment with a typo in their
// template are created (as the ReplicaSet controller would: envtest runs no
// controller-manager, so the test creates the ReplicaSet, owned by the
// Deployment, and its pods, owned by the ReplicaSet). podgrace records the
// problem as an Event on the Deployment, where `kubectl describe deployment`
// shows it, and many pods make a few Events with a count, not one each. A
// dry run records nothing.
func TestEventsOnTheDeployment(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	ns := namespace(t, optedIn(), nil)
	labels := map[string]string{"app": "web"}
	d, err := admin.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod("", 30).Spec},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	controller := true
	rs, err := admin.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-5d4f8", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID, Controller: &controller,
		}}},
		Spec: appsv1.ReplicaSetSpec{Selector: d.Spec.Selector, Template: d.Spec.Template},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podOf := func(sleep string) *corev1.Pod {
		p := pod("", 30)
		p.GenerateName = rs.Name + "-"
		p.Labels = labels
		p.Annotations = map[string]string{policy.AnnotationPreStopSleep: sleep}
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &controller}}
		return p
	}
	// Dry runs first: they must leave no Event behind.
	for range 3 {
		if _, err := admin.CoreV1().Pods(ns).Create(ctx, podOf("dryrun"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Fatal(err)
		}
	}
	const pods = 40
	for range pods {
		if _, err := admin.CoreV1().Pods(ns).Create(ctx, podOf("15x"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	onDeployment := func() ([]corev1.Event, error) {
		list, err := admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Deployment,involvedObject.name=web",
		})
		if err != nil {
			return nil, err
		}
		return list.Items, nil
	}
	var events []corev1.Event
	// client-go's recorder sends an event, then later ones of the same
	// message as count updates: wait until the count stops changing.
	last := -1
	err = wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, false, func(context.Context) (bool, error) {
		var err error
		if events, err = onDeployment(); err != nil {
			return false, err
		}
		total := 0
		for _, e := range events {
			total += int(e.Count)
		}
		done := total > 0 && total == last
		last = total
		return done, nil
	})
	if err != nil {
		t.Fatalf("no Event on the Deployment: %v (%d events)", err, len(events))
	}
	total := 0
	for _, e := range events {
		if e.Reason != webhook.EventInvalidSetting || e.Type != corev1.EventTypeWarning || e.Source.Component != "podgrace" {
			t.Errorf("event %s: reason %s type %s source %s", e.Name, e.Reason, e.Type, e.Source.Component)
		}
		if !strings.Contains(e.Message, `podgrace.dev/prestop-sleep="15x"`) {
			t.Errorf("event message %q does not name the typo", e.Message)
		}
		if strings.Contains(e.Message, "dryrun") {
			t.Errorf("a dry run recorded an event: %q", e.Message)
		}
		total += int(e.Count)
	}
	t.Logf("%d pods made %d Event(s) on the Deployment, counts summing to %d", pods, len(events), total)
	if len(events) > 3 {
		t.Errorf("%d pods made %d Events; want a handful (aggregated)", pods, len(events))
	}
	// Nothing on the ReplicaSet: the event goes to the top-level controller.
	list, err := admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=ReplicaSet"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("events on the ReplicaSet: %v", fmt.Sprint(list.Items))
	}
}
