package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podgrace/podgrace/pkg/audit"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/registration"
)

// Exit codes of `podgrace audit`.
const (
	// ExitFindings: a --fail-on condition holds.
	ExitFindings = 2
)

// exitError ends the command with a code other than 1.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

type auditOptions struct {
	loading       *clientcmd.ClientConfigLoadingRules
	overrides     clientcmd.ConfigOverrides
	allNamespaces bool
	files         []string
	maxInputMiB   int64
	valuesPath    string
	releaseNS     string
	configPath    string
	configMap     string
	nsLabels      map[string]string
	nsAnnotations map[string]string
	hookAction    string
	inspect       bool
	output        string
	failOn        []string
	chunkSize     int64
	webhookName   string
	minSleep      time.Duration
	calibration   string
}

func newAuditCommand() *cobra.Command {
	o := &auditOptions{loading: clientcmd.NewDefaultClientConfigLoadingRules()}
	cmd := &cobra.Command{
		Use:   "audit [-n NAMESPACE | -A] | -f FILE|DIR|-",
		Short: "Report what podgrace does, would do and cannot fix, per workload (read-only)",
		Long: `audit reports, per workload (Deployment, StatefulSet, DaemonSet, ReplicaSet not
owned by a Deployment, ReplicationController, CronJob, Job not owned by a CronJob,
bare Pod):
whether podgrace's webhook serves it, what podgrace would change in a pod
created now (the same core as the webhook), how many of its running pods
carry podgrace's status annotation, and the termination risks it can see:
a shell as PID 1, a Service-selected workload without a preStop hook or
without a readiness probe, a grace period shorter than sleep + budget.
For the workloads a Service selects it checks the preStop sleep against a
measured propagation (--min-sleep, --calibration) and against the
load-balancer settings the Services and Ingresses routing to them declare
(health checks bound the sleep, deregistration delay and connection
draining the grace period). It only warns: podgrace's sleep stays as
configured.

Without -f it reads the cluster of your kubeconfig with paginated list calls
only (it never writes). With -f it audits manifests as 'podgrace inject' reads
them; --values (the chart values podgrace is installed with) decides which
are served. The schema of -o json|yaml is documented in docs/operate/audit.md.

Exit codes: 0, or 2 when a --fail-on condition holds (risk: a risk that pods
created now keep; unmutated: a served workload has pods without podgrace's
status; path: a sleep or grace period shorter than the traffic path needs;
error: part of the scan failed); 1 when the audit cannot run.`,
		Example: `  kubectl podgrace audit -A
  podgrace audit -n shop -o yaml
  podgrace audit -A --fail-on=unmutated
  podgrace audit -f k8s/ --values podgrace-values.yaml --fail-on=risk
  podgrace audit -A --calibration calibration.json --fail-on=path`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	f.StringVar(&o.loading.ExplicitPath, clientcmd.RecommendedConfigPathFlag, "", "path to the kubeconfig file")
	clientcmd.BindOverrideFlags(&o.overrides, f, clientcmd.RecommendedConfigOverrideFlags(""))
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "audit every namespace")
	f.Int64Var(&o.maxInputMiB, "max-input-mib", DefaultMaxInputMiB, "with -f, the most MiB of manifests read, all files together; more is an error")
	f.StringSliceVarP(&o.files, "filename", "f", nil, "manifests to audit: a file, a directory (*.yaml, *.yml, *.json, recursively) or - for stdin; repeatable")
	f.StringVar(&o.valuesPath, "values", "", "with -f: the chart values podgrace is installed with (served namespaces and the cluster config)")
	f.StringVar(&o.releaseNS, "release-namespace", registration.DefaultNamespace, "with --values: podgrace's namespace, never served")
	f.StringVar(&o.configPath, "config", "", "cluster config file (the chart's config.yaml); default: --values' config, or the cluster's ConfigMap (--config-map), or the defaults")
	f.StringVar(&o.configMap, "config-map", "", "live: NAMESPACE/NAME of podgrace's ConfigMap holding config.yaml (default: found from podgrace's webhook in the cluster, else "+registration.DefaultNamespace+"/podgrace)")
	f.StringToStringVar(&o.nsLabels, "namespace-labels", nil, "with -f: labels of namespaces the manifests do not define, as k=v,k=v")
	f.StringToStringVar(&o.nsAnnotations, "namespace-annotations", nil, "with -f: annotations of namespaces the manifests do not define, as k=v,k=v")
	f.StringVar(&o.hookAction, "hook-action", "", "preStop action: sleep or exec (default: the config's hookAction; auto means sleep)")
	f.BoolVar(&o.inspect, "inspect-images", false, "read image configs from their registries (with your docker credentials) to check a shell-form ENTRYPOINT/CMD")
	f.StringVarP(&o.output, "output", "o", "", "output format: json, yaml or wide (default: a table)")
	f.StringSliceVar(&o.failOn, "fail-on", nil, "exit 2 when a condition holds: risk, unmutated, path, error (comma list)")
	f.DurationVar(&o.minSleep, "min-sleep", 0, "a measured propagation: flag routed workloads whose preStop sleep is shorter (whole seconds, e.g. 20s)")
	f.StringVar(&o.calibration, "calibration", "", "the JSON 'podgrace calibrate -o json' wrote: flag routed workloads whose sleep is shorter than its recommendation")
	f.Int64Var(&o.chunkSize, "chunk-size", 500, "page size of list calls")
	f.StringVar(&o.webhookName, "webhook-name", registration.WebhookName, "name of podgrace's webhook in its MutatingWebhookConfiguration")
	return cmd
}

