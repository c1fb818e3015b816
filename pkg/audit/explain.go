package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/workload"
)

// ExplainOptions say what to explain.
type ExplainOptions struct {
	Env
	// Kind is a row of workload.Kinds (Pod included); Namespace and Name
	// name the object.
	Kind            workload.Kind
	Namespace, Name string
	// WebhookName is the name of podgrace's webhook in its configuration.
	WebhookName string
}

// Selection is one registration of podgrace's pod webhook, as the API server
// holds it.
type Selection struct {
	Configuration     string
	Created           time.Time
	NamespaceSelector string
	ObjectSelector    string
	MatchConditions   []string
}

// Explanation answers why a pod was or was not mutated, or what a workload's
// next rollout gets.
type Explanation struct {
	Kind, Namespace, Name string
	// NamespaceInject is the namespace's podgrace.dev/inject label ("" unset).
	NamespaceInject string
	Selections      []Selection
	Served          Served
	ServedReason    string
	// Status is a pod's podgrace.dev/status, decoded (nil: none or unreadable).
	Status *inject.Status
	// StatusErr says why a present status annotation is unreadable.
	StatusErr string
	// Next is what podgrace does to a pod created now from the object (a
	// workload's template, or the pod itself as if created again).
	Next *Mutation
	// Warnings are what the core warns about for Next.
	Warnings []string
	// Causes are the likely reasons a pod carries no status.
	Causes []string
	// FailOpen is the API server's apiserver_admission_webhook_fail_open_count
	// for podgrace's webhook (nil: its /metrics is not readable).
	FailOpen *float64
	// Config is the cluster config used for the arithmetic.
	Config *policy.Config `json:"-"`
}

// Mutated reports whether the explained object is fine: a pod that carries
// podgrace's status, or a workload whose pods podgrace serves.
func (e *Explanation) Mutated() bool {
	if e.Kind == "Pod" {
		return e.Status != nil
	}
	return e.Served == ServedYes
}

// Explain reads one object, podgrace's webhook registrations and the
// namespace, and explains. Reads only.
func Explain(ctx context.Context, cs kubernetes.Interface, o ExplainOptions) (*Explanation, error) {
	if o.WebhookName == "" {
		o.WebhookName = "pods.podgrace.dev"
	}
	e := &Explanation{Kind: o.Kind.Kind, Namespace: o.Namespace, Name: o.Name, Config: o.Config}
	tmpl, created, err := readObject(ctx, cs, o)
	if err != nil {
		return nil, err
	}
	ns, err := cs.CoreV1().Namespaces().Get(ctx, o.Namespace, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", o.Namespace, err)
	}
	e.NamespaceInject = ns.Labels[policy.LabelInject]

	mwcs, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading the webhook configurations: %w", err)
	}
	var ms []*matcher
	var installed time.Time
	for i := range mwcs.Items {
		c := &mwcs.Items[i]
		for j := range c.Webhooks {
			wh := &c.Webhooks[j]
			if wh.Name != o.WebhookName {
				continue
			}
			ms = append(ms, newMatcher(c.Name, wh))
			s := Selection{Configuration: c.Name, Created: c.CreationTimestamp.Time}
			if wh.NamespaceSelector != nil {
				s.NamespaceSelector = metav1.FormatLabelSelector(wh.NamespaceSelector)
			}
			if wh.ObjectSelector != nil {
				s.ObjectSelector = metav1.FormatLabelSelector(wh.ObjectSelector)
			}
			for _, mc := range wh.MatchConditions {
				s.MatchConditions = append(s.MatchConditions, mc.Name)
			}
			e.Selections = append(e.Selections, s)
			if installed.IsZero() || c.CreationTimestamp.Before(&metav1.Time{Time: installed}) {
				installed = c.CreationTimestamp.Time
			}
		}
	}
	e.Served, e.ServedReason = servedBy(ms, tmpl, ns.Labels)

	next := tmpl
	if o.Kind.Kind == "Pod" {
		raw, present := tmpl.Annotations[policy.AnnotationStatus]
		if present {
			var st inject.Status
			if err := json.Unmarshal([]byte(raw), &st); err != nil {
				e.StatusErr = err.Error()
			} else {
				e.Status = &st
			}
		}
		// What the pod would get if it were created again: without its
		// status, and with the grace period podgrace first saw.
		next = tmpl.DeepCopy()
		delete(next.Annotations, policy.AnnotationStatus)
		if e.Status != nil {
			g := e.Status.GraceBefore
			next.Spec.TerminationGracePeriodSeconds = &g
		}
		if e.Status == nil {
			e.Causes = causes(e, created, installed)
			if v, err := failOpen(ctx, cs, o.WebhookName); err == nil {
				e.FailOpen = &v
				if v > 0 {
					e.Causes = append(e.Causes, fmt.Sprintf("a call to podgrace failed and the API server admitted pods unmutated (failurePolicy Ignore): apiserver_admission_webhook_fail_open_count{name=%q} is %v; fail-open occurred since that API server started", o.WebhookName, v))
				}
			}
		}
	}
	out := mutate(ctx, &o.Env, next, ns.Annotations)
	e.Next = &Mutation{GraceBefore: out.status.GraceBefore, GraceAfter: out.status.GraceAfter, Containers: out.status.Containers, Denied: out.denied}
	e.Warnings = out.warnings
	return e, nil
}

