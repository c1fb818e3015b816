//go:build bench

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/podgrace/podgrace/hack/manifests/chart"
	"github.com/podgrace/podgrace/pkg/policy"
)

// mapLabel selects the namespaces the MutatingAdmissionPolicy binding applies to.
const mapLabel = "bench.podgrace.dev/policy"

// mapName names the MutatingAdmissionPolicy and its binding.
const mapName = "bench-prestop-sleep"

// mapExpression is the in-tree alternative to podgrace's preStop sleep: a
// server-side apply configuration that gives every container without a
// preStop hook a native sleep of %d seconds (containers merge by name).
const mapExpression = `Object{
  spec: Object.spec{
    containers: object.spec.containers.filter(c, !has(c.lifecycle) || !has(c.lifecycle.preStop)).map(c,
      Object.spec.containers{
        name: c.name,
        lifecycle: Object.spec.containers.lifecycle{
          preStop: Object.spec.containers.lifecycle.preStop{
            sleep: Object.spec.containers.lifecycle.preStop.sleep{seconds: %d}
          }
        }
      }
    )
  }
}`

// mutatingAdmissionPolicy builds the policy and its binding. Like
// podgrace's webhook it fails open and is not reinvoked.
func mutatingAdmissionPolicy(sleep int64) (*admissionregistrationv1.MutatingAdmissionPolicy, *admissionregistrationv1.MutatingAdmissionPolicyBinding) {
	ignore := admissionregistrationv1.Ignore
	p := &admissionregistrationv1.MutatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: mapName},
		Spec: admissionregistrationv1.MutatingAdmissionPolicySpec{
			MatchConstraints: &admissionregistrationv1.MatchResources{
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
						Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
					},
				}},
			},
			Mutations: []admissionregistrationv1.Mutation{{
				PatchType:          admissionregistrationv1.PatchTypeApplyConfiguration,
				ApplyConfiguration: &admissionregistrationv1.ApplyConfiguration{Expression: fmt.Sprintf(mapExpression, sleep)},
			}},
			FailurePolicy:      &ignore,
			ReinvocationPolicy: admissionregistrationv1.NeverReinvocationPolicy,
		},
	}
	bind := &admissionregistrationv1.MutatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: mapName},
		Spec: admissionregistrationv1.MutatingAdmissionPolicyBindingSpec{
			PolicyName: mapName,
			MatchResources: &admissionregistrationv1.MatchResources{
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{mapLabel: "map"}},
			},
		},
	}
	return p, bind
}

// typicalPod is the pod of the typical bench review, as a client creates it.
func typicalPod(b *testing.B) *corev1.Pod {
	b.Helper()
	raw, err := os.ReadFile(typicalReview)
	if err != nil {
		b.Fatal(err)
	}
	var rev admissionv1.AdmissionReview
	if err := json.Unmarshal(raw, &rev); err != nil {
		b.Fatal(err)
	}
	var p corev1.Pod
	if err := json.Unmarshal(rev.Request.Object.Raw, &p); err != nil {
		b.Fatal(err)
	}
	p.Namespace = ""
	p.OwnerReferences = nil // no ReplicaSet in envtest
	return &p
}

// setup is one way pods are admitted.
type setup struct {
	name string // none, podgrace, map
	ns   string
}

// preStopSleeps returns each container's native preStop sleep (0 without).
func preStopSleeps(p *corev1.Pod) []int64 {
	out := make([]int64, len(p.Spec.Containers))
	for i, c := range p.Spec.Containers {
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			out[i] = c.Lifecycle.PreStop.Sleep.Seconds
		}
	}
	return out
}

// dryRun creates pod in ns as a dry run.
func dryRun(ctx context.Context, ns string, pod *corev1.Pod) (*corev1.Pod, error) {
	return kube.CoreV1().Pods(ns).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}

