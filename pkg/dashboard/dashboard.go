// Package dashboard builds podgrace's Grafana dashboard with the Grafana
// Foundation SDK: `make manifests` writes it into the chart
// (charts/podgrace/files/dashboard.json, shipped as a ConfigMap for
// Grafana's dashboard sidecar when `metrics.grafanaDashboard.enabled`), and
// tests check that every metric it queries is exported by podgrace, by the
// API server or by kube-state-metrics (Sources), and that promtool parses
// every expression (docs/operate/monitoring.md).
package dashboard

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/podgrace/podgrace/pkg/registration"
)

// UID is the dashboard's uid: stable, so a new version replaces the old.
const UID = "podgrace"

// WorkloadWebhookName is the validating workload webhook's name in the
// API server's admission metrics (pkg/webhook.WorkloadWebhookName; a test
// checks they agree: this package does not import the webhook).
const WorkloadWebhookName = "workloads.podgrace.dev"

// APIServerMetrics are the kube-apiserver's metrics the dashboard queries
// (a test scrapes them from the real API server after a webhook call that
// failed open).
var APIServerMetrics = []string{
	"apiserver_admission_webhook_admission_duration_seconds",
	"apiserver_admission_webhook_fail_open_count",
}

// KubeStateMetrics are the kube-state-metrics metrics the dashboard queries.
var KubeStateMetrics = []string{
	"kube_deployment_status_replicas_available",
	"kube_deployment_spec_replicas",
}

// The dashboard's variables: the Prometheus data source, and the namespace
// and job of podgrace's metrics (the chart's ServiceMonitor names the job
// `<fullname>-metrics`).
const (
	varDatasource = "datasource"
	varNamespace  = "namespace"
	varJob        = "job"
)

// sel selects podgrace's own series.
const sel = `namespace="$namespace",job=~"$job"`

// webhooks selects podgrace's two webhooks in the API server's metrics.
var webhooks = `name=~"` + registration.WebhookName + `|` + WorkloadWebhookName + `"`

// rate is the range of every rate and increase: Grafana's own, which
// follows the scrape interval.
const rate = "[$__rate_interval]"

func ds() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${" + varDatasource + "}")}
}

func query(ref, expr, legend string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().RefId(ref).Expr(expr).LegendFormat(legend).Datasource(ds()).Range()
}

func series(title, desc, unit string, qs ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().Title(title).Description(desc).Unit(unit).Min(0).
		Datasource(ds()).Height(8).Span(12)
	for _, q := range qs {
		p.WithTarget(q)
	}
	return p
}

