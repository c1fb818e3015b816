package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podgrace/podgrace/pkg/admissionpolicy"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/registration"
)

func newGenerateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Generate manifests from podgrace's policy",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newGeneratePolicyCommand())
	return cmd
}

func newGeneratePolicyCommand() *cobra.Command {
	var (
		configPath  string
		o           admissionpolicy.Options
		clusterWide bool
	)
	cmd := &cobra.Command{
		Use:   "policy [--config FILE]",
		Short: "Print podgrace's policy as a MutatingAdmissionPolicy, a ValidatingAdmissionPolicy and their bindings (Kubernetes >= 1.36)",
		Long: `policy prints, instead of the webhook, the part of podgrace's mutation CEL can
express, evaluated inside the API server: the preStop sleeps, the grace period
raise and the status annotation (a MutatingAdmissionPolicy), the warnings
about invalid settings (a ValidatingAdmissionPolicy; denials in strict mode),
and their bindings (the webhook's namespace selection). The cluster config
is compiled into the CEL (no parameter object) and kept, for the CLIs, in
the MutatingAdmissionPolicy's podgrace.dev/config annotation. The output
begins with what the policy does not do (docs/operate/policy.md).`,
		Example: `  podgrace generate policy | kubectl apply -f -
  podgrace generate policy --config config.yaml --namespace podgrace-system`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := policy.LoadConfig(configPath)
			if err != nil {
				return err
			}
			o.ClusterWide = clusterWide
			if o.Namespace == "" {
				o.Namespace = discoverNamespace(cmd.Context(), cmd.ErrOrStderr())
			}
			objs, err := admissionpolicy.Generate(&cfg, o)
			if err != nil {
				return err
			}
			out, err := objs.YAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "cluster config file (the chart's config.yaml); defaults when unset")
	f.StringVarP(&o.Namespace, "namespace", "n", "", "podgrace's own namespace, never selected (default: podgrace's in the cluster of your kubeconfig, else "+registration.DefaultNamespace+")")
	f.BoolVar(&clusterWide, "cluster-wide", false, "select every namespace not labeled podgrace.dev/inject=disabled (default: only namespaces labeled podgrace.dev/inject=enabled)")
	return cmd
}

// discoverNamespace is podgrace's namespace in the cluster of the kubeconfig
// (findInstallation), or the default when there is no cluster to ask.
func discoverNamespace(ctx context.Context, stderr io.Writer) string {
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(clientcmd.NewDefaultClientConfigLoadingRules(), &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "podgrace generate policy: no cluster to ask for podgrace's namespace (%v); assuming %s (set -n)\n", err, registration.DefaultNamespace)
		return registration.DefaultNamespace
	}
	rc.Timeout = 5 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return registration.DefaultNamespace
	}
	in := findInstallation(ctx, cs, registration.WebhookName)
	in.say(stderr, "generate policy")
	return in.Namespace
}
