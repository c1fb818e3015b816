//go:build bench

// Package bench measures podgrace end to end, each number against a
// baseline measured in the same run (docs/develop/performance.md; `make bench`):
//
//   - BenchmarkHTTPS: the real `podgrace webhook` binary against the
//     transport floor (test/bench/floorserver: the same server stack and
//     TLS, answering with baseline.Floor), both loaded by hack/loadgen over
//     HTTPS keep-alive HTTP/1.1 on loopback: throughput, latency at 1,000
//     admissions/s, and podgrace's RSS idle and under load.
//   - BenchmarkPodCreate: pod CREATE latency through a real kube-apiserver
//     (envtest) with no webhook, with a no-op webhook (the floor server,
//     registered as podgrace is), with that no-op returning podgrace's
//     patch, with podgrace, and with the admission policies `podgrace
//     generate policy` prints; podgrace's added latency as a ratio to the
//     no-op's.
//
// BENCH_VARIANTS=stdpatch,stddecode adds podgrace built without its
// hand-written patch encoder (encoding/json in its place) and without its
// fast decoder (the review decoded in one pass by sigs.k8s.io/json instead
// of go-json-experiment/json) to both benchmarks, in the same alternating
// rounds: `make bench-codecs` (variantTags lists every variant).
//
// The benchmarks run once per invocation (`-benchtime=1x`): their rounds,
// alternating the systems compared, are the measurement. They are behind
// the `bench` build tag, so `make test` never starts them.
package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/podgrace/podgrace/internal/freeport"
	"github.com/podgrace/podgrace/internal/procstat"
	"github.com/podgrace/podgrace/internal/testcert"
	"github.com/podgrace/podgrace/pkg/webhook"
)

// benchNamespace is the namespace of the bench reviews
// (test/bench/testdata/reviews): it must exist so podgrace finds it in its
// namespace cache, as it would in a cluster.
const benchNamespace = "bench"

// typicalReview is the ~5 KB pod of the handler benchmarks.
const typicalReview = "testdata/reviews/typical.json"

// The suite's state, set up by TestMain.
var (
	restConfig *rest.Config
	kube       *kubernetes.Clientset
	workDir    string
	caPEM      []byte
	caFile     string
	loadgenBin string
	podgrace   *server
	floor      *server
	// variants are podgrace built with other build tags (BENCH_VARIANTS).
	variants []*server
	// idleRSS is each server's VmRSS in KiB once ready, before any load.
	idleRSS = map[string]int64{}
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		fmt.Fprintln(os.Stderr, "FAIL: KUBEBUILDER_ASSETS is unset: run `make bench`, or `make envtest-assets` and export KUBEBUILDER_ASSETS=bin/k8s/<version>-linux-amd64")
		return 1
	}
	var err error
	workDir, err = os.MkdirTemp("", "podgrace-bench-")
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

	env := &envtest.Environment{ControlPlaneStartTimeout: 2 * time.Minute, ControlPlaneStopTimeout: time.Minute}
	stop, err := setUp(env)
	defer stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: setting up:", err)
		fmt.Fprintln(os.Stderr, "logs in", workDir, "(kept)")
		keep = true
		return 1
	}
	rc := m.Run()
	if rc != 0 {
		fmt.Fprintln(os.Stderr, "logs in", workDir, "(kept)")
		keep = true
	}
	return rc
}

// setUp builds the binaries, starts the control plane, podgrace and the
// floor server; the returned func undoes what was done.
func setUp(env *envtest.Environment) (func(), error) {
	var undo []func()
	stop := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	start := time.Now()
	// Build while the control plane starts.
	built := make(chan error, 1)
	bins := map[string]string{}
	variantNames, err := benchVariants()
	if err != nil {
		return stop, err
	}
	go func() { built <- buildBinaries(bins, variantNames) }()

	cfg, err := env.Start()
	if err != nil {
		return stop, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	undo = append(undo, func() { _ = env.Stop() })
	cfg.QPS, cfg.Burst = 1000, 2000
	restConfig = cfg
	kube = kubernetes.NewForConfigOrDie(cfg)
	if err := <-built; err != nil {
		return stop, err
	}
	loadgenBin = bins["loadgen"]

	if caPEM, err = testcert.Write(workDir, "127.0.0.1", "localhost"); err != nil {
		return stop, err
	}
	caFile = filepath.Join(workDir, "ca.crt")
	user, err := env.AddUser(envtest.User{Name: "podgrace", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return stop, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return stop, err
	}
	kubeconfig := filepath.Join(workDir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		return stop, err
	}
	ctx := context.Background()
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}, metav1.CreateOptions{}); err != nil {
		return stop, err
	}

	ports, err := freeport.Take(4 + 3*len(variantNames))
	if err != nil {
		return stop, err
	}
	webhookArgs := func(port, metrics, health int) []string {
		return []string{"webhook",
			"--cert-dir", workDir, "--port", strconv.Itoa(port), "--kubeconfig", kubeconfig,
			"--metrics-bind-address", "127.0.0.1:" + strconv.Itoa(metrics),
			"--health-probe-bind-address", "127.0.0.1:" + strconv.Itoa(health), "--drain-delay", "0s"}
	}
	args := webhookArgs(ports[0], ports[2], ports[3])
	if addr := os.Getenv("BENCH_PPROF_ADDR"); addr != "" {
		// Profile podgrace under the load: curl http://$BENCH_PPROF_ADDR/debug/pprof/profile?seconds=20
		args = append(args, "--pprof-bind-address", addr)
	}
	podgrace, err = startServer("podgrace", ports[0], bins["podgrace"], args...)
	if err != nil {
		return stop, err
	}
	undo = append(undo, podgrace.stop)
	for i, v := range variantNames {
		p := ports[4+3*i:]
		s, err := startServer("podgrace-"+v, p[0], bins["podgrace-"+v], webhookArgs(p[0], p[1], p[2])...)
		if err != nil {
			return stop, err
		}
		undo = append(undo, s.stop)
		variants = append(variants, s)
	}
	floorArgs := []string{"-cert-dir", workDir, "-port", strconv.Itoa(ports[1])}
	if addr := os.Getenv("BENCH_PPROF_FLOOR_ADDR"); addr != "" {
		floorArgs = append(floorArgs, "-pprof-bind-address", addr)
	}
	floor, err = startServer("floor", ports[1], bins["floorserver"], floorArgs...)
	if err != nil {
		return stop, err
	}
	undo = append(undo, floor.stop)
	for _, s := range servers() {
		if err := s.waitServing(ctx); err != nil {
			return stop, err
		}
	}
	// Idle: serving, caches synced, one review answered, then left alone.
	time.Sleep(3 * time.Second)
	for _, s := range servers() {
		rss, _, err := s.memory()
		if err != nil {
			return stop, err
		}
		idleRSS[s.name] = rss
	}
	fmt.Fprintf(os.Stderr, "bench set up in %v: kube-apiserver %s, podgrace pid %d, floor pid %d, work dir %s\n",
		time.Since(start).Round(time.Second), serverVersion(), podgrace.cmd.Process.Pid, floor.cmd.Process.Pid, workDir)
	return stop, nil
}

