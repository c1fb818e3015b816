// Package calibrate measures, on a cluster and a traffic path the user
// names, how long after a pod starts terminating new connections still
// reach it, and recommends podgrace's preStop sleep S and the grace period
// T from that (docs/design.md §12, docs/operate/sizing.md).
//
// The measurement has three parts, all podgrace's own binary and image:
// the probe server (`podgrace probe`, Probe) that marks the moment its
// termination starts and records every request relative to it; the client
// (`podgrace probe-client`, Client) that sends the traffic through the path;
// and the orchestration (Run) that deploys both in a namespace of its own,
// deletes probe pods one at a time and collects the records.
package calibrate

import (
	"encoding/json"
	"io"
	"time"
)

// ReportAPIVersion and ReportKind name the JSON document `podgrace calibrate
// -o json` writes (and `podgrace audit` reads). A change that breaks a
// reader gets a new version.
const (
	ReportAPIVersion = "calibrate.podgrace.dev/v1"
	ReportKind       = "CalibrationReport"
)

// Report is the result of `podgrace calibrate`. Every duration is in
// seconds (a JSON number with millisecond precision; integer fields say so
// by their name). The JSON shape is documented in docs/reference/cli.md.
type Report struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	// Path is the traffic path that was measured.
	Path Path `json:"path"`
	// WindowSeconds is how long each probe kept serving after its
	// termination started (--window).
	WindowSeconds float64 `json:"windowSeconds"`
	// Trials holds one entry per probe pod deleted, in order.
	Trials []Trial `json:"trials"`
	// PropagationSeconds is the measured propagation: the latest new
	// connection after termination started over all trials (0 when none
	// came). It is the number a sleep must cover; Recommendation adds the
	// margin to it.
	PropagationSeconds float64 `json:"propagationSeconds"`
	// Complete is false when a trial cannot bound the propagation: new
	// connections still arrived in the last second of the window (the true
	// value may be longer: rerun with a longer --window), or the client saw
	// requests fail. Incomplete says why.
	Complete   bool     `json:"complete"`
	Incomplete []string `json:"incomplete,omitempty"`
	// Recommendation is what to configure.
	Recommendation Recommendation `json:"recommendation"`
}

// Path says what the traffic went through.
type Path struct {
	// Kind is "clusterIP" (the default: the probe Service's ClusterIP, as
	// kube-proxy or its replacement routes it) or "url" (--url: an Ingress,
	// Gateway or load balancer the user pointed at the probe Service).
	Kind string `json:"kind"`
	// URL is what the client requested.
	URL string `json:"url"`
	// Service is the probe Service, NAMESPACE/NAME.
	Service string `json:"service"`
}

// Path kinds.
const (
	PathClusterIP = "clusterIP"
	PathURL       = "url"
)

