package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/podgrace/podgrace/pkg/manifest"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/registration"
	"github.com/podgrace/podgrace/pkg/workload"
)

// Source is one manifest stream.
type Source struct {
	Name string
	Data []byte
}

// ManifestOptions configure an audit of manifests.
type ManifestOptions struct {
	Env
	// Namespace is where documents without metadata.namespace go ("default").
	Namespace string
	// NamespaceLabels and NamespaceAnnotations stand in for namespaces the
	// stream does not define with a Namespace document.
	NamespaceLabels, NamespaceAnnotations map[string]string
	// Values are the chart values podgrace is installed with: when set,
	// "served" is decided by the webhook the chart would render.
	Values *ChartValues
}

// ChartValues is the part of the chart's values the audit reads.
type ChartValues struct {
	Webhook struct {
		Mode                         string                                   `json:"mode"`
		ExcludeNamespaces            []string                                 `json:"excludeNamespaces"`
		NamespaceSelectorExpressions []metav1.LabelSelectorRequirement        `json:"namespaceSelectorExpressions"`
		MatchConditions              []admissionregistrationv1.MatchCondition `json:"matchConditions"`
		Extra                        map[string]any                           `json:"-"`
	} `json:"webhook"`
	// ReleaseNamespace is podgrace's own namespace, never served.
	ReleaseNamespace string `json:"-"`
}

// ParseValues reads a chart values file: its webhook section for the
// selectors and its config section as the cluster config.
func ParseValues(data []byte, releaseNamespace string) (*ChartValues, *policy.Config, error) {
	var v ChartValues
	if err := sigsyaml.Unmarshal(data, &v); err != nil {
		return nil, nil, fmt.Errorf("values: %w", err)
	}
	switch v.Webhook.Mode {
	case "", "opt-in", "cluster-wide":
	default:
		return nil, nil, fmt.Errorf("values: webhook.mode %q is not opt-in or cluster-wide", v.Webhook.Mode)
	}
	v.ReleaseNamespace = releaseNamespace
	var raw struct {
		Config map[string]any `json:"config"`
	}
	if err := sigsyaml.Unmarshal(data, &raw); err != nil {
		return nil, nil, fmt.Errorf("values: %w", err)
	}
	cfg := policy.Default()
	if raw.Config != nil {
		doc, err := sigsyaml.Marshal(raw.Config)
		if err != nil {
			return nil, nil, err
		}
		if cfg, err = policy.ParseConfig(doc); err != nil {
			return nil, nil, fmt.Errorf("values: %w", err)
		}
	}
	return &v, &cfg, nil
}

// MutatingWebhook is podgrace's webhook as the chart's
// templates/mutatingwebhookconfiguration.yaml renders it from these values:
// only what decides which pods are sent (TestAuditValuesMatchChart in
// test/chart checks it against the rendered chart).
func (v *ChartValues) MutatingWebhook() *admissionregistrationv1.MutatingWebhook {
	sel := registration.Selection{
		ClusterWide: v.Webhook.Mode == "cluster-wide", Namespace: v.ReleaseNamespace,
		ExcludeNamespaces: v.Webhook.ExcludeNamespaces, Extra: v.Webhook.NamespaceSelectorExpressions,
	}
	return &admissionregistrationv1.MutatingWebhook{
		Name:              registration.WebhookName,
		NamespaceSelector: sel.NamespaceSelector(),
		ObjectSelector:    registration.ObjectSelector(),
		MatchConditions:   v.Webhook.MatchConditions,
	}
}

