package audit

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/pager"

	"github.com/podgrace/podgrace/pkg/registration"
	"github.com/podgrace/podgrace/pkg/workload"
)

// LiveOptions configure a scan of a live cluster.
type LiveOptions struct {
	Env
	// Namespace limits the scan; "" scans every namespace.
	Namespace string
	// ChunkSize is the page size of every list call (kubectl's --chunk-size).
	ChunkSize int64
	// WebhookName is the name of podgrace's webhook in its configuration.
	WebhookName string
	// Progress receives a line every couple of seconds of a slow scan; nil: none.
	Progress io.Writer
	// Dynamic reads the BackendConfigs Services name (paths.go); nil: unread.
	Dynamic dynamic.Interface
}

// namespaceInfo is what the scan knows of a namespace.
type namespaceInfo struct {
	labels, annotations map[string]string
}

type scan struct {
	ctx      context.Context
	cs       kubernetes.Interface
	o        *LiveOptions
	rep      *Report
	items    atomic.Int64
	nsList   []string // namespaces known to exist (for the per-namespace fallback)
	ns       map[string]*namespaceInfo
	listErrs map[string]map[string]error // resource → namespace ("" = all) → error
	byKey    map[string]*entry           // "Kind/namespace/name" → workload
	order    []string                    // keys in the order listed
	owner    map[string]string           // key of a controlled workload → key of its controller
	routes   *routeIndex                 // Services and Ingresses to each pod template (paths.go)
}

// Scan audits a live cluster with list calls only, page by page: a cluster of
// N pods costs N/ChunkSize pod lists, never a request per pod.
func Scan(ctx context.Context, cs kubernetes.Interface, o LiveOptions) *Report {
	if o.ChunkSize <= 0 {
		o.ChunkSize = 500
	}
	if o.WebhookName == "" {
		o.WebhookName = registration.WebhookName
	}
	s := &scan{ctx: ctx, cs: cs, o: &o, rep: &Report{APIVersion: APIVersion, Kind: Kind, Source: "cluster"},
		ns: map[string]*namespaceInfo{}, listErrs: map[string]map[string]error{}, byKey: map[string]*entry{}, owner: map[string]string{}}
	stop := s.progress()
	defer stop()

	matchers, mwcErr := s.webhooks()
	s.namespaces()
	s.workloads()
	selectors, svcs := s.services()
	s.routes = s.routeIndex(svcs, s.ingresses())
	s.pods()
	for _, key := range s.order {
		s.rep.Workloads = append(s.rep.Workloads, s.audit(s.byKey[key], matchers, mwcErr, selectors))
	}
	sort.SliceStable(s.rep.Workloads, func(i, j int) bool {
		a, b := &s.rep.Workloads[i], &s.rep.Workloads[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Kind != b.Kind {
			return workload.Order(a.Kind) < workload.Order(b.Kind)
		}
		return a.Name < b.Name
	})
	s.rep.summarize()
	return s.rep
}

type entry struct {
	w    Workload
	tmpl *corev1.Pod
	// pods summarizes the workload's pods as they are listed: a pod is
	// summarized and dropped with its page, never held until the end.
	pods Pods
}

// listPages is a typed List call as a pager's page function.
func listPages[L runtime.Object](list func(context.Context, metav1.ListOptions) (L, error)) pager.ListPageFunc {
	return func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) { return list(ctx, opts) }
}

// listers lists each kind of the workload table in a namespace ("" for all)
// with the typed clients; TestScanCoversEveryKind checks that every row has one.
func listers(cs kubernetes.Interface) map[string]func(ns string) pager.ListPageFunc {
	return map[string]func(ns string) pager.ListPageFunc{
		"deployments":            func(ns string) pager.ListPageFunc { return listPages(cs.AppsV1().Deployments(ns).List) },
		"statefulsets":           func(ns string) pager.ListPageFunc { return listPages(cs.AppsV1().StatefulSets(ns).List) },
		"daemonsets":             func(ns string) pager.ListPageFunc { return listPages(cs.AppsV1().DaemonSets(ns).List) },
		"replicasets":            func(ns string) pager.ListPageFunc { return listPages(cs.AppsV1().ReplicaSets(ns).List) },
		"replicationcontrollers": func(ns string) pager.ListPageFunc { return listPages(cs.CoreV1().ReplicationControllers(ns).List) },
		"cronjobs":               func(ns string) pager.ListPageFunc { return listPages(cs.BatchV1().CronJobs(ns).List) },
		"jobs":                   func(ns string) pager.ListPageFunc { return listPages(cs.BatchV1().Jobs(ns).List) },
		"pods":                   func(ns string) pager.ListPageFunc { return listPages(cs.CoreV1().Pods(ns).List) },
		"services":               func(ns string) pager.ListPageFunc { return listPages(cs.CoreV1().Services(ns).List) },
	}
}

