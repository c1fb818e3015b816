package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"sync"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kjson "sigs.k8s.io/json"

	"github.com/podgrace/podgrace/internal/jsonstr"
	"github.com/podgrace/podgrace/pkg/inject"
)

// MaxBodyBytes bounds an AdmissionReview. The API server refuses objects over
// 3 MiB (its request limit; etcd stores at most 1.5 MiB) and a review carries
// the object and, on updates, the old object: 7 MiB holds both with room to
// spare, the limit controller-runtime's own admission handler uses.
const MaxBodyBytes = 7 << 20

const (
	reviewAPIVersion = "admission.k8s.io/v1"
	reviewKind       = "AdmissionReview"
)

// decode reads JSON as the API server does: field names are case-sensitive.
// encoding/json would match "speC" to spec, and a patch computed on that pod
// would not apply to the document the API server holds.
func decode(data []byte, v any) error {
	return kjson.UnmarshalCaseSensitivePreserveInts(data, v)
}

// admissionRequest is the part of an admission.k8s.io/v1 AdmissionRequest
// that podgrace reads, with the object already decoded as a Pod.
type admissionRequest struct {
	requestMeta
	// Pod is request.object; nil when the request holds none.
	Pod *corev1.Pod
	// PodErr says why request.object is not a Pod.
	PodErr error
	// owners is the pod's metadata.ownerReferences as it arrived (Pod has
	// none): see controller.
	owners keptJSON
}

// controller is the pod's controller reference, decoded from its
// ownerReferences only when asked (an admission that records an Event);
// nil when it has none, or they do not decode.
func (r *admissionRequest) controller() *metav1.OwnerReference {
	if len(r.owners) == 0 {
		return nil
	}
	var meta metav1.ObjectMeta
	if decode(r.owners, &meta.OwnerReferences) != nil {
		return nil
	}
	return metav1.GetControllerOfNoCopy(&meta)
}

type requestMeta struct {
	UID         types.UID                   `json:"uid"`
	Kind        metav1.GroupVersionKind     `json:"kind"`
	Resource    metav1.GroupVersionResource `json:"resource"`
	SubResource string                      `json:"subResource"`
	Name        string                      `json:"name"`
	Namespace   string                      `json:"namespace"`
	Operation   admissionv1.Operation       `json:"operation"`
	DryRun      *bool                       `json:"dryRun"`
}

// podReview is what a Pod admission is decoded into, by decodeFast in a
// single pass over the body, the Pod decoded in place (as an
// admissionPod, which skips what podgrace never reads). userInfo,
// oldObject and options are skipped. This keeps a request close to the cost
// of decoding the review at all (the floor): a raw object decoded in a second
// step would cost two more passes over the largest part of the body.
type podReview struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		requestMeta
		Object *admissionPod `json:"object"`
	} `json:"request"`
}

// rawReview is the slow path, for a body podReview cannot take: it tells a
// malformed review (an HTTP error) from an object that is not a Pod (a
// well-formed review podgrace allows unchanged).
type rawReview struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		requestMeta
		Object json.RawMessage `json:"object"`
	} `json:"request"`
}

// requestError is a request podgrace cannot answer with an AdmissionReview: it
// gets an HTTP error whose body is a metav1.Status. The API server decodes
// that Status into the error it logs ("failed calling webhook …: <message>")
// and, under failurePolicy Ignore, admits the pod unmutated.
type requestError struct {
	code   int
	reason string // metric label and metav1.Status reason detail
	msg    string
}

func (e *requestError) Error() string { return e.msg }

func badRequest(reason, format string, args ...any) *requestError {
	return &requestError{code: http.StatusBadRequest, reason: reason, msg: fmt.Sprintf(format, args...)}
}

