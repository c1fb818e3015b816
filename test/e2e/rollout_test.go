//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podgrace/podgrace/test/e2e/images"
)

// The rolling update under load (issue 7, 3a): the same Deployment of the
// naive server (exits the moment SIGTERM arrives) in a namespace without
// podgrace and in an opted-in one, a rollout while a bounded load goes
// through the Service's ClusterIP (kube-proxy's iptables rules), a new TCP
// connection per request.
const (
	rolloutReplicas = 3
	rolloutGrace    = 30 // terminationGracePeriodSeconds (the Kubernetes default)
	loadWorkers     = 2
	loadInterval    = 10 * time.Millisecond
	loadTimeout     = 5 * time.Second
	loadMinDuration = 40 * time.Second
	loadMaxDuration = 150 * time.Second
	loadMaxRequests = 20000
	loadLeadIn      = 3 * time.Second // load before the rollout starts
	loadTail        = 3 * time.Second // load after the last old pod is gone
	rolloutTimeout  = 3 * time.Minute // a rollout, or old pods going away
)

func TestRollingUpdateUnderLoad(t *testing.T) {
	// Run in sequence: two loads at once on a 2-core node would measure
	// each other.
	var without, with loadResult
	t.Run("without-podgrace", func(t *testing.T) {
		without = rolloutUnderLoad(t, false)
		if without.failed() == 0 {
			t.Errorf("without podgrace no request failed during the rollout: the race podgrace fixes did not show (%s)", without)
		}
	})
	t.Run("with-podgrace", func(t *testing.T) {
		requirePodgrace(t)
		with = rolloutUnderLoad(t, true)
		if with.dropped() != 0 {
			t.Errorf("with podgrace %d connections were refused or reset during the rollout (%s)", with.dropped(), with)
		}
	})
	t.Logf("RESULT rolling update, failed requests: without podgrace %d (refused %d, reset %d, timeout %d, 5xx %d) / with podgrace %d (refused %d, reset %d, timeout %d, 5xx %d)",
		without.failed(), without.Failures[failRefused], without.Failures[failReset], without.Failures[failTimeout], without.Failures[fail5xx],
		with.failed(), with.Failures[failRefused], with.Failures[failReset], with.Failures[failTimeout], with.Failures[fail5xx])
}

