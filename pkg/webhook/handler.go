package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/registration"
)

// NamespaceLookup returns the annotations of a namespace. The server's
// implementation reads a metadata-only informer cache; an error means they are
// unknown and the cluster config applies alone.
type NamespaceLookup func(ctx context.Context, namespace string) (map[string]string, error)

// Handler is the mutating admission handler for Pod CREATE: a plain
// http.Handler that decodes the AdmissionReview itself, so that a request
// costs little more than decoding it (docs/develop/internals.md). Whatever arrives,
// it answers so that under failurePolicy Ignore a pod is never blocked by
// podgrace's failure; docs/operate/webhook.md ("What podgrace answers") lists each case.
type Handler struct {
	// Config is the cluster config.
	Config *policy.Config
	// HookAction is the resolved preStop action, HookSleep or HookExec.
	HookAction policy.HookAction
	// Images reads image configs for the exec-form rewrite; nil leaves argvs
	// that come from the image alone.
	Images inject.ImageLookup
	// Namespaces reads namespace annotations; nil means none.
	Namespaces NamespaceLookup
	// Events records what was not done as Kubernetes Events, off the
	// request path; nil records none.
	Events *Events
	// Log is the handler's logger.
	Log logr.Logger
	// Timeout is the webhook's timeoutSeconds: no admission works past it
	// (the API server has given up by then). Zero leaves the deadline to
	// the API server's `timeout` query parameter alone.
	Timeout time.Duration

	// bodies is the memory request bodies share (Limits.MaxBodyMemory);
	// nil: no limit (unit tests).
	bodies *bodyBudget
}

// deadline is when the admission ends: at the `timeout` the API server
// appends to the webhook's URL (`?timeout=10s`) or at Timeout, whichever
// comes first; zero for neither. (The request's context ends sooner when the
// API server gives up and closes the connection.)
//
// It is a time, not a context.WithDeadline: that costs a timer and four
// allocations per admission, and most admissions wait for nothing. The
// waits take it into account instead: the handler checks the clock after
// each, and an image lookup runs under a context with this deadline
// (admit).
func (h *Handler) deadline(r *http.Request) time.Time {
	d := h.Timeout
	if q, ok := strings.CutPrefix(r.URL.RawQuery, "timeout="); ok {
		if t, err := time.ParseDuration(q); err == nil && t > 0 && (d == 0 || t < d) {
			d = t
		}
	}
	if d <= 0 {
		return time.Time{}
	}
	return time.Now().Add(d)
}

// errPastDeadline: the admission's deadline passed during a wait.
var errPastDeadline = errors.New("the admission's deadline passed (webhook timeout)")

// pastDeadline says whether the admission must stop: the API server gave up
// (ctx ended), or its deadline passed.
func pastDeadline(ctx context.Context, deadline time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return errPastDeadline
	}
	return nil
}

// Reasons a well-formed review is allowed without running the core.
const (
	reasonNotPod       = "not-a-pod"
	reasonNotCreate    = "not-create"
	reasonNoObject     = "no-object"
	reasonUndecodable  = "undecodable-object"
	reasonPatchEncoded = "patch-encoding"
	// reasonMirrorPod: a mirror pod is left alone by design, without a
	// warning (registration.IsMirrorPod).
	reasonMirrorPod = "mirror-pod"
)

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	answered := false
	defer recoverPanic(w, h.Log, &answered, "Admission handler panicked; the pod is admitted unmutated")

	req, reserved, rerr := readReview(w, r, h.bodies)
	defer h.bodies.release(reserved)
	if rerr != nil {
		notHandledTotal.WithLabelValues(rerr.reason).Inc()
		h.Log.Info("Rejected a request that is not a valid AdmissionReview", "reason", rerr.reason, "error", rerr.msg, "remote", r.RemoteAddr)
		answered = true
		writeError(w, rerr)
		return
	}
	resp, rerr := h.admit(r.Context(), h.deadline(r), req)
	if rerr != nil {
		notHandledTotal.WithLabelValues(rerr.reason).Inc()
		h.Log.Info("Admission abandoned; the API server applies the failurePolicy", append(requestKV(req, ""), "reason", rerr.reason, "error", rerr.msg)...)
		answered = true
		writeError(w, rerr)
		return
	}
	resp.UID = req.UID
	answered = true
	if err := writeResponse(w, resp); err != nil {
		h.Log.Error(err, "Writing the admission response", "uid", req.UID)
	}
}

