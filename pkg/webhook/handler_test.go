package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// testPod is a pod as the API server sends it: defaults applied, a
// shell-form command, no preStop hook.
func testPod() *corev1.Pod {
	grace := int64(30)
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Namespace: "shop"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name:    "app",
				Image:   "registry.example/app:1",
				Command: []string{"sh", "-c", "bundle exec puma"},
			}},
		},
	}
}

func rawJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// reviewFor wraps an object in an admission.k8s.io/v1 AdmissionReview for a
// Pod CREATE; edit changes the generic map before it is encoded.
func reviewFor(t testing.TB, obj any, edit func(map[string]any)) []byte {
	t.Helper()
	req := map[string]any{
		"uid":       "0a1b2c",
		"kind":      map[string]any{"group": "", "version": "v1", "kind": "Pod"},
		"resource":  map[string]any{"group": "", "version": "v1", "resource": "pods"},
		"namespace": "shop",
		"operation": "CREATE",
		"userInfo":  map[string]any{"username": "alice"},
		"object":    json.RawMessage(rawJSON(t, obj)),
		"oldObject": nil,
		"dryRun":    false,
		"options":   map[string]any{"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
	}
	rev := map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req}
	if edit != nil {
		edit(rev)
	}
	return rawJSON(t, rev)
}

func request(rev map[string]any) map[string]any { return rev["request"].(map[string]any) }

func newTestHandler(cfg *policy.Config, ns NamespaceLookup) *Handler {
	if cfg == nil {
		c := policy.Default()
		cfg = &c
	}
	return &Handler{Config: cfg, HookAction: policy.HookSleep, Namespaces: ns, Log: logr.Discard()}
}

func post(h http.Handler, body []byte, contentType string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// decodeResponse reads an HTTP 200 answer: a well-formed v1 AdmissionReview
// with a response echoing uid.
func decodeResponse(t testing.TB, w *httptest.ResponseRecorder, uid string) *admissionv1.AdmissionResponse {
	t.Helper()
	if w.Code != http.StatusOK {
		t.Fatalf("HTTP %d, want 200: %s", w.Code, w.Body)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var rev admissionv1.AdmissionReview
	dec := json.NewDecoder(w.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rev); err != nil {
		t.Fatalf("response is not an AdmissionReview: %v", err)
	}
	if rev.APIVersion != "admission.k8s.io/v1" || rev.Kind != "AdmissionReview" || rev.Request != nil || rev.Response == nil {
		t.Fatalf("malformed response review: %+v", rev)
	}
	if string(rev.Response.UID) != uid {
		t.Fatalf("response uid %q, want %q", rev.Response.UID, uid)
	}
	return rev.Response
}

// decodeStatus reads an HTTP error answer: a metav1.Status with the same code.
func decodeStatus(t testing.TB, w *httptest.ResponseRecorder) *metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatalf("HTTP %d body is not a Status: %v: %s", w.Code, err, w.Body)
	}
	if st.Kind != "Status" || st.Status != metav1.StatusFailure || int(st.Code) != w.Code || !strings.HasPrefix(st.Message, "podgrace: ") {
		t.Fatalf("malformed Status for HTTP %d: %+v", w.Code, st)
	}
	return &st
}

// applyPatch applies a response's JSON patch to the object, as the API server does.
func applyPatch(t testing.TB, obj []byte, resp *admissionv1.AdmissionResponse) *corev1.Pod {
	t.Helper()
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v", resp.PatchType)
	}
	p, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("patch does not decode: %v: %s", err, resp.Patch)
	}
	out, err := p.Apply(obj)
	if err != nil {
		t.Fatalf("patch does not apply: %v: %s", err, resp.Patch)
	}
	var pod corev1.Pod
	if err := decode(out, &pod); err != nil {
		t.Fatalf("patched object is not a Pod: %v", err)
	}
	return &pod
}