// Build returns the dashboard, in the classic JSON model that Grafana's
// dashboard sidecar and every Grafana version import. The SDK prefers
// dashboardv2, a Kubernetes-style resource only Grafana 12 with its v2 API
// reads, which the sidecar does not load.
func Build() (dashboard.Dashboard, error) { //nolint:staticcheck // the classic model, above
	sum := func(by, metric, extra string) string {
		s := sel
		if extra != "" {
			s += "," + extra
		}
		return fmt.Sprintf("sum by (%s) (rate(%s{%s}%s))", by, metric, s, rate)
	}
	//nolint:staticcheck // the classic model (above)
	b := dashboard.NewDashboardBuilder("podgrace").
		Uid(UID).
		Description("podgrace's admission webhook: admissions, added latency, fail-open, image inspection, the serving certificate, workload checks and Events (docs/operate/monitoring.md).").
		Tags([]string{"podgrace", "kubernetes", "admission"}).
		Refresh("1m").
		Time("now-6h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder(varDatasource).Label("Data source").Type("prometheus")).
		WithVariable(dashboard.NewQueryVariableBuilder(varNamespace).Label("Namespace").Datasource(ds()).
			Query(dashboard.StringOrMap{String: cog.ToPtr("label_values(podgrace_serving_certificate_expiry_timestamp_seconds, namespace)")}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged)).
		WithVariable(dashboard.NewQueryVariableBuilder(varJob).Label("Job").Datasource(ds()).
			Query(dashboard.StringOrMap{String: cog.ToPtr(`label_values(podgrace_serving_certificate_expiry_timestamp_seconds{namespace="$namespace"}, job)`)}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).IncludeAll(true).AllValue(".+"))

	b.WithRow(dashboard.NewRowBuilder("Admissions")).
		WithPanel(series("Admissions by result", "Pod CREATEs podgrace patched or denied (strict mode), and every review it answered by webhook path and HTTP code.", "reqps",
			query("A", fmt.Sprintf("sum(rate(podgrace_pods_mutated_total{%s}%s))", sel, rate), "mutated"),
			query("B", fmt.Sprintf("sum(rate(podgrace_pods_denied_total{%s}%s))", sel, rate), "denied (strict)"),
			query("C", sum("webhook, code", "controller_runtime_webhook_requests_total", ""), "{{webhook}} {{code}}"))).
		WithPanel(series("Added latency (API server)", "What podgrace's webhooks add to a request, as the API server measures it (including the network), 50th and 99th percentile.", "s",
			query("A", fmt.Sprintf("histogram_quantile(0.99, sum by (le, name) (rate(apiserver_admission_webhook_admission_duration_seconds_bucket{%s}%s)))", webhooks, rate), "p99 {{name}}"),
			query("B", fmt.Sprintf("histogram_quantile(0.5, sum by (le, name) (rate(apiserver_admission_webhook_admission_duration_seconds_bucket{%s}%s)))", webhooks, rate), "p50 {{name}}"))).
		WithPanel(series("Fail-open (admitted without podgrace)", "Calls to podgrace's webhooks that failed and that the API server admitted anyway (failurePolicy Ignore): those pods are unmutated. `podgrace audit -A --fail-on=unmutated` finds them.", "short",
			query("A", fmt.Sprintf("sum by (name) (increase(apiserver_admission_webhook_fail_open_count{%s}%s))", webhooks, rate), "{{name}}"))).
		WithPanel(series("Not handled, by reason", "Reviews podgrace answered without running its mutation: malformed reviews, requests that are not a Pod CREATE, overload, panics; and connections refused over --max-connections.", "reqps",
			query("A", sum("reason", "podgrace_requests_not_handled_total", ""), "{{reason}}"),
			query("B", fmt.Sprintf("sum(rate(podgrace_connections_rejected_total{%s}%s))", sel, rate), "connections rejected")))

	b.WithRow(dashboard.NewRowBuilder("Image inspection")).
		WithPanel(series("Image inspections and cache", "Image config lookups by result (hit, miss, error) and answers from each cache (tag, config, error).", "reqps",
			query("A", sum("result", "podgrace_image_lookups_total", ""), "lookup {{result}}"),
			query("B", sum("cache", "podgrace_image_cache_hits_total", ""), "cache {{cache}}"))).
		WithPanel(series("Image inspection errors and latency", "Failed lookups by kind (timeout, not-found, unauthorized…), and the 99th percentile of a registry lookup.", "reqps",
			query("A", sum("kind", "podgrace_image_lookup_errors_total", ""), "{{kind}}"),
			query("B", fmt.Sprintf(`histogram_quantile(0.99, sum by (le) (rate(podgrace_image_lookup_duration_seconds_bucket{%s,result="miss"}%s)))`, sel, rate), "p99 miss (s)")))

	b.WithRow(dashboard.NewRowBuilder("Workloads, Events and the serving certificate")).
		WithPanel(series("Workload checks", "Workload CREATE/UPDATE reviews of the validating workload webhook, by result (clean, warned, denied, template-unchanged, not-handled).", "reqps",
			query("A", sum("result", "podgrace_workload_checks_total", ""), "{{result}}"))).
		WithPanel(series("Events queued and dropped", "Events recorded on workloads, and those dropped because the queue was full.", "short",
			query("A", fmt.Sprintf("sum(increase(podgrace_events_queued_total{%s}%s))", sel, rate), "queued"),
			query("B", fmt.Sprintf("sum(increase(podgrace_events_dropped_total{%s}%s))", sel, rate), "dropped"))).
		WithPanel(stat.NewPanelBuilder().Title("Serving certificate expires in").
			Description("Time left on the webhook's serving certificate, the soonest of the replicas (0 or negative: expired or unreadable).").
			Unit("s").Datasource(ds()).Height(8).Span(6).
			WithTarget(query("A", fmt.Sprintf("min(podgrace_serving_certificate_expiry_timestamp_seconds{%s}) - time()", sel), "expires in").Instant())).
		WithPanel(stat.NewPanelBuilder().Title("Available replicas").
			Description("podgrace's Deployment as kube-state-metrics reports it: available of desired.").
			Unit("short").Datasource(ds()).Height(8).Span(6).
			WithTarget(query("A", `sum(kube_deployment_status_replicas_available{namespace="$namespace",deployment=~".*podgrace.*"})`, "available").Instant()).
			WithTarget(query("B", `sum(kube_deployment_spec_replicas{namespace="$namespace",deployment=~".*podgrace.*"})`, "desired").Instant()))
	d, err := b.Build()
	if err != nil {
		return d, err
	}
	// Grafana wants every panel id unique: number them in order.
	for i, p := range d.Panels {
		id := uint32(i + 1)
		switch {
		case p.Panel != nil:
			p.Panel.Id = &id
		case p.RowPanel != nil:
			p.RowPanel.Id = id
		}
	}
	return d, nil
}

// JSON is the dashboard as the chart ships it: indented, newline-terminated.
func JSON() ([]byte, error) {
	d, err := Build()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Exprs returns every PromQL expression of a dashboard's JSON (panel
// targets), in order; and the metric each label_values() variable query
// reads.
func Exprs(dashboardJSON []byte) (exprs, variableMetrics []string, err error) {
	var d struct {
		Panels []struct {
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Query any `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(dashboardJSON, &d); err != nil {
		return nil, nil, err
	}
	for _, p := range d.Panels {
		for _, t := range p.Targets {
			if t.Expr != "" {
				exprs = append(exprs, t.Expr)
			}
		}
	}
	lv := regexp.MustCompile(`^label_values\(([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	for _, v := range d.Templating.List {
		if q, ok := v.Query.(string); ok {
			if m := lv.FindStringSubmatch(q); m != nil {
				variableMetrics = append(variableMetrics, m[1])
			}
		}
	}
	return exprs, variableMetrics, nil
}

// ForPromtool makes an expression plain PromQL: Grafana's variables
// replaced by values of their kind.
func ForPromtool(expr string) string {
	return strings.NewReplacer("$__rate_interval", "5m").Replace(expr)
}

// promqlWords are PromQL's keywords and aggregation operators.
var promqlWords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
	"and", "or", "unless", "offset", "sum", "min", "max", "avg", "count", "stddev", "stdvar",
	"topk", "bottomk", "quantile", "count_values", "group", "inf", "nan"}

var (
	stringsRE  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	matchersRE = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	groupingRE = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	identRE    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
)

// Metrics returns the metric names an expression selects, sorted: every
// identifier that is not a function call, keyword, label name or string.
func Metrics(expr string) []string {
	e := stringsRE.ReplaceAllString(expr, `""`)
	e = matchersRE.ReplaceAllString(e, " ")
	e = groupingRE.ReplaceAllString(e, " ")
	var out []string
	for _, m := range identRE.FindAllStringSubmatch(e, -1) {
		if m[1] != "" {
			continue // a function or an aggregation: name(
		}
		name := m[0]
		if slices.Contains(promqlWords, strings.ToLower(name)) {
			continue
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