// add records a workload and its pod template (nil for a bare pod).
func (s *scan) add(kind string, meta metav1.Object, tmpl *corev1.PodTemplateSpec) *entry {
	key := kind + "/" + meta.GetNamespace() + "/" + meta.GetName()
	var p *corev1.Pod
	if tmpl != nil {
		p = &corev1.Pod{ObjectMeta: *tmpl.ObjectMeta.DeepCopy(), Spec: *tmpl.Spec.DeepCopy()}
		p.Namespace = meta.GetNamespace()
	}
	e := &entry{w: Workload{Kind: kind, Namespace: meta.GetNamespace(), Name: meta.GetName()}, tmpl: p}
	s.byKey[key] = e
	s.order = append(s.order, key)
	return e
}

// workloads lists every kind of the workload table but pods. An object a
// workload controls (a Deployment's ReplicaSet, a CronJob's Job) is audited
// through its controller: its pods count for the controller.
func (s *scan) workloads() {
	list := listers(s.cs)
	for _, k := range workload.Kinds {
		if len(k.Template) == 0 {
			continue // pods are listed as the workloads' pods
		}
		s.list(k.Resource, list[k.Resource], func(o runtime.Object) {
			meta, tmpl, err := templateOfTyped(o, k)
			if err != nil {
				s.rep.Errors = append(s.rep.Errors, ScanError{Resource: k.Resource, Message: err.Error()})
				return
			}
			key := k.Kind + "/" + meta.GetNamespace() + "/" + meta.GetName()
			if ref := metav1.GetControllerOfNoCopy(meta); ref != nil {
				if owner, ok := workload.Owner(ref); ok {
					s.owner[key] = owner.Kind + "/" + meta.GetNamespace() + "/" + ref.Name
					return
				}
			}
			s.add(k.Kind, meta, tmpl)
		})
	}
}

// templateOfTyped reads a typed workload's metadata and pod template at the
// table's path.
func templateOfTyped(o runtime.Object, k workload.Kind) (metav1.Object, *corev1.PodTemplateSpec, error) {
	meta, err := apimeta.Accessor(o)
	if err != nil {
		return nil, nil, err
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		return nil, nil, err
	}
	var tmpl corev1.PodTemplateSpec
	if m, found, err := unstructured.NestedMap(u, k.Template...); err != nil || !found {
		return nil, nil, fmt.Errorf("%s %s/%s: no pod template at %s", k.Kind, meta.GetNamespace(), meta.GetName(), k.TemplatePath())
	} else if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &tmpl); err != nil {
		return nil, nil, err
	}
	return meta, &tmpl, nil
}

// resolve follows controllers up to the workload that is audited.
func (s *scan) resolve(key string) string {
	for range 4 { // Pod → ReplicaSet → Deployment is the longest chain
		o, ok := s.owner[key]
		if !ok {
			break
		}
		key = o
	}
	return key
}

// services lists the Services, for the risks of pods a Service selects and
// for the routes of the path check.
func (s *scan) services() (map[string][]labels.Selector, []*corev1.Service) {
	selectors := map[string][]labels.Selector{}
	var svcs []*corev1.Service
	s.list("services", listers(s.cs)["services"], func(o runtime.Object) {
		svc := o.(*corev1.Service)
		svcs = append(svcs, svc)
		if len(svc.Spec.Selector) > 0 {
			selectors[svc.Namespace] = append(selectors[svc.Namespace], labels.SelectorFromSet(svc.Spec.Selector))
		}
	})
	return selectors, svcs
}

// pods lists the running pods and files each under the workload that
// controls it; a bare pod, or one whose controller the audit does not know
// (or could not read), is its own template. Each pod is summarized as it
// is read, so the scan holds a page of pods at a time, not the cluster's.
func (s *scan) pods() {
	s.list("pods", listers(s.cs)["pods"], func(o runtime.Object) {
		p := o.(*corev1.Pod)
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			return
		}
		key := ""
		ref := metav1.GetControllerOfNoCopy(p)
		if owner, ok := workload.Owner(ref); ok {
			key = s.resolve(owner.Kind + "/" + p.Namespace + "/" + ref.Name)
		}
		e := s.byKey[key]
		if e == nil {
			e = s.add("Pod", p, nil)
			e.tmpl = p.DeepCopy()
			if ref != nil {
				e.w.ServedReason = "controlled by " + ref.Kind + "/" + ref.Name
			}
		}
		var nsAnn map[string]string
		if info := s.ns[p.Namespace]; info != nil {
			nsAnn = info.annotations
		}
		podSummary(s.ctx, &s.o.Env, &e.pods, p, nsAnn)
	})
}