// Reasons a request is answered with an HTTP error (podgrace_requests_not_handled_total).
const (
	reasonMethod      = "method-not-allowed"
	reasonContentType = "unsupported-media-type"
	reasonTooLarge    = "body-too-large"
	reasonBody        = "unreadable-body"
	reasonJSON        = "malformed-json"
	reasonReview      = "not-an-admission-review"
	reasonNoRequest   = "missing-request"
	reasonPanic       = "panic"
	// reasonDeadline: the admission's context ended (the API server gave
	// up, or timeoutSeconds passed) before the mutation was decided.
	reasonDeadline = "deadline"
	// reasonOverloaded: the in-flight or body-memory limit was hit
	// (docs/operate/security.md); answered at once with a 503.
	reasonOverloaded = "overloaded"
)

// bodyPool recycles request buffers; buffers grown past pooledBodyMax by a
// huge pod are dropped rather than kept alive.
var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const pooledBodyMax = 1 << 20

func putBody(b *bytes.Buffer) {
	if b.Cap() <= pooledBodyMax {
		b.Reset()
		bodyPool.Put(b)
	}
}

// readReview checks the transport (method, media type, size) and decodes the
// review. It returns a requestError for anything that is not a well-formed
// admission.k8s.io/v1 AdmissionReview holding a request with a uid.
//
// The body's memory is reserved from bodies (nil: no limit); the caller
// releases what it returns as reserved once the request is answered.
func readReview(w http.ResponseWriter, r *http.Request, bodies *bodyBudget) (_ *admissionRequest, reserved int64, _ *requestError) {
	buf, reserved, rerr := readRequestBody(w, r, bodies)
	if rerr != nil {
		return nil, reserved, rerr
	}
	defer putBody(buf)

	var fast podReview
	if decodeFast(buf.Bytes(), &fast) == nil {
		if rerr := checkReview(fast.APIVersion, fast.Kind, fast.Request == nil, fast.Request != nil && fast.Request.UID == ""); rerr != nil {
			return nil, reserved, rerr
		}
		req := &admissionRequest{requestMeta: fast.Request.requestMeta}
		if fast.Request.Object != nil {
			req.Pod, req.PodErr = fast.Request.Object.pod()
			req.owners = fast.Request.Object.Metadata.OwnerReferences
		}
		return req, reserved, nil
	}
	var rev rawReview
	if err := decode(buf.Bytes(), &rev); err != nil {
		return nil, reserved, badRequest(reasonJSON, "decoding the AdmissionReview: %v", err)
	}
	if rerr := checkReview(rev.APIVersion, rev.Kind, rev.Request == nil, rev.Request != nil && rev.Request.UID == ""); rerr != nil {
		return nil, reserved, rerr
	}
	req := &admissionRequest{requestMeta: rev.Request.requestMeta}
	if len(rev.Request.Object) > 0 && string(rev.Request.Object) != "null" {
		var obj admissionPod
		if err := decode(rev.Request.Object, &obj); err != nil {
			req.PodErr = err
		} else {
			req.Pod, req.PodErr = obj.pod()
			req.owners = obj.Metadata.OwnerReferences
		}
	}
	return req, reserved, nil
}

// readRequestBody checks the transport (method, media type, size) and reads
// the body as it arrives into a pooled buffer the caller returns with
// putBody. Its memory is reserved from bodies (nil: no limit); the caller
// releases what it returns as reserved (bodies.release) once the request is
// answered, whatever the error. (A release func would cost an allocation
// per admission.)
func readRequestBody(w http.ResponseWriter, r *http.Request, bodies *bodyBudget) (_ *bytes.Buffer, reserved int64, _ *requestError) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, 0, &requestError{code: http.StatusMethodNotAllowed, reason: reasonMethod, msg: "method " + r.Method + " not allowed: POST an AdmissionReview"}
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return nil, 0, &requestError{code: http.StatusUnsupportedMediaType, reason: reasonContentType, msg: fmt.Sprintf("content type %q: expected application/json", ct)}
		}
	}
	if r.ContentLength > MaxBodyBytes {
		return nil, 0, tooLarge()
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	reserved, err := readBody(buf, http.MaxBytesReader(w, r.Body, MaxBodyBytes), bodies)
	if err != nil {
		putBody(buf)
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, reserved, tooLarge()
		}
		if errors.Is(err, errBudget) {
			return nil, reserved, overloaded(fmt.Sprintf("request bodies held over %d bytes", bodies.limit))
		}
		return nil, reserved, &requestError{code: http.StatusBadRequest, reason: reasonBody, msg: "reading the request body: " + err.Error()}
	}
	return buf, reserved, nil
}