func (o *auditOptions) run(cmd *cobra.Command) error {
	for _, c := range o.failOn {
		if !slices.Contains([]string{"risk", "unmutated", "path", "error"}, c) {
			return fmt.Errorf("--fail-on: %q is not risk, unmutated, path or error", c)
		}
	}
	if _, err := o.pathOptions(); err != nil {
		return err
	}
	switch o.output {
	case "", "wide", "json", "yaml":
	default:
		return fmt.Errorf("--output: %q is not json, yaml or wide", o.output)
	}
	ctx := cmd.Context()
	var rep *audit.Report
	if len(o.files) > 0 {
		r, err := o.manifests(ctx, cmd.InOrStdin(), cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		rep = r
	} else {
		r, err := o.live(ctx, cmd.ErrOrStderr())
		if err != nil {
			return err
		}
		rep = r
	}
	if err := audit.Print(rep, o.output, cmd.OutOrStdout(), cmd.ErrOrStderr()); err != nil {
		return err
	}
	var why []string
	for _, c := range o.failOn {
		switch {
		case c == "risk" && rep.Summary.WithRisks > 0:
			why = append(why, fmt.Sprintf("%d workloads with risks", rep.Summary.WithRisks))
		case c == "unmutated" && rep.Summary.UnmutatedPods > 0:
			why = append(why, fmt.Sprintf("%d pods of served workloads without podgrace's mutation", rep.Summary.UnmutatedPods))
		case c == "path" && rep.Summary.PathFindings > 0:
			why = append(why, fmt.Sprintf("%d workloads with a sleep or grace period shorter than their path needs", rep.Summary.PathFindings))
		case c == "error" && rep.Summary.Errors > 0:
			why = append(why, fmt.Sprintf("%d errors", rep.Summary.Errors))
		}
	}
	if len(why) > 0 {
		return &exitError{code: ExitFindings, msg: "audit: " + strings.Join(why, ", ")}
	}
	return nil
}

func (o *auditOptions) env(cfg *policy.Config) (audit.Env, error) {
	hook := cfg.HookAction
	if o.hookAction != "" {
		hook = policy.HookAction(o.hookAction)
		if hook != policy.HookSleep && hook != policy.HookExec {
			return audit.Env{}, fmt.Errorf("--hook-action: %q is not sleep or exec", o.hookAction)
		}
	}
	if hook != policy.HookExec {
		hook = policy.HookSleep
	}
	path, err := o.pathOptions()
	if err != nil {
		return audit.Env{}, err
	}
	env := audit.Env{Config: cfg, HookAction: hook, Path: path}
	if o.inspect {
		env.Images = newInspector(cfg.ImageInspection).Lookup(
			func(context.Context, *corev1.Pod) (authn.Keychain, error) { return authn.DefaultKeychain, nil })
	}
	return env, nil
}

func (o *auditOptions) live(ctx context.Context, stderr io.Writer) (*audit.Report, error) {
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(o.loading, &o.overrides)
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, err
	}
	ns := ""
	if !o.allNamespaces {
		if ns, _, err = cc.Namespace(); err != nil {
			return nil, err
		}
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	cfg, err := o.clusterConfig(ctx, cs, stderr)
	if err != nil {
		return nil, err
	}
	env, err := o.env(&cfg)
	if err != nil {
		return nil, err
	}
	return audit.Scan(ctx, cs, audit.LiveOptions{Env: env, Namespace: ns, ChunkSize: o.chunkSize, WebhookName: o.webhookName, Progress: stderr, Dynamic: dyn}), nil
}

// pathOptions reads --min-sleep or --calibration.
func (o *auditOptions) pathOptions() (audit.PathOptions, error) {
	switch {
	case o.minSleep != 0 && o.calibration != "":
		return audit.PathOptions{}, errors.New("--min-sleep and --calibration: give one")
	case o.minSleep < 0 || o.minSleep%time.Second != 0:
		return audit.PathOptions{}, fmt.Errorf("--min-sleep: %v is not a positive whole number of seconds", o.minSleep)
	case o.minSleep > 0:
		return audit.PathOptions{MinSleep: &audit.MinSleep{Seconds: int64(o.minSleep / time.Second), Source: "--min-sleep"}}, nil
	case o.calibration != "":
		data, err := os.ReadFile(o.calibration)
		if err != nil {
			return audit.PathOptions{}, fmt.Errorf("--calibration: %w", err)
		}
		m, err := audit.ReadCalibration(data, o.calibration)
		if err != nil {
			return audit.PathOptions{}, fmt.Errorf("--calibration: %w", err)
		}
		return audit.PathOptions{MinSleep: m}, nil
	}
	return audit.PathOptions{}, nil
}

// clusterConfig is --config, else the config podgrace runs with (its
// ConfigMap: --config-map, or the one of the podgrace the cluster names),
// else the defaults, said on stderr.
func (o *auditOptions) clusterConfig(ctx context.Context, cs kubernetes.Interface, stderr io.Writer) (policy.Config, error) {
	if o.configPath != "" {
		return policy.LoadConfig(o.configPath)
	}
	ref := o.configMap
	if ref == "" {
		in := findInstallation(ctx, cs, o.webhookName)
		if in.ConfigMap == "" {
			_, _ = fmt.Fprintf(stderr, "podgrace audit: using the default cluster config (podgrace runs as admission policies: %s)\n", in.From)
			return policy.Default(), nil
		}
		in.say(stderr, "audit")
		ref = in.Namespace + "/" + in.ConfigMap
	}
	return configMapConfig(ctx, cs, ref, "audit", stderr)
}

// configMapConfig reads the cluster config from podgrace's ConfigMap ref
// (NAMESPACE/NAME); one that is missing or not readable gives the defaults,
// said on stderr as command's.
func configMapConfig(ctx context.Context, cs kubernetes.Interface, ref, command string, stderr io.Writer) (policy.Config, error) {
	ns, name, ok := strings.Cut(ref, "/")
	if !ok {
		return policy.Config{}, fmt.Errorf("--config-map: %q is not NAMESPACE/NAME", ref)
	}
	cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		cfg, err := policy.ParseConfig([]byte(cm.Data["config.yaml"]))
		if err != nil {
			return policy.Config{}, fmt.Errorf("configmap %s: %w", ref, err)
		}
		return cfg, nil
	case apierrors.IsNotFound(err) || apierrors.IsForbidden(err):
		_, _ = fmt.Fprintf(stderr, "podgrace %s: using the default cluster config (configmap %s: %v)\n", command, ref, err)
		return policy.Default(), nil
	default:
		return policy.Config{}, err
	}
}