func TestHandlerRejectsBrokenRequests(t *testing.T) {
	t.Parallel()
	valid := func(t *testing.T) []byte { return reviewFor(t, testPod(), nil) }
	cases := map[string]struct {
		method, contentType string
		body                func(t *testing.T) []byte
		code                int
		msg                 string
	}{
		"GET":               {method: http.MethodGet, body: valid, code: http.StatusMethodNotAllowed, msg: "method GET not allowed"},
		"no content type":   {body: valid, contentType: "-", code: http.StatusUnsupportedMediaType, msg: "expected application/json"},
		"YAML content type": {body: valid, contentType: "application/yaml", code: http.StatusUnsupportedMediaType, msg: `"application/yaml"`},
		"CBOR content type": {body: valid, contentType: "application/cbor", code: http.StatusUnsupportedMediaType, msg: "expected application/json"},
		"empty body":        {body: func(*testing.T) []byte { return nil }, code: http.StatusBadRequest, msg: "decoding the AdmissionReview"},
		"truncated JSON":    {body: func(t *testing.T) []byte { b := valid(t); return b[:len(b)/2] }, code: http.StatusBadRequest, msg: "decoding the AdmissionReview"},
		"JSON array":        {body: func(*testing.T) []byte { return []byte(`[1,2]`) }, code: http.StatusBadRequest, msg: "decoding the AdmissionReview"},
		"JSON null":         {body: func(*testing.T) []byte { return []byte(`null`) }, code: http.StatusBadRequest, msg: `apiVersion ""`},
		"trailing garbage":  {body: func(t *testing.T) []byte { return append(valid(t), "}"...) }, code: http.StatusBadRequest, msg: "decoding the AdmissionReview"},
		"uid not a string": {body: func(*testing.T) []byte {
			return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":7}}`)
		}, code: http.StatusBadRequest, msg: "decoding the AdmissionReview"},
		"v1beta1": {body: func(t *testing.T) []byte {
			return reviewFor(t, testPod(), func(m map[string]any) { m["apiVersion"] = "admission.k8s.io/v1beta1" })
		}, code: http.StatusBadRequest, msg: "admissionReviewVersions: [v1]"},
		"wrong kind": {body: func(t *testing.T) []byte {
			return reviewFor(t, testPod(), func(m map[string]any) { m["kind"] = "TokenReview" })
		}, code: http.StatusBadRequest, msg: `kind "TokenReview"`},
		"no request": {body: func(t *testing.T) []byte {
			return reviewFor(t, testPod(), func(m map[string]any) { delete(m, "request") })
		}, code: http.StatusBadRequest, msg: "has no request"},
		"a response instead": {body: func(*testing.T) []byte {
			return []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"x","allowed":true}}`)
		}, code: http.StatusBadRequest, msg: "has no request"},
		"no uid": {body: func(t *testing.T) []byte {
			return reviewFor(t, testPod(), func(m map[string]any) { delete(request(m), "uid") })
		}, code: http.StatusBadRequest, msg: "has no uid"},
		"over the limit": {body: func(*testing.T) []byte { return bytes.Repeat([]byte(" "), MaxBodyBytes+1) }, code: http.StatusRequestEntityTooLarge, msg: "over 7340032 bytes"},
	}
	h := newTestHandler(nil, nil)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			method := tc.method
			if method == "" {
				method = http.MethodPost
			}
			r := httptest.NewRequest(method, Path, bytes.NewReader(tc.body(t)))
			switch tc.contentType {
			case "":
				r.Header.Set("Content-Type", "application/json")
			case "-":
			default:
				r.Header.Set("Content-Type", tc.contentType)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.code {
				t.Fatalf("HTTP %d, want %d: %s", w.Code, tc.code, w.Body)
			}
			st := decodeStatus(t, w)
			if !strings.Contains(st.Message, tc.msg) {
				t.Errorf("message %q does not contain %q", st.Message, tc.msg)
			}
		})
	}
}

func TestHandlerAllowsWhatItDoesNotHandle(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		edit func(m map[string]any)
		warn string
	}{
		"UPDATE": {func(m map[string]any) { request(m)["operation"] = "UPDATE" }, "UPDATE of a Pod is not handled, only CREATE"},
		"DELETE": {func(m map[string]any) { request(m)["operation"] = "DELETE"; request(m)["object"] = nil }, "DELETE of a Pod is not handled"},
		"a Deployment": {func(m map[string]any) {
			request(m)["kind"] = map[string]any{"group": "apps", "version": "v1", "kind": "Deployment"}
			request(m)["resource"] = map[string]any{"group": "apps", "version": "v1", "resource": "deployments"}
		}, "deployments (kind Deployment) is not a Pod"},
		"pods/ephemeralcontainers": {func(m map[string]any) { request(m)["subResource"] = "ephemeralcontainers" }, "pods/ephemeralcontainers"},
		"no object":                {func(m map[string]any) { delete(request(m), "object") }, "holds no object"},
		"null object":              {func(m map[string]any) { request(m)["object"] = nil }, "holds no object"},
		"object not a pod":         {func(m map[string]any) { request(m)["object"] = json.RawMessage(`{"spec":{"containers":"app"}}`) }, "cannot decode the Pod"},
		"object without metadata": {func(m map[string]any) {
			request(m)["object"] = json.RawMessage(`{"spec":{"containers":[{"name":"a"}]}}`)
		}, "no metadata.namespace"},
		"object a string": {func(m map[string]any) { request(m)["object"] = "pod" }, "cannot decode the Pod"},
	}
	h := newTestHandler(nil, nil)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			w := post(h, reviewFor(t, testPod(), tc.edit), "application/json")
			resp := decodeResponse(t, w, "0a1b2c")
			if !resp.Allowed || resp.Patch != nil || resp.Result != nil {
				t.Fatalf("want allowed without patch, got %+v", resp)
			}
			if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], tc.warn) || !strings.HasPrefix(resp.Warnings[0], "podgrace: pod not mutated: ") {
				t.Errorf("warnings %q, want one containing %q", resp.Warnings, tc.warn)
			}
		})
	}
}

// TestHandlerLeavesMirrorPods: a mirror pod is allowed unchanged and
// without a warning (the kubelet creates it; nobody is there to read one),
// whatever else it carries; the same pod without the annotation is mutated.
func TestHandlerLeavesMirrorPods(t *testing.T) {
	t.Parallel()
	h := newTestHandler(nil, nil)
	mirror := testPod()
	mirror.Annotations = map[string]string{corev1.MirrorPodAnnotationKey: "4f1d2c3b", policy.AnnotationPreStopSleep: "not-a-duration"}
	resp := decodeResponse(t, post(h, reviewFor(t, mirror, nil), "application/json"), "0a1b2c")
	if !resp.Allowed || resp.Patch != nil || resp.Result != nil || len(resp.Warnings) > 0 {
		t.Errorf("a mirror pod: want allowed, no patch, no warning; got %+v", resp)
	}
	resp = decodeResponse(t, post(h, reviewFor(t, testPod(), nil), "application/json"), "0a1b2c")
	if !resp.Allowed || resp.Patch == nil {
		t.Errorf("the same pod, not a mirror pod: want a patch, got %+v", resp)
	}
}

func TestHandlerMutatesPodCreate(t *testing.T) {
	t.Parallel()
	pod := testPod()
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2"})
	obj := rawJSON(t, pod)
	ns := func(_ context.Context, name string) (map[string]string, error) {
		if name != "shop" {
			t.Errorf("namespace lookup for %q", name)
		}
		return map[string]string{policy.AnnotationPreStopSleep: "20s"}, nil
	}
	h := newTestHandler(nil, ns)
	mutatedBefore := testutil.ToFloat64(podsMutatedTotal)

	w := post(h, reviewFor(t, pod, nil), "application/json; charset=utf-8")
	resp := decodeResponse(t, w, "0a1b2c")
	if !resp.Allowed || resp.Result != nil {
		t.Fatalf("not allowed: %+v", resp)
	}
	got := applyPatch(t, obj, resp)
	app := got.Spec.Containers[0]
	if app.Lifecycle == nil || app.Lifecycle.PreStop == nil || app.Lifecycle.PreStop.Sleep == nil || app.Lifecycle.PreStop.Sleep.Seconds != 20 {
		t.Errorf("app preStop %+v, want the namespace's 20s sleep", app.Lifecycle)
	}
	if want := []string{"bundle", "exec", "puma"}; !slices.Equal(app.Command, want) {
		t.Errorf("app command %q, want %q (the shell dropped)", app.Command, want)
	}
	// The sidecar outlives the app: 20s + the 5s shutdown budget.
	if lc := got.Spec.Containers[1].Lifecycle; lc == nil || lc.PreStop == nil || lc.PreStop.Sleep == nil || lc.PreStop.Sleep.Seconds != 25 {
		t.Errorf("sidecar preStop %+v, want a 25s sleep", lc)
	}
	if g := got.Spec.TerminationGracePeriodSeconds; g == nil || *g != 30 {
		t.Errorf("grace period %v, want 30 (25s + the sidecar's 5s drain)", g)
	}
	if _, ok := got.Annotations[policy.AnnotationStatus]; !ok {
		t.Errorf("no status annotation: %v", got.Annotations)
	}
	if d := testutil.ToFloat64(podsMutatedTotal) - mutatedBefore; d < 1 {
		t.Errorf("podgrace_pods_mutated_total moved by %v", d)
	}

	// A second pass over the patched pod (reinvocation) changes nothing.
	w = post(h, reviewFor(t, got, nil), "application/json")
	if resp := decodeResponse(t, w, "0a1b2c"); resp.Patch != nil {
		t.Errorf("second pass patched: %s", resp.Patch)
	}
}

// TestHandlerPatchHoldsOnlyPodgracesOperations feeds a pod with fields this
// k8s.io/api version does not know: a diff of decoded documents would remove
// them; the handler's patch touches only podgrace's paths.
func TestHandlerPatchHoldsOnlyPodgracesOperations(t *testing.T) {
	t.Parallel()
	obj := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"shop",
		"managedFields":[{"manager":"kubectl","operation":"Update"}],"futureMeta":true},
		"spec":{"terminationGracePeriodSeconds":30,"futureSpec":{"a":1},
		"containers":[{"name":"app","image":"app:1","command":["sh","-c","bundle exec puma"],"futureContainer":"x"}]},
		"status":{"futureStatus":1}}`)
	h := newTestHandler(nil, nil)
	resp := decodeResponse(t, post(h, reviewFor(t, json.RawMessage(obj), nil), "application/json"), "0a1b2c")
	var ops []struct{ Op, Path string }
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatal(err)
	}
	if len(ops) == 0 {
		t.Fatal("no patch")
	}
	for _, op := range ops {
		ok := strings.HasPrefix(op.Path, "/spec/containers/0/") || op.Path == "/spec/terminationGracePeriodSeconds" ||
			op.Path == "/metadata/annotations" || strings.HasPrefix(op.Path, "/metadata/annotations/")
		if !ok || strings.Contains(op.Path, "future") || strings.Contains(op.Path, "managedFields") {
			t.Errorf("operation outside podgrace's fields: %s %s", op.Op, op.Path)
		}
		if op.Op == "remove" && op.Path != "/spec/containers/0/args" {
			t.Errorf("unexpected remove: %s", op.Path)
		}
	}
	patched := applyPatch(t, obj, resp)
	_ = patched
	var generic map[string]any
	p, _ := jsonpatch.DecodePatch(resp.Patch)
	out, _ := p.Apply(obj)
	_ = json.Unmarshal(out, &generic)
	spec := generic["spec"].(map[string]any)
	if spec["futureSpec"] == nil || spec["containers"].([]any)[0].(map[string]any)["futureContainer"] != "x" {
		t.Errorf("unknown fields lost: %s", out)
	}
}