// Manifests audits manifest streams. Each document goes through
// manifest.Inject on its own, so a malformed document is reported and the
// rest are audited.
func Manifests(ctx context.Context, sources []Source, o ManifestOptions) *Report {
	rep := &Report{APIVersion: APIVersion, Kind: Kind, Source: "manifests"}
	if o.Namespace == "" {
		o.Namespace = corev1.NamespaceDefault
	}
	var ms []*matcher
	if o.Values != nil {
		ms = []*matcher{newMatcher("values", o.Values.MutatingWebhook())}
		rep.Webhooks = []string{"values"}
	}
	type item struct {
		src string
		doc int
		obj map[string]any
	}
	var items []item
	nsLabels := map[string]map[string]string{}
	nsAnn := map[string]map[string]string{}
	var svcs []*corev1.Service
	var paths manifestRoutes
	for _, src := range sources {
		docs, err := split(src.Data)
		if err != nil {
			rep.Errors = append(rep.Errors, ScanError{Resource: src.Name, Message: err.Error()})
		}
		for i, raw := range docs {
			before, err := objects(raw)
			if err != nil {
				rep.Errors = append(rep.Errors, ScanError{Resource: src.Name, Document: i + 1, Message: err.Error()})
				continue
			}
			for _, obj := range before {
				items = append(items, item{src: src.Name, doc: i + 1, obj: obj})
				switch kindOf(obj) {
				case "Namespace":
					var ns corev1.Namespace
					if convert(obj, &ns) == nil {
						nsLabels[ns.Name], nsAnn[ns.Name] = ns.Labels, ns.Annotations
					}
				case "Service":
					var svc corev1.Service
					if convert(obj, &svc) == nil {
						svcs = append(svcs, &svc)
					}
				default:
					paths.add(obj, i+1, src.Name, rep)
				}
			}
		}
	}
	namespaceOf := func(obj map[string]any) string {
		md, _ := obj["metadata"].(map[string]any)
		if ns, _ := md["namespace"].(string); ns != "" {
			return ns
		}
		return o.Namespace
	}
	annotationsOf := func(ns string) map[string]string {
		if a, ok := nsAnn[ns]; ok {
			return a
		}
		return o.NamespaceAnnotations
	}
	labelsOf := func(ns string) map[string]string {
		l, ok := nsLabels[ns]
		if !ok {
			l = o.NamespaceLabels
		}
		out := map[string]string{corev1.LabelMetadataName: ns} // set by the API server
		for k, v := range l {
			out[k] = v
		}
		return out
	}

	routes := paths.index(svcs, o.Namespace)
	for _, it := range items {
		kind := kindOf(it.obj)
		tmpl, err := templateOf(it.obj)
		if tmpl == nil && err == nil {
			continue // not a workload
		}
		md, _ := it.obj["metadata"].(map[string]any)
		name, _ := md["name"].(string)
		ns := namespaceOf(it.obj)
		w := Workload{Kind: kind, Namespace: ns, Name: name, Document: it.doc}
		if err != nil {
			w.Served, w.Errors, w.Changes, w.Risks = ServedUnknown, []string{fmt.Sprintf("%s: document %d: %v", it.src, it.doc, err)}, []string{}, []Risk{}
			rep.Workloads = append(rep.Workloads, w)
			continue
		}
		tmpl.Namespace = ns
		if kind != "Pod" && controlledByWorkload(md) {
			continue // its owner's template is audited
		}
		// The same entry point as `podgrace inject`, on this object alone.
		out, err := injectOne(ctx, it.obj, manifest.Options{Config: o.Config, NamespaceAnnotations: annotationsOf(ns), HookAction: o.HookAction, Images: o.Images})
		if err != nil {
			w.Served, w.Errors, w.Changes, w.Risks = ServedUnknown, []string{fmt.Sprintf("%s: document %d: %v", it.src, it.doc, err)}, []string{}, []Risk{}
			rep.Workloads = append(rep.Workloads, w)
			continue
		}
		if ms == nil {
			w.Served, w.ServedReason = ServedAssumed, "no --values: audited as if served"
		} else {
			w.Served, w.ServedReason = servedBy(ms, tmpl, labelsOf(ns))
		}
		selected := slices.ContainsFunc(svcs, func(s *corev1.Service) bool {
			return len(s.Spec.Selector) > 0 && namespaceOfSvc(s, o.Namespace) == ns && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(tmpl.Labels))
		})
		analyze(ctx, &o.Env, &w, tmpl, out, selected)
		w.Path = routes.path(ns, tmpl, effectivePod(tmpl, out, w.Served), o.Config, o.Path)
		rep.Workloads = append(rep.Workloads, w)
	}
	rep.summarize()
	return rep
}

