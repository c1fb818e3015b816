// Command demo shows podgrace at work on a throwaway local control plane,
// in about a minute and without a cluster (`make demo`):
//
//  1. start kube-apiserver and etcd (the binaries the tests use, from
//     `make envtest-assets`) in temporary directories;
//  2. run `podgrace webhook` (the built binary) on 127.0.0.1 with a
//     certificate made for 127.0.0.1, and the cluster config of the chart;
//  3. register it with the MutatingWebhookConfiguration the Helm chart
//     renders, its service reference swapped for the local URL and its
//     caBundle set (cert-manager's cainjector does that in a cluster);
//  4. create a namespace labeled podgrace.dev/inject=enabled and a pod from
//     the template of a sample Deployment (hack/demo/deployment.yaml), and
//     print it as written and as the API server stored it, with podgrace's
//     warnings.
//
// Everything is removed on exit, Ctrl-C included. There is no
// kube-controller-manager nor kubelet: the pod is created directly from the
// Deployment's template, as the ReplicaSet controller would, and never runs.
package main

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/internal/freeport"
	"github.com/podgrace/podgrace/internal/kubewarn"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/selfcert"
	"github.com/podgrace/podgrace/pkg/webhook"
)

//go:embed deployment.yaml
var sampleDeployment []byte

func main() {
	podgrace := flag.String("podgrace", "bin/podgrace", "podgrace binary (make build)")
	assets := flag.String("assets", os.Getenv("KUBEBUILDER_ASSETS"), "directory with kube-apiserver and etcd (make envtest-assets)")
	keep := flag.Bool("wait", false, "keep the control plane running until Ctrl-C, and print a KUBECONFIG to explore it")
	flag.Parse()

	os.Exit(run(*podgrace, *assets, *keep))
}

// run runs the demo and cleans up, Ctrl-C included, and returns the exit code.
func run(podgrace, assets string, keep bool) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{podgrace: podgrace, assets: assets, out: &printer{w: os.Stdout}}
	start := time.Now()
	err := d.run(ctx, keep)
	err = errors.Join(err, d.cleanup(), d.out.err)
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(os.Stderr, "\ninterrupted; everything was cleaned up")
		return 130
	case err != nil:
		fmt.Fprintln(os.Stderr, "demo:", err)
		return 1
	}
	d.out.f("\nDone in %.1fs; the control plane and podgrace are stopped and their files removed.\n", time.Since(start).Seconds())
	if d.out.err != nil {
		return 1
	}
	return 0
}

// printer writes the demo's output and keeps the first write error.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

type demo struct {
	podgrace, assets string
	out              *printer

	tmp     string
	env     *envtest.Environment
	webhook *exec.Cmd
	waited  chan error
}