func TestHandlerStrictModeDenies(t *testing.T) {
	t.Parallel()
	cfg := policy.Default()
	cfg.Strict = true
	pod := testPod()
	pod.Annotations = map[string]string{policy.AnnotationPreStopSleep: "abc"}
	h := newTestHandler(&cfg, nil)
	resp := decodeResponse(t, post(h, reviewFor(t, pod, nil), "application/json"), "0a1b2c")
	if resp.Allowed || resp.Patch != nil || resp.Result == nil {
		t.Fatalf("want a denial, got %+v", resp)
	}
	if resp.Result.Code != http.StatusForbidden || !strings.Contains(resp.Result.Message, `podgrace.dev/prestop-sleep="abc"`) ||
		!strings.Contains(resp.Result.Message, "strict mode") {
		t.Errorf("denial %+v", resp.Result)
	}

	// Without strict mode the same pod is mutated and warned about.
	h = newTestHandler(nil, nil)
	resp = decodeResponse(t, post(h, reviewFor(t, pod, nil), "application/json"), "0a1b2c")
	if !resp.Allowed || resp.Patch == nil || len(resp.Warnings) == 0 || !strings.Contains(resp.Warnings[0], `podgrace.dev/prestop-sleep="abc"`) {
		t.Errorf("want a mutation with a warning, got %+v", resp)
	}
}