// Trial is one probe pod deleted while the client sent traffic.
type Trial struct {
	Pod string `json:"pod"`
	// SigtermAfterDeleteSeconds is when the probe's termination started
	// (SIGTERM), after calibrate's DELETE returned, estimated from the
	// probe's own clock (the error is half a round trip to it).
	SigtermAfterDeleteSeconds float64 `json:"sigtermAfterDeleteSeconds"`
	// EndpointNotReadyAfterDeleteSeconds is when calibrate saw the pod's
	// endpoint turn ready=false (or leave) in the Service's EndpointSlices,
	// after the DELETE; null when it did not see it.
	EndpointNotReadyAfterDeleteSeconds *float64 `json:"endpointNotReadyAfterDeleteSeconds"`
	// LastNewConnectionAfterSigtermSeconds is the arrival of the last
	// request on a connection opened after termination started, on the
	// probe's clock; null when no new connection came. This is what S must
	// cover: podgrace's sleep starts at the moment SIGTERM would.
	LastNewConnectionAfterSigtermSeconds *float64 `json:"lastNewConnectionAfterSigtermSeconds"`
	// LastNewConnectionAfterEndpointSliceSeconds is the same arrival
	// measured from the EndpointSlice update: what the path adds on top of
	// it (a load balancer's or ingress controller's own propagation).
	LastNewConnectionAfterEndpointSliceSeconds *float64 `json:"lastNewConnectionAfterEndpointSliceSeconds"`
	// NewConnectionsAfterSigterm counts connections opened after
	// termination started; RequestsOnNewConnections the requests on them.
	NewConnectionsAfterSigterm int `json:"newConnectionsAfterSigterm"`
	RequestsOnNewConnections   int `json:"requestsOnNewConnections"`
	// RequestsOnReusedConnections counts requests after termination started
	// on connections opened before it (keep-alive). They are reported, never
	// used for S: an open connection reaches the pod for as long as it
	// lives, which is the app's graceful shutdown's job, not the sleep's.
	RequestsOnReusedConnections int `json:"requestsOnReusedConnections"`
	// LastReusedAfterSigtermSeconds is the last of those; null when none.
	LastReusedAfterSigtermSeconds *float64 `json:"lastReusedAfterSigtermSeconds"`
	// ClientRequests and ClientFailures count what the client sent and
	// what failed at the client (an error or a status >= 500) from the
	// DELETE until the path was settled again.
	ClientRequests int `json:"clientRequests"`
	ClientFailures int `json:"clientFailures"`
	// ReachedWindowEnd is true when a new connection arrived in the last
	// second of the window: the propagation may be longer than measured.
	ReachedWindowEnd bool `json:"reachedWindowEnd"`
}

// Recommendation is S and T and how to apply them.
type Recommendation struct {
	// SleepSeconds is S: the measured propagation plus the margin, rounded
	// up to whole seconds (the sleep action counts seconds), at least 1.
	SleepSeconds int64 `json:"sleepSeconds"`
	// MarginSeconds is what was added to PropagationSeconds (MarginRule).
	MarginSeconds float64 `json:"marginSeconds"`
	// GracePeriodSeconds is T = S + shutdownBudget, as podgrace computes it
	// with the cluster's config (capped at maxGracePeriod).
	GracePeriodSeconds int64 `json:"gracePeriodSeconds"`
	// ShutdownBudgetSeconds and MaxGracePeriodSeconds are the cluster
	// config values T was computed with.
	ShutdownBudgetSeconds int64 `json:"shutdownBudgetSeconds"`
	MaxGracePeriodSeconds int64 `json:"maxGracePeriodSeconds"`
	// Capped is true when S + shutdownBudget exceeds maxGracePeriod:
	// podgrace would shrink the sleep below S (docs/operate/sizing.md).
	Capped bool `json:"capped"`
	// Rule states the margin rule.
	Rule string `json:"rule"`
	// NamespaceCommand annotates one namespace; ClusterValues is the Helm
	// values change for every namespace podgrace serves.
	NamespaceCommand string `json:"namespaceCommand"`
	ClusterValues    string `json:"clusterValues"`
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadReport reads what WriteJSON wrote, checking its apiVersion and kind.
func ReadReport(data []byte) (*Report, error) {
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	if r.APIVersion != ReportAPIVersion || r.Kind != ReportKind {
		return nil, &FormatError{APIVersion: r.APIVersion, Kind: r.Kind}
	}
	return &r, nil
}

// FormatError is a document that is not a calibration report.
type FormatError struct{ APIVersion, Kind string }

func (e *FormatError) Error() string {
	return "not a podgrace calibration report (apiVersion " + quote(e.APIVersion) + ", kind " + quote(e.Kind) +
		"; want " + ReportAPIVersion + " " + ReportKind + ")"
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// secs converts a duration to seconds with millisecond precision.
func secs(d time.Duration) float64 { return float64(d.Round(time.Millisecond)) / float64(time.Second) }

func secsPtr(d time.Duration) *float64 { v := secs(d); return &v }
