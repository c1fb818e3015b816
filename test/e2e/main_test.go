//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podgrace/podgrace/test/e2e/images"
)

// Names of podgrace's public contract (docs/design.md §3) the tests check.
const (
	injectLabel      = "podgrace.dev/inject"
	statusAnnotation = "podgrace.dev/status"
)

// serviceCIDR is the e2e cluster's Service range (hack/cluster/lib.sh): the
// load generator only ever targets addresses in it.
var serviceCIDR = mustCIDR("10.96.0.0/16")

// env is the cluster the tests run against, from $E2E_DIR/cluster.env
// (written by hack/cluster/up.sh).
var env struct {
	Dir        string
	Kubeconfig string
	Containerd string // containerd socket
	Ctr        string
	Kubectl    string
	NodeIP     string
	NodeName   string
	Registry   string // host:port of the node registry (hack/cluster/up.sh)
	// The release hack/cluster/publish.sh published to the node registry:
	// its version, its dist directory, its image index's digest, and the
	// cosign and helm the Makefile built.
	ReleaseVersion string
	ReleaseDir     string
	ReleaseDigest  string
	Cosign         string
	Helm           string
	Root           string // the podgrace module
	// KubeVersion is the Kubernetes release the cluster was built at
	// (make e2e KUBE_VERSION=...); the tests check that it runs.
	KubeVersion string
}