func TestHandlerNamespaceUnavailable(t *testing.T) {
	t.Parallel()
	h := newTestHandler(nil, func(context.Context, string) (map[string]string, error) {
		return nil, errors.New("connection refused")
	})
	resp := decodeResponse(t, post(h, reviewFor(t, testPod(), nil), "application/json"), "0a1b2c")
	if !resp.Allowed || resp.Patch == nil {
		t.Fatalf("want a mutation with the cluster config, got %+v", resp)
	}
	if len(resp.Warnings) == 0 || !strings.Contains(resp.Warnings[0], `annotations of namespace "shop" unavailable`) {
		t.Errorf("warnings %q", resp.Warnings)
	}
}

func TestHandlerRecoversPanics(t *testing.T) {
	t.Parallel()
	before := testutil.ToFloat64(notHandledTotal.WithLabelValues(reasonPanic))
	h := newTestHandler(nil, func(context.Context, string) (map[string]string, error) { panic("boom") })
	w := post(h, reviewFor(t, testPod(), nil), "application/json")
	if w.Code != http.StatusInternalServerError {
		t.Fatalf("HTTP %d, want 500", w.Code)
	}
	if st := decodeStatus(t, w); !strings.Contains(st.Message, "internal error") {
		t.Errorf("message %q", st.Message)
	}
	if testutil.ToFloat64(notHandledTotal.WithLabelValues(reasonPanic)) <= before {
		t.Error("panic not counted")
	}
}

