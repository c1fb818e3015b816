// Package integration proves podgrace's webhook against a real kube-apiserver
// and etcd (controller-runtime's envtest, binaries from `make envtest-assets`):
// the webhook is registered with the MutatingWebhookConfiguration that
// pkg/webhook builds, served in process over TLS, and pods are created
// through client-go.
//
// One control plane serves the whole suite (TestMain). Every podgrace
// instance owns its namespaces: the main instance's configuration excludes
// namespaces with the label podgrace-test/instance, and each other instance
// (strict, exec, drain) selects only the namespaces labeled with its name.
package integration

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"go.uber.org/zap/zapcore"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/internal/testkube"
	"github.com/podgrace/podgrace/pkg/policy"
)

// Labels the suite uses to give each podgrace instance its own namespaces.
const (
	instanceLabel = "podgrace-test/instance"
	adderLabel    = "podgrace-test/adder"
)

// The suite's shared state, set up by TestMain.
var (
	restConfig *rest.Config
	admin      *kubernetes.Clientset
	tlsAssets  *certs
	mainServer *instance
	// certDir holds the serving certificate every instance but the
	// rotation test's serves.
	certDir string
	// mainNamespace is opted in and exists from the start, so it is in
	// podgrace's namespace cache by the time the tests run.
	mainNamespace string
	// serverVersion is the API server's gitVersion; wantHook is the hook
	// action its version and flags (testkube.FlagsEnv) call for: sleep
	// where the native sleep action is on, exec where it is off.
	serverVersion string
	versionInfo   version.Info
	wantHook      policy.HookAction
	// policyAPI says whether the server serves MutatingAdmissionPolicy v1
	// (discovery; from 1.36): the policy-mode tests and the suite's
	// parameter keeper need it, and say so where it is not.
	policyAPI bool
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) (code int) {
	flag.Parse()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		fmt.Fprintln(os.Stderr, "FAIL: KUBEBUILDER_ASSETS is unset or empty: the integration suite needs a real kube-apiserver and etcd.\n"+
			"Run `make envtest-assets` (or `make test`, which exports it), or set KUBEBUILDER_ASSETS to a directory holding kube-apiserver and etcd.")
		return 1
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: KUBEBUILDER_ASSETS=%s has no %s (%v). Run `make envtest-assets`.\n", assets, bin, err)
			return 1
		}
	}

	logFile, err := os.CreateTemp("", "podgrace-integration-*.log")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = logFile.Close() }()
	var logOut io.Writer = logFile
	if testing.Verbose() {
		logOut = io.MultiWriter(logFile, os.Stderr)
	}
	ctrl.SetLogger(zap.New(zap.WriteTo(logOut), zap.UseDevMode(true), zap.Level(zapcore.InfoLevel)))

	env := &envtest.Environment{ControlPlaneStartTimeout: 2 * time.Minute, ControlPlaneStopTimeout: time.Minute}
	if err := testkube.Configure(env); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	start := time.Now()
	cfg, err := env.Start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: starting kube-apiserver and etcd from KUBEBUILDER_ASSETS=%s: %v\n", assets, err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "control plane up in %v; podgrace logs: %s\n", time.Since(start).Round(time.Millisecond), logFile.Name())
	defer func() {
		// Every podgrace instance is stopped by now (teardowns run first):
		// kube-apiserver stops in seconds. One that does not is a leak
		// (an open watch it waits for) and fails the suite.
		start := time.Now()
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "FAIL: stopping the control plane after %v: %v\n", time.Since(start).Round(time.Millisecond), err)
			code = 1
			return
		}
		fmt.Fprintf(os.Stderr, "control plane stopped in %v\n", time.Since(start).Round(time.Millisecond))
	}()
	cfg.QPS, cfg.Burst = 200, 400
	restConfig = cfg
	admin = kubernetes.NewForConfigOrDie(cfg)
	if err := readServer(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "kube-apiserver %s (%s=%q): expecting hookAction auto to choose %s; %s %s served: %t\n",
		serverVersion, testkube.FlagsEnv, os.Getenv(testkube.FlagsEnv), wantHook, testkube.PolicyGroupVersion, testkube.PolicyResource, policyAPI)

	teardown, err := setUp()
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: setting up the suite:", err)
		return 1
	}
	defer teardown()
	rc := m.Run()
	if rc != 0 {
		fmt.Fprintln(os.Stderr, "podgrace logs:", logFile.Name())
	}
	return rc
}

// setUp creates the serving certificate, starts the main podgrace instance
// and registers it; it returns the teardown. On an error it tears down what
// it started: a podgrace instance left running keeps its informers' watches
// open, and kube-apiserver then waits for them when it stops.
func setUp() (teardown func(), err error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "podgrace-integration-certs-")
	if err != nil {
		return nil, err
	}
	teardown = func() {
		if mainServer != nil {
			_ = mainServer.stop()
		}
		_ = os.RemoveAll(dir)
	}
	defer func() {
		if err != nil {
			teardown()
		}
	}()
	certDir = dir
	tlsAssets, err = newCerts()
	if err != nil {
		return nil, err
	}
	if err := tlsAssets.writeServing(dir, 1); err != nil {
		return nil, err
	}
	cfg := baseConfig()
	mainServer, err = startInstance(ctx, "main", &cfg, dir, 0)
	if err != nil {
		return nil, err
	}
	mwc := mustWebhook(chart.WebhookOptions{
		URL:      mainServer.url,
		CABundle: tlsAssets.caPEM,
		ExtraNamespaceSelector: []metav1.LabelSelectorRequirement{
			{Key: instanceLabel, Operator: metav1.LabelSelectorOpDoesNotExist},
		},
	})
	if _, err := admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	ns, err := createNamespace(ctx, map[string]string{policy.LabelInject: policy.InjectEnabled},
		map[string]string{policy.AnnotationPreStopSleep: "7s"})
	if err != nil {
		return nil, err
	}
	mainNamespace = ns
	if err := waitForMutation(ctx, ns); err != nil {
		return nil, err
	}
	return teardown, nil
}

func logger() logr.Logger { return ctrl.Log }

// readServer sets serverVersion, wantHook and policyAPI.
func readServer() error {
	info, err := admin.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	flags, err := testkube.Flags()
	if err != nil {
		return err
	}
	on, err := testkube.SleepActionOn(info.GitVersion, flags)
	if err != nil {
		return err
	}
	serverVersion, versionInfo, wantHook = info.GitVersion, *info, policy.HookExec
	if on {
		wantHook = policy.HookSleep
	}
	policyAPI, err = testkube.PolicyAPI(admin.Discovery(), info.GitVersion)
	return err
}

// needsPolicyAPI skips t, saying so (testkube.NotApplicable), on a server
// without MutatingAdmissionPolicy v1; the chart suite asserts there that
// the chart refuses admission: policy (TestPolicyModeOnAPIServer).
func needsPolicyAPI(t *testing.T) {
	t.Helper()
	if !policyAPI {
		testkube.Skip(t, testkube.Server(serverVersion), testkube.PolicyGroupVersion+" "+testkube.PolicyResource+" is not served (from Kubernetes 1.36)")
	}
}
