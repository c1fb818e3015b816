package audit

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// manifestRoutes collects the Ingresses and BackendConfigs of a manifest
// stream for the path check.
type manifestRoutes struct {
	ingresses []*networkingv1.Ingress
	backends  map[string]map[string]any // namespace/name → BackendConfig ("" namespace: the default)
}

// add keeps obj if it is an Ingress or a BackendConfig; a malformed Ingress
// is a scan error.
func (m *manifestRoutes) add(obj map[string]any, doc int, src string, rep *Report) {
	api, _ := obj["apiVersion"].(string)
	switch kind := kindOf(obj); {
	case kind == "Ingress" && api == "networking.k8s.io/v1":
		var ing networkingv1.Ingress
		if err := convert(obj, &ing); err != nil {
			rep.Errors = append(rep.Errors, ScanError{Resource: src, Document: doc, Message: err.Error()})
			return
		}
		m.ingresses = append(m.ingresses, &ing)
	case kind == "BackendConfig" && strings.HasPrefix(api, backendConfigs.Group+"/"):
		md, _ := obj["metadata"].(map[string]any)
		ns, _ := md["namespace"].(string)
		name, _ := md["name"].(string)
		if m.backends == nil {
			m.backends = map[string]map[string]any{}
		}
		m.backends[ns+"/"+name] = obj
	}
}

// index builds the route index, documents without a namespace in def.
func (m *manifestRoutes) index(svcs []*corev1.Service, def string) *routeIndex {
	inNS := func(ns string) string {
		if ns == "" {
			return def
		}
		return ns
	}
	var ss []*corev1.Service
	for _, s := range svcs {
		s = s.DeepCopy()
		s.Namespace = inNS(s.Namespace)
		ss = append(ss, s)
	}
	var is []*networkingv1.Ingress
	for _, i := range m.ingresses {
		i = i.DeepCopy()
		i.Namespace = inNS(i.Namespace)
		is = append(is, i)
	}
	backends := map[string]map[string]any{}
	for key, obj := range m.backends {
		ns, name, _ := strings.Cut(key, "/")
		backends[inNS(ns)+"/"+name] = obj
	}
	return newRouteIndex(ss, is, func(ns, name string) (map[string]any, error) {
		if obj, ok := backends[ns+"/"+name]; ok {
			return obj, nil
		}
		return nil, fmt.Errorf("not in the manifests")
	})
}
