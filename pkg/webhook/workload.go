package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/workload"
)

// WorkloadHandler is the validating admission handler for CREATE and UPDATE
// of workloads (Deployments, StatefulSets, DaemonSets, ReplicaSets,
// ReplicationControllers, Jobs, CronJobs): it runs the pod path's core on the
// pod template and returns what the pods would be warned about as admission
// warnings, to the person who applies the workload. (The warnings of the pods
// themselves reach the controller that creates them, which drops them.) It
// never mutates. In strict mode it denies a CREATE, or an UPDATE that changes
// the pod template, with the pod path's denial; an UPDATE that leaves the
// template alone (a scale, finalizers, ownerReferences) is always allowed, so
// no controller is ever stalled. docs/design.md §7.
type WorkloadHandler struct {
	// Pods is the pod handler whose config, hook action, image lookup and
	// namespace lookup the check uses: the same inputs as the pod path.
	Pods *Handler
}

// Results of a workload check (podgrace_workload_checks_total).
const (
	workloadClean      = "clean"
	workloadWarned     = "warned"
	workloadDenied     = "denied"
	workloadUnchanged  = "template-unchanged"
	workloadNotHandled = "not-handled"
)

// workloadReview is a review with its objects left raw: the template's
// location depends on the kind.
type workloadReview struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		requestMeta
		Object    json.RawMessage `json:"object"`
		OldObject json.RawMessage `json:"oldObject"`
	} `json:"request"`
}

// ServeHTTP implements http.Handler.
func (h *WorkloadHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.Pods.Log
	answered := false
	defer recoverPanic(w, log, &answered, "Workload handler panicked; the workload is admitted")
	body, reserved, rerr := readRequestBody(w, r, h.Pods.bodies)
	defer h.Pods.bodies.release(reserved)
	if rerr != nil {
		notHandledTotal.WithLabelValues(rerr.reason).Inc()
		answered = true
		writeError(w, rerr)
		return
	}
	var rev workloadReview
	err := decode(body.Bytes(), &rev)
	putBody(body)
	if err != nil {
		notHandledTotal.WithLabelValues(reasonJSON).Inc()
		answered = true
		writeError(w, badRequest(reasonJSON, "decoding the AdmissionReview: %v", err))
		return
	}
	if rerr := checkReview(rev.APIVersion, rev.Kind, rev.Request == nil, rev.Request != nil && rev.Request.UID == ""); rerr != nil {
		notHandledTotal.WithLabelValues(rerr.reason).Inc()
		answered = true
		writeError(w, rerr)
		return
	}
	req := rev.Request
	resp := h.check(r.Context(), &req.requestMeta, req.Object, req.OldObject)
	resp.UID = req.UID
	answered = true
	if err := writeResponse(w, resp); err != nil {
		log.Error(err, "Writing the admission response", "uid", req.UID)
	}
}