func rolloutUnderLoad(t *testing.T, podgrace bool) loadResult {
	ctx := context.Background()
	ns := newNamespace(t, "e2e-rollout", podgrace)
	deploy, svc := webDeployment(), webService()
	if _, err := kube.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.AppsV1().Deployments(ns).Create(ctx, deploy, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := waitRollout(ctx, ns, "web"); err != nil {
		t.Fatal(err)
	}
	checkInjection(t, ns, podgrace)

	svc, err := kube.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	target := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/"
	if err := waitServing(ctx, target, 60*time.Second); err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	done := make(chan loadResult, 1)
	loadErr := make(chan error, 1)
	go func() {
		res, err := runLoad(ctx, loadConfig{
			URL: target, Workers: loadWorkers, Interval: loadInterval, Timeout: loadTimeout,
			MaxRequests: loadMaxRequests, MaxDuration: loadMaxDuration,
		}, stop)
		loadErr <- err
		done <- res
	}()
	loadStart := time.Now()
	time.Sleep(loadLeadIn)

	// The rollout: a new version of the template, as a deploy does.
	triggered := time.Now()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"VERSION","value":"v2-%d"}]}]}}}}`, triggered.Unix())
	if _, err := kube.AppsV1().Deployments(ns).Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		close(stop)
		t.Fatal(err)
	}
	rolloutErr := waitRollout(ctx, ns, "web")
	rolledOut := time.Since(triggered)
	// Every old pod must be gone (its preStop sleep over, its process
	// exited) before the load stops, or a late failure would go uncounted.
	goneErr := waitOnlyPods(ctx, ns, "app=web", rolloutReplicas)
	allGone := time.Since(triggered)
	time.Sleep(loadTail)
	if rest := loadMinDuration - time.Since(loadStart); rest > 0 {
		time.Sleep(rest)
	}
	close(stop)
	res := <-done
	if err := <-loadErr; err != nil {
		t.Fatal(err)
	}
	if rolloutErr != nil {
		t.Fatal(rolloutErr)
	}
	if goneErr != nil {
		t.Fatal(goneErr)
	}
	label := "without podgrace"
	if podgrace {
		label = "with podgrace"
	}
	t.Logf("%s: rollout done %.1fs after the trigger, last old pod gone after %.1fs", label, rolledOut.Seconds(), allGone.Seconds())
	t.Logf("%s: %s (load average %s)", label, res, loadAvg())
	for _, s := range res.Samples {
		t.Logf("  %s", s)
	}
	if res.Duration >= loadMaxDuration-time.Second || res.Requests >= loadMaxRequests {
		t.Errorf("the load hit its bound (%s) before the rollout ended: the count does not cover the whole rollout", res)
	}
	if res.Requests < 1000 {
		t.Errorf("only %d requests were sent: too little load to measure anything", res.Requests)
	}
	if len(res.Versions) < 2 {
		t.Errorf("responses came from versions %v only: the rollout was not observed through the Service", res.Versions)
	}
	return res
}

func webDeployment() *appsv1.Deployment {
	lbl := map[string]string{"app": "web"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr(int32(rolloutReplicas)),
			Selector: &metav1.LabelSelector{MatchLabels: lbl},
			Strategy: appsv1.DeploymentStrategy{
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxSurge:       ptr(intstr.FromInt32(1)),
					MaxUnavailable: ptr(intstr.FromInt32(0)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: lbl},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr(int64(rolloutGrace)),
					EnableServiceLinks:            ptr(false),
					AutomountServiceAccountToken:  ptr(false),
					Containers: []corev1.Container{{
						Name:  "web",
						Image: images.TestServerRef,
						// Exec form, written out: this test is about the
						// preStop sleep alone (no image inspection involved).
						Command:         []string{"/usr/local/bin/app", "--port", "8080"},
						ImagePullPolicy: corev1.PullIfNotPresent,
						Env:             []corev1.EnvVar{{Name: "VERSION", Value: "v1"}},
						Ports:           []corev1.ContainerPort{{ContainerPort: 8080}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
								Path: "/readyz", Port: intstr.FromInt32(8080),
							}},
							PeriodSeconds: 1,
						},
					}},
				},
			},
		},
	}
}

func webService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
}

// checkInjection verifies the pods are what the test claims: with podgrace a
// preStop sleep and the status annotation on every pod; without, neither.
func checkInjection(t *testing.T, ns string, podgrace bool) {
	t.Helper()
	pods, err := kube.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		c := p.Spec.Containers[0]
		hasSleep := c.Lifecycle != nil && c.Lifecycle.PreStop != nil
		_, hasStatus := p.Annotations[statusAnnotation]
		switch {
		case podgrace && (!hasSleep || !hasStatus):
			t.Fatalf("pod %s in opted-in namespace %s: preStop %v, %s annotation %v: podgrace did not mutate it", p.Name, ns, hasSleep, statusAnnotation, hasStatus)
		case !podgrace && (hasSleep || hasStatus):
			t.Fatalf("pod %s in namespace %s without podgrace was mutated (preStop %v, status %v)", p.Name, ns, hasSleep, hasStatus)
		}
		if podgrace {
			hook, _ := json.Marshal(c.Lifecycle.PreStop)
			t.Logf("pod %s: preStop %s, terminationGracePeriodSeconds %d, %s=%s", p.Name, hook, *p.Spec.TerminationGracePeriodSeconds, statusAnnotation, p.Annotations[statusAnnotation])
			return // one is enough for the log; all were checked above
		}
	}
}

// waitRollout waits until the Deployment's rollout is complete, as
// `kubectl rollout status` decides it.
func waitRollout(ctx context.Context, ns, name string) error {
	var last *appsv1.Deployment
	err := poll(ctx, rolloutTimeout, func(ctx context.Context) (bool, error) {
		d, err := kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return retry(err)
		}
		last = d
		want := *d.Spec.Replicas
		return d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want &&
			d.Status.Replicas == want && d.Status.AvailableReplicas == want, nil
	})
	if err != nil && last != nil {
		return fmt.Errorf("deployment %s/%s did not roll out: %+v: %w", ns, name, last.Status, err)
	}
	return err
}

// waitOnlyPods waits until exactly n pods match the selector and none is
// terminating.
func waitOnlyPods(ctx context.Context, ns, selector string, n int) error {
	sel, err := labels.Parse(selector)
	if err != nil {
		return err
	}
	count := 0
	err = poll(ctx, rolloutTimeout, func(ctx context.Context) (bool, error) {
		pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return retry(err)
		}
		count = len(pods.Items)
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				return false, nil
			}
		}
		return count == n, nil
	})
	if err != nil {
		return fmt.Errorf("pods %q in %s: %d left (want %d, none terminating): %w", selector, ns, count, n, err)
	}
	return nil
}

// waitServing waits until 20 requests in a row succeed through the Service.
func waitServing(ctx context.Context, target string, timeout time.Duration) error {
	if err := checkTarget(target); err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}
	streak := 0
	var lastErr error
	err := poll(ctx, timeout, func(ctx context.Context) (bool, error) {
		for streak < 20 {
			_, kind, detail := request(ctx, client, target)
			if kind != "" {
				streak, lastErr = 0, fmt.Errorf("%s: %s", kind, detail)
				return false, nil
			}
			streak++
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%s does not serve (last error: %w): %w", target, lastErr, err)
	}
	return nil
}
