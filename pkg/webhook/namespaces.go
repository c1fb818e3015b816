package webhook

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// liveLookupTimeout bounds the API read made when a namespace is not cached
// yet, well inside the webhook's 5 s timeout.
const liveLookupTimeout = time.Second

// namespaceMeta returns an empty metadata-only Namespace: read through the
// manager's cached client it is served by a metadata informer, so only
// namespace metadata is cached and no Namespace spec or status is held.
func namespaceMeta() *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}}
}

// namespaceAnnotations reads namespace annotations from the informer cache,
// never from the API server per request. A namespace the cache does not hold
// yet (created a moment before its first pod, or the cache still syncing) is
// read once from the API server instead, so its defaults still apply; the
// fallback is logged and counted (podgrace_namespace_lookups_total{source="api"}).
type namespaceAnnotations struct {
	cached client.Reader
	live   client.Reader
	synced func() bool
	log    logr.Logger
}

func (n *namespaceAnnotations) lookup(ctx context.Context, name string) (map[string]string, error) {
	key := client.ObjectKey{Name: name}
	if n.synced() {
		ns := namespaceMeta()
		// No deep copy: the annotations are only read, never changed, and
		// the copy showed in the server's profile (docs/records/benchmarks.md).
		err := n.cached.Get(ctx, key, ns, client.UnsafeDisableDeepCopy)
		if err == nil {
			namespaceLookupsFromCache.Inc()
			return ns.Annotations, nil
		}
		n.log.Info("Namespace not in the cache yet; reading it from the API server", "namespace", name, "cacheError", err.Error())
	} else {
		n.log.Info("Namespace cache not synced yet; reading the namespace from the API server", "namespace", name)
	}
	ctx, cancel := context.WithTimeout(ctx, liveLookupTimeout)
	defer cancel()
	ns := namespaceMeta()
	if err := n.live.Get(ctx, key, ns); err != nil {
		namespaceLookupsTotal.WithLabelValues("failed").Inc()
		return nil, err
	}
	namespaceLookupsTotal.WithLabelValues("api").Inc()
	return ns.Annotations, nil
}