var (
	kube       kubernetes.Interface
	restConfig *rest.Config
	// builtImages are the test images by reference, for pushing to the e2e
	// registry.
	builtImages map[string]v1.Image
	// podgraceErr is why podgrace could not be installed; every test that
	// needs podgrace fails with it (never skips).
	podgraceErr error
	// pg describes the installed podgrace.
	pg *podgraceInstall
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if err := setup(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	code := m.Run()
	if pg != nil {
		pg.close()
	}
	return code
}

func setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := loadEnv(); err != nil {
		return err
	}
	var err error
	restConfig, err = clientcmd.BuildConfigFromFlags("", env.Kubeconfig)
	if err != nil {
		return err
	}
	restConfig.QPS, restConfig.Burst = 50, 100
	kube, err = kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	node, err := kube.CoreV1().Nodes().Get(ctx, env.NodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("the e2e cluster does not answer (run `make cluster-up`): %w", err)
	}
	if err := checkVersions(node); err != nil {
		return err
	}
	fmt.Printf("e2e: node %s, load average %s\n", env.NodeName, loadAvg())
	start := time.Now()
	dir, err := os.MkdirTemp("", "podgrace-e2e-images-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	archives, imgs, err := images.Build(ctx, env.Root, dir, "testserver", "shellform", "traffic")
	if err != nil {
		return fmt.Errorf("building test images: %w", err)
	}
	for _, a := range archives {
		if err := images.Import(ctx, env.Ctr, env.Containerd, a); err != nil {
			return err
		}
	}
	builtImages = imgs
	fmt.Printf("e2e: test images built and imported in %s\n", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	pg, podgraceErr = installPodgrace(ctx)
	if podgraceErr != nil {
		fmt.Fprintf(os.Stderr, "e2e: PODGRACE NOT INSTALLED, every podgrace test will fail: %v\n", podgraceErr)
	} else {
		fmt.Printf("e2e: podgrace installed in %s\n", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// checkVersions fails unless the API server and the node's kubelet run the
// release the cluster was built at: a claim that podgrace works on a version
// rests on that version having served the run.
func checkVersions(node *corev1.Node) error {
	sv, err := kube.Discovery().ServerVersion()
	if err != nil {
		return err
	}
	want := "v" + strings.TrimPrefix(env.KubeVersion, "v")
	info := node.Status.NodeInfo
	fmt.Printf("e2e: kube-apiserver %s, kubelet %s, container runtime %s, kernel %s\n",
		sv.GitVersion, info.KubeletVersion, info.ContainerRuntimeVersion, info.KernelVersion)
	if sv.GitVersion != want || info.KubeletVersion != want {
		return fmt.Errorf("the cluster was built at KUBE_VERSION=%s, but kube-apiserver reports %s and the kubelet %s (bring it down and up again: make cluster-down)",
			env.KubeVersion, sv.GitVersion, info.KubeletVersion)
	}
	return nil
}

func loadEnv() error {
	env.Dir = os.Getenv("E2E_DIR")
	if env.Dir == "" {
		env.Dir = "/var/lib/podgrace-e2e"
	}
	file := filepath.Join(env.Dir, "cluster.env")
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("the e2e cluster is not up (run `make cluster-up`, or `make e2e`): %w", err)
	}
	defer func() { _ = f.Close() }()
	vals := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vals[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	for key, dst := range map[string]*string{
		"KUBECONFIG": &env.Kubeconfig, "CONTAINERD_ADDRESS": &env.Containerd, "CTR": &env.Ctr,
		"KUBECTL": &env.Kubectl, "NODE_IP": &env.NodeIP, "NODE_NAME": &env.NodeName, "REGISTRY": &env.Registry,
		"KUBE_VERSION": &env.KubeVersion, "RELEASE_VERSION": &env.ReleaseVersion, "RELEASE_DIR": &env.ReleaseDir,
		"RELEASE_DIGEST": &env.ReleaseDigest, "COSIGN": &env.Cosign, "HELM": &env.Helm,
	} {
		if vals[key] == "" {
			return fmt.Errorf("%s: %s is not set", file, key)
		}
		*dst = vals[key]
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	env.Root = root
	return nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.HasPrefix(string(b), "module github.com/podgrace/podgrace\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no podgrace go.mod above the working directory")
		}
		dir = parent
	}
}

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

// requirePodgrace fails the test (never skips) when podgrace is not installed.
func requirePodgrace(t *testing.T) {
	t.Helper()
	if podgraceErr != nil {
		t.Fatalf("podgrace is not installed in the e2e cluster: %v", podgraceErr)
	}
}

// newNamespace creates a namespace (opted in to podgrace when optIn) that is
// deleted when the test ends.
func newNamespace(t *testing.T, prefix string, optIn bool) string {
	t.Helper()
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   fmt.Sprintf("%s-%s", prefix, rand.String(5)),
		Labels: map[string]string{"e2e.podgrace.dev/test": "true"},
	}}
	if optIn {
		ns.Labels[injectLabel] = "enabled"
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating namespace: %v", err)
	}
	// The ServiceAccount controller must have created "default" before pods
	// can be created in the namespace.
	if err := poll(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
		_, err := kube.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		t.Fatalf("namespace %s has no default ServiceAccount: %v", ns.Name, err)
	}
	t.Cleanup(func() {
		err := kube.CoreV1().Namespaces().Delete(context.Background(), ns.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting namespace %s: %v", ns.Name, err)
		}
	})
	return ns.Name
}

// poll calls cond every 250 ms until it returns true, an error, or timeout.
func poll(ctx context.Context, timeout time.Duration, cond func(context.Context) (bool, error)) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, cond)
}

// retry is a poll condition's answer to a transient error (the API server
// busy, an object not there yet): not done, try again until the timeout.
func retry(error) (bool, error) { return false, nil }

// waitPodRunning waits until the pod's containers are all running (and
// ready when they have a readiness probe).
func waitPodRunning(ctx context.Context, ns, name string, timeout time.Duration) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := poll(ctx, timeout, func(ctx context.Context) (bool, error) {
		p, err := kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return retry(err)
		}
		pod = p
		if p.Status.Phase != corev1.PodRunning {
			return false, nil
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running == nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil && pod != nil {
		return pod, fmt.Errorf("pod %s/%s not running (phase %s, %v): %w", ns, name, pod.Status.Phase, pod.Status.ContainerStatuses, err)
	}
	return pod, err
}

func ptr[T any](v T) *T { return &v }

// loadAvg is the node's 1/5/15-minute load average: the tests share a
// 2-core machine with whatever else runs there, and timings say so.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
