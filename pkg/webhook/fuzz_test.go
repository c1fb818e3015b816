package webhook

import (
	"encoding/json"
	"net/http"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/podgrace/podgrace/pkg/policy"
)

// FuzzHandler feeds arbitrary bodies to the handler. Whatever comes in, the
// answer is either a well-formed AdmissionReview response echoing the
// request's uid, whose patch applies to the request's object and leaves a
// pod that a second pass does not change, or an HTTP 4xx with a Status body.
// A 500 means a panic was recovered: a bug.
func FuzzHandler(f *testing.F) {
	seeds := []any{testPod()}
	withAnnotations := testPod()
	withAnnotations.Annotations = map[string]string{
		policy.AnnotationPreStopSleep:                                "abc",
		policy.ContainerAnnotation("app", policy.AnnotationExecForm): "off",
		policy.AnnotationExtendGrace:                                 "false",
		policy.AnnotationContainers:                                  "app,nope",
	}
	seeds = append(seeds, withAnnotations)
	short := testPod()
	grace := int64(3)
	short.Spec.TerminationGracePeriodSeconds = &grace
	short.Spec.Containers[0].Command = []string{"bash", "-ec", "trap 'exit 0' TERM; ./run & wait"}
	short.Spec.InitContainers = []corev1.Container{{Name: "side", Image: "side", Command: []string{"sh", "-c", "exec side"}, RestartPolicy: ptr(corev1.ContainerRestartPolicyAlways)}}
	seeds = append(seeds, short)
	hooked := testPod()
	hooked.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	hooked.Spec.Containers = append(hooked.Spec.Containers, corev1.Container{Name: "b", Image: "b", Args: []string{"x"}},
		corev1.Container{Name: "c", Image: "c", Command: []string{"/bin/sh", "-c", "echo $(HOME) $$HOME && nginx -g 'daemon off;'"}})
	seeds = append(seeds, hooked)
	for _, obj := range seeds {
		f.Add(reviewFor(f, obj, nil))
	}
	f.Add(reviewFor(f, testPod(), func(m map[string]any) { request(m)["operation"] = "UPDATE" }))
	f.Add(reviewFor(f, json.RawMessage(`{"metadata":{"annotations":{"podgrace.dev/status":"{"}},"spec":{"containers":[{"name":"a"}]}}`), nil))
	// null entries: the decoder makes a zero container of each, and a
	// patch into null does not apply.
	for _, obj := range []string{
		`{"metadata":{"namespace":"shop"},"spec":{"containers":[null]}}`,
		`{"metadata":{"namespace":"shop","name":"p"},"spec":{"containers":[null,{"name":"a","image":"a","command":["sh","-c","cd / && run"]}]}}`,
		`{"metadata":{"namespace":"shop","name":"p"},"spec":{"initContainers":[null],"containers":[{"name":"a","image":"a"}]}}`,
		`{"metadata":{"namespace":"shop","name":"p","annotations":null},"spec":{"containers":[{"name":"a","image":"a","lifecycle":null,"command":null}]}}`,
		`{"metadata":{"namespace":"shop","name":"p"},"spec":{"containers":[{"name":"a","image":"a","lifecycle":{"preStop":null}}]}}`,
	} {
		f.Add(reviewFor(f, json.RawMessage(obj), nil))
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":{}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"resource":{"version":"v1","resource":"pods"},"operation":"CREATE","object":{"spec":{"containers":null}}}}`))
	f.Add([]byte(`{`))
	f.Add([]byte(``))

	h := newTestHandler(nil, nil)
	strict := policy.Default()
	strict.Strict = true
	hs := newTestHandler(&strict, nil)
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, h := range []*Handler{h, hs} {
			checkAnswer(t, h, body)
		}
	})
}

func checkAnswer(t *testing.T, h *Handler, body []byte) {
	w := post(h, body, "application/json")
	if w.Code != http.StatusOK {
		if w.Code < 400 || w.Code >= 500 {
			t.Fatalf("HTTP %d (a recovered panic?): %s", w.Code, w.Body)
		}
		decodeStatus(t, w)
		return
	}
	var rev rawReview
	if err := decode(body, &rev); err != nil || rev.Request == nil {
		t.Fatalf("HTTP 200 for a body that is not a review: %v", err)
	}
	resp := decodeResponse(t, w, string(rev.Request.UID))
	if !resp.Allowed && (resp.Result == nil || resp.Result.Message == "") {
		t.Fatalf("denied without a message: %+v", resp)
	}
	if resp.Patch == nil {
		return
	}
	pod := applyPatch(t, rev.Request.Object, resp)
	// A second pass (reinvocation) over the patched pod changes nothing.
	again := reviewFor(t, pod, nil)
	w = post(h, again, "application/json")
	if second := decodeResponse(t, w, "0a1b2c"); second.Patch != nil {
		t.Fatalf("second pass patched again: %s\nfirst patch: %s", second.Patch, resp.Patch)
	}
}

func ptr[T any](v T) *T { return &v }