// TestWarningKind: the kind label of podgrace_warnings_total comes from the
// core's code, never from the text: a setting's problem is
// invalid-setting, everything else the core says is about the mutation.
func TestWarningKind(t *testing.T) {
	t.Parallel()
	for _, c := range inject.WarningCodes {
		want := warnMutation
		if c == inject.WarnInvalidSetting {
			want = warnInvalidSetting
		}
		if got := warningKind(c); got != want {
			t.Errorf("warningKind(%s) = %s, want %s", c, got, want)
		}
	}
}

// TestEncodePatch: the handler's patch encoder writes what
// json.Marshal of the core's PatchOps writes.
func TestEncodePatch(t *testing.T) {
	t.Parallel()
	ops := []inject.PatchOp{
		{Operation: "add", Path: "/spec/containers/0/lifecycle", Value: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 15}}}},
		{Operation: "add", Path: "/spec/terminationGracePeriodSeconds", Value: int64(20)},
		{Operation: "remove", Path: "/spec/containers/0/args"},
		{Operation: "add", Path: "/metadata/annotations/podgrace.dev~1status", Value: `{"a":"<&>"}`},
		{Operation: "add", Path: "/metadata/annotations/podgrace.dev~1status", Value: `{"graceBefore":30,"containers":[{"name":"a\\b"}]}`},
		{Operation: "add", Path: "/metadata/annotations/x\"y\u00e9<", Value: nil},
		{Operation: "replace", Path: "/spec/containers/1/command", Value: []string{"sh", "-c", "exec a"}},
	}
	got, err := encodePatch(ops)
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("not JSON: %v: %s", err, got)
	}
	_ = json.Unmarshal(want, &w)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("encodePatch\n got %s\nwant %s", got, want)
	}
	if empty, _ := encodePatch(nil); string(empty) != "[]" {
		t.Errorf("no operations: %s", empty)
	}
}
