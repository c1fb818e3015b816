package chart_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/podgrace/podgrace/hack/manifests/chart"
)

// checkNetworkPolicy: the NetworkPolicy exists only when enabled, selects
// podgrace's pods, admits the webhook port from webhookFrom (anyone when
// empty) and the metrics port only from metricsFrom, and lets out only the
// API server, DNS and, with image inspection, the registries. Its named
// ports are the container's.
func checkNetworkPolicy(t *testing.T, r *chart.Rendered, c chartCase) {
	t.Helper()
	u := r.Find("NetworkPolicy", "podgrace")
	if (u != nil) != c.networkPolicy {
		t.Fatalf("NetworkPolicy rendered = %t, want %t", u != nil, c.networkPolicy)
	}
	if u == nil {
		return
	}
	var np networkingv1.NetworkPolicy
	if err := chart.Into(u, &np); err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := chart.Into(r.Find("Deployment", "podgrace"), &d); err != nil {
		t.Fatal(err)
	}
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("podSelector %v does not select podgrace's pods %v (%v)", np.Spec.PodSelector, d.Spec.Template.Labels, err)
	}
	if !reflect.DeepEqual(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Errorf("policyTypes = %v, want Ingress and Egress", np.Spec.PolicyTypes)
	}
	containerPorts := map[string]int32{}
	for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
		containerPorts[p.Name] = p.ContainerPort
	}

	np1 := npValues(t, c.values)
	tcp := func(ports ...any) []networkingv1.NetworkPolicyPort {
		var out []networkingv1.NetworkPolicyPort
		for _, p := range ports {
			proto := corev1.ProtocolTCP
			var port intstr.IntOrString
			switch p := p.(type) {
			case string:
				if containerPorts[p] == 0 {
					t.Errorf("the policy's port %q is no container port of podgrace (%v)", p, containerPorts)
				}
				port = intstr.FromString(p)
			case int:
				port = intstr.FromInt32(int32(p))
			}
			out = append(out, networkingv1.NetworkPolicyPort{Protocol: &proto, Port: &port})
		}
		return out
	}
	wantIngress := []networkingv1.NetworkPolicyIngressRule{{Ports: tcp("webhook"), From: np1.WebhookFrom}}
	if len(np1.MetricsFrom) > 0 {
		wantIngress = append(wantIngress, networkingv1.NetworkPolicyIngressRule{Ports: tcp("metrics"), From: np1.MetricsFrom})
	}
	udp, dnsPort := corev1.ProtocolUDP, intstr.FromInt32(53)
	wantEgress := []networkingv1.NetworkPolicyEgressRule{
		{Ports: tcp(anys(np1.APIServer.Ports)...), To: np1.APIServer.To},
		{Ports: append([]networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dnsPort}}, tcp(53)...), To: np1.DNS.To},
	}
	if !c.noInspection {
		wantEgress = append(wantEgress, networkingv1.NetworkPolicyEgressRule{Ports: tcp(anys(np1.Registries.Ports)...), To: np1.Registries.To})
	}
	if !equalJSON(np.Spec.Ingress, wantIngress) {
		t.Errorf("ingress = %s\nwant %s", mustJSON(np.Spec.Ingress), mustJSON(wantIngress))
	}
	if !equalJSON(np.Spec.Egress, wantEgress) {
		t.Errorf("egress = %s\nwant %s", mustJSON(np.Spec.Egress), mustJSON(wantEgress))
	}
	if c.serviceMonitor && len(np1.MetricsFrom) == 0 {
		t.Error("a ServiceMonitor scrapes a metrics port the policy closes")
	}
}

// npSettings is the chart's networkPolicy values.
type npSettings struct {
	WebhookFrom []networkingv1.NetworkPolicyPeer `json:"webhookFrom"`
	MetricsFrom []networkingv1.NetworkPolicyPeer `json:"metricsFrom"`
	APIServer   struct {
		To    []networkingv1.NetworkPolicyPeer `json:"to"`
		Ports []int                            `json:"ports"`
	} `json:"apiServer"`
	DNS struct {
		To []networkingv1.NetworkPolicyPeer `json:"to"`
	} `json:"dns"`
	Registries struct {
		To    []networkingv1.NetworkPolicyPeer `json:"to"`
		Ports []int                            `json:"ports"`
	} `json:"registries"`
}

