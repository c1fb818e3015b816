//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/test/e2e/images"
)

// The shell-form test (issue 7, 3b): an app started by `/bin/sh -c "app
// --port 8080"` with Debian's dash as /bin/sh. dash forks the app and waits;
// as PID 1 it ignores SIGTERM, so without podgrace the app never hears of
// the shutdown and is SIGKILLed when the grace period ends. podgrace rewrites
// the command into exec form (here: the shell dropped, the app is PID 1) and
// adds a preStop sleep, so the app logs SIGTERM right after the sleep.
const (
	shellGrace = 20 // terminationGracePeriodSeconds of the test pods
	// shellSleep is podgrace's auto preStop sleep for T=20 with the default
	// cluster config: clamp(0.5*20, 5s, 60s) = 10 s (docs/design.md §4).
	shellSleep = 10
)

type shellCase struct {
	name      string
	podgrace  bool
	fromImage bool // no command in the pod spec: the shell form comes from the image's CMD
}

type termination struct {
	sigterm   bool          // the app logged "got SIGTERM"
	exitAfter time.Duration // delete request -> the container's log stream ended (it exited)
	goneAfter time.Duration // delete request -> the pod object was gone
	command   []string      // the container's command as admitted
	image     string        // the container's image as admitted
	preStop   string
	logs      string
}

func TestShellFormSIGTERM(t *testing.T) {
	cases := []shellCase{
		{name: "without-podgrace/cmd-from-image", fromImage: true},
		{name: "without-podgrace/command-in-spec"},
		{name: "with-podgrace/command-in-spec", podgrace: true},
		{name: "with-podgrace/cmd-from-image", podgrace: true, fromImage: true},
	}
	var mu sync.Mutex
	results := map[string]termination{}
	t.Run("group", func(t *testing.T) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if tc.podgrace {
					requirePodgrace(t)
				}
				t.Parallel()
				r := shellFormPod(t, tc)
				mu.Lock()
				results[tc.name] = r
				mu.Unlock()
				checkTermination(t, tc, r)
			})
		}
	})
	for _, tc := range cases {
		if r, ok := results[tc.name]; ok {
			t.Logf("RESULT shell form %-36s SIGTERM reached the app: %-5v  container exit %5.1fs, pod gone %5.1fs after delete (grace %ds, preStop sleep %s)",
				tc.name, r.sigterm, r.exitAfter.Seconds(), r.goneAfter.Seconds(), shellGrace, sleepOf(r))
		}
	}
}

func checkTermination(t *testing.T, tc shellCase, r termination) {
	t.Helper()
	t.Logf("image %s, command %q, preStop %s; SIGTERM logged %v; exit after %.1fs, gone after %.1fs; logs:\n%s",
		r.image, r.command, r.preStop, r.sigterm, r.exitAfter.Seconds(), r.goneAfter.Seconds(), r.logs)
	grace := time.Duration(shellGrace) * time.Second
	if !tc.podgrace {
		if r.sigterm {
			t.Errorf("the app logged SIGTERM although dash was PID 1: the test image does not reproduce the problem")
		}
		if r.exitAfter < grace-time.Second {
			t.Errorf("the container exited %.1fs after the delete, before the %ds grace period ended", r.exitAfter.Seconds(), shellGrace)
		}
		return
	}
	if slices.Equal(r.command, images.ShellFormCmd) || (len(r.command) > 0 && r.command[0] == "/bin/sh") {
		t.Errorf("podgrace left the shell-form command %q", r.command)
	}
	if r.preStop == "" {
		t.Errorf("podgrace added no preStop hook")
	}
	if tc.fromImage && !strings.Contains(r.image, "@sha256:") {
		// pinDigest (default true): the rewritten command must run with the
		// image it was read from.
		t.Errorf("the command was rewritten from the image's CMD but the image %s is not pinned to the inspected digest", r.image)
	}
	if !r.sigterm {
		t.Errorf("the app never logged SIGTERM")
	}
	// The app exits the moment SIGTERM arrives, so its exit time is the
	// signal's: after the preStop sleep, and before the grace period ends
	// (no SIGKILL). How long after the sleep is the kubelet's latency; it is
	// printed, and only flagged in the log when the machine was slow.
	sleep := time.Duration(shellSleep) * time.Second
	if r.exitAfter < sleep-time.Second {
		t.Errorf("the container exited %.1fs after the delete, before the %ds preStop sleep ended", r.exitAfter.Seconds(), shellSleep)
	}
	if r.exitAfter >= grace-500*time.Millisecond {
		t.Errorf("the container exited %.1fs after the delete: at the %ds grace period, i.e. killed, not stopped by SIGTERM", r.exitAfter.Seconds(), shellGrace)
	}
	if late := r.exitAfter - sleep; late > 5*time.Second {
		t.Logf("NOTE: SIGTERM came %.1fs after the preStop sleep (usually 1-3 s): the node was slow (load average %s)", late.Seconds(), loadAvg())
	}
}