// check decides one well-formed workload review.
func (h *WorkloadHandler) check(ctx context.Context, req *requestMeta, object, oldObject json.RawMessage) *admissionv1.AdmissionResponse {
	kv := []any{"uid", string(req.UID), "namespace", req.Namespace, "kind", req.Kind.Kind, "name", req.Name, "operation", req.Operation}
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	notHandled := func(reason, msg string) *admissionv1.AdmissionResponse {
		notHandledTotal.WithLabelValues(reason).Inc()
		workloadChecksTotal.WithLabelValues(workloadNotHandled).Inc()
		h.Pods.Log.Info("Workload not checked", append(kv, "reason", reason, "detail", msg)...)
		return &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{inject.Truncate("podgrace: pod template not checked: " + msg)}}
	}
	gvk := schema.GroupVersionKind{Group: req.Kind.Group, Version: req.Kind.Version, Kind: req.Kind.Kind}
	k, ok := workload.Lookup(gvk.GroupVersion().String(), gvk.Kind)
	path := k.Template
	if !ok || len(path) == 0 || req.SubResource != "" {
		return notHandled(reasonNotWorkload, fmt.Sprintf("%s of %s is not a workload podgrace checks; check the webhook's rules", req.Operation, gvk.String()))
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return notHandled(reasonNotCreate, fmt.Sprintf("%s is not checked, only CREATE and UPDATE; check the webhook's rules", req.Operation))
	}
	tmpl, err := templateAt(object, path)
	if err != nil {
		return notHandled(reasonUndecodable, err.Error())
	}
	if req.Operation == admissionv1.Update {
		// Unchanged template: a scale, a status or metadata update. Its pods
		// are what they were; never deny, never repeat the warnings.
		if old, err := templateAt(oldObject, path); err == nil && reflect.DeepEqual(old, tmpl) {
			workloadChecksTotal.WithLabelValues(workloadUnchanged).Inc()
			return allow
		}
	}
	pod, err := templatePod(tmpl, req.Namespace, req.Name)
	if err != nil {
		return notHandled(reasonUndecodable, err.Error())
	}

	var warnings []inject.Warning
	var nsAnnotations map[string]string
	if h.Pods.Namespaces != nil {
		ann, err := h.Pods.Namespaces(ctx, req.Namespace)
		if err != nil {
			warnings = append(warnings, namespaceWarning(req.Namespace))
		}
		nsAnnotations = ann
	}
	res := inject.Pod(ctx, inject.PodInput{
		Pod:                  pod,
		NamespaceAnnotations: nsAnnotations,
		Config:               h.Pods.Config,
		HookAction:           h.Pods.HookAction,
		Images:               h.Pods.Images,
	})
	if res.Denied != "" && h.Pods.Config.Enforcement != policy.EnforcementWarn {
		workloadChecksTotal.WithLabelValues(workloadDenied).Inc()
		h.Pods.Log.Info("Denied workload: invalid podgrace setting in its pod template, strict mode", append(kv, "reason", res.Denied)...)
		return &admissionv1.AdmissionResponse{
			Allowed: false,
			Result: &metav1.Status{
				Status:  metav1.StatusFailure,
				Code:    http.StatusForbidden,
				Reason:  metav1.StatusReasonForbidden,
				Message: "pod template: " + res.Denied,
			},
		}
	}
	warnings = append(warnings, res.Warnings...)
	if len(warnings) == 0 {
		workloadChecksTotal.WithLabelValues(workloadClean).Inc()
		return allow
	}
	workloadChecksTotal.WithLabelValues(workloadWarned).Inc()
	if v := h.Pods.Log.V(1); v.Enabled() {
		v.Info("Workload warned", append(kv, "warnings", len(warnings))...)
	}
	return &admissionv1.AdmissionResponse{Allowed: true, Warnings: inject.Messages(warnings)}
}

// reasonNotWorkload is a review of a kind the workload check does not know.
const reasonNotWorkload = "not-a-workload"

// templateAt returns the JSON value at path in a raw object.
func templateAt(raw json.RawMessage, path []string) (any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, fmt.Errorf("the request holds no object")
	}
	var cur any
	if err := decode(raw, &cur); err != nil {
		return nil, fmt.Errorf("cannot decode the object: %w", err)
	}
	for i, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s is not an object", strings.Join(path[:i], "."))
		}
		if cur, ok = m[k]; !ok {
			return nil, fmt.Errorf("the object has no %s", strings.Join(path[:i+1], "."))
		}
	}
	return cur, nil
}

// templatePod turns a pod template into the pod its controller would create,
// as far as podgrace reads it: the template's metadata and spec, in the
// workload's namespace.
func templatePod(tmpl any, namespace, name string) (*corev1.Pod, error) {
	b, err := json.Marshal(tmpl)
	if err != nil {
		return nil, err
	}
	var pt corev1.PodTemplateSpec
	if err := decode(b, &pt); err != nil {
		return nil, fmt.Errorf("cannot decode the pod template: %w", err)
	}
	for field, list := range map[string][]corev1.Container{"containers": pt.Spec.Containers, "initContainers": pt.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == "" {
				return nil, fmt.Errorf("spec.%s[%d] has no name", field, i)
			}
		}
	}
	pod := &corev1.Pod{ObjectMeta: pt.ObjectMeta, Spec: pt.Spec}
	pod.Namespace = namespace
	if pod.Name == "" && pod.GenerateName == "" {
		pod.GenerateName = name + "-"
	}
	return pod, nil
}
