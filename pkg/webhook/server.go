// Package webhook serves podgrace's mutation core (pkg/inject) as a
// Kubernetes mutating admission webhook: the Pod CREATE handler, the server
// around it (controller-runtime's webhook server, certificate reloading,
// health probes, metrics, a metadata-only namespace cache), the drain on
// shutdown, and the MutatingWebhookConfiguration that registers it.
package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	ctrlwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// Defaults of the `podgrace webhook` flags.
const (
	DefaultPort                   = 9443
	DefaultCertDir                = "/tmp/k8s-webhook-server/serving-certs"
	DefaultMetricsBindAddress     = ":8080"
	DefaultHealthProbeBindAddress = ":8081"
	// DefaultDrainDelay covers the time the API server and kube-proxy take
	// to stop sending to a terminating pod (endpoint propagation, open
	// keep-alive connections). The chart's shutdown.drainDelaySeconds is the
	// same (TestDefaultsAgree in test/chart); its terminationGracePeriodSeconds
	// must exceed it.
	DefaultDrainDelay = 5 * time.Second
)

// Options configure the webhook server. Zero values take the defaults above,
// except the bind addresses: empty or "0" turns the metrics or probe server off.
type Options struct {
	// RESTConfig reaches the API server (namespace cache, discovery).
	RESTConfig *rest.Config
	// Config is the cluster config; policy.Default() when nil.
	Config *policy.Config
	// CertDir holds the serving certificate (CertName, KeyName: tls.crt,
	// tls.key by default). It is watched: a rotated certificate is served
	// without a restart.
	CertDir           string
	CertName, KeyName string
	// Host and Port the webhook listens on ("" = all addresses).
	Host string
	Port int
	// MetricsBindAddress serves /metrics; HealthProbeBindAddress serves
	// /healthz and /readyz.
	MetricsBindAddress     string
	HealthProbeBindAddress string
	// MetricsSecure serves /metrics over HTTPS with the serving certificate
	// of CertDir, to callers whose bearer token the API server authenticates
	// (TokenReview) and authorizes to get the path (SubjectAccessReview).
	// The RESTConfig's user needs to create tokenreviews and
	// subjectaccessreviews.
	MetricsSecure bool
	// PprofBindAddress serves net/http/pprof's /debug/pprof/ ("" or "0":
	// off, the default). For profiling on a trusted address only: it is
	// unauthenticated.
	PprofBindAddress string
	// DrainDelay is how long podgrace keeps serving after its context ends
	// (SIGTERM), unready, before it stops listening. Zero stops at once.
	DrainDelay time.Duration
	// Images reads image configs for the exec-form rewrite. When nil and the
	// cluster config enables image inspection, NewServer builds one
	// (NewImageLookup); with inspection disabled argvs that come from the
	// image are left alone.
	Images inject.ImageLookup
	// ClientCAFile, when set, makes the webhook port require a client
	// certificate signed by a CA of this PEM file (ClientCertAuth): the API
	// server's, so that forged reviews are refused (docs/operate/security.md).
	ClientCAFile string
	// TestLoopbackRegistries lets the image inspection NewServer builds reach
	// these in-process registries on loopback ("127.0.0.1:port"), which it
	// refuses otherwise. Tests only: no flag or config key sets it.
	TestLoopbackRegistries []string
	// Logger is podgrace's logger; controller-runtime's global one when unset.
	Logger *logr.Logger
	// NoEvents turns off the Kubernetes Events podgrace records on a pod's
	// top-level controller (events.go). With events on, the RESTConfig's
	// user needs create and patch on events and get, list and watch on
	// replicasets and jobs.
	NoEvents bool
	// Namespace is the one podgrace runs in; hookAction auto dry-run
	// creates its probe pod there ("default" when empty).
	Namespace string
	// Limits bound connections, admissions in flight, body memory and
	// read time; zero fields take the defaults (DefaultMaxConnections …).
	Limits Limits
	// WebhookTimeout is the MutatingWebhookConfiguration's timeoutSeconds
	// (the chart passes it): no admission works past it, and NewServer
	// refuses an image inspection timeout that does not fit below it
	// (policy.CheckWebhookTimeout). Zero: unknown, not checked.
	WebhookTimeout time.Duration
}

// Server is a configured, not yet started, podgrace webhook.
type Server struct {
	opts     Options
	mgr      manager.Manager
	hook     policy.HookAction
	decision HookDecision
	draining atomic.Bool
	log      logr.Logger
	server   *webhookServer
}

