//go:build scale

// Package storm measures a pod-create storm through a real kube-apiserver
// (envtest, --enable-aggregator-routing) against two `podgrace webhook`
// processes behind the chart's Service, with no webhook and with a no-op
// webhook (test/bench/floorserver) as baselines in the same run, and again
// while one replica is evicted (docs/develop/performance.md, "Storm").
// `make bench-scale SCALE_RUN=TestStorm` runs it; it is behind the `scale`
// build tag, so `make test` never starts it.
package storm

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// The suite's state, set up by TestMain.
var (
	restConfig *rest.Config
	kube       *kubernetes.Clientset
	workDir    string
	kubeconfig string // a system:masters user's, for the webhook processes
	// bins are the built binaries: podgrace (PODGRACE_BIN) and floorserver.
	bins = map[string]string{}
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		fmt.Fprintln(os.Stderr, "FAIL: KUBEBUILDER_ASSETS is unset: run `make bench-scale`, or `make envtest-assets` and export KUBEBUILDER_ASSETS=bin/k8s/<version>-linux-amd64")
		return 1
	}
	var err error
	workDir, err = os.MkdirTemp("", "podgrace-storm-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	keep := os.Getenv("BENCH_KEEP") != ""
	defer func() {
		if !keep {
			_ = os.RemoveAll(workDir)
		}
	}()
	built := make(chan error, 1)
	go func() { built <- build() }()

	env := &envtest.Environment{ControlPlaneStartTimeout: 2 * time.Minute, ControlPlaneStopTimeout: time.Minute}
	// Service-referenced webhooks are called at an endpoint of the
	// Service's EndpointSlices: no kube-proxy routes cluster IPs here.
	env.ControlPlane.GetAPIServer().Configure().Set("enable-aggregator-routing", "true")
	// The API server's log stays with the processes' logs (kept when a
	// test fails): it says why a webhook call failed open.
	apiLog, err := os.Create(filepath.Join(workDir, "kube-apiserver.log"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = apiLog.Close() }()
	env.ControlPlane.GetAPIServer().Out, env.ControlPlane.GetAPIServer().Err = apiLog, apiLog
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: starting kube-apiserver and etcd:", err)
		return 1
	}
	defer func() { _ = env.Stop() }()
	if err := <-built; err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	restConfig = cfg
	kube = kubernetes.NewForConfigOrDie(cfg)
	user, err := env.AddUser(envtest.User{Name: "podgrace", Groups: []string{"system:masters"}}, nil)
	if err == nil {
		var kc []byte
		if kc, err = user.KubeConfig(); err == nil {
			kubeconfig = filepath.Join(workDir, "kubeconfig")
			err = os.WriteFile(kubeconfig, kc, 0o600)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	rc := m.Run()
	if rc != 0 {
		fmt.Fprintln(os.Stderr, "logs in", workDir, "(kept)")
		keep = true
	}
	return rc
}

// build builds the floor server, and podgrace unless PODGRACE_BIN names it
// (`make bench-scale` passes bin/podgrace; a relative path is taken from
// test/scale/storm).
func build() error {
	pkgs := []string{"github.com/podgrace/podgrace/test/bench/floorserver"}
	bins["floorserver"] = filepath.Join(workDir, "floorserver")
	if p := os.Getenv("PODGRACE_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("PODGRACE_BIN: %w", err)
		}
		bins["podgrace"] = abs
	} else {
		pkgs = append(pkgs, "github.com/podgrace/podgrace/cmd/podgrace")
		bins["podgrace"] = filepath.Join(workDir, "podgrace")
	}
	args := append([]string{"build", "-trimpath", "-ldflags=-s -w", "-o", workDir + "/"}, pkgs...)
	cmd := exec.Command("go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}
