package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podgrace/podgrace/pkg/audit"
	"github.com/podgrace/podgrace/pkg/registration"
	"github.com/podgrace/podgrace/pkg/webhook"
	"github.com/podgrace/podgrace/pkg/workload"
)

// ExitNotMutated is the exit code when `explain` found a pod without podgrace's status, or a
// workload whose pods podgrace does not serve.
const ExitNotMutated = 2

// kindAliases are kubectl's short names of the workload kinds.
var kindAliases = map[string]string{
	"po": "Pod", "deploy": "Deployment", "sts": "StatefulSet", "ds": "DaemonSet",
	"rs": "ReplicaSet", "rc": "ReplicationController", "cj": "CronJob",
}

type explainOptions struct {
	audit  auditOptions
	output string
}

func newExplainCommand() *cobra.Command {
	o := &explainOptions{audit: auditOptions{loading: clientcmd.NewDefaultClientConfigLoadingRules()}}
	cmd := &cobra.Command{
		Use:   "explain [TYPE/]NAME [-n NAMESPACE]",
		Short: "Explain why a pod was or was not mutated, or what a workload's next rollout gets (read-only)",
		Long: `explain reads one pod or workload (deployment, statefulset, daemonset,
replicaset, replicationcontroller, job, cronjob; NAME alone is a pod) and
podgrace's webhook registration as the API server holds it, and says:
the namespace's opt-in label and the selection in force; for a pod, its
podgrace.dev/status decoded (per container: role, hook, sleep, exec form,
skip reason) with the grace arithmetic, or, when it has none, the likely
cause (namespace not selected, excluded by a label, created before podgrace
was installed, or a webhook call that failed open: the API server's
apiserver_admission_webhook_fail_open_count, when its /metrics is readable);
and what a pod created now from it gets, with the warnings.

Exit codes: 0 when the pod carries podgrace's status (a workload: when its
pods are served); 2 when it does not (docs/reference/cli.md); 1 when the
explanation cannot be made (not found, not allowed).`,
		Example: `  podgrace explain web-7d9c5b-x2x4q -n shop
  kubectl podgrace explain deployment/web -n shop
  podgrace explain cronjob/nightly -n batch -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, args[0]) },
	}
	f := cmd.Flags()
	a := &o.audit
	f.StringVar(&a.loading.ExplicitPath, clientcmd.RecommendedConfigPathFlag, "", "path to the kubeconfig file")
	clientcmd.BindOverrideFlags(&a.overrides, f, clientcmd.RecommendedConfigOverrideFlags(""))
	f.StringVar(&a.configPath, "config", "", "cluster config file (the chart's config.yaml); default: the cluster's ConfigMap (--config-map), or the defaults")
	f.StringVar(&a.configMap, "config-map", "", "NAMESPACE/NAME of podgrace's ConfigMap holding config.yaml (default: found from podgrace's webhook in the cluster, else "+registration.DefaultNamespace+"/podgrace)")
	f.StringVar(&a.hookAction, "hook-action", "", "preStop action: sleep or exec (default: the config's hookAction; auto means sleep)")
	f.StringVar(&a.webhookName, "webhook-name", webhook.WebhookName, "name of podgrace's webhook in its MutatingWebhookConfiguration")
	f.StringVarP(&o.output, "output", "o", "", "output format: json (default: text)")
	return cmd
}

// parseTarget reads kubectl's TYPE/NAME (or NAME, a pod).
func parseTarget(arg string) (workload.Kind, string, error) {
	typ, name, ok := strings.Cut(arg, "/")
	if !ok {
		typ, name = "pod", arg
	}
	if name == "" {
		return workload.Kind{}, "", fmt.Errorf("%q: no name", arg)
	}
	t := strings.ToLower(typ)
	if k, ok := kindAliases[t]; ok {
		t = strings.ToLower(k)
	}
	t, _, _ = strings.Cut(t, ".") // deployment.apps
	for _, k := range workload.Kinds {
		if t == strings.ToLower(k.Kind) || t == k.Resource {
			return k, name, nil
		}
	}
	return workload.Kind{}, "", fmt.Errorf("%q: not a pod or a workload kind podgrace handles", typ)
}

func (o *explainOptions) run(cmd *cobra.Command, arg string) error {
	if o.output != "" && o.output != "json" {
		return fmt.Errorf("--output: %q is not json", o.output)
	}
	kind, name, err := parseTarget(arg)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(o.audit.loading, &o.audit.overrides)
	rc, err := cc.ClientConfig()
	if err != nil {
		return err
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return err
	}
	cfg, err := o.audit.clusterConfig(ctx, cs, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	env, err := o.audit.env(&cfg)
	if err != nil {
		return err
	}
	e, err := audit.Explain(ctx, cs, audit.ExplainOptions{Env: env, Kind: kind, Namespace: ns, Name: name, WebhookName: o.audit.webhookName})
	if err != nil {
		return err
	}
	if o.output == "json" {
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		err = enc.Encode(e)
	} else {
		err = audit.PrintExplanation(cmd.OutOrStdout(), e)
	}
	if err != nil {
		return err
	}
	if !e.Mutated() {
		what := "has no podgrace status"
		if kind.Kind != "Pod" {
			what = "is not served by podgrace"
		}
		return &exitError{code: ExitNotMutated, msg: fmt.Sprintf("explain: %s %s/%s %s", kind.Kind, ns, name, what)}
	}
	return nil
}
