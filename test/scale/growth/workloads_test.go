//go:build scale

package growth

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// auditRun is one `podgrace audit -A`.
type auditRun struct {
	wall      time.Duration
	cpu       time.Duration // user + system
	maxRSS    int64         // bytes
	lists     float64
	requests  float64
	workloads int
	pods      int
}

// runAudit runs bin's `audit -A -o json` and reads what it cost.
func runAudit(t *testing.T, bin string) auditRun {
	t.Helper()
	out, err := os.Create(filepath.Join(workDir, "audit.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = out.Close() }()
	before := apiMetrics(t)
	cmd := exec.Command(bin, "audit", "-A", "-o", "json", "--kubeconfig", kubeconfig)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = out, &stderr
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if err != nil {
		t.Fatalf("podgrace audit -A: %v\n%s", err, stderr.String())
	}
	after := apiMetrics(t)
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatal("no rusage for podgrace audit")
	}
	r := auditRun{
		wall:   wall,
		cpu:    time.Duration(ru.Utime.Nano() + ru.Stime.Nano()),
		maxRSS: ru.Maxrss << 10, // KiB on Linux
		lists:  after.sum("apiserver_request_total", map[string]string{"verb": "LIST"}) - before.sum("apiserver_request_total", map[string]string{"verb": "LIST"}),
		// Less the one GET of /metrics that read "before".
		requests: after.sum("apiserver_request_total", nil) - before.sum("apiserver_request_total", nil) - 1,
	}
	raw, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Workloads []struct {
			Kind string `json:"kind"`
			Pods *struct {
				Total int `json:"total"`
			} `json:"pods"`
		} `json:"workloads"`
	}
	if err := json.Unmarshal(raw, &rep); err != nil {
		t.Fatalf("podgrace audit -A -o json: %v", err)
	}
	for _, w := range rep.Workloads {
		if w.Kind != "Deployment" {
			continue
		}
		r.workloads++
		if w.Pods != nil {
			r.pods += w.Pods.Total
		}
	}
	return r
}

// TestAuditGrowth: `podgrace audit -A` (the real binary) on 5,000 and
// 50,000 pods, 10 to a ReplicaSet, each ReplicaSet under its Deployment,
// spread over 10 namespaces, created through the API (no controllers, no
// webhook registered): wall time, peak RSS (wait4's ru_maxrss), and the
// API requests it made (the API server's apiserver_request_total). The
// report must name every Deployment with all its pods. With
// PODGRACE_BASELINE_BIN set, that build is measured alternately too.
func TestAuditGrowth(t *testing.T) {
	const (
		namespaces = 10
		perRS      = 10
	)
	ctx := t.Context()
	var nss []string
	for i := range namespaces {
		ns, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("audit-%02d", i)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		nss = append(nss, ns.Name)
	}
	// Nothing is deleted: deleting 50,000 pods takes the API server
	// minutes, and it ends with the suite (this file sorts last, so the
	// other tests run against a cluster without them).
	bins := map[string]string{"podgrace": podgraceBin}
	if b := os.Getenv("PODGRACE_BASELINE_BIN"); b != "" {
		bins["baseline"] = b
	}
	grace := int64(30)
	one := int32(perRS)
	spec := corev1.PodSpec{
		TerminationGracePeriodSeconds: &grace,
		Containers: []corev1.Container{{Name: "app", Image: "registry.example/app:1", Command: []string{"/app", "serve"},
			Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
			Env:   []corev1.EnvVar{{Name: "MODE", Value: "production"}, {Name: "LOG", Value: "json"}}}},
	}
	created := 0
	var rows []string
	results := map[string]map[int]auditRun{}
	for _, pods := range []int{5000, 50000} {
		deps := pods / perRS
		start := time.Now()
		parallel(t, deps-created/perRS, 48, func(k int) error {
			d := created/perRS + k
			ns := nss[d%namespaces]
			name := fmt.Sprintf("web-%05d", d)
			labels := map[string]string{"app": name}
			dep, err := kube.AppsV1().Deployments(ns).Create(context.Background(), &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}},
			}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			yes := true
			rs, err := kube.AppsV1().ReplicaSets(ns).Create(context.Background(), &appsv1.ReplicaSet{
				ObjectMeta: metav1.ObjectMeta{Name: name + "-5d8f", Labels: labels, OwnerReferences: []metav1.OwnerReference{
					{APIVersion: "apps/v1", Kind: "Deployment", Name: dep.Name, UID: dep.UID, Controller: &yes}}},
				Spec: appsv1.ReplicaSetSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
					Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}},
			}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			for p := range perRS {
				_, err := kube.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%02d", rs.Name, p), Labels: labels, OwnerReferences: []metav1.OwnerReference{
						{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}}},
					Spec: spec,
				}, metav1.CreateOptions{})
				if err != nil {
					return err
				}
			}
			return nil
		})
		took := time.Since(start)
		t.Logf("RESULT audit setup: %d pods (+%d Deployments, +%d ReplicaSets) created in %v: %.0f pods/s",
			pods-created, deps-created/perRS, deps-created/perRS, took.Round(time.Millisecond), float64(pods-created)/took.Seconds())
		created = pods
		for _, name := range []string{"baseline", "podgrace"} {
			bin, ok := bins[name]
			if !ok {
				continue
			}
			r := runAudit(t, bin)
			if results[name] == nil {
				results[name] = map[int]auditRun{}
			}
			results[name][pods] = r
			if r.workloads != deps || r.pods != pods {
				t.Errorf("%s audit -A on %d pods: %d Deployments with %d pods in the report; want %d with %d", name, pods, r.workloads, r.pods, deps, pods)
			}
			rows = append(rows, fmt.Sprintf("| %s | %d | %d | %.2f s | %.2f s | %.1f | %.0f | %.0f |", name, pods, deps, r.wall.Seconds(), r.cpu.Seconds(), mib(r.maxRSS), r.lists, r.requests))
			t.Logf("RESULT audit %s: %d pods, %d Deployments: %v (CPU %v), peak RSS %.1f MiB, %.0f LIST requests, %.0f requests in all",
				name, pods, deps, r.wall.Round(time.Millisecond), r.cpu.Round(time.Millisecond), mib(r.maxRSS), r.lists, r.requests)
		}
	}
	t.Logf("RESULT audit table\n| build | pods | Deployments | wall | CPU | peak RSS MiB | LIST requests | requests |\n|---|---|---|---|---|---|---|---|\n%s", strings.Join(rows, "\n"))
	small, big := results["podgrace"][5000], results["podgrace"][50000]
	t.Logf("RESULT audit growth 5,000 → 50,000 pods (10×): wall %.2f×, CPU %.2f×, peak RSS %.2f×, requests %.2f×",
		big.wall.Seconds()/small.wall.Seconds(), big.cpu.Seconds()/small.cpu.Seconds(), float64(big.maxRSS)/float64(small.maxRSS), big.requests/small.requests)
	// Linear or better: 10× the cluster costs at most ~10× (a margin for a
	// loaded machine) in the audit's own CPU and in requests. Its wall time
	// also waits for a shared API server, and is reported only.
	if r := big.cpu.Seconds() / small.cpu.Seconds(); r > 13 {
		t.Errorf("audit CPU time grew %.1f× for 10× the pods", r)
	}
	if r := float64(big.maxRSS) / float64(small.maxRSS); r > 10 {
		t.Errorf("audit peak RSS grew %.1f× for 10× the pods", r)
	}
	if r := big.requests / small.requests; r > 11 {
		t.Errorf("audit requests grew %.1f× for 10× the pods", r)
	}
}
