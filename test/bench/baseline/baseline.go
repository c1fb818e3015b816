// Package baseline holds the two handlers podgrace's cost is measured
// against (docs/develop/performance.md), used by the handler benchmarks in
// pkg/webhook and by the HTTPS floor server in test/bench/floorserver:
//
//   - Floor: the least a webhook can do. It reads the body, decodes the
//     AdmissionReview and answers allowed, without a patch. No webhook that
//     looks at the request at all can cost less.
//   - Defaulter: controller-runtime's usual path. A CustomDefaulter that
//     applies podgrace's own mutation to the decoded Pod, served by
//     admission.WithCustomDefaulter, which marshals the whole mutated Pod
//     and diffs it against the request (PatchResponseFromRaw).
//
// Both are held to the same inputs as podgrace; TestBaselines in pkg/webhook
// checks that the defaulter's patch yields exactly podgrace's pod.
package baseline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"

	jsonv2 "github.com/go-json-experiment/json"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	kjson "sigs.k8s.io/json"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// maxBody bounds a review, as podgrace's handler does.
const maxBody = 7 << 20

// bufPool recycles request buffers, as podgrace's handler does: the floor
// gets every saving podgrace gets.
var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Floor answers every AdmissionReview allowed, unchanged. It reads the body
// into a pooled buffer, decodes the whole admission.k8s.io/v1 AdmissionReview
// with the decoder podgrace uses (sigs.k8s.io/json, case-sensitive; the
// object stays raw bytes, as runtime.RawExtension keeps it) and encodes the
// response. A malformed review gets HTTP 400.
type Floor struct{}

// ServeHTTP implements http.Handler.
func (Floor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serveFloor(w, r, kjson.UnmarshalCaseSensitivePreserveInts, nil)
}

// Replay is Floor answering every review with the same JSON patch: a
// webhook that costs the API server what a patch costs it (applying it,
// decoding, defaulting and validating the patched pod again) without
// podgrace deciding anything. BenchmarkPodCreate replays podgrace's own
// patch of the pod it creates.
type Replay struct{ Patch []byte }

// ServeHTTP implements http.Handler.
func (h Replay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serveFloor(w, r, kjson.UnmarshalCaseSensitivePreserveInts, h.Patch)
}

func serveFloor(w http.ResponseWriter, r *http.Request, decode func([]byte, any) error, patch []byte) {
	buf := bufPool.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 1<<20 {
			buf.Reset()
			bufPool.Put(buf)
		}
	}()
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, maxBody)); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var rev admissionv1.AdmissionReview
	if err := decode(buf.Bytes(), &rev); err != nil || rev.Request == nil {
		http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
		return
	}
	resp := &admissionv1.AdmissionResponse{UID: rev.Request.UID, Allowed: true}
	if patch != nil {
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	body, err := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Response: resp,
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// FloorV2 is Floor decoding with github.com/go-json-experiment/json (the
// engine podgrace's fast path uses) instead of sigs.k8s.io/json: the floor
// of a webhook that picked the same faster decoder. Reported next to Floor
// so that podgrace's own cost is not hidden behind its faster decoder.
type FloorV2 struct{}

// ServeHTTP implements http.Handler.
func (FloorV2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serveFloor(w, r, func(data []byte, v any) error { return jsonv2.Unmarshal(data, v) }, nil)
}

// NewDefaulter serves podgrace's mutation the way a kubebuilder project
// would: a CustomDefaulter on controller-runtime's admission.Webhook. It
// passes no namespace annotations and no image lookup, like the handler
// benchmarks.
func NewDefaulter(cfg *policy.Config, hook policy.HookAction) http.Handler {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		panic(err) // a static scheme: cannot fail
	}
	return admission.WithCustomDefaulter(scheme, &corev1.Pod{}, &podDefaulter{cfg: cfg, hook: hook})
}

type podDefaulter struct {
	cfg  *policy.Config
	hook policy.HookAction
}

// Default applies inject.Pod's result to the decoded pod in place.
func (d *podDefaulter) Default(ctx context.Context, obj runtime.Object) error {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return errors.New("not a Pod")
	}
	res := inject.Pod(ctx, inject.PodInput{Pod: pod, Config: d.cfg, HookAction: d.hook})
	if res.Denied != "" {
		return errors.New(res.Denied)
	}
	if res.Changed() {
		*pod = *res.Pod
	}
	return nil
}