// checkReview rejects what is not an admission.k8s.io/v1 review of a request with a uid.
func checkReview(apiVersion, kind string, noRequest, noUID bool) *requestError {
	switch {
	case apiVersion != reviewAPIVersion || kind != reviewKind:
		return badRequest(reasonReview, "got apiVersion %q kind %q: podgrace serves %s %s only (admissionReviewVersions: [v1])", apiVersion, kind, reviewAPIVersion, reviewKind)
	case noRequest:
		return badRequest(reasonNoRequest, "the AdmissionReview has no request")
	case noUID:
		return badRequest(reasonNoRequest, "the AdmissionReview's request has no uid")
	}
	return nil
}

func tooLarge() *requestError {
	return &requestError{code: http.StatusRequestEntityTooLarge, reason: reasonTooLarge, msg: fmt.Sprintf("request body over %d bytes", MaxBodyBytes)}
}

// writeResponse answers an AdmissionReview.
func writeResponse(w http.ResponseWriter, resp *admissionv1.AdmissionResponse) error {
	body, err := encodeResponse(resp)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(body)
	return err
}

// encodeResponse encodes the AdmissionReview answering with resp. (A
// hand-written encoder saved nothing measurable: docs/records/benchmarks.md.)
func encodeResponse(resp *admissionv1.AdmissionResponse) ([]byte, error) {
	return json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: reviewAPIVersion, Kind: reviewKind},
		Response: resp,
	})
}

// writeError answers with an HTTP error carrying a metav1.Status, the shape
// client-go (and so the API server) decodes into a readable error.
func writeError(w http.ResponseWriter, e *requestError) {
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"},
		Status:   metav1.StatusFailure,
		Message:  "podgrace: " + e.msg,
		Reason:   statusReason(e.code),
		Code:     int32(e.code),
	}
	body, _ := json.Marshal(&st) // a struct of strings and ints: cannot fail
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.code)
	_, _ = w.Write(body)
}

func statusReason(code int) metav1.StatusReason {
	switch code {
	case http.StatusMethodNotAllowed:
		return metav1.StatusReasonMethodNotAllowed
	case http.StatusUnsupportedMediaType:
		return metav1.StatusReasonUnsupportedMediaType
	case http.StatusRequestEntityTooLarge:
		return metav1.StatusReasonRequestEntityTooLarge
	case http.StatusInternalServerError:
		return metav1.StatusReasonInternalError
	default:
		return metav1.StatusReasonBadRequest
	}
}

// encodePatch writes the core's operations as a JSON patch in one pass, the
// status string and the grace period without reflection; it writes what
// json.Marshal of the operations writes (TestEncodePatch), at 0.91–0.94×
// its server CPU per admission (docs/records/benchmarks.md).
func encodePatch(ops []inject.PatchOp) ([]byte, error) {
	if !handPatch {
		if ops == nil {
			ops = []inject.PatchOp{}
		}
		return json.Marshal(ops)
	}
	buf := make([]byte, 0, 128*len(ops))
	buf = append(buf, '[')
	for i := range ops {
		op := &ops[i]
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"op":`...)
		buf = jsonstr.Append(buf, op.Operation)
		buf = append(buf, `,"path":`...)
		buf = jsonstr.Append(buf, op.Path)
		if op.Value != nil || op.Operation == "add" || op.Operation == "replace" || op.Operation == "test" {
			buf = append(buf, `,"value":`...)
			switch v := op.Value.(type) {
			case string: // the status annotation
				buf = jsonstr.Append(buf, v)
			case int64: // terminationGracePeriodSeconds
				buf = strconv.AppendInt(buf, v, 10)
			default:
				b, err := json.Marshal(v)
				if err != nil {
					return nil, err
				}
				buf = append(buf, b...)
			}
		}
		buf = append(buf, '}')
	}
	return append(buf, ']'), nil
}