// BenchmarkPodCreate measures pod CREATE latency through the API server
// (client-go, one request at a time) in three namespaces: (i) none, which
// no webhook or policy selects; (ii) podgrace, opted in to podgrace's
// webhook (the real binary, registered with its own configuration); (iii)
// map, bound to a MutatingAdmissionPolicy that injects the preStop sleep
// podgrace computes for this pod. Rounds rotate the order; each block
// creates pods and then deletes them (no scheduler or kubelet: they never
// run). The latency each mutation adds is its p50 minus (i)'s.
func BenchmarkPodCreate(b *testing.B) {
	const (
		rounds = 5
		block  = 100
		warm   = 20
	)
	ctx := b.Context()
	pod := typicalPod(b)

	// MutatingAdmissionPolicy must be served (GA and on by default since
	// Kubernetes 1.36; envtest passes no feature gate or runtime-config).
	rl, err := kube.Discovery().ServerResourcesForGroupVersion("admissionregistration.k8s.io/v1")
	if err != nil {
		b.Fatal(err)
	}
	if !slices.ContainsFunc(rl.APIResources, func(r metav1.APIResource) bool { return r.Name == "mutatingadmissionpolicies" }) {
		b.Fatalf("kube-apiserver %s does not serve admissionregistration.k8s.io/v1 mutatingadmissionpolicies", serverVersion())
	}

	setups := []setup{{name: "none"}, {name: "podgrace"}, {name: "map"}}
	labels := map[string]map[string]string{
		"none":     nil,
		"podgrace": {policy.LabelInject: policy.InjectEnabled},
		"map":      {mapLabel: "map"},
	}
	for i := range setups {
		ns, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-" + setups[i].name + "-", Labels: labels[setups[i].name]},
		}, metav1.CreateOptions{})
		if err != nil {
			b.Fatal(err)
		}
		setups[i].ns = ns.Name
	}

	mwc := mustWebhook(chart.WebhookOptions{Name: "podgrace-bench", URL: podgrace.url, CABundle: caPEM})
	if _, err := kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, mwc, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), mwc.Name, metav1.DeleteOptions{})
	})
	// The API server picks the configuration up through an informer.
	var sleep int64
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := dryRun(ctx, setups[1].ns, pod)
		if err != nil {
			return false, err
		}
		if _, ok := p.Annotations[policy.AnnotationStatus]; !ok {
			return false, nil
		}
		sleep = preStopSleeps(p)[0]
		return true, nil
	})
	if err != nil || sleep == 0 {
		b.Fatalf("podgrace does not mutate pods through the API server (sleep %d): %v", sleep, err)
	}

	mp, bind := mutatingAdmissionPolicy(sleep)
	if _, err := kube.AdmissionregistrationV1().MutatingAdmissionPolicies().Create(ctx, mp, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	if _, err := kube.AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Create(ctx, bind, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx := context.Background()
		_ = kube.AdmissionregistrationV1().MutatingAdmissionPolicyBindings().Delete(ctx, mapName, metav1.DeleteOptions{})
		_ = kube.AdmissionregistrationV1().MutatingAdmissionPolicies().Delete(ctx, mapName, metav1.DeleteOptions{})
	})
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := dryRun(ctx, setups[2].ns, pod)
		if err != nil {
			return false, err
		}
		return !slices.Contains(preStopSleeps(p), 0), nil
	})
	if err != nil {
		b.Fatalf("the MutatingAdmissionPolicy does not mutate pods: %v", err)
	}
	// Each setup does what it should, and only that.
	for _, s := range setups {
		p, err := dryRun(ctx, s.ns, pod)
		if err != nil {
			b.Fatal(err)
		}
		_, annotated := p.Annotations[policy.AnnotationStatus]
		sleeps := preStopSleeps(p)
		want := map[string][]int64{"none": {0, 0, 0}, "podgrace": {sleep, sleep, sleep}, "map": {sleep, sleep, sleep}}[s.name]
		if !slices.Equal(sleeps, want) || annotated != (s.name == "podgrace") {
			b.Fatalf("%s: preStop sleeps %v (want %v), podgrace annotation %v", s.name, sleeps, want, annotated)
		}
	}

	pods := kube.CoreV1().Pods
	create := func(s setup, n int) []time.Duration {
		out := make([]time.Duration, 0, n)
		for range n {
			start := time.Now()
			if _, err := pods(s.ns).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{}); err != nil {
				b.Fatal(err)
			}
			out = append(out, time.Since(start))
		}
		zero := int64(0)
		if err := pods(s.ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
			b.Fatal(err)
		}
		return out
	}
	for _, s := range setups {
		create(s, warm)
	}
	lat := map[string][]time.Duration{}
	for r := range rounds {
		for i := range setups {
			s := setups[(r+i)%len(setups)]
			lat[s.name] = append(lat[s.name], create(s, block)...)
		}
	}

	q := func(name string, p float64) float64 {
		xs := slices.Clone(lat[name])
		slices.Sort(xs)
		return float64(xs[min(len(xs)-1, int(p*float64(len(xs))))]) / float64(time.Millisecond)
	}
	for _, s := range setups {
		b.Logf("%-8s p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  (%d pods)", s.name, q(s.name, 0.5), q(s.name, 0.9), q(s.name, 0.99), len(lat[s.name]))
		b.ReportMetric(q(s.name, 0.5), s.name+"-p50-ms")
		b.ReportMetric(q(s.name, 0.99), s.name+"-p99-ms")
	}
	none := q("none", 0.5)
	addedPG, addedMAP := q("podgrace", 0.5)-none, q("map", 0.5)-none
	b.ReportMetric(q("podgrace", 0.5)/none, "podgrace/none-p50")
	b.ReportMetric(q("map", 0.5)/none, "map/none-p50")
	b.ReportMetric(addedPG, "podgrace-added-ms")
	b.ReportMetric(addedMAP, "map-added-ms")
	b.ReportMetric(addedPG/addedMAP, "podgrace-added/map-added")
	b.ReportMetric(0, "ns/op")
}

// mustWebhook renders the chart's registration for a podgrace at o.URL (the
// chart is the one definition of it); a chart that does not render is a bug
// in the repository, not in the test.
func mustWebhook(o chart.WebhookOptions) *admissionregistrationv1.MutatingWebhookConfiguration {
	dir, err := chart.Dir()
	if err == nil {
		var mwc *admissionregistrationv1.MutatingWebhookConfiguration
		if mwc, err = chart.Webhook(dir, o); err == nil {
			return mwc
		}
	}
	panic("rendering the chart's MutatingWebhookConfiguration: " + err.Error())
}
