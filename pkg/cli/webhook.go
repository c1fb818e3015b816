package cli

import (
	"flag"
	"os"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/webhook"
)

func newWebhookCommand() *cobra.Command {
	var (
		o          webhook.Options
		configPath string
		zapOpts    = zap.Options{}
		selfCert   SelfCert
	)
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Serve the mutating admission webhook",
		Long: `webhook serves podgrace's Pod mutation as a Kubernetes mutating admission
webhook on https://:PORT/mutate-v1-pod, with /healthz and /readyz on the probe
address and Prometheus metrics on the metrics address.

The serving certificate is read from --cert-dir (tls.crt, tls.key) and
reloaded when it is rotated; with --selfcert-secret podgrace creates and
renews it itself (installs without cert-manager). On SIGTERM podgrace turns unready but keeps
answering admissions for --drain-delay, then stops listening.`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{annotationDrains: "true"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := zap.New(zap.UseFlagOptions(&zapOpts), zap.WriteTo(cmd.ErrOrStderr()))
			ctrl.SetLogger(log)
			klog.SetLogger(log.WithName("client-go"))

			cfg, err := policy.LoadConfig(configPath)
			if err != nil {
				return err
			}
			rc, err := config.GetConfig()
			if err != nil {
				return err
			}
			// With --selfcert-secret, podgrace manages its own certificate:
			// written into --cert-dir before the server reads it.
			if err := selfCert.Start(cmd.Context(), rc, o.CertDir, log); err != nil {
				return err
			}
			if o.Namespace == "" {
				o.Namespace = os.Getenv("POD_NAMESPACE")
			}
			o.Config, o.RESTConfig, o.Logger = &cfg, rc, &log
			return webhook.Run(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.CertDir, "cert-dir", webhook.DefaultCertDir, "directory holding the serving certificate (tls.crt, tls.key); watched for rotation")
	f.IntVar(&o.Port, "port", webhook.DefaultPort, "port the webhook serves HTTPS on")
	f.StringVar(&configPath, "config", "", "cluster config file (the chart mounts its ConfigMap); defaults when unset")
	f.StringVar(&o.MetricsBindAddress, "metrics-bind-address", webhook.DefaultMetricsBindAddress, `address /metrics is served on ("0" turns it off)`)
	f.StringVar(&o.ClientCAFile, "client-ca-file", "", "require a client certificate signed by a CA of this PEM file on the webhook port (the API server's webhook client certificate; docs/operate/security.md)")
	f.BoolVar(&o.MetricsSecure, "metrics-secure", false, "serve /metrics over HTTPS with the serving certificate, only to callers whose bearer token the API server authenticates and authorizes to get /metrics (TokenReview, SubjectAccessReview)")
	f.BoolVar(&o.NoEvents, "no-events", false, "record no Kubernetes Events on the top-level controllers of pods podgrace could not fully handle (events need create/patch on events and get/list/watch on replicasets and jobs)")
	f.StringVar(&o.HealthProbeBindAddress, "health-probe-bind-address", webhook.DefaultHealthProbeBindAddress, `address /healthz and /readyz are served on ("0" turns them off)`)
	f.StringVar(&o.PprofBindAddress, "pprof-bind-address", "", `address net/http/pprof is served on, unauthenticated: for profiling on a trusted address (off when empty or "0")`)
	f.DurationVar(&o.DrainDelay, "drain-delay", webhook.DefaultDrainDelay, "after SIGTERM, how long to keep serving (unready) before closing the listener; keep it under the pod's terminationGracePeriodSeconds")
	f.StringVar(&o.Namespace, "namespace", "", `namespace podgrace runs in, where hookAction auto dry-run creates its probe pod (default: $POD_NAMESPACE, else "default")`)
	f.DurationVar(&o.WebhookTimeout, "webhook-timeout", 0, "the MutatingWebhookConfiguration's timeoutSeconds (the chart passes it): no admission works past it, and a config whose imageInspection.timeout does not fit 1s below it is refused (0: unknown)")
	f.IntVar(&o.Limits.MaxConnections, "max-connections", webhook.DefaultMaxConnections, "open connections to the webhook port; more are closed on accept (podgrace_connections_rejected_total)")
	f.IntVar(&o.Limits.MaxInFlight, "max-in-flight", webhook.DefaultMaxInFlight, "admissions read or decided at once; more are answered 503 (podgrace_requests_not_handled_total{reason=\"overloaded\"})")
	f.Int64Var(&o.Limits.MaxBodyMemory, "max-body-memory", webhook.DefaultMaxBodyMemory, "bytes of request bodies held at once, all requests together; a request over it is answered 503")
	f.DurationVar(&o.Limits.ReadTimeout, "read-timeout", webhook.DefaultReadTimeout, "time to read a request, headers and body")
	selfCert.AddFlags(f)

	// --kubeconfig (controller-runtime's flag) and the --zap-* logging flags.
	goFlags := flag.NewFlagSet("webhook", flag.ContinueOnError)
	config.RegisterFlags(goFlags)
	zapOpts.BindFlags(goFlags)
	f.AddGoFlagSet(goFlags)
	return cmd
}