func (d *demo) run(ctx context.Context, keep bool) error {
	if d.assets == "" {
		return errors.New("no kube-apiserver/etcd: run `make demo` (it builds them) or pass -assets")
	}
	bin, err := filepath.Abs(d.podgrace)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("%w (run `make build`)", err)
	}
	d.tmp, err = os.MkdirTemp("", "podgrace-demo-")
	if err != nil {
		return err
	}

	d.step("Starting a throwaway control plane (kube-apiserver + etcd from %s)", d.assets)
	d.env = &envtest.Environment{BinaryAssetsDirectory: d.assets}
	cfg, err := d.env.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	kubeconfig, err := d.kubeconfig()
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// The webhook configuration, cluster config and namespace rules are the
	// ones `helm install` would create.
	dir, err := chart.Dir()
	if err != nil {
		return err
	}
	rendered, err := chart.Render(dir, chart.DefaultRelease, nil)
	if err != nil {
		return err
	}

	ports, err := freeport.Take(2)
	if err != nil {
		return err
	}
	port, healthPort := ports[0], ports[1]
	caPEM, err := d.servingCertificate()
	if err != nil {
		return err
	}
	configFile := filepath.Join(d.tmp, "config.yaml")
	var cm corev1.ConfigMap
	if err := chart.Into(rendered.Find("ConfigMap", chart.DefaultRelease.Name), &cm); err != nil {
		return err
	}
	if err := os.WriteFile(configFile, []byte(cm.Data["config.yaml"]), 0o600); err != nil {
		return err
	}
	d.step("Starting `podgrace webhook` on https://127.0.0.1:%d", port)
	if err := d.startWebhook(ctx, bin, kubeconfig, configFile, port, healthPort); err != nil {
		return err
	}

	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	d.step("Registering podgrace with the chart's MutatingWebhookConfiguration (service → https://127.0.0.1:%d/mutate-v1-pod)", port)
	mwc, err := chart.Webhook(dir, chart.WebhookOptions{URL: fmt.Sprintf("https://127.0.0.1:%d%s", port, webhook.Path), CABundle: caPEM})
	if err != nil {
		return err
	}
	if _, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		return err
	}

	var dep appsv1.Deployment
	if err := yaml.UnmarshalStrict(sampleDeployment, &dep); err != nil {
		return err
	}
	d.step("Creating namespace %s labeled %s=%s", dep.Namespace, policy.LabelInject, policy.InjectEnabled)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: dep.Namespace, Labels: map[string]string{policy.LabelInject: policy.InjectEnabled}}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return err
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: dep.Namespace, GenerateName: dep.Name + "-", Labels: dep.Spec.Template.Labels, Annotations: dep.Spec.Template.Annotations},
		Spec:       *dep.Spec.Template.Spec.DeepCopy(),
	}

	d.step("Creating a pod from the template of Deployment %s/%s (hack/demo/deployment.yaml)", dep.Namespace, dep.Name)
	warnings := &kubewarn.Collector{}
	wcfg := rest.CopyConfig(cfg)
	wcfg.WarningHandler = warnings
	wcs, err := kubernetes.NewForConfig(wcfg)
	if err != nil {
		return err
	}
	created, err := wcs.CoreV1().Pods(dep.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return err
	}

	d.out.f("\n")
	printPod(d.out, "BEFORE: the pod as the Deployment's template writes it", pod)
	printPod(d.out, "AFTER: the pod as the API server stored it, mutated by podgrace", created)
	printChanges(d.out, pod, created)
	d.out.f("Admission warnings:\n")
	warned := warnings.Take()
	if len(warned) == 0 {
		d.out.f("  (none)\n")
	}
	for _, w := range warned {
		d.out.f("  %s\n", w)
	}
	if st := created.Annotations[policy.AnnotationStatus]; st != "" {
		var pretty bytes.Buffer
		if json.Indent(&pretty, []byte(st), "  ", "  ") == nil {
			st = pretty.String()
		}
		d.out.f("\n%s (what podgrace did, and why):\n  %s\n", policy.AnnotationStatus, st)
	}
	if created.Annotations[policy.AnnotationStatus] == "" {
		return errors.New("the pod was not mutated: is podgrace running? (see its log above)")
	}

	if keep {
		path := filepath.Join(d.tmp, "kubeconfig")
		if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
			return err
		}
		d.out.f("\nThe control plane keeps running until Ctrl-C:\n  export KUBECONFIG=%s\n  kubectl -n %s get pods -o yaml\n", path, dep.Namespace)
		<-ctx.Done()
	}
	return nil
}

func (d *demo) step(format string, args ...any) {
	d.out.f("==> "+format+"\n", args...)
}