// causes lists the likely reasons a pod carries no status.
func causes(e *Explanation, created, installed time.Time) []string {
	var out []string
	switch {
	case len(e.Selections) == 0:
		out = append(out, "podgrace is not installed: no MutatingWebhookConfiguration has a webhook named for it")
	case e.Served == ServedNo:
		out = append(out, "not selected: "+e.ServedReason)
	}
	if !installed.IsZero() && created.Before(installed) {
		out = append(out, fmt.Sprintf("created %s, before podgrace's webhook configuration (%s): recreate it (a rollout restart)",
			created.UTC().Format(time.RFC3339), installed.UTC().Format(time.RFC3339)))
	}
	return out
}

// readObject returns the pod, or the workload's pod template as a pod, and
// the object's creation time.
func readObject(ctx context.Context, cs kubernetes.Interface, o ExplainOptions) (*corev1.Pod, time.Time, error) {
	if o.Kind.Kind == "Pod" {
		p, err := cs.CoreV1().Pods(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
		if err != nil {
			return nil, time.Time{}, err
		}
		return p, p.CreationTimestamp.Time, nil
	}
	var rc rest.Interface
	switch gvk := o.Kind.GroupVersionKind(); gvk.Group {
	case "":
		rc = cs.CoreV1().RESTClient()
	case "apps":
		rc = cs.AppsV1().RESTClient()
	case "batch":
		rc = cs.BatchV1().RESTClient()
	default:
		return nil, time.Time{}, fmt.Errorf("cannot read %s", o.Kind.APIVersion)
	}
	raw, err := rc.Get().Namespace(o.Namespace).Resource(o.Kind.Resource).Name(o.Name).DoRaw(ctx)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("%s %s/%s: %w", o.Kind.Kind, o.Namespace, o.Name, err)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, time.Time{}, err
	}
	var cur any = obj
	for _, k := range o.Kind.Template {
		m, _ := cur.(map[string]any)
		cur = m[k]
	}
	b, err := json.Marshal(cur)
	if err != nil {
		return nil, time.Time{}, err
	}
	var pt corev1.PodTemplateSpec
	if err := json.Unmarshal(b, &pt); err != nil {
		return nil, time.Time{}, fmt.Errorf("%s %s/%s: pod template: %w", o.Kind.Kind, o.Namespace, o.Name, err)
	}
	var meta metav1.ObjectMeta
	if m, ok := obj["metadata"]; ok {
		if b, err := json.Marshal(m); err == nil {
			_ = json.Unmarshal(b, &meta)
		}
	}
	p := &corev1.Pod{ObjectMeta: pt.ObjectMeta, Spec: pt.Spec}
	p.Namespace = o.Namespace
	return p, meta.CreationTimestamp.Time, nil
}

