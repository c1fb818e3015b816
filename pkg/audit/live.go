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
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/pager"

	"github.com/podgrace/podgrace/pkg/webhook"
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
}

// Scan audits a live cluster with list calls only, page by page: a cluster of
// N pods costs N/ChunkSize pod lists, never a request per pod.
func Scan(ctx context.Context, cs kubernetes.Interface, o LiveOptions) *Report {
	if o.ChunkSize <= 0 {
		o.ChunkSize = 500
	}
	if o.WebhookName == "" {
		o.WebhookName = webhook.WebhookName
	}
	s := &scan{ctx: ctx, cs: cs, o: &o, rep: &Report{APIVersion: APIVersion, Kind: Kind, Source: "cluster"},
		ns: map[string]*namespaceInfo{}, listErrs: map[string]map[string]error{}}
	stop := s.progress()
	defer stop()

	matchers, mwcErr := s.webhooks()
	s.namespaces()

	var deps []*appsv1.Deployment
	var stss []*appsv1.StatefulSet
	var dss []*appsv1.DaemonSet
	var rss []*appsv1.ReplicaSet
	var jobs []*batchv1.Job
	var cjs []*batchv1.CronJob
	var pods []*corev1.Pod
	var svcs []*corev1.Service
	s.list("deployments", func(ns string) pager.ListPageFunc {
		return func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return cs.AppsV1().Deployments(ns).List(ctx, opts)
		}
	}, func(o runtime.Object) { deps = append(deps, o.(*appsv1.Deployment)) })
	s.list("statefulsets", func(ns string) pager.ListPageFunc {
		return func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return cs.AppsV1().StatefulSets(ns).List(ctx, opts)
		}
	}, func(o runtime.Object) { stss = append(stss, o.(*appsv1.StatefulSet)) })
	s.list("daemonsets", func(ns string) pager.ListPageFunc {
		return func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return cs.AppsV1().DaemonSets(ns).List(ctx, opts)
		}
	}, func(o runtime.Object) { dss = append(dss, o.(*appsv1.DaemonSet)) })
	s.list("replicasets", func(ns string) pager.ListPageFunc {
		return func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return cs.AppsV1().ReplicaSets(ns).List(ctx, opts)
		}
	}, func(o runtime.Object) { rss = append(rss, o.(*appsv1.ReplicaSet)) })
	s.list("jobs", func(ns string) pager.ListPageFunc {
		return func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return cs.BatchV1().Jobs(ns).List(ctx, opts)
		}
	}, func(o runtime.Object) { jobs = append(jobs, o.(*batchv1.Job)) })
	s.list("cronjobs", func(ns string) pager.ListPageFunc {
		return func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return cs.BatchV1().CronJobs(ns).List(ctx, opts)
		}
	}, func(o runtime.Object) { cjs = append(cjs, o.(*batchv1.CronJob)) })
	s.list("services", func(ns string) pager.ListPageFunc {
		return func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return cs.CoreV1().Services(ns).List(ctx, opts)
		}
	}, func(o runtime.Object) { svcs = append(svcs, o.(*corev1.Service)) })
	s.list("pods", func(ns string) pager.ListPageFunc {
		return func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return cs.CoreV1().Pods(ns).List(ctx, opts)
		}
	}, func(o runtime.Object) { pods = append(pods, o.(*corev1.Pod)) })
	routes := s.routes(svcs, s.ingresses())

	selectors := map[string][]labels.Selector{}
	for _, svc := range svcs {
		if len(svc.Spec.Selector) > 0 {
			selectors[svc.Namespace] = append(selectors[svc.Namespace], labels.SelectorFromSet(svc.Spec.Selector))
		}
	}
	byKey := map[string]*entry{}
	var order []string
	add := func(kind string, meta *metav1.ObjectMeta, tmpl *corev1.PodTemplateSpec) {
		key := kind + "/" + meta.Namespace + "/" + meta.Name
		var p *corev1.Pod
		if tmpl != nil {
			p = &corev1.Pod{ObjectMeta: *tmpl.ObjectMeta.DeepCopy(), Spec: *tmpl.Spec.DeepCopy()}
			p.Namespace = meta.Namespace
		}
		byKey[key] = &entry{w: Workload{Kind: kind, Namespace: meta.Namespace, Name: meta.Name}, tmpl: p}
		order = append(order, key)
	}
	rsOwner := map[string]string{}  // ns/rs → Deployment key
	jobOwner := map[string]string{} // ns/job → CronJob key
	for _, d := range deps {
		add("Deployment", &d.ObjectMeta, &d.Spec.Template)
	}
	for _, x := range stss {
		add("StatefulSet", &x.ObjectMeta, &x.Spec.Template)
	}
	for _, x := range dss {
		add("DaemonSet", &x.ObjectMeta, &x.Spec.Template)
	}
	for _, x := range rss {
		if ref := metav1.GetControllerOf(x); ref != nil && ref.Kind == "Deployment" {
			rsOwner[x.Namespace+"/"+x.Name] = "Deployment/" + x.Namespace + "/" + ref.Name
			continue
		}
		add("ReplicaSet", &x.ObjectMeta, &x.Spec.Template)
	}
	for _, x := range cjs {
		add("CronJob", &x.ObjectMeta, &x.Spec.JobTemplate.Spec.Template)
	}
	for _, x := range jobs {
		if ref := metav1.GetControllerOf(x); ref != nil && ref.Kind == "CronJob" {
			jobOwner[x.Namespace+"/"+x.Name] = "CronJob/" + x.Namespace + "/" + ref.Name
			continue
		}
		add("Job", &x.ObjectMeta, &x.Spec.Template)
	}
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		key := ""
		if ref := metav1.GetControllerOf(p); ref != nil {
			switch ref.Kind {
			case "ReplicaSet":
				key = rsOwner[p.Namespace+"/"+ref.Name]
				if key == "" {
					key = "ReplicaSet/" + p.Namespace + "/" + ref.Name
				}
			case "Job":
				key = jobOwner[p.Namespace+"/"+ref.Name]
				if key == "" {
					key = "Job/" + p.Namespace + "/" + ref.Name
				}
			case "StatefulSet", "DaemonSet":
				key = ref.Kind + "/" + p.Namespace + "/" + ref.Name
			}
		}
		e := byKey[key]
		if e == nil {
			// A bare pod, or one whose controller the audit does not
			// know (or could not read): the pod is its own template.
			add("Pod", &p.ObjectMeta, nil)
			e = byKey[order[len(order)-1]]
			e.tmpl = p.DeepCopy()
			if ref := metav1.GetControllerOf(p); ref != nil {
				e.w.ServedReason = "controlled by " + ref.Kind + "/" + ref.Name
			}
		}
		e.pods = append(e.pods, p)
	}

	for _, key := range order {
		e := byKey[key]
		w := &e.w
		info := s.ns[w.Namespace]
		var nsLabels, nsAnn map[string]string
		if info != nil {
			nsLabels, nsAnn = info.labels, info.annotations
		}
		switch {
		case mwcErr != nil:
			w.Served, w.ServedReason = ServedUnknown, "webhook configurations unreadable"
		default:
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
		out := mutate(ctx, &o.Env, e.tmpl, nsAnn)
		analyze(ctx, &o.Env, w, e.tmpl, out, selected)
		w.Path = s.path(routes, w, e.tmpl, out)
		if err := s.listErr("pods", w.Namespace); err != nil {
			w.Errors = append(w.Errors, "pods: "+err.Error())
		} else {
			w.Pods = &Pods{}
			for _, p := range e.pods {
				podSummary(ctx, &o.Env, w.Pods, p, nsAnn)
			}
			sortUnmutated(w.Pods)
		}
		if err := s.listErr("services", w.Namespace); err != nil {
			w.Errors = append(w.Errors, "services unreadable, Service-selected risks unchecked: "+err.Error())
		}
		s.rep.Workloads = append(s.rep.Workloads, *w)
	}
	sort.SliceStable(s.rep.Workloads, func(i, j int) bool {
		a, b := &s.rep.Workloads[i], &s.rep.Workloads[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Kind != b.Kind {
			return kindOrder(a.Kind) < kindOrder(b.Kind)
		}
		return a.Name < b.Name
	})
	s.rep.summarize()
	return s.rep
}

type entry struct {
	w    Workload
	tmpl *corev1.Pod
	pods []*corev1.Pod
}

func kindOrder(k string) int {
	i := slices.Index([]string{"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "CronJob", "Job", "Pod"}, k)
	if i < 0 {
		return 99
	}
	return i
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