// kubeconfig makes an admin user (system:masters) for podgrace.
func (d *demo) kubeconfig() ([]byte, error) {
	user, err := d.env.AddUser(envtest.User{Name: "podgrace-demo", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	return user.KubeConfig()
}

// servingCertificate writes tls.crt and tls.key for 127.0.0.1, signed by a
// fresh CA, into the webhook's cert dir and returns the CA (the caBundle).
func (d *demo) servingCertificate() ([]byte, error) {
	now := time.Now()
	ca, err := selfcert.NewCA("podgrace-demo-ca", time.Hour, now)
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue(nil, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour, now)
	if err != nil {
		return nil, err
	}
	certDir := filepath.Join(d.tmp, "certs")
	if err := os.MkdirAll(certDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.crt"), leaf.CertPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(certDir, "tls.key"), leaf.KeyPEM, 0o600); err != nil {
		return nil, err
	}
	return ca.CertPEM, nil
}

func (d *demo) startWebhook(ctx context.Context, bin string, kubeconfig []byte, configFile string, port, healthPort int) error {
	path := filepath.Join(d.tmp, "podgrace.kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return err
	}
	log, err := os.Create(filepath.Join(d.tmp, "podgrace.log"))
	if err != nil {
		return err
	}
	d.webhook = exec.Command(bin, "webhook",
		"--port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(d.tmp, "certs"),
		"--config="+configFile,
		"--metrics-bind-address=0",
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(healthPort),
		"--drain-delay=0s",
	)
	d.webhook.Env = append(os.Environ(), "KUBECONFIG="+path)
	d.webhook.Stdout, d.webhook.Stderr = log, log
	d.webhook.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Ctrl-C goes to the demo, which stops podgrace itself
	if err := d.webhook.Start(); err != nil {
		return err
	}
	d.waited = make(chan error, 1)
	go func() { d.waited <- d.webhook.Wait(); _ = log.Close() }()
	readyCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := waitReady(readyCtx, healthPort); err != nil {
		logText, _ := os.ReadFile(log.Name())
		return fmt.Errorf("podgrace webhook did not become ready: %w\n%s", err, logText)
	}
	return nil
}

// waitReady polls podgrace's /readyz until it answers 200.
func waitReady(ctx context.Context, port int) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("/readyz answered %s", resp.Status)
			}
			return fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// cleanup stops podgrace and the control plane and removes their files.
func (d *demo) cleanup() error {
	var errs []error
	if d.webhook != nil && d.webhook.Process != nil {
		_ = d.webhook.Process.Signal(syscall.SIGTERM)
		var err error
		select {
		case err = <-d.waited:
		case <-time.After(15 * time.Second):
			_ = d.webhook.Process.Kill()
			err = <-d.waited
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("podgrace webhook: %w", err))
		}
	}
	if d.env != nil {
		if err := d.env.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping the control plane: %w", err))
		}
	}
	if d.tmp != "" {
		if err := os.RemoveAll(d.tmp); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// printPod prints the fields podgrace may change, readably.
func printPod(p *printer, title string, pod *corev1.Pod) {
	p.f("%s\n", title)
	grace := "unset (30)"
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil {
		grace = strconv.FormatInt(*g, 10)
	}
	p.f("  terminationGracePeriodSeconds: %s\n", grace)
	for _, c := range pod.Spec.Containers {
		p.f("  container %s:\n", c.Name)
		p.f("    image:    %s\n", c.Image)
		p.f("    command:  %s\n", argv(c.Command))
		if len(c.Args) > 0 {
			p.f("    args:     %s\n", argv(c.Args))
		}
		p.f("    preStop:  %s\n", preStop(c.Lifecycle))
	}
	p.f("\n")
}

func argv(a []string) string {
	if len(a) == 0 {
		return "(from the image)"
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(a)
	return strings.TrimSpace(b.String())
}

// printChanges says what changed between the two pods, and why it matters.
func printChanges(p *printer, before, after *corev1.Pod) {
	p.f("What changed:\n")
	if g1, g2 := before.Spec.TerminationGracePeriodSeconds, after.Spec.TerminationGracePeriodSeconds; g1 != nil && g2 != nil && *g1 != *g2 {
		p.f("  terminationGracePeriodSeconds %d → %d: room for the sleep and the app's own shutdown\n", *g1, *g2)
	}
	for i, c := range after.Spec.Containers {
		old := before.Spec.Containers[i]
		if preStop(old.Lifecycle) != preStop(c.Lifecycle) {
			p.f("  %s: preStop %s → %s\n", c.Name, preStop(old.Lifecycle), preStop(c.Lifecycle))
			p.f("       the pod keeps serving while load balancers and kube-proxy drop it from\n")
			p.f("       their endpoints, and gets SIGTERM only then: no 502s during a rollout\n")
		}
		if argv(old.Command) != argv(c.Command) || argv(old.Args) != argv(c.Args) {
			p.f("  %s: command %s\n", c.Name, argv(old.Command))
			p.f("       → %s\n", argv(c.Command))
			p.f("       the shell execs the app, so SIGTERM reaches it instead of the shell:\n")
			p.f("       no SIGKILL after the grace period, no dropped requests\n")
		}
	}
	p.f("\n")
}

func preStop(l *corev1.Lifecycle) string {
	switch {
	case l == nil || l.PreStop == nil:
		return "(none)"
	case l.PreStop.Sleep != nil:
		return fmt.Sprintf("sleep %ds (native sleep action)", l.PreStop.Sleep.Seconds)
	case l.PreStop.Exec != nil:
		return "exec " + strings.Join(l.PreStop.Exec.Command, " ")
	}
	return "(other)"
}
