//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/calibrate"
)

// slowBatch is the ingress proxy's batching delay on the slow path (issue
// 28): longer than podgrace's default sleep for the arms' grace period
// (pathGrace 20 s, so S = pathSleep = 10 s).
const (
	slowBatch = 15 * time.Second
	// calibrateTolerance is how far the measured delay may be from what
	// the proxy adds on top of the EndpointSlice update.
	calibrateTolerance = 3 * time.Second
)

// TestCalibrateSlowPath proves `podgrace calibrate` on a path slower than
// podgrace's default sleep: (a) behind the ingress proxy with a 15 s
// batching delay, a rolling update with the default sleep (10 s) fails
// requests; (b) calibrate through that path (2 trials, 30 s window)
// measures the delay and recommends a sleep covering it, written to a
// namespace with --apply-to-namespace; (c) the same rolling update in that
// namespace fails none. (a) and (b) run at the same time.
func TestCalibrateSlowPath(t *testing.T) {
	requirePodgrace(t)
	t.Parallel()
	ctx := context.Background()
	applied := newNamespace(t, "e2e-calibrated", true)
	var rep *calibrate.Report
	t.Run("group", func(t *testing.T) {
		t.Run("default-sleep", func(t *testing.T) {
			t.Parallel()
			res, ok := pathRollout(t, pathArm{name: "default-sleep", kind: pathIngress, podgrace: true, batch: slowBatch})
			if !ok {
				return
			}
			t.Logf("RESULT slow path (ingress batch %s), podgrace default sleep %ds: failed %d of %d", slowBatch, pathSleep, res.failed(), res.Requests)
			if res.failed() == 0 {
				t.Errorf("with podgrace's default sleep (%ds) no request failed behind a %s batching delay: the race was not reproduced (%s)", pathSleep, slowBatch, res)
			}
		})
		t.Run("calibrate", func(t *testing.T) {
			t.Parallel()
			rep = runCalibrate(t, applied)
		})
	})
	if rep == nil || t.Failed() {
		return
	}
	got, err := kube.CoreV1().Namespaces().Get(ctx, applied, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := strconv.FormatInt(rep.Recommendation.SleepSeconds, 10) + "s"
	if v := got.Annotations["podgrace.dev/prestop-sleep"]; v != want {
		t.Fatalf("--apply-to-namespace %s: annotation podgrace.dev/prestop-sleep=%q, want %q", applied, v, want)
	}
	res, ok := pathRollout(t, pathArm{name: "calibrated", kind: pathIngress, podgrace: true, batch: slowBatch, namespace: applied})
	if !ok {
		return
	}
	t.Logf("RESULT slow path (ingress batch %s), calibrated sleep %s: failed %d of %d", slowBatch, want, res.failed(), res.Requests)
	if res.failed() != 0 {
		t.Errorf("with the calibrated sleep %s, %d requests failed behind a %s batching delay (%s)", want, res.failed(), slowBatch, res)
	}
}

// runCalibrate puts the ingress proxy in front of calibrate's probe
// Service and runs the podgrace binary `make e2e` built, as a user would.
func runCalibrate(t *testing.T, applyTo string) *calibrate.Report {
	t.Helper()
	ctx := context.Background()
	ns := newNamespace(t, "e2e-calib-path", false)
	createIngress(t, ns, calibrate.DefaultNamespace, calibrate.ProbeName, slowBatch)
	svc, err := kube.CoreV1().Services(ns).Get(ctx, "ingress", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + net.JoinHostPort(svc.Spec.ClusterIP, "80") + "/"
	// The released CLI (hack/cluster/publish.sh), the linux/amd64 binary
	// its archive holds.
	bin := filepath.Join(env.ReleaseDir, "_build", "bin", "linux-amd64", "podgrace")
	args := []string{"calibrate", "--kubeconfig", env.Kubeconfig, "--trials", "2", "--window", "30s",
		"--url", url, "--apply-to-namespace", applyTo, "-o", "json"}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err = cmd.Run()
	t.Logf("podgrace %v (%.0fs):\n%s", args, time.Since(start).Seconds(), stderr.String())
	if err != nil {
		t.Fatalf("podgrace calibrate: %v\nstdout:\n%s", err, stdout.String())
	}
	rep, err := calibrate.ReadReport(stdout.Bytes())
	if err != nil {
		t.Fatalf("reading calibrate's JSON: %v\n%s", err, stdout.String())
	}
	t.Logf("calibrate's report:\n%s", stdout.String())
	if _, err := kube.CoreV1().Namespaces().Get(ctx, calibrate.DefaultNamespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("namespace %s is still there after calibrate returned (%v)", calibrate.DefaultNamespace, err)
	}
	if len(rep.Trials) != 2 || !rep.Complete {
		t.Fatalf("report: %d trials, complete %v (%v); want 2, complete", len(rep.Trials), rep.Complete, rep.Incomplete)
	}
	var slowest float64
	for i, tr := range rep.Trials {
		d := tr.LastNewConnectionAfterEndpointSliceSeconds
		if d == nil || tr.LastNewConnectionAfterSigtermSeconds == nil {
			t.Errorf("trial %d: no new connection after SIGTERM or no EndpointSlice update measured: %+v", i+1, tr)
			continue
		}
		slowest = max(slowest, *tr.LastNewConnectionAfterSigtermSeconds)
		t.Logf("RESULT calibrate trial %d: last new connection %.1fs after the EndpointSlice update (proxy batch %s), %.1fs after SIGTERM",
			i+1, *d, slowBatch, *tr.LastNewConnectionAfterSigtermSeconds)
		if off := time.Duration(*d*float64(time.Second)) - slowBatch; off < -calibrateTolerance || off > calibrateTolerance {
			t.Errorf("trial %d: measured %.1fs on top of the EndpointSlice update; the proxy adds %s (tolerance ±%s)", i+1, *d, slowBatch, calibrateTolerance)
		}
	}
	s := rep.Recommendation.SleepSeconds
	t.Logf("RESULT calibrate recommends S=%ds T=%ds (propagation %.1fs)", s, rep.Recommendation.GracePeriodSeconds, rep.PropagationSeconds)
	if float64(s) < slowest || time.Duration(s)*time.Second <= slowBatch {
		t.Errorf("recommended sleep %ds does not cover the slowest trial (%.1fs) or the proxy's %s", s, slowest, slowBatch)
	}
	if s <= pathSleep {
		t.Errorf("recommended sleep %ds is not longer than the default %ds that fails on this path", s, pathSleep)
	}
	return rep
}