func namespaceOfSvc(s *corev1.Service, def string) string {
	if s.Namespace != "" {
		return s.Namespace
	}
	return def
}

// injectOne runs `podgrace inject`'s entry point on one object and reads
// back the mutated pod template and the status it recorded.
func injectOne(ctx context.Context, obj map[string]any, opts manifest.Options) (outcome, error) {
	raw, err := sigsyaml.Marshal(obj)
	if err != nil {
		return outcome{}, err
	}
	printed, docs, err := manifest.Inject(ctx, bytes.NewReader(raw), opts)
	if err != nil {
		return outcome{}, err
	}
	var out outcome
	for _, d := range docs {
		out.warnings = append(out.warnings, d.Warnings...)
		if d.Changed {
			out.changed = true
		}
		out.status = d.Status
	}
	after, err := objects(printed)
	if err != nil {
		return outcome{}, fmt.Errorf("reading podgrace inject's output: %w", err)
	}
	if len(after) != 1 {
		return outcome{}, fmt.Errorf("podgrace inject printed %d objects for one", len(after))
	}
	if out.after, err = templateOf(after[0]); err != nil {
		return outcome{}, err
	}
	if !out.changed {
		out.after = nil
	}
	return out, nil
}

// split cuts a stream into documents as `podgrace inject` does.
func split(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var out [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, doc)
	}
}

// objects decodes one document as kubectl's reader does
// (utilyaml.NewYAMLOrJSONDecoder: a YAML document, or a stream of JSON
// values); a List's items, nested or not, are its objects.
func objects(raw []byte) ([]map[string]any, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var out []map[string]any
	for {
		var obj map[string]any
		err := dec.Decode(&obj)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, fmt.Errorf("invalid YAML or JSON: %w", err)
		}
		out = flatten(out, obj)
	}
}

func flatten(out []map[string]any, obj map[string]any) []map[string]any {
	if obj == nil {
		return out
	}
	items, ok := obj["items"].([]any)
	if !ok {
		return append(out, obj)
	}
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			out = flatten(out, m)
		}
	}
	return out
}

func kindOf(obj map[string]any) string {
	k, _ := obj["kind"].(string)
	return k
}

// controlledByWorkload says whether a controller of the table (a
// Deployment's ReplicaSet, a CronJob's Job) owns the object: its controller's
// template is what is audited. A pod keeps its own entry.
func controlledByWorkload(md map[string]any) bool {
	refs, _ := md["ownerReferences"].([]any)
	for _, r := range refs {
		m, _ := r.(map[string]any)
		api, _ := m["apiVersion"].(string)
		kind, _ := m["kind"].(string)
		if ctrl, _ := m["controller"].(bool); ctrl {
			if _, ok := workload.Owner(&metav1.OwnerReference{APIVersion: api, Kind: kind}); ok {
				return true
			}
		}
	}
	return false
}

// templateOf returns a workload's pod template as a pod (nil, nil when the
// object is not a workload of the table). The whole object must decode as
// its kind, as the API server would decode it.
func templateOf(obj map[string]any) (*corev1.Pod, error) {
	api, _ := obj["apiVersion"].(string)
	k, ok := workload.Lookup(api, kindOf(obj))
	if !ok {
		return nil, nil
	}
	typed, err := clientgoscheme.Scheme.New(k.GroupVersionKind())
	if err != nil {
		return nil, err
	}
	if err := convert(obj, typed); err != nil {
		return nil, err
	}
	if p, ok := typed.(*corev1.Pod); ok {
		return p, nil
	}
	var tmpl corev1.PodTemplateSpec
	if raw, _, _ := unstructured.NestedFieldNoCopy(obj, k.Template...); raw != nil {
		m, _ := raw.(map[string]any)
		if err := convert(m, &tmpl); err != nil {
			return nil, err
		}
	}
	return &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}, nil
}

// convert decodes an object map into a typed object, strictly enough to
// name a field of the wrong type.
func convert(obj map[string]any, into any) error {
	raw, err := sigsyaml.Marshal(obj)
	if err != nil {
		return err
	}
	if err := sigsyaml.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("%s: %w", strings.TrimSpace(kindOf(obj)), err)
	}
	return nil
}
