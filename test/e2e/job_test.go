//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/test/e2e/images"
)

// jobGrace is the Job pod's grace period: long enough that an exit by
// SIGKILL (at the end of it) cannot be mistaken for one by SIGTERM.
const jobGrace = 15

// TestRunToCompletionJobSIGTERM: a Job's pod in an opted-in namespace,
// started by a shell-form command (dash as PID 1, which ignores SIGTERM).
// podgrace gives a run-to-completion pod no preStop sleep (it would only
// delay cancellation) but still rewrites the command into exec form, so
// deleting the pod (what `kubectl delete pod` does, through client-go)
// reaches the process with SIGTERM at once.
func TestRunToCompletionJobSIGTERM(t *testing.T) {
	requirePodgrace(t)
	t.Parallel()
	ctx := context.Background()
	ns := newNamespace(t, "e2e-job", true)
	t.Cleanup(func() { diagnose(t, ns, nil) })
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "work"},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptr(int32(0)),
			Template: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{
					RestartPolicy:                 corev1.RestartPolicyNever,
					TerminationGracePeriodSeconds: ptr(int64(jobGrace)),
					EnableServiceLinks:            ptr(false),
					AutomountServiceAccountToken:  ptr(false),
					Containers: []corev1.Container{{
						Name: "work", Image: images.ShellFormRef, ImagePullPolicy: corev1.PullIfNotPresent,
						Command: append([]string(nil), images.ShellFormCmd...),
					}},
				},
			},
		},
	}
	if _, err := kube.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := poll(ctx, 60*time.Second, func(ctx context.Context) (bool, error) {
		pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=work"})
		if err != nil || len(pods.Items) == 0 {
			return retry(err)
		}
		pod = pods.Items[0]
		return true, nil
	}); err != nil {
		t.Fatalf("the Job made no pod: %v", err)
	}
	c := pod.Spec.Containers[0]
	hook := "none"
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		b, _ := json.Marshal(c.Lifecycle.PreStop)
		hook = string(b)
	}
	t.Logf("Job pod %s: command %q, preStop %s, grace %d, %s=%s", pod.Name, c.Command, hook, *pod.Spec.TerminationGracePeriodSeconds, statusAnnotation, pod.Annotations[statusAnnotation])
	if pod.Annotations[statusAnnotation] == "" {
		t.Fatalf("the Job's pod has no %s annotation: podgrace did not handle it", statusAnnotation)
	}
	if hook != "none" {
		t.Errorf("the Job's container got a preStop hook %s: a run-to-completion pod gets no sleep", hook)
	}
	if slices.Equal(c.Command, images.ShellFormCmd) || (len(c.Command) > 0 && c.Command[0] == "/bin/sh") {
		t.Errorf("the Job's shell-form command was not rewritten: %q", c.Command)
	}
	if g := *pod.Spec.TerminationGracePeriodSeconds; g != jobGrace {
		t.Errorf("terminationGracePeriodSeconds became %d, want %d (nothing to fit in it)", g, jobGrace)
	}

	if _, err := waitPodRunning(ctx, ns, pod.Name, 120*time.Second); err != nil {
		t.Fatal(err)
	}
	logs, err := followLogs(ctx, ns, pod.Name, "work")
	if err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 30*time.Second, func(context.Context) (bool, error) {
		return strings.Contains(logs.text(), "listening on"), nil
	}); err != nil {
		t.Fatalf("the Job's process did not start: logs %q", logs.text())
	}
	deleted := time.Now()
	if err := kube.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var exitAfter time.Duration
	select {
	case <-logs.done:
		exitAfter = logs.endedAt.Sub(deleted)
	case <-time.After(time.Duration(jobGrace+60) * time.Second):
		t.Fatalf("the container's log stream did not end within %ds of the delete", jobGrace+60)
	}
	// The pod stays (the Job controller's tracking finalizer) until the Job
	// controller has counted it: its final status says how the process ended.
	var term *corev1.ContainerStateTerminated
	_ = poll(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return retry(err)
		}
		if len(p.Status.ContainerStatuses) > 0 && p.Status.ContainerStatuses[0].State.Terminated != nil {
			term = p.Status.ContainerStatuses[0].State.Terminated
			return true, nil
		}
		return false, nil
	})
	text := logs.text()
	exit := "not seen (pod gone)"
	if term != nil {
		b, _ := json.Marshal(term)
		exit = string(b)
	}
	t.Logf("RESULT Job pod: SIGTERM reached the process %v, container exited %.1fs after the delete (grace %ds), final state %s; logs:\n%s",
		strings.Contains(text, "got SIGTERM"), exitAfter.Seconds(), jobGrace, exit, text)
	if !strings.Contains(text, "got SIGTERM") {
		t.Errorf("the Job's process never logged SIGTERM")
	}
	if exitAfter >= time.Duration(jobGrace)*time.Second-500*time.Millisecond {
		t.Errorf("the container exited %.1fs after the delete: at the %ds grace period, i.e. killed, not stopped by SIGTERM", exitAfter.Seconds(), jobGrace)
	}
	if term != nil && (term.ExitCode != 0 || term.Signal != 0) {
		t.Errorf("the container ended with exit code %d, signal %d (%s): not the app's own exit on SIGTERM", term.ExitCode, term.Signal, term.Reason)
	}
}