// recoverPanic, deferred by a handler, turns a panic into an HTTP 500 (when
// nothing was answered yet), a log line and a count: under failurePolicy
// Ignore the object is then admitted as it is.
func recoverPanic(w http.ResponseWriter, log logr.Logger, answered *bool, msg string) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler { //nolint:errorlint // recover() returns the sentinel itself, never a wrapped error
		panic(v)
	}
	log.Error(fmt.Errorf("panic: %v", v), msg, "stack", string(debug.Stack()))
	notHandledTotal.WithLabelValues(reasonPanic).Inc()
	if !*answered {
		writeError(w, &requestError{code: http.StatusInternalServerError, reason: reasonPanic, msg: "internal error; see podgrace's log"})
	}
}

// admit decides one well-formed admission request.
//
// Log lines carry the request's identity as key/values of each call rather
// than through Log.WithValues: zapr encodes WithValues fields eagerly on every
// admission, while a call's own key/values are encoded only for the lines
// that pass the level check and zap's sampler.
func (h *Handler) admit(ctx context.Context, deadline time.Time, req *admissionRequest) (*admissionv1.AdmissionResponse, *requestError) {
	if reason, msg := notPodCreate(req); reason != "" {
		return h.allowUnchanged(requestKV(req, ""), reason, msg), nil
	}
	if req.PodErr != nil {
		return h.allowUnchanged(requestKV(req, ""), reasonUndecodable, "cannot decode the Pod: "+req.PodErr.Error()), nil //nolint:nilerr // an undecodable Pod is allowed unchanged, not an HTTP error
	}
	pod := req.Pod
	if pod.Namespace == "" {
		// The API server sets metadata.namespace before admission, so its
		// objects always have metadata; the patch's
		// `add /metadata/annotations` needs that.
		return h.allowUnchanged(requestKV(req, ""), reasonUndecodable, "the Pod has no metadata.namespace; the API server always sets it"), nil
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName
	}
	if registration.IsMirrorPod(pod) {
		notHandledTotal.WithLabelValues(reasonMirrorPod).Inc()
		h.Log.V(1).Info("Allowed unchanged: a mirror pod", requestKV(req, name)...)
		return &admissionv1.AdmissionResponse{Allowed: true}, nil
	}

	var warnings []inject.Warning
	var nsAnnotations map[string]string
	if h.Namespaces != nil {
		ann, err := h.Namespaces(ctx, req.Namespace)
		if err != nil {
			h.Log.Error(err, "Namespace annotations unavailable; using the cluster config alone", requestKV(req, name)...)
			warnings = append(warnings, namespaceWarning(req.Namespace))
			warningsTotal.WithLabelValues(warnNamespace).Inc()
		}
		nsAnnotations = ann
	}

	// The namespace read waits only on a cache miss, and bounds its API read
	// by itself (liveLookupTimeout); whether it ran past the deadline is
	// checked here.
	if err := pastDeadline(ctx, deadline); err != nil {
		return nil, abandoned(err)
	}
	res := inject.Pod(ctx, inject.PodInput{
		Pod:                  pod,
		NamespaceAnnotations: nsAnnotations,
		Config:               h.Config,
		HookAction:           h.HookAction,
		Images:               h.Images,
		LookupDeadline:       deadline,
	})
	if res.Err == nil {
		res.Err = pastDeadline(ctx, deadline)
	}
	if res.Err != nil {
		// The API server gave up (or the deadline passed): whatever is
		// answered now is not applied, and a partial mutation must not be.
		return nil, abandoned(res.Err)
	}
	if h.Config.Enforcement == policy.EnforcementWarn {
		warnings = h.warnOnly(req, name, pod, &res, warnings)
		h.recordEvents(req, pod, warnings, "")
		return &admissionv1.AdmissionResponse{Allowed: true, Warnings: inject.Messages(warnings)}, nil
	}
	observe(&res)
	h.recordEvents(req, pod, res.Warnings, res.Denied)

	if res.Denied != "" {
		h.Log.Info("Denied pod: invalid podgrace setting in strict mode", append(requestKV(req, name), "reason", res.Denied)...)
		return &admissionv1.AdmissionResponse{
			Allowed:  false,
			Warnings: inject.Messages(warnings),
			Result: &metav1.Status{
				Status:  metav1.StatusFailure,
				Code:    http.StatusForbidden,
				Reason:  metav1.StatusReasonForbidden,
				Message: res.Denied,
			},
		}, nil
	}
	warnings = append(warnings, res.Warnings...)
	if !res.Changed() {
		if v := h.Log.V(1); v.Enabled() {
			v.Info("Pod unchanged", append(requestKV(req, name), "warnings", len(warnings))...)
		}
		return &admissionv1.AdmissionResponse{Allowed: true, Warnings: inject.Messages(warnings)}, nil
	}
	patch, err := encodePatch(res.Patch)
	if err != nil { // values are API types and strings: should not happen
		h.Log.Error(err, "Encoding the patch; the pod is admitted unmutated", requestKV(req, name)...)
		return h.allowUnchanged(requestKV(req, name), reasonPatchEncoded, "internal error encoding the patch; pod not mutated"), nil
	}
	if h.Log.Enabled() {
		h.Log.Info("Mutated pod", append(requestKV(req, name),
			"graceBefore", res.Status.GraceBefore, "graceAfter", res.Status.GraceAfter,
			"containers", containerSummary(res.Status.Containers), "operations", len(res.Patch), "warnings", len(warnings))...)
	}
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: patch, PatchType: &pt, Warnings: inject.Messages(warnings)}, nil
}