func (o *auditOptions) manifests(ctx context.Context, stdin io.Reader, stderr io.Writer) (*audit.Report, error) {
	mo := audit.ManifestOptions{NamespaceLabels: o.nsLabels, NamespaceAnnotations: o.nsAnnotations}
	mo.Namespace = o.overrides.Context.Namespace
	cfg := policy.Default()
	if o.valuesPath != "" {
		data, err := os.ReadFile(o.valuesPath)
		if err != nil {
			return nil, err
		}
		v, c, err := audit.ParseValues(data, o.releaseNS)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.valuesPath, err)
		}
		mo.Values, cfg = v, *c
	}
	if o.configPath != "" {
		c, err := policy.LoadConfig(o.configPath)
		if err != nil {
			return nil, err
		}
		cfg = c
	}
	env, err := o.env(&cfg)
	if err != nil {
		return nil, err
	}
	mo.Env = env
	var sources []audit.Source
	limit := newInputLimit(o.maxInputMiB)
	for _, f := range o.files {
		s, err := readSources(ctx, f, stdin, limit, stderr)
		if err != nil {
			return nil, err
		}
		sources = append(sources, s...)
	}
	return audit.Manifests(ctx, sources, mo), nil
}

// readSources reads a file, every manifest under a directory, or stdin,
// against the input limit. A directory walk reads regular files only:
// anything else named *.yaml is skipped with a warning on stderr.
func readSources(ctx context.Context, path string, stdin io.Reader, limit *inputLimit, stderr io.Writer) ([]audit.Source, error) {
	if path == "-" {
		data, err := limit.read("stdin", stdin)
		return []audit.Source{{Name: "stdin", Data: data}}, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		data, err := limit.readFile(path)
		return []audit.Source{{Name: path, Data: data}}, err
	}
	var out []audit.Source
	err = filepath.WalkDir(path, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		switch filepath.Ext(p) {
		case ".yaml", ".yml", ".json":
		default:
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if ok, why := regularFile(p, d); !ok {
			_, _ = fmt.Fprintf(stderr, "warning: %s skipped: %s\n", p, why)
			return nil
		}
		data, err := limit.readFile(p)
		if err != nil {
			return err
		}
		out = append(out, audit.Source{Name: p, Data: data})
		return nil
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("reading %s", path), err)
	}
	return out, nil
}