func shellFormPod(t *testing.T, tc shellCase) termination {
	ctx := context.Background()
	ns := newNamespace(t, "e2e-shell", tc.podgrace)
	image := images.ShellFormRef
	if tc.fromImage && tc.podgrace {
		// podgrace reads the image config from a registry: the e2e registry.
		image = registryImage(t, images.ShellFormRef)
	}
	c := corev1.Container{Name: "app", Image: image, ImagePullPolicy: corev1.PullIfNotPresent}
	if !tc.fromImage {
		c.Command = append([]string(nil), images.ShellFormCmd...)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "shellform"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr(int64(shellGrace)),
			EnableServiceLinks:            ptr(false),
			AutomountServiceAccountToken:  ptr(false),
			Containers:                    []corev1.Container{c},
		},
	}
	created, err := kube.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := termination{command: created.Spec.Containers[0].Command, image: created.Spec.Containers[0].Image}
	if ps := created.Spec.Containers[0].Lifecycle; ps != nil && ps.PreStop != nil {
		b, _ := json.Marshal(ps.PreStop)
		r.preStop = string(b)
	}
	if g := created.Spec.TerminationGracePeriodSeconds; g == nil || *g != shellGrace {
		t.Fatalf("terminationGracePeriodSeconds became %v, the test expects %d", g, shellGrace)
	}
	if _, err := waitPodRunning(ctx, ns, pod.Name, 120*time.Second); err != nil {
		t.Fatal(err)
	}
	logs, err := followLogs(ctx, ns, pod.Name, "app")
	if err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, 30*time.Second, func(context.Context) (bool, error) {
		return strings.Contains(logs.text(), "listening on"), nil
	}); err != nil {
		t.Fatalf("the app did not start: logs %q", logs.text())
	}

	deleted := time.Now()
	if err := kube.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-logs.done:
		r.exitAfter = logs.endedAt.Sub(deleted)
	case <-time.After(time.Duration(shellGrace+60) * time.Second):
		t.Fatalf("the container's log stream did not end within %ds of the delete", shellGrace+60)
	}
	if err := poll(ctx, 90*time.Second, func(ctx context.Context) (bool, error) {
		_, err := kube.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		t.Fatalf("pod not gone: %v", err)
	}
	r.goneAfter = time.Since(deleted)
	r.logs = logs.text()
	r.sigterm = strings.Contains(r.logs, "got SIGTERM")
	return r
}

func sleepOf(r termination) string {
	if r.preStop == "" {
		return "none"
	}
	return fmt.Sprintf("%ds", shellSleep)
}

// logFollower collects a container's log stream until it ends (the
// container exited).
type logFollower struct {
	mu      sync.Mutex
	buf     strings.Builder
	done    chan struct{}
	endedAt time.Time
}

func (l *logFollower) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func followLogs(ctx context.Context, ns, pod, container string) (*logFollower, error) {
	return followLogsOpts(ctx, ns, pod, &corev1.PodLogOptions{Container: container, Follow: true})
}

func followLogsOpts(ctx context.Context, ns, pod string, opts *corev1.PodLogOptions) (*logFollower, error) {
	stream, err := kube.CoreV1().Pods(ns).GetLogs(pod, opts).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("following logs of %s/%s: %w", ns, pod, err)
	}
	l := &logFollower{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		defer func() { _ = stream.Close() }()
		sc := bufio.NewScanner(stream)
		for sc.Scan() {
			l.mu.Lock()
			l.buf.WriteString(sc.Text() + "\n")
			l.mu.Unlock()
		}
		l.endedAt = time.Now()
	}()
	return l, nil
}
