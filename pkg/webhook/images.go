package webhook

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/podgrace/podgrace/pkg/imageconfig"
	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

var (
	imageLookupsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podgrace_image_lookups_total",
		Help: "Image config inspections, by result: hit (from the caches), miss (the registry was asked) or error.",
	}, []string{"result"})
	imageLookupSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "podgrace_image_lookup_duration_seconds",
		Help:    "How long image config inspections took, by result.",
		Buckets: []float64{0.0001, 0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5},
	}, []string{"result"})
	imageCacheHitsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podgrace_image_cache_hits_total",
		Help: "Answers from the image caches, by cache: tag (tag→digest), config (digest→config) or error (a remembered failure).",
	}, []string{"cache"})
	imageErrorsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "podgrace_image_lookup_errors_total",
		Help: "Failed image config inspections, by kind (timeout, not-found, unauthorized, platforms-disagree, not-linux, invalid-reference, registry, canceled).",
	}, []string{"kind"})
)

func init() {
	register(imageLookupsTotal, imageLookupSeconds, imageCacheHitsTotal, imageErrorsTotal)
}

// imageMetrics reports the inspector's observations to Prometheus.
type imageMetrics struct{}

func (imageMetrics) ObserveLookup(result string, d time.Duration) {
	imageLookupsTotal.WithLabelValues(result).Inc()
	imageLookupSeconds.WithLabelValues(result).Observe(d.Seconds())
}
func (imageMetrics) CacheHit(kind string) { imageCacheHitsTotal.WithLabelValues(kind).Inc() }
func (imageMetrics) Error(kind string)    { imageErrorsTotal.WithLabelValues(kind).Inc() }

// NewImageLookup builds the image inspection the handler uses (docs/design.md §6):
// one process-wide inspector with its caches, anonymous unless the cluster
// config allows reading pull secrets, in which case reader (a live, uncached
// reader: podgrace never lists or watches Secrets) fetches the pod's and its
// ServiceAccount's imagePullSecrets. loopback is for tests only
// (imageconfig.Options.LoopbackRegistries): nil in a deployed podgrace.
func NewImageLookup(cfg *policy.ImageInspection, reader client.Reader, loopback []string) inject.ImageLookup {
	o := imageconfig.OptionsFrom(*cfg)
	o.Metrics = imageMetrics{}
	o.LoopbackRegistries = loopback
	var kc imageconfig.KeychainFunc
	if cfg.PullSecrets && reader != nil {
		kc = pullSecrets(reader)
	}
	return imageconfig.New(o).Lookup(kc)
}

// pullSecrets gathers a pod's imagePullSecrets, then its ServiceAccount's,
// in the order the kubelet tries them. A Secret that cannot be read is
// skipped and reported: the others, or anonymous access, may still do.
func pullSecrets(r client.Reader) imageconfig.KeychainFunc {
	return func(ctx context.Context, pod *corev1.Pod) (authn.Keychain, error) {
		refs := append([]corev1.LocalObjectReference(nil), pod.Spec.ImagePullSecrets...)
		var errs []error
		sa := pod.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		var account corev1.ServiceAccount
		if err := r.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: sa}, &account); err != nil {
			errs = append(errs, fmt.Errorf("serviceaccount %s: %w", sa, err))
		} else {
			refs = append(refs, account.ImagePullSecrets...)
		}
		var secrets []corev1.Secret
		seen := map[string]bool{}
		for _, ref := range refs {
			if ref.Name == "" || seen[ref.Name] {
				continue
			}
			seen[ref.Name] = true
			var s corev1.Secret
			if err := r.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: ref.Name}, &s); err != nil {
				errs = append(errs, fmt.Errorf("secret %s: %w", ref.Name, err))
				continue
			}
			secrets = append(secrets, s)
		}
		kc, err := imageconfig.KeychainFromSecrets(secrets)
		if err != nil {
			errs = append(errs, err)
		}
		return kc, errors.Join(errs...)
	}
}
