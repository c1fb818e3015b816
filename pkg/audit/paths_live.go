package audit

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/pager"
)

// backendConfigs is GKE's BackendConfig resource, read as unstructured: its
// CRD exists only on GKE.
var backendConfigs = schema.GroupVersionResource{Group: "cloud.google.com", Version: "v1", Resource: "backendconfigs"}

// ingresses lists the Ingresses in the scan's scope.
func (s *scan) ingresses() []*networkingv1.Ingress {
	var out []*networkingv1.Ingress
	s.list("ingresses", func(ns string) pager.ListPageFunc {
		return func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return s.cs.NetworkingV1().Ingresses(ns).List(ctx, opts)
		}
	}, func(o runtime.Object) { out = append(out, o.(*networkingv1.Ingress)) })
	return out
}

// routeIndex indexes the routes of a live cluster. A BackendConfig is read when
// a Service names it, once (with LiveOptions.Dynamic; a cluster without the
// CRD answers NotFound, reported on the workload as unchecked).
func (s *scan) routeIndex(svcs []*corev1.Service, ings []*networkingv1.Ingress) *routeIndex {
	type got struct {
		obj map[string]any
		err error
	}
	cache := map[string]got{}
	var backend func(ns, name string) (map[string]any, error)
	if s.o.Dynamic != nil {
		backend = func(ns, name string) (map[string]any, error) {
			key := ns + "/" + name
			if g, ok := cache[key]; ok {
				return g.obj, g.err
			}
			u, err := s.o.Dynamic.Resource(backendConfigs).Namespace(ns).Get(s.ctx, name, metav1.GetOptions{})
			g := got{err: err}
			if err == nil {
				g.obj = u.Object
			}
			cache[key] = g
			return g.obj, g.err
		}
	}
	return newRouteIndex(svcs, ings, backend)
}

// path is the path check of a live workload.
func (s *scan) path(w *Workload, tmpl *corev1.Pod, out outcome) *Path {
	p := s.routes.path(w.Namespace, tmpl, effectivePod(tmpl, out, w.Served), s.o.Config, s.o.Path)
	if p != nil {
		if err := s.listErr("ingresses", w.Namespace); err != nil {
			p.Unchecked = append(p.Unchecked, "ingresses unreadable: "+err.Error())
		}
	}
	return p
}
