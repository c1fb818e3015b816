package chart_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/internal/testkube"
	"github.com/podgrace/podgrace/pkg/policy"
)

// One real kube-apiserver and etcd (envtest) serve every test that needs
// them; it starts on first use, so the render tests run without it.
var (
	envOnce sync.Once
	env     *envtest.Environment
	envCfg  *rest.Config
	envErr  error
)

func TestMain(m *testing.M) {
	// controller-runtime's global logger (certificate watcher, webhook
	// server internals): errors, or everything with PODGRACE_TEST_VERBOSE.
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.Level(zapLevel())))
	code := m.Run()
	if env != nil {
		// kube-apiserver stops in seconds once every test's podgrace and
		// clients are gone; a stop that times out is a leak (an open watch
		// it waits for) and fails the suite.
		start := time.Now()
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: stopping envtest after %v: %v\n", time.Since(start).Round(time.Millisecond), err)
			code = 1
		} else if testing.Verbose() {
			fmt.Fprintf(os.Stderr, "control plane stopped in %v\n", time.Since(start).Round(time.Millisecond))
		}
	}
	os.Exit(code)
}

// apiServer returns an admin config for the shared API server, for a test
// that installs the chart there: where the chart does not install (its
// kubeVersion refuses the server, or the server lacks the native sleep
// action podgrace's own pod stops with), the test says so
// (testkube.NotApplicable) and is skipped.
func apiServer(t testing.TB) *rest.Config {
	t.Helper()
	cfg, srv := anyAPIServer(t)
	if srv.notInstalled != "" {
		testkube.Skip(t, srv.name, srv.notInstalled)
	}
	return cfg
}

// server is what the tests read from the shared API server, once.
type server struct {
	// gitVersion is the server's version; name adds the run's extra flags
	// (testkube.Server).
	gitVersion, name string
	// notInstalled is why the chart does not install there ("" where it does).
	notInstalled string
	// policyAPI: MutatingAdmissionPolicy v1 is served (testkube.PolicyAPI).
	policyAPI bool
}

var (
	serverOnce  sync.Once
	serverFacts server
	serverErr   error
)

// anyAPIServer returns an admin config for the shared API server and what
// it is, whether the chart installs there or not. The API server routes
// service-referenced webhooks to the Service's EndpointSlice
// (--enable-aggregator-routing), as no kube-proxy routes cluster IPs here.
// cert-manager's CRDs are installed from the cert-manager Go module.
func anyAPIServer(t testing.TB) (*rest.Config, server) {
	t.Helper()
	cfg := startAPIServer(t)
	serverOnce.Do(func() { serverFacts, serverErr = readServer(cfg) })
	if serverErr != nil {
		t.Fatal(serverErr)
	}
	return cfg, serverFacts
}

// readServer reads the server's version and discovery, and decides whether
// the chart installs there: Helm's own kubeVersion check (as TestKubeVersion
// runs it), and the sleep action its Deployment's preStop hook needs
// (test/integration's TestChartNeedsSleepAction proves the server rejects or
// drops that hook without it).
func readServer(cfg *rest.Config) (server, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return server{}, err
	}
	info, err := cs.Discovery().ServerVersion()
	if err != nil {
		return server{}, err
	}
	s := server{gitVersion: info.GitVersion, name: testkube.Server(info.GitVersion)}
	if s.policyAPI, err = testkube.PolicyAPI(cs.Discovery(), info.GitVersion); err != nil {
		return server{}, err
	}
	dir, err := chart.Dir()
	if err != nil {
		return server{}, err
	}
	ch, err := loader.Load(dir)
	if err != nil {
		return server{}, err
	}
	flags, err := testkube.Flags()
	if err != nil {
		return server{}, err
	}
	sleep, err := testkube.SleepActionOn(info.GitVersion, flags)
	if err != nil {
		return server{}, err
	}
	switch {
	case !chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, info.GitVersion):
		s.notInstalled = fmt.Sprintf("the chart's kubeVersion %q refuses it (helm install fails; TestKubeVersion)", ch.Metadata.KubeVersion)
	case !sleep:
		s.notInstalled = "the native sleep action is off, and the chart's Deployment stops podgrace with it (the server rejects or drops the hook: TestChartNeedsSleepAction in test/integration)"
	}
	return s, nil
}