// npValues is what a case sets under networkPolicy over values.yaml's
// defaults (a key the case sets replaces the default, as in Helm).
func npValues(t *testing.T, values map[string]any) npSettings {
	t.Helper()
	defaults, err := chart.ReadValues(chartDir(t) + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	merged := overlay(defaults["networkPolicy"].(map[string]any), values["networkPolicy"])
	var out npSettings
	b, _ := json.Marshal(merged)
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func overlay(base map[string]any, over any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	o, _ := over.(map[string]any)
	for k, v := range o {
		if bm, ok := out[k].(map[string]any); ok {
			out[k] = overlay(bm, v)
		} else {
			out[k] = v
		}
	}
	return out
}

func anys(ports []int) []any {
	out := make([]any, len(ports))
	for i, p := range ports {
		out[i] = p
	}
	return out
}

// equalJSON compares by JSON, where a nil and an empty list of peers mean
// the same (any peer).
func equalJSON(a, b any) bool { return mustJSON(a) == mustJSON(b) }

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestNetworkPolicyDefaults: off unless enabled; once enabled, the defaults
// keep podgrace working wherever the API server is (webhook port open,
// egress to any address on the API server's usual ports) and DNS goes to
// kube-dns.
func TestNetworkPolicyDefaults(t *testing.T) {
	t.Parallel()
	if np := render(t, rel, nil).Find("NetworkPolicy", "podgrace"); np != nil {
		t.Error("a NetworkPolicy is rendered by default")
	}
	var np networkingv1.NetworkPolicy
	if err := chart.Into(render(t, rel, map[string]any{"networkPolicy": map[string]any{"enabled": true}}).Find("NetworkPolicy", "podgrace"), &np); err != nil {
		t.Fatal(err)
	}
	if in := np.Spec.Ingress; len(in) != 1 || len(in[0].From) != 0 {
		t.Errorf("default ingress %s: want the webhook port only, from anyone", mustJSON(in))
	}
	if eg := np.Spec.Egress; len(eg) != 3 || len(eg[0].To) != 0 || mustJSON(eg[0].Ports) != `[{"protocol":"TCP","port":443},{"protocol":"TCP","port":6443}]` {
		t.Errorf("default egress %s: want the API server on 443 and 6443 at any address, DNS, registries", mustJSON(eg))
	} else if to := eg[1].To; len(to) != 1 || to[0].PodSelector == nil || to[0].PodSelector.MatchLabels["k8s-app"] != "kube-dns" {
		t.Errorf("default DNS peers %s: want kube-dns", mustJSON(to))
	}
}

// TestNetworkPolicyRejects: values that would silently break podgrace or are
// no NetworkPolicy peers fail the install.
func TestNetworkPolicyRejects(t *testing.T) {
	t.Parallel()
	bad := map[string]struct {
		values map[string]any
		msg    string
	}{
		"ServiceMonitor without metricsFrom": {map[string]any{
			"networkPolicy": map[string]any{"enabled": true},
			"metrics":       map[string]any{"serviceMonitor": map[string]any{"enabled": true}},
		}, "networkPolicy.metricsFrom is empty"},
		"peer without a kind":  {map[string]any{"networkPolicy": map[string]any{"webhookFrom": []any{map[string]any{"cidr": "10.0.0.0/8"}}}}, "webhookFrom"},
		"ipBlock without cidr": {map[string]any{"networkPolicy": map[string]any{"metricsFrom": []any{map[string]any{"ipBlock": map[string]any{}}}}}, "metricsFrom"},
		"no API server port":   {map[string]any{"networkPolicy": map[string]any{"apiServer": map[string]any{"ports": []any{}}}}, "ports"},
		"port 0":               {map[string]any{"networkPolicy": map[string]any{"registries": map[string]any{"ports": []any{0}}}}, "ports"},
		"enabled type":         {map[string]any{"networkPolicy": map[string]any{"enabled": "yes"}}, "enabled"},
	}
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := chart.Render(chartDir(t), rel, b.values)
			if err == nil {
				t.Fatalf("values %v were accepted", b.values)
			}
			if !strings.Contains(err.Error(), b.msg) {
				t.Errorf("error %q does not mention %q", err, b.msg)
			}
		})
	}
}