// abandoned is the answer to an admission stopped by err (pastDeadline):
// an HTTP error, so the API server applies the failurePolicy.
func abandoned(err error) *requestError {
	return &requestError{code: http.StatusServiceUnavailable, reason: reasonDeadline, msg: "admission abandoned: " + err.Error()}
}

// recordEvents queues the Events of an admission that has something to
// report; dry runs record none (the webhook's sideEffects: NoneOnDryRun).
func (h *Handler) recordEvents(req *admissionRequest, pod *corev1.Pod, warnings []inject.Warning, denied string) {
	if h.Events == nil || (req.DryRun != nil && *req.DryRun) || (len(warnings) == 0 && denied == "") {
		return
	}
	if ev, ok := eventOf(pod, req.controller(), warnings, denied); ok {
		h.Events.Enqueue(ev)
	}
}

// warnModeMaxLen bounds the warn-mode summary, which lists every change of
// the pod: the API server keeps warnings up to 4 KiB in all.
const warnModeMaxLen = 480

// warnOnly is the warnings of a warn-mode answer (cluster config
// enforcement: warn): the result the core computed comes back as one
// warning, a log line and a metric by namespace, and nothing is patched or
// denied, strict or not.
// Warnings of pods a controller creates reach the controller, not the user:
// the metric and `podgrace audit` are how a team sees those.
func (h *Handler) warnOnly(req *admissionRequest, name string, pod *corev1.Pod, res *inject.Result, warnings []inject.Warning) []inject.Warning {
	outcome, summary := warnUnchanged, ""
	switch {
	case res.Denied != "":
		outcome, summary = warnWouldDeny, "would deny: "+strings.TrimPrefix(res.Denied, "podgrace: ")
	case res.Changed():
		var before *inject.Status
		if prev := inject.ReadPrevious(pod); prev.Valid {
			before = &prev.Status
		}
		changes := inject.Describe(before, &res.Status)
		if len(changes) == 0 { // only the status record would be written
			changes = []string{"record its status"}
		}
		outcome, summary = warnWouldMutate, "would "+strings.Join(changes, ", ")
	}
	warnModePodsTotal.WithLabelValues(req.Namespace, outcome).Inc()
	if summary != "" {
		warnings = append(warnings, inject.Warning{Code: codeWarnMode, Message: truncateTo("podgrace (warn mode): "+summary, warnModeMaxLen)})
		h.Log.Info("Warn mode: pod not mutated", append(requestKV(req, name), "outcome", outcome, "would", summary)...)
	}
	if res.Denied == "" {
		warnings = append(warnings, res.Warnings...)
	}
	return warnings
}