// Addr is the address the webhook listens on, once serving ("" before).
func (s *Server) Addr() string {
	if a := s.server.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// Run builds the server and serves until ctx ends, then drains.
func Run(ctx context.Context, o Options) error {
	s, err := NewServer(ctx, o)
	if err != nil {
		return err
	}
	return s.Start(ctx)
}

// NewServer wires the webhook: it decides the preStop hook (hookAction auto
// asks the API server, see HookProbe), builds a controller-runtime manager holding the webhook
// server, the metadata-only namespace cache, the probes and the metrics, and
// registers the handler at Path.
func NewServer(ctx context.Context, o Options) (*Server, error) {
	if o.RESTConfig == nil {
		return nil, errors.New("webhook: no REST config")
	}
	if o.DrainDelay < 0 {
		return nil, fmt.Errorf("webhook: negative drain delay %v", o.DrainDelay)
	}
	if o.Config == nil {
		cfg := policy.Default()
		o.Config = &cfg
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.CertDir == "" {
		o.CertDir = DefaultCertDir
	}
	if o.MetricsBindAddress == "" {
		o.MetricsBindAddress = "0"
	}
	o.Limits = o.Limits.withDefaults()
	if err := o.Limits.validate(); err != nil {
		return nil, err
	}
	if err := policy.CheckWebhookTimeout(o.Config, o.WebhookTimeout); err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	log := ctrl.Log.WithName("podgrace")
	if o.Logger != nil {
		log = *o.Logger
	}
	s := &Server{opts: o, log: log}
	watchCertExpiry(o.CertDir, o.CertName)

	hook, err := s.resolveHookAction(ctx)
	if err != nil {
		return nil, err
	}
	s.hook = hook
	if s.decision.Action == "" {
		s.decision = HookDecision{Action: hook, Reason: "configured"}
	}

	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	tlsOpts := []func(*tls.Config){secureTLS}
	if o.ClientCAFile != "" {
		clientAuth, err := ClientCertAuth(o.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("webhook: %w", err)
		}
		tlsOpts = append(tlsOpts, clientAuth)
	}
	whs := newWebhookServer(ctrlwebhook.Options{
		Host:     o.Host,
		Port:     o.Port,
		CertDir:  o.CertDir,
		CertName: o.CertName,
		KeyName:  o.KeyName,
		TLSOpts:  tlsOpts,
	}, o.Limits, log.WithName("server"))
	s.server = whs
	mgr, err := ctrl.NewManager(o.RESTConfig, ctrl.Options{
		Scheme:                 scheme,
		Logger:                 log,
		WebhookServer:          whs,
		Metrics:                metricsOptions(o),
		HealthProbeBindAddress: o.HealthProbeBindAddress,
		PprofBindAddress:       o.PprofBindAddress,
		// Only namespace metadata is cached, and without managedFields.
		Cache: cache.Options{DefaultTransform: cache.TransformStripManagedFields()},
	})
	if err != nil {
		return nil, fmt.Errorf("webhook: %w", err)
	}
	s.mgr = mgr
	// Asking the manager for its webhook server is what adds it to the
	// manager's runnables.
	_ = mgr.GetWebhookServer()

	// Registering the informer now makes it start, and be waited for, with
	// the manager's cache instead of lazily on the first admission.
	nsInformer, err := mgr.GetCache().GetInformer(ctx, namespaceMeta(), cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("webhook: namespace informer: %w", err)
	}
	namespaces := &namespaceAnnotations{
		cached: mgr.GetCache(),
		live:   mgr.GetAPIReader(),
		synced: nsInformer.HasSynced,
		log:    log.WithName("namespaces"),
	}
	if o.Images == nil && o.Config.ImageInspection.Enabled {
		// Pull secrets are read live (never listed or watched), and only
		// when the cluster config allows it; the chart grants the RBAC then.
		o.Images = NewImageLookup(&o.Config.ImageInspection, mgr.GetAPIReader(), o.TestLoopbackRegistries)
	}
	handler := &Handler{
		Config:     o.Config,
		HookAction: hook,
		Images:     o.Images,
		Namespaces: namespaces.lookup,
		Log:        log.WithName("admission"),
		Timeout:    o.WebhookTimeout,
		bodies:     &bodyBudget{limit: o.Limits.MaxBodyMemory},
	}
	if !o.NoEvents {
		if handler.Events, err = s.events(ctx, mgr); err != nil {
			return nil, err
		}
	}
	// Registered on controller-runtime's server, the handler is wrapped in
	// its request metrics (controller_runtime_webhook_requests_total …),
	// which so count the 503s of the in-flight limit too.
	inFlight := limitInFlight(o.Limits.MaxInFlight)
	whs.Register(Path, inFlight(s.closeWhenDraining(handler)))
	// The workload check is a separate path (and webhook entry): pods never
	// reach it, so the pod path's cost is unchanged. It shares the limits.
	whs.Register(WorkloadPath, inFlight(s.closeWhenDraining(&WorkloadHandler{Pods: handler})))

	checks := []struct {
		name  string
		check healthz.Checker
		ready bool
	}{
		{"ping", healthz.Ping, false},
		// Ready once the listener serves TLS, so the certificate is loaded.
		{"webhook", whs.StartedChecker(), true},
		{"namespace-cache", func(*http.Request) error {
			if !nsInformer.HasSynced() {
				return errors.New("namespace cache not synced")
			}
			return nil
		}, true},
		{"drain", func(*http.Request) error {
			if s.draining.Load() {
				return errors.New("draining: shutting down")
			}
			return nil
		}, true},
	}
	for _, c := range checks {
		add := mgr.AddHealthzCheck
		if c.ready {
			add = mgr.AddReadyzCheck
		}
		if err := add(c.name, c.check); err != nil {
			return nil, fmt.Errorf("webhook: health check %s: %w", c.name, err)
		}
	}
	return s, nil
}

// events starts the metadata-only owner caches (ReplicaSets, Jobs; not waited
// for: a miss is read from the API server) and the event queue.
func (s *Server) events(ctx context.Context, mgr manager.Manager) (*Events, error) {
	for _, gvk := range []metav1.TypeMeta{{APIVersion: "apps/v1", Kind: "ReplicaSet"}, {APIVersion: "batch/v1", Kind: "Job"}} {
		if _, err := mgr.GetCache().GetInformer(ctx, &metav1.PartialObjectMetadata{TypeMeta: gvk}, cache.BlockUntilSynced(false)); err != nil {
			return nil, fmt.Errorf("webhook: %s metadata informer: %w", gvk.Kind, err)
		}
	}
	cs, err := kubernetes.NewForConfig(s.opts.RESTConfig)
	if err != nil {
		return nil, fmt.Errorf("webhook: events client: %w", err)
	}
	ev := NewEvents(cs, mgr.GetCache(), mgr.GetAPIReader(), s.log.WithName("events"))
	if err := mgr.Add(ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// HookAction is the preStop action this server applies (sleep or exec).
func (s *Server) HookAction() policy.HookAction { return s.hook }

// HookDecision is how the hook action was decided (for hookAction auto: the
// probe's answer, or the version fallback and why).
func (s *Server) HookDecision() HookDecision { return s.decision }

// Start serves until ctx ends, then drains: /readyz fails at once so the pod
// leaves the Service's endpoints, but the listener stays open and every
// admission, on open keep-alive connections and new ones, is still answered
// for DrainDelay; responses meanwhile carry `Connection: close` so the API
// server moves its connections to other replicas. Then the manager stops:
// the listener closes and in-flight requests finish.
func (s *Server) Start(ctx context.Context) error {
	mgrCtx, stopManager := context.WithCancel(logr.NewContext(context.WithoutCancel(ctx), s.log))
	defer stopManager()
	done := make(chan error, 1)
	go func() { done <- s.mgr.Start(mgrCtx) }()
	s.log.Info("Starting podgrace webhook", "port", s.opts.Port, "certDir", s.opts.CertDir,
		"hookAction", s.hook, "strict", s.opts.Config.Strict, "drainDelay", s.opts.DrainDelay)

	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("Draining: unready, still serving admissions", "for", s.opts.DrainDelay)
	t := time.NewTimer(s.opts.DrainDelay)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
	}
	s.log.Info("Drain over; closing the listener")
	stopManager()
	return <-done
}

// metricsOptions serves /metrics over plain HTTP, or with MetricsSecure over
// HTTPS (the webhook's certificate and TLS settings, rotation watched) behind
// metricsAuth.
func metricsOptions(o Options) metricsserver.Options {
	if !o.MetricsSecure {
		return metricsserver.Options{BindAddress: o.MetricsBindAddress}
	}
	return metricsserver.Options{
		BindAddress:    o.MetricsBindAddress,
		SecureServing:  true,
		CertDir:        o.CertDir,
		CertName:       o.CertName,
		KeyName:        o.KeyName,
		TLSOpts:        []func(*tls.Config){secureTLS},
		FilterProvider: metricsAuth,
	}
}

// closeWhenDraining asks clients to close their connection after each
// response once draining, so they reconnect to a replica that is staying.
func (s *Server) closeWhenDraining(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// secureTLS sets TLS 1.2 as the minimum and turns HTTP/2 off: HTTP/2 stream
// resets allow a cheap denial of service (CVE-2023-44487, "rapid reset"),
// and the API server talks to webhooks over HTTP/1.1 just as well. This is
// the option kubebuilder scaffolds.
func secureTLS(c *tls.Config) {
	c.MinVersion = tls.VersionTLS12
	c.NextProtos = []string{"http/1.1"}
}

// resolveHookAction turns the configured hook action into sleep or exec. For
// auto it asks the API server once, at start: a webhook is restarted on
// every control plane upgrade that matters soon enough, and a probe per
// admission would cost a round trip.
func (s *Server) resolveHookAction(ctx context.Context) (policy.HookAction, error) {
	configured := s.opts.Config.HookAction
	if configured != policy.HookAuto && configured != "" {
		return configured, nil
	}
	cs, err := kubernetes.NewForConfig(s.opts.RESTConfig)
	if err != nil {
		return "", fmt.Errorf("webhook: client for hookAction auto: %w", err)
	}
	ns := s.opts.Namespace
	if ns == "" {
		ns = "default"
	}
	p := &HookProbe{Client: cs, Namespace: ns, Log: s.log.WithName("hookaction")}
	d, err := p.Decide(ctx)
	if err != nil {
		return "", err
	}
	s.decision = d
	s.log.Info("hookAction auto decided", "hookAction", d.Action, "reason", d.Reason,
		"apiServerVersion", d.ServerVersion, "namespace", ns)
	return d.Action, nil
}
