package dashboard_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/podgrace/podgrace/pkg/dashboard"
	"github.com/podgrace/podgrace/pkg/webhook" // registers podgrace's collectors, as the real process does
)

// podgraceMetrics are the metric names podgrace's process registers on the
// registry /metrics serves (controller-runtime's), read from the collectors'
// descriptions: a CounterVec with no child yet is described but not gathered.
func podgraceMetrics(t *testing.T) []string {
	t.Helper()
	c, ok := ctrlmetrics.Registry.(prometheus.Collector)
	if !ok {
		t.Fatalf("controller-runtime's registry %T cannot describe its collectors", ctrlmetrics.Registry)
	}
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	var names []string
	for d := range ch {
		if m := fq.FindStringSubmatch(d.String()); m != nil {
			names = append(names, m[1])
		}
	}
	if len(names) == 0 {
		t.Fatal("the registry describes no metric")
	}
	return names
}

// TestMetricsExist: every metric the dashboard queries is one podgrace's
// process registers, one of the API server's (test/integration's
// TestDashboardAPIServerMetrics scrapes them from the real API server) or a
// named kube-state-metrics metric. A histogram's series (_bucket, _sum,
// _count) count as the histogram.
func TestMetricsExist(t *testing.T) {
	own := podgraceMetrics(t)
	data, err := dashboard.JSON()
	if err != nil {
		t.Fatal(err)
	}
	exprs, varMetrics, err := dashboard.Exprs(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) < 15 {
		t.Fatalf("the dashboard has %d expressions", len(exprs))
	}
	known := func(name string) bool {
		for _, n := range []string{name, strings.TrimSuffix(name, "_bucket"), strings.TrimSuffix(name, "_sum"), strings.TrimSuffix(name, "_count")} {
			if slices.Contains(own, n) || slices.Contains(dashboard.APIServerMetrics, n) || slices.Contains(dashboard.KubeStateMetrics, n) {
				return true
			}
		}
		return false
	}
	seen := map[string]bool{}
	for _, e := range exprs {
		ms := dashboard.Metrics(e)
		if len(ms) == 0 {
			t.Errorf("%s: selects no metric", e)
		}
		for _, m := range ms {
			seen[m] = true
			if !known(m) {
				t.Errorf("%s: %s is exported by neither podgrace, the API server nor kube-state-metrics", e, m)
			}
		}
	}
	for _, m := range varMetrics {
		if !slices.Contains(own, m) {
			t.Errorf("a variable reads %s, which podgrace does not export", m)
		}
	}
	// The panels the issue asks for, by a metric each must show.
	for _, m := range []string{"podgrace_pods_mutated_total", "apiserver_admission_webhook_admission_duration_seconds_bucket",
		"apiserver_admission_webhook_fail_open_count", "podgrace_requests_not_handled_total", "podgrace_image_cache_hits_total",
		"podgrace_image_lookup_errors_total", "podgrace_serving_certificate_expiry_timestamp_seconds",
		"podgrace_workload_checks_total", "podgrace_events_dropped_total"} {
		if !seen[m] {
			t.Errorf("no panel queries %s", m)
		}
	}
	// Every declared outside metric is used (the lists are not a blanket).
	for _, m := range append(slices.Clone(dashboard.APIServerMetrics), dashboard.KubeStateMetrics...) {
		if !seen[m] && !seen[m+"_bucket"] {
			t.Errorf("%s is declared but no panel queries it", m)
		}
	}
}

// TestMetricsSelf: the extraction finds metrics and nothing else.
func TestMetricsSelf(t *testing.T) {
	for expr, want := range map[string][]string{
		`sum by (le, name) (rate(a_bucket{name=~"x|y",job="$job"}[5m]))`:          {"a_bucket"},
		`histogram_quantile(0.99, sum without (pod) (rate(b[$__rate_interval])))`: {"b"},
		`min(c{namespace="n"}) - time()`:                                          {"c"},
		`(sum(increase(d[10m])) or vector(0)) + on (x) group_left e > 0`:          {"d", "e"},
		`f / ignoring (code) g`:                                                   {"f", "g"},
	} {
		if got := dashboard.Metrics(expr); !slices.Equal(got, want) {
			t.Errorf("Metrics(%s) = %v, want %v", expr, got, want)
		}
	}
}

// TestWorkloadWebhookName: the dashboard's copy of the workload webhook's name.
func TestWorkloadWebhookName(t *testing.T) {
	if dashboard.WorkloadWebhookName != webhook.WorkloadWebhookName {
		t.Fatalf("dashboard.WorkloadWebhookName %q, the webhook's is %q", dashboard.WorkloadWebhookName, webhook.WorkloadWebhookName)
	}
}
