package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podgrace/podgrace/pkg/calibrate"
	"github.com/podgrace/podgrace/pkg/policy"
)

type calibrateOptions struct {
	loading    *clientcmd.ClientConfigLoadingRules
	overrides  clientcmd.ConfigOverrides
	o          calibrate.Options
	deployment string
	configPath string
	configMap  string
	output     string
	dryRun     bool
	applyTo    string
}

func newCalibrateCommand() *cobra.Command {
	c := &calibrateOptions{loading: clientcmd.NewDefaultClientConfigLoadingRules()}
	cmd := &cobra.Command{
		Use:   "calibrate [--url URL] [--trials N] [--window D]",
		Short: "Measure how long new connections still reach a terminating pod on your traffic path, and recommend the sleep",
		Long: `calibrate answers "how long must the preStop sleep be?" on your cluster and
your traffic path. It deploys, in a namespace of its own (created and removed;
a namespace holding other workloads is refused), probe replicas of podgrace's
own image behind a Service, and a client pod sending requests through the
path: the Service's ClusterIP, or --url (an Ingress, Gateway route or load
balancer you point at the probe Service). It then deletes one probe pod at a
time. Each probe serves for --window after SIGTERM, answering with
Connection: close, and records when each request arrived on a connection
opened after termination started. The last such arrival is the propagation
of your path; S covers the slowest trial with a margin, T = S + shutdownBudget
(docs/operate/sizing.md).

Exit codes: 0 measured; 2 the measurement is incomplete (new connections
still arrived at the end of the window, or requests failed at the client);
1 calibrate could not run. Everything it created is removed on exit,
Ctrl-C included.`,
		Example: `  podgrace calibrate
  podgrace calibrate --url http://shop.example.com/ --trials 5 --window 120s
  podgrace calibrate --apply-to-namespace shop
  podgrace calibrate -o json > calibration.json
  podgrace calibrate --dry-run --image ghcr.io/podgrace/podgrace:v1.2.0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.run(cmd) },
	}
	f := cmd.Flags()
	f.StringVar(&c.loading.ExplicitPath, clientcmd.RecommendedConfigPathFlag, "", "path to the kubeconfig file")
	of := clientcmd.RecommendedConfigOverrideFlags("")
	of.ContextOverrideFlags.Namespace.LongName = "" // --namespace is calibrate's own
	of.ContextOverrideFlags.Namespace.ShortName = ""
	clientcmd.BindOverrideFlags(&c.overrides, f, of)
	f.StringVarP(&c.o.Namespace, "namespace", "n", calibrate.DefaultNamespace, "namespace of the probe (created and removed; must hold no other workload)")
	f.StringVar(&c.o.Image, "image", "", "podgrace image to run the probe with (default: the image of the installed podgrace Deployment)")
	f.StringVar(&c.deployment, "podgrace-deployment", "", "NAMESPACE/NAME of the installed podgrace Deployment (default: found by its label app.kubernetes.io/name=podgrace)")
	f.IntVar(&c.o.Replicas, "replicas", 2, "probe replicas")
	f.IntVar(&c.o.Trials, "trials", 5, "probe pods deleted, one at a time")
	f.DurationVar(&c.o.Window, "window", 90*time.Second, "how long each probe serves after SIGTERM (its grace period is the window + 20s)")
	f.StringVar(&c.o.URL, "url", "", "URL that routes to the probe Service (default: the Service's ClusterIP)")
	f.DurationVar(&c.o.URLTimeout, "url-timeout", 3*time.Minute, "how long to wait until --url answers from a probe")
	f.DurationVar(&c.o.ReadyTimeout, "ready-timeout", 3*time.Minute, "how long to wait for pods to be ready and the path to settle")
	f.IntVar(&c.o.Workers, "workers", 2, "client request loops")
	f.DurationVar(&c.o.Interval, "interval", 20*time.Millisecond, "pause between the requests of a client loop")
	f.StringVar(&c.configPath, "config", "", "cluster config file (the chart's config.yaml) for shutdownBudget and maxGracePeriod; default: the installed podgrace's ConfigMap, or the defaults")
	f.StringVar(&c.configMap, "config-map", "", "NAMESPACE/NAME of podgrace's ConfigMap (default: the one the podgrace Deployment mounts)")
	f.StringVarP(&c.output, "output", "o", "", "output format: json (default: a table)")
	f.BoolVar(&c.dryRun, "dry-run", false, "print the manifests calibrate would apply, and exit")
	f.StringVar(&c.applyTo, "apply-to-namespace", "", "annotate this namespace with the recommended sleep (podgrace.dev/prestop-sleep) when the measurement is complete")
	return cmd
}

func (c *calibrateOptions) run(cmd *cobra.Command) error {
	switch c.output {
	case "", "json":
	default:
		return fmt.Errorf("--output: %q is not json", c.output)
	}
	ctx := cmd.Context()
	stderr := cmd.ErrOrStderr()
	cfg := policy.Default()
	var cs kubernetes.Interface
	connect := func() error {
		if cs != nil {
			return nil
		}
		rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(c.loading, &c.overrides).ClientConfig()
		if err != nil {
			return err
		}
		cs, err = kubernetes.NewForConfig(rc)
		return err
	}
	needCluster := !c.dryRun || c.o.Image == ""
	if needCluster {
		if err := connect(); err != nil {
			return err
		}
		dep, err := c.findPodgrace(ctx, cs)
		if err != nil && c.o.Image == "" {
			return fmt.Errorf("%w (or pass --image)", err)
		}
		if c.o.Image == "" {
			c.o.Image = dep.image
		}
		if cfg, err = c.clusterConfig(ctx, cs, dep, stderr); err != nil {
			return err
		}
	} else if c.configPath != "" {
		var err error
		if cfg, err = policy.LoadConfig(c.configPath); err != nil {
			return err
		}
	}
	c.o.Config = &cfg
	if err := c.o.Validate(); err != nil {
		return err
	}
	if c.dryRun {
		b, err := calibrate.BuildManifests(&c.o, c.o.URL).YAML()
		if err != nil {
			return err
		}
		_, err = cmd.OutOrStdout().Write(b)
		return err
	}
	if c.applyTo != "" {
		// Fail before deploying anything when the namespace cannot be annotated.
		if _, err := cs.CoreV1().Namespaces().Get(ctx, c.applyTo, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("--apply-to-namespace: %w", err)
		}
	}
	c.o.Progress = newProgress(stderr)
	rep, err := calibrate.Run(ctx, cs, c.o)
	c.o.Progress.Update("")
	if err != nil {
		return err
	}
	if c.output == "json" {
		if err := rep.WriteJSON(cmd.OutOrStdout()); err != nil {
			return err
		}
	} else {
		printCalibration(cmd.OutOrStdout(), rep)
	}
	if !rep.Complete {
		return &exitError{code: ExitFindings, msg: "calibrate: the measurement is incomplete: " + strings.Join(rep.Incomplete, "; ")}
	}
	if c.applyTo != "" {
		s := fmt.Sprintf("%ds", rep.Recommendation.SleepSeconds)
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{policy.AnnotationPreStopSleep: s}}})
		if _, err := cs.CoreV1().Namespaces().Patch(ctx, c.applyTo, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("--apply-to-namespace %s: %w", c.applyTo, err)
		}
		_, _ = fmt.Fprintf(stderr, "annotated namespace %s with %s=%s: pods created from now on get it (restart running workloads to apply it to them)\n",
			c.applyTo, policy.AnnotationPreStopSleep, s)
	}
	return nil
}

type podgraceDeployment struct {
	namespace, name, image, configMap string
}

// findPodgrace finds the installed podgrace Deployment: --podgrace-deployment,
// else the one Deployment labeled app.kubernetes.io/name=podgrace.
func (c *calibrateOptions) findPodgrace(ctx context.Context, cs kubernetes.Interface) (podgraceDeployment, error) {
	var d podgraceDeployment
	if c.deployment != "" {
		ns, name, ok := strings.Cut(c.deployment, "/")
		if !ok {
			return d, fmt.Errorf("--podgrace-deployment: %q is not NAMESPACE/NAME", c.deployment)
		}
		dep, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return d, fmt.Errorf("podgrace's Deployment %s: %w", c.deployment, err)
		}
		return fromDeployment(dep.Namespace, dep.Name, dep.Spec.Template.Spec), nil
	}
	list, err := cs.AppsV1().Deployments("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=podgrace"})
	if err != nil {
		return d, fmt.Errorf("finding podgrace's Deployment: %w", err)
	}
	switch len(list.Items) {
	case 0:
		return d, fmt.Errorf("no Deployment labeled app.kubernetes.io/name=podgrace: is podgrace installed? (--podgrace-deployment names it)")
	case 1:
		dep := list.Items[0]
		return fromDeployment(dep.Namespace, dep.Name, dep.Spec.Template.Spec), nil
	}
	var names []string
	for _, dep := range list.Items {
		names = append(names, dep.Namespace+"/"+dep.Name)
	}
	return d, fmt.Errorf("several podgrace Deployments (%s): choose one with --podgrace-deployment", strings.Join(names, ", "))
}

func fromDeployment(ns, name string, spec corev1.PodSpec) podgraceDeployment {
	d := podgraceDeployment{namespace: ns, name: name}
	for _, ctr := range spec.Containers {
		if ctr.Name == "webhook" || d.image == "" {
			d.image = ctr.Image
		}
	}
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil && v.Name == "config" {
			d.configMap = ns + "/" + v.ConfigMap.Name
		}
	}
	return d
}

// clusterConfig is --config, else --config-map, else the ConfigMap the
// podgrace Deployment mounts, else the defaults (said on stderr).
func (c *calibrateOptions) clusterConfig(ctx context.Context, cs kubernetes.Interface, dep podgraceDeployment, stderr io.Writer) (policy.Config, error) {
	if c.configPath != "" {
		return policy.LoadConfig(c.configPath)
	}
	ref := c.configMap
	if ref == "" {
		ref = dep.configMap
	}
	if ref == "" {
		_, _ = fmt.Fprintln(stderr, "podgrace calibrate: using the default cluster config (no podgrace ConfigMap found)")
		return policy.Default(), nil
	}
	return configMapConfig(ctx, cs, ref, "calibrate", stderr)
}

func printCalibration(w io.Writer, rep *calibrate.Report) {
	f := func(p *float64) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%.1fs", *p)
	}
	_, _ = fmt.Fprintf(w, "Path: %s %s -> service %s; window %gs\n\n", rep.Path.Kind, rep.Path.URL, rep.Path.Service, rep.WindowSeconds)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "TRIAL\tPOD\tSIGTERM\tENDPOINT NOT READY\tLAST NEW CONN\tAFTER ENDPOINTSLICE\tNEW CONNS\tREUSED REQS\tFAILED")
	for i, t := range rep.Trials {
		_, _ = fmt.Fprintf(tw, "%d\t%s\t%.1fs\t%s\t%s\t%s\t%d\t%d\t%d/%d\n", i+1, t.Pod, t.SigtermAfterDeleteSeconds,
			f(t.EndpointNotReadyAfterDeleteSeconds), f(t.LastNewConnectionAfterSigtermSeconds), f(t.LastNewConnectionAfterEndpointSliceSeconds),
			t.NewConnectionsAfterSigterm, t.RequestsOnReusedConnections, t.ClientFailures, t.ClientRequests)
	}
	_ = tw.Flush()
	r := rep.Recommendation
	_, _ = fmt.Fprintf(w, "\nSIGTERM and ENDPOINT NOT READY count from the DELETE; LAST NEW CONN from SIGTERM (the moment a preStop sleep starts).\n")
	_, _ = fmt.Fprintf(w, "\nMeasured propagation: %.1fs (slowest trial). Margin: %.1fs (%s).\n", rep.PropagationSeconds, r.MarginSeconds, r.Rule)
	_, _ = fmt.Fprintf(w, "Recommended: sleep S = %ds, grace period T = %ds (shutdownBudget %ds, maxGracePeriod %ds).\n",
		r.SleepSeconds, r.GracePeriodSeconds, r.ShutdownBudgetSeconds, r.MaxGracePeriodSeconds)
	if r.Capped {
		_, _ = fmt.Fprintf(w, "WARNING: S + shutdownBudget exceeds maxGracePeriod: podgrace would shrink the sleep (docs/operate/sizing.md).\n")
	}
	for _, s := range rep.Incomplete {
		_, _ = fmt.Fprintf(w, "INCOMPLETE: %s\n", s)
	}
	_, _ = fmt.Fprintf(w, "\nApply it to one namespace:\n  %s\nor to every namespace podgrace serves (Helm):\n  helm upgrade podgrace <chart> --reuse-values %s\n", r.NamespaceCommand, r.ClusterValues)
}

// progress writes a transient status line on a terminal, and only the
// permanent lines elsewhere.
type progress struct {
	w    io.Writer
	term bool
	last string
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.term = true
		}
	}
	return p
}

func (p *progress) Update(line string) {
	if !p.term || line == p.last {
		return
	}
	p.last = line
	if line == "" {
		_, _ = fmt.Fprint(p.w, "\r\033[K")
		return
	}
	_, _ = fmt.Fprint(p.w, "\r\033[K"+truncateLine(line, 150))
}

func (p *progress) Log(line string) {
	if p.term {
		_, _ = fmt.Fprint(p.w, "\r\033[K")
		p.last = ""
	}
	_, _ = fmt.Fprintf(p.w, "%s podgrace calibrate: %s\n", time.Now().Format("15:04:05"), line)
}

func truncateLine(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