// startAPIServer starts the shared API server on first use.
func startAPIServer(t testing.TB) *rest.Config {
	t.Helper()
	envOnce.Do(func() {
		var crds string
		crds, envErr = certManagerCRDs()
		if envErr != nil {
			return
		}
		env = &envtest.Environment{
			// cert-manager's CRDs from its module; prometheus-operator's
			// ServiceMonitor CRD from testdata/crds (see its README).
			CRDDirectoryPaths:     []string{crds, filepath.Join("testdata", "crds")},
			ErrorIfCRDPathMissing: true,
			BinaryAssetsDirectory: assetsDir(),
		}
		env.ControlPlane.GetAPIServer().Configure().Set("enable-aggregator-routing", "true")
		if envErr = testkube.Configure(env); envErr != nil {
			return
		}
		envCfg, envErr = env.Start()
		if envErr != nil {
			envErr = fmt.Errorf("starting kube-apiserver and etcd from %s (run `make envtest-assets`): %w", env.BinaryAssetsDirectory, envErr)
		}
	})
	if envErr != nil {
		t.Fatal(envErr)
	}
	return rest.CopyConfig(envCfg)
}

var (
	runsMu sync.Mutex
	runs   = map[string]int{}
)

// unique is name the first time a test asks for it and name-2, name-3… on
// later runs in the same process (-count=N): the control plane is shared,
// and a deleted namespace stays Terminating on it (envtest runs no
// namespace controller), so a repeated run needs new names.
func unique(name string) string {
	runsMu.Lock()
	defer runsMu.Unlock()
	runs[name]++
	if n := runs[name]; n > 1 {
		return fmt.Sprintf("%s-%d", name, n)
	}
	return name
}

// wantHook is the hook action the shared API server's version and flags
// call for (testkube.SleepActionOn).
func wantHook(t testing.TB, cfg *rest.Config) policy.HookAction {
	t.Helper()
	info, err := newClientset(t, cfg).Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	flags, err := testkube.Flags()
	if err != nil {
		t.Fatal(err)
	}
	on, err := testkube.SleepActionOn(info.GitVersion, flags)
	if err != nil {
		t.Fatal(err)
	}
	if on {
		return policy.HookSleep
	}
	return policy.HookExec
}

// assetsDir is KUBEBUILDER_ASSETS, or the Makefile's envtest-assets directory.
func assetsDir() string {
	if d := os.Getenv("KUBEBUILDER_ASSETS"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "..", "..", "bin", "k8s", strings.TrimPrefix(chart.KubeVersion, "v")+"-linux-amd64")
}

// certManagerCRDs is deploy/crds of the cert-manager module go.mod requires:
// the CustomResourceDefinitions cert-manager's chart installs (v1 only, no
// conversion webhook), as plain YAML.
func certManagerCRDs() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager").Output()
	if err != nil {
		return "", fmt.Errorf("locating the cert-manager module: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	if _, err := os.Stat(filepath.Join(dir, "cert-manager.io_certificates.yaml")); err != nil {
		return "", fmt.Errorf("cert-manager CRDs: %w", err)
	}
	return dir, nil
}

func newClient(t testing.TB, cfg *rest.Config) client.Client {
	t.Helper()
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newClientset(t testing.TB, cfg *rest.Config) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// asServiceAccount returns cfg impersonating a ServiceAccount, so a test
// runs with exactly the permissions the chart's RBAC grants it.
func asServiceAccount(cfg *rest.Config, namespace, name string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + namespace + ":" + name,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	return c
}