// requestKV is the log key/values naming a request (and its pod, when named),
// with room for a call's own.
func requestKV(req *admissionRequest, pod string) []any {
	kv := make([]any, 0, 20)
	kv = append(kv, "uid", string(req.UID), "namespace", req.Namespace)
	if pod != "" {
		kv = append(kv, "pod", pod, "dryRun", req.DryRun != nil && *req.DryRun)
	}
	return kv
}

// notPodCreate says why a well-formed request is not a Pod CREATE ("" when it is).
func notPodCreate(req *admissionRequest) (reason, msg string) {
	switch {
	case req.Kind.Group != "" || req.Kind.Version != "v1" || req.Kind.Kind != "Pod" ||
		req.Resource.Resource != "pods" || req.SubResource != "":
		res := req.Resource.Resource
		if req.SubResource != "" {
			res += "/" + req.SubResource
		}
		return reasonNotPod, fmt.Sprintf("%s of %s (kind %s) is not a Pod; check the webhook's rules", req.Operation, res, req.Kind.Kind)
	case req.Operation != admissionv1.Create:
		return reasonNotCreate, fmt.Sprintf("%s of a Pod is not handled, only CREATE; check the webhook's rules", req.Operation)
	case req.Pod == nil && req.PodErr == nil:
		return reasonNoObject, "the request holds no object"
	}
	return "", ""
}

// allowUnchanged admits a request podgrace does not handle, saying why.
func (h *Handler) allowUnchanged(kv []any, reason, msg string) *admissionv1.AdmissionResponse {
	notHandledTotal.WithLabelValues(reason).Inc()
	warningsTotal.WithLabelValues(warnNotHandled).Inc()
	h.Log.Info("Allowed unchanged: not a Pod podgrace can handle", append(kv, "reason", reason, "detail", msg)...)
	return &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{inject.Truncate("podgrace: pod not mutated: " + msg)}}
}

// containerSummary renders the containers of a status record for the log,
// only when a line is written (logr.Marshaler is called after zap's level
// check and sampler).
type containerSummary []inject.ContainerReport

// MarshalLog implements logr.Marshaler.
func (cs containerSummary) MarshalLog() any {
	out := make([]string, 0, len(cs))
	for i := range cs {
		c := &cs[i]
		s := c.Name + ":"
		if c.Role != "" {
			s += " role=" + c.Role
		}
		switch {
		case c.Skipped != "":
			s += " skipped=" + c.Skipped
		default:
			if c.PreStopSleep > 0 {
				s += fmt.Sprintf(" preStop=%ds(%s)", c.PreStopSleep, c.Hook)
			}
			if c.ExecForm != "" {
				s += " execForm=" + c.ExecForm
			}
		}
		out = append(out, s)
	}
	return out
}

// truncateTo keeps s to n bytes, on a rune boundary, marking the cut.
func truncateTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