// audit decides whether a workload is served and analyzes its template and
// its pods.
func (s *scan) audit(e *entry, matchers []*matcher, mwcErr error, selectors map[string][]labels.Selector) Workload {
	w := &e.w
	info := s.ns[w.Namespace]
	var nsLabels, nsAnn map[string]string
	if info != nil {
		nsLabels, nsAnn = info.labels, info.annotations
	}
	if mwcErr != nil {
		w.Served, w.ServedReason = ServedUnknown, "webhook configurations unreadable"
	} else {
		owner := w.ServedReason
		w.Served, w.ServedReason = servedBy(matchers, e.tmpl, nsLabels)
		if owner != "" {
			w.ServedReason = owner + "; " + w.ServedReason
		}
	}
	if info == nil {
		w.Errors = append(w.Errors, "namespace "+w.Namespace+" unreadable: its labels and annotations are unknown")
	}
	selected := slices.ContainsFunc(selectors[w.Namespace], func(sel labels.Selector) bool { return sel.Matches(labels.Set(e.tmpl.Labels)) })
	out := mutate(s.ctx, &s.o.Env, e.tmpl, nsAnn)
	analyze(s.ctx, &s.o.Env, w, e.tmpl, out, selected)
	w.Path = s.path(w, e.tmpl, out)
	if err := s.listErr("pods", w.Namespace); err != nil {
		w.Errors = append(w.Errors, "pods: "+err.Error())
	} else {
		w.Pods = &e.pods
		sortUnmutated(w.Pods)
	}
	if err := s.listErr("services", w.Namespace); err != nil {
		w.Errors = append(w.Errors, "services unreadable, Service-selected risks unchecked: "+err.Error())
	}
	return *w
}

// webhooks reads podgrace's webhooks from every MutatingWebhookConfiguration.
func (s *scan) webhooks() ([]*matcher, error) {
	var ms []*matcher
	p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return s.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, opts)
	})
	p.PageSize = s.o.ChunkSize
	err := p.EachListItem(s.ctx, metav1.ListOptions{}, func(o runtime.Object) error {
		mwc := o.(*admissionregistrationv1.MutatingWebhookConfiguration)
		for i := range mwc.Webhooks {
			if mwc.Webhooks[i].Name == s.o.WebhookName {
				ms = append(ms, newMatcher(mwc.Name, &mwc.Webhooks[i]))
				s.rep.Webhooks = append(s.rep.Webhooks, mwc.Name)
			}
		}
		return nil
	})
	if err != nil {
		s.rep.Errors = append(s.rep.Errors, ScanError{Resource: "mutatingwebhookconfigurations", Message: err.Error()})
	}
	return ms, err
}

// namespaces reads the labels and annotations of the namespaces in scope.
func (s *scan) namespaces() {
	keep := func(ns *corev1.Namespace) {
		s.ns[ns.Name] = &namespaceInfo{labels: ns.Labels, annotations: ns.Annotations}
		s.nsList = append(s.nsList, ns.Name)
	}
	if s.o.Namespace != "" {
		ns, err := s.cs.CoreV1().Namespaces().Get(s.ctx, s.o.Namespace, metav1.GetOptions{})
		if err != nil {
			s.rep.Errors = append(s.rep.Errors, ScanError{Namespace: s.o.Namespace, Resource: "namespaces", Message: err.Error()})
			s.nsList = []string{s.o.Namespace}
			return
		}
		keep(ns)
		return
	}
	p := pager.New(func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
		return s.cs.CoreV1().Namespaces().List(ctx, opts)
	})
	p.PageSize = s.o.ChunkSize
	if err := p.EachListItem(s.ctx, metav1.ListOptions{}, func(o runtime.Object) error {
		keep(o.(*corev1.Namespace))
		return nil
	}); err != nil {
		s.rep.Errors = append(s.rep.Errors, ScanError{Resource: "namespaces", Message: err.Error()})
	}
}

// list pages through a resource in the scan's scope. When a list across all
// namespaces is forbidden, it lists namespace by namespace, so that the
// namespaces the user may read are still audited and each forbidden one is
// named.
func (s *scan) list(resource string, page func(ns string) pager.ListPageFunc, each func(runtime.Object)) {
	one := func(ns string) error {
		p := pager.New(page(ns))
		p.PageSize = s.o.ChunkSize
		return p.EachListItem(s.ctx, metav1.ListOptions{}, func(o runtime.Object) error {
			s.items.Add(1)
			each(o)
			return nil
		})
	}
	fail := func(ns string, err error) {
		if s.listErrs[resource] == nil {
			s.listErrs[resource] = map[string]error{}
		}
		s.listErrs[resource][ns] = err
		s.rep.Errors = append(s.rep.Errors, ScanError{Namespace: ns, Resource: resource, Message: err.Error()})
	}
	err := one(s.o.Namespace)
	if err == nil {
		return
	}
	if s.o.Namespace != "" || !apierrors.IsForbidden(err) || len(s.nsList) == 0 {
		fail(s.o.Namespace, err)
		return
	}
	for _, ns := range s.nsList {
		if err := one(ns); err != nil {
			fail(ns, err)
		}
	}
}

// listErr is the error of listing resource in ns, if any.
func (s *scan) listErr(resource, ns string) error {
	m := s.listErrs[resource]
	if err := m[ns]; err != nil {
		return err
	}
	return m[""]
}

// progressEvery is how often a scan reports its progress: only a scan that
// takes longer says anything.
var progressEvery = 2 * time.Second

// progress writes a line every progressEvery while the scan runs.
func (s *scan) progress() func() {
	if s.o.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_, _ = fmt.Fprintf(s.o.Progress, "podgrace audit: %d objects read in %s…\n", s.items.Load(), time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done) }
}
