package chart_test

import (
	"fmt"
	"os"
	"sort"
	"testing"

	"github.com/podgrace/podgrace/hack/manifests/chart"
)

// chartCase is one combination of values the chart is rendered, linted and
// created on the API server with.
type chartCase struct {
	name   string
	values map[string]any
	// certManager, clusterWide, pullSecrets, metricsSecure, serviceMonitor,
	// prometheusRule and networkPolicy say what the values select; hookFixed
	// that config.hookAction is not auto.
	certManager, clusterWide, pullSecrets, metricsSecure, serviceMonitor, prometheusRule, networkPolicy, hookFixed bool
	// noInspection: config.imageInspection.enabled is false.
	noInspection bool
}

// cases covers the main combinations (cert-manager on and off × opt-in and
// cluster-wide × pull secrets on and off) and the optional features.
func cases() []chartCase {
	var out []chartCase
	for _, cm := range []bool{true, false} {
		for _, cw := range []bool{false, true} {
			for _, ps := range []bool{false, true} {
				mode := "opt-in"
				if cw {
					mode = "cluster-wide"
				}
				values := map[string]any{
					"certManager": map[string]any{"enabled": cm},
					"webhook":     map[string]any{"mode": mode},
					"config":      map[string]any{"imageInspection": map[string]any{"pullSecrets": ps}},
				}
				// pullSecrets needs proof that only the API server calls
				// (TestPullSecretsNeedTrustedCaller): a client certificate
				// with cert-manager, the acknowledgement without.
				if ps && cm {
					values["webhook"] = map[string]any{"mode": mode, "clientAuth": map[string]any{"enabled": true, "caSecret": "apiserver-webhook-client-ca"}}
				} else if ps {
					values["imageInspection"] = map[string]any{"pullSecretsAllowForgedReviews": true}
				}
				out = append(out, chartCase{
					name:        fmt.Sprintf("certmanager-%t-%s-pullsecrets-%t", cm, mode, ps),
					values:      values,
					certManager: cm, clusterWide: cw, pullSecrets: ps,
				})
			}
		}
	}
	out = append(out, chartCase{
		name: "extras",
		values: map[string]any{
			"certManager": map[string]any{"issuerRef": map[string]any{"name": "corp-ca", "kind": "ClusterIssuer"}},
			"webhook": map[string]any{
				"excludeNamespaces":            []any{"monitoring"},
				"namespaceSelectorExpressions": []any{map[string]any{"key": "team", "operator": "Exists"}},
				"matchConditions":              []any{map[string]any{"name": "not-batch", "expression": "!has(object.metadata.labels) || !('batch' in object.metadata.labels)"}},
				"failurePolicy":                "Fail",
				"timeoutSeconds":               10,
			},
			"metrics": map[string]any{"service": true, "secure": true, "serviceMonitor": map[string]any{
				"enabled": true, "interval": "1m30s", "labels": map[string]any{"release": "kube-prometheus-stack"},
			}, "prometheusRule": map[string]any{
				"enabled": true, "for": "2m", "labels": map[string]any{"release": "kube-prometheus-stack"},
			}},
			"priorityClassName":         "system-cluster-critical",
			"podDisruptionBudget":       map[string]any{"minAvailable": "50%"},
			"topologySpreadConstraints": []any{map[string]any{"topologyKey": "kubernetes.io/hostname", "maxSkew": 1, "whenUnsatisfiable": "DoNotSchedule"}},
			"image":                     map[string]any{"digest": "sha256:" + fmt.Sprintf("%064d", 1)},
			"extraArgs":                 []any{"--zap-log-level=debug"},
			"config": map[string]any{"strict": true, "preStopSleep": "15s", "hookAction": "exec",
				"sidecarShutdownBudget": "20s", "maxGracePeriod": "5m", "sleepRunToCompletion": true, "sidecars": []any{"envoy"}},
		},
		certManager: true, metricsSecure: true, serviceMonitor: true, prometheusRule: true, hookFixed: true,
	})
	// A ServiceMonitor over plain HTTP, without metrics.service: the
	// ServiceMonitor brings its Service.
	out = append(out, chartCase{
		name: "servicemonitor-plain",
		values: map[string]any{"metrics": map[string]any{
			"serviceMonitor": map[string]any{"enabled": true}, "prometheusRule": map[string]any{"enabled": true},
		}},
		certManager:    true,
		serviceMonitor: true,
		prometheusRule: true,
	})
	// NetworkPolicy with its defaults: the webhook port open, egress to any
	// address on the API server's and registries' ports.
	out = append(out, chartCase{
		name:          "networkpolicy-defaults",
		values:        map[string]any{"networkPolicy": map[string]any{"enabled": true}},
		certManager:   true,
		networkPolicy: true,
	})
	// NetworkPolicy narrowed to a control plane outside the pod network, a
	// Prometheus in its namespace, node-local DNS and a registry range, with
	// the self-managed CA (whose Secret and webhook configuration podgrace
	// writes through the API server).
	out = append(out, chartCase{
		name: "networkpolicy-restricted",
		values: map[string]any{
			"certManager": map[string]any{"enabled": false},
			"metrics":     map[string]any{"secure": true, "serviceMonitor": map[string]any{"enabled": true}},
			"networkPolicy": map[string]any{
				"enabled":     true,
				"webhookFrom": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.0/24"}}},
				"metricsFrom": []any{map[string]any{
					"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "monitoring"}},
					"podSelector":       map[string]any{"matchLabels": map[string]any{"app.kubernetes.io/name": "prometheus"}},
				}},
				"apiServer":  map[string]any{"to": []any{map[string]any{"ipBlock": map[string]any{"cidr": "10.0.0.10/32"}}}, "ports": []any{6443}},
				"dns":        map[string]any{"to": []any{map[string]any{"ipBlock": map[string]any{"cidr": "169.254.20.10/32"}}}},
				"registries": map[string]any{"to": []any{map[string]any{"ipBlock": map[string]any{"cidr": "0.0.0.0/0", "except": []any{"10.0.0.0/8"}}}}, "ports": []any{443, 5000}},
			},
		},
		metricsSecure: true, serviceMonitor: true, networkPolicy: true,
	})
	// NetworkPolicy without image inspection (no registry rule) and with
	// DNS to any address.
	out = append(out, chartCase{
		name: "networkpolicy-no-inspection",
		values: map[string]any{
			"config":        map[string]any{"imageInspection": map[string]any{"enabled": false}},
			"networkPolicy": map[string]any{"enabled": true, "dns": map[string]any{"to": []any{}}},
		},
		certManager:   true,
		networkPolicy: true,
		noInspection:  true,
	})
	return out
}

// chartDir is the chart under test.
func chartDir(t testing.TB) string {
	t.Helper()
	dir, err := chart.Dir()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// render renders the chart for a case and release.
func render(t testing.TB, rel chart.Release, values map[string]any) *chart.Rendered {
	t.Helper()
	r, err := chart.Render(chartDir(t), rel, values)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	return r
}

func kinds(r *chart.Rendered) []string {
	var out []string
	for _, o := range r.Objects {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	sort.Strings(out)
	return out
}