// servers are the HTTPS servers compared: the floor, podgrace, its variants.
func servers() []*server {
	return append([]*server{floor, podgrace}, variants...)
}

// variantTags are the podgrace builds BENCH_VARIANTS may name: each leaves
// out hand-written code (its build tags), in place of which it encodes with
// encoding/json or decodes with sigs.k8s.io/json.
var variantTags = map[string]string{
	"stdpatch":  "podgrace_stdpatch",  // the JSON patch by encoding/json
	"stddecode": "podgrace_stddecode", // the review in one pass on sigs.k8s.io/json, not go-json-experiment/json
}

// benchVariants reads BENCH_VARIANTS: podgrace builds to compare with the
// default one (variantTags).
func benchVariants() ([]string, error) {
	var out []string
	for v := range strings.SplitSeq(os.Getenv("BENCH_VARIANTS"), ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if _, ok := variantTags[v]; !ok {
			return nil, fmt.Errorf("BENCH_VARIANTS: unknown variant %q (known: %s)", v, strings.Join(slices.Sorted(maps.Keys(variantTags)), ", "))
		}
		out = append(out, v)
	}
	return out, nil
}

func serverVersion() string {
	v, err := kube.Discovery().ServerVersion()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return v.GitVersion
}

// buildBinaries builds podgrace (unless PODGRACE_BIN names one, as `make
// bench` does with bin/podgrace; a relative path is taken from test/bench),
// the floor server and the load generator into the work directory, as `make
// build` builds podgrace, and podgrace with the build tag of each variant.
func buildBinaries(out map[string]string, variants []string) error {
	pkgs := map[string]string{
		"podgrace":    "github.com/podgrace/podgrace/cmd/podgrace",
		"floorserver": "github.com/podgrace/podgrace/test/bench/floorserver",
		"loadgen":     "github.com/podgrace/podgrace/hack/loadgen",
	}
	if p := os.Getenv("PODGRACE_BIN"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			return err
		}
		out["podgrace"] = abs
		delete(pkgs, "podgrace")
	}
	args := []string{"build", "-trimpath", "-ldflags=-s -w", "-o", workDir + "/"}
	for name, pkg := range pkgs {
		args = append(args, pkg)
		out[name] = filepath.Join(workDir, name)
	}
	builds := [][]string{args}
	for _, v := range variants {
		name := "podgrace-" + v
		out[name] = filepath.Join(workDir, name)
		builds = append(builds, []string{"build", "-trimpath", "-tags", variantTags[v], "-ldflags=-s -w",
			"-o", out[name], "github.com/podgrace/podgrace/cmd/podgrace"})
	}
	for _, args := range builds {
		cmd := exec.Command("go", args...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, b)
		}
	}
	return nil
}

// server is a webhook process this suite started.
type server struct {
	name string
	url  string // https://127.0.0.1:PORT/mutate-v1-pod
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startServer(name string, port int, bin string, args ...string) (*server, error) {
	logPath := filepath.Join(workDir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, err
	}
	s := &server{name: name, url: "https://127.0.0.1:" + strconv.Itoa(port) + webhook.Path, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		_ = f.Close()
		close(s.done)
	}()
	return s, nil
}

// waitServing waits until the server answers a review.
func (s *server) waitServing(ctx context.Context) error {
	body, err := os.ReadFile(typicalReview)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	defer c.CloseIdleConnections()
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		select {
		case <-s.done:
			return false, fmt.Errorf("%s exited: %w (log %s)", s.name, s.err, s.log)
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
		if err != nil {
			return false, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			return false, nil //nolint:nilerr // not listening yet
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("%s not serving: %w (log %s)", s.name, err, s.log)
	}
	return nil
}

// memory reads VmRSS and VmHWM (peak RSS), in KiB.
func (s *server) memory() (rss, hwm int64, err error) {
	rss, hwm, err = procstat.Memory(s.cmd.Process.Pid)
	return rss >> 10, hwm >> 10, err
}

// cpuTime reads the CPU time (user and system, all threads) the server has
// used.
func (s *server) cpuTime() (time.Duration, error) { return procstat.CPUTime(s.cmd.Process.Pid) }

// stop sends SIGTERM to the server and waits for it, killing it after 30 s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