// failOpen reads the API server's fail-open counter for the webhook from its
// /metrics (needs get on the nonResourceURL /metrics).
func failOpen(ctx context.Context, cs kubernetes.Interface, webhookName string) (float64, error) {
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return 0, err
	}
	var sum float64
	if fam, ok := fams["apiserver_admission_webhook_fail_open_count"]; ok {
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "name" && l.GetValue() == webhookName {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum, nil
}

// PrintExplanation writes an explanation for a person.
func PrintExplanation(w io.Writer, e *Explanation) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s/%s\n", e.Kind, e.Namespace, e.Name)
	label := e.NamespaceInject
	if label == "" {
		label = "(unset)"
	}
	fmt.Fprintf(&b, "\nNamespace %s: label %s=%s\n", e.Namespace, policy.LabelInject, label)
	if len(e.Selections) == 0 {
		b.WriteString("Selection: no podgrace webhook is registered in this cluster\n")
	}
	for _, s := range e.Selections {
		fmt.Fprintf(&b, "Selection (MutatingWebhookConfiguration %s, created %s):\n", s.Configuration, s.Created.UTC().Format(time.RFC3339))
		fmt.Fprintf(&b, "  namespaceSelector: %s\n  objectSelector:    %s\n", orNone(s.NamespaceSelector), orNone(s.ObjectSelector))
		if len(s.MatchConditions) > 0 {
			fmt.Fprintf(&b, "  matchConditions:   %s\n", strings.Join(s.MatchConditions, ", "))
		}
	}
	fmt.Fprintf(&b, "Served: %s (%s)\n", e.Served, e.ServedReason)

	if e.Kind == "Pod" {
		switch {
		case e.Status != nil:
			b.WriteString("\nWhat podgrace did (" + policy.AnnotationStatus + "):\n")
			writeContainers(&b, e.Status.Containers)
			writeGrace(&b, e.Status, e.Config)
		case e.StatusErr != "":
			fmt.Fprintf(&b, "\n%s is present but unreadable: %s\n", policy.AnnotationStatus, e.StatusErr)
		default:
			fmt.Fprintf(&b, "\nNot mutated: the pod has no %s annotation.\n", policy.AnnotationStatus)
			if len(e.Causes) == 0 {
				b.WriteString("Likely cause: none found in the selection; a call to podgrace may have failed open (the API server's /metrics was not readable to check)\n")
			}
			for _, c := range e.Causes {
				fmt.Fprintf(&b, "Likely cause: %s\n", c)
			}
			if e.FailOpen != nil && *e.FailOpen == 0 {
				b.WriteString("Fail-open: none counted by the API server that answered (since it started)\n")
			}
		}
	}
	if e.Next != nil {
		if e.Kind == "Pod" {
			b.WriteString("\nIf created again now, podgrace would do:\n")
		} else {
			b.WriteString("\nWhat the next rollout's pods get:\n")
		}
		if e.Next.Denied != "" {
			fmt.Fprintf(&b, "  denied (strict mode): %s\n", e.Next.Denied)
		} else {
			st := inject.Status{GraceBefore: e.Next.GraceBefore, GraceAfter: e.Next.GraceAfter, Containers: e.Next.Containers}
			writeContainers(&b, st.Containers)
			writeGrace(&b, &st, e.Config)
		}
	}
	for _, w := range e.Warnings {
		fmt.Fprintf(&b, "Warning: %s\n", w)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func writeContainers(b *strings.Builder, cs []inject.ContainerReport) {
	tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
	_, _ = fmt.Fprintln(tw, "  CONTAINER\tROLE\tHOOK\tSLEEP\tEXEC FORM\tSKIPPED")
	for _, c := range cs {
		role := c.Role
		if role == "" {
			role = "app"
		}
		name := c.Name
		if c.Init {
			name += " (init)"
		}
		hook, sleep := "-", "-"
		if c.PreStopSleep > 0 {
			hook, sleep = c.Hook, fmt.Sprintf("%ds", c.PreStopSleep)
		} else if c.PreStopSkipped != "" {
			sleep = "none: " + c.PreStopSkipped
		}
		exec := c.ExecForm
		if exec == "" {
			exec = "kept"
			if c.ExecFormSkipped != "" {
				exec += ": " + c.ExecFormSkipped
			}
		}
		skipped := c.Skipped
		if skipped == "" {
			skipped = "-"
		}
		_, _ = fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", name, role, hook, sleep, exec, skipped)
	}
	_ = tw.Flush()
}

// writeGrace writes the grace arithmetic (docs/design.md §4).
func writeGrace(b *strings.Builder, st *inject.Status, cfg *policy.Config) {
	var longest int64
	sidecar := false
	for _, c := range st.Containers {
		if c.Role == "" && c.PreStopSleep > longest {
			longest = c.PreStopSleep
		}
		if c.Role != "" {
			sidecar = true
		}
	}
	fmt.Fprintf(b, "Grace: terminationGracePeriodSeconds %d", st.GraceBefore)
	if st.GraceAfter != st.GraceBefore {
		fmt.Fprintf(b, " → %d", st.GraceAfter)
	}
	if cfg != nil {
		need := longest + int64(cfg.ShutdownBudget.Seconds())
		fmt.Fprintf(b, "; needs longest sleep %ds + shutdownBudget %ds", longest, int64(cfg.ShutdownBudget.Seconds()))
		if sidecar {
			need += int64(cfg.SidecarShutdownBudget.Seconds())
			fmt.Fprintf(b, " + sidecarShutdownBudget %ds", int64(cfg.SidecarShutdownBudget.Seconds()))
		}
		fmt.Fprintf(b, " = %ds", need)
		if need > st.GraceAfter {
			b.WriteString(" (more than the grace period: sleeps were shortened or the grace not raised)")
		}
	}
	b.WriteString("\n")
}
