package webhook

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// deploymentReview is a review of a Deployment whose template carries
// annotations, for operation op; old, when set, is the oldObject's.
func deploymentReview(t testing.TB, op string, ann, oldAnn map[string]string, replicas int) []byte {
	t.Helper()
	dep := func(ann map[string]string) map[string]any {
		return map[string]any{
			"apiVersion": "apps/v1", "kind": "Deployment",
			"metadata": map[string]any{"name": "web", "namespace": "shop"},
			"spec": map[string]any{"replicas": replicas, "template": map[string]any{
				"metadata": map[string]any{"annotations": ann},
				"spec": map[string]any{"containers": []any{map[string]any{
					"name": "app", "image": "registry.example/app:1", "command": []any{"sh", "-c", "bundle exec puma"},
				}}},
			}},
		}
	}
	return reviewFor(t, dep(ann), func(rev map[string]any) {
		req := request(rev)
		req["kind"] = map[string]any{"group": "apps", "version": "v1", "kind": "Deployment"}
		req["resource"] = map[string]any{"group": "apps", "version": "v1", "resource": "deployments"}
		req["operation"] = op
		req["name"] = "web"
		if oldAnn != nil {
			req["oldObject"] = dep(oldAnn)
		}
	})
}

func postWorkload(h http.Handler, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, WorkloadPath, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestWorkloadHandler: the pod path's warnings for a template, no patch
// ever; in strict mode a CREATE or a template change is denied, an UPDATE
// leaving the template alone (a scale) is allowed without warnings.
func TestWorkloadHandler(t *testing.T) {
	t.Parallel()
	bad := map[string]string{policy.AnnotationPreStopSleep: "abc"}
	const warning = `podgrace: podgrace.dev/prestop-sleep="abc" is not a duration, "auto" or "off"; using auto`
	h := &WorkloadHandler{Pods: newTestHandler(nil, nil)}
	resp := decodeResponse(t, postWorkload(h, deploymentReview(t, "CREATE", bad, nil, 1)), "0a1b2c")
	if !resp.Allowed || resp.Patch != nil || !slices.Contains(resp.Warnings, warning) {
		t.Errorf("CREATE: %+v", resp)
	}
	resp = decodeResponse(t, postWorkload(h, deploymentReview(t, "CREATE", nil, nil, 1)), "0a1b2c")
	if !resp.Allowed || len(resp.Warnings) != 0 {
		t.Errorf("clean CREATE: %+v", resp)
	}

	strictCfg := policy.Default()
	strictCfg.Strict = true
	strict := &WorkloadHandler{Pods: newTestHandler(&strictCfg, nil)}
	for _, c := range []struct {
		name    string
		body    []byte
		allowed bool
	}{
		{"create", deploymentReview(t, "CREATE", bad, nil, 1), false},
		{"template change", deploymentReview(t, "UPDATE", bad, map[string]string{}, 1), false},
		{"scale", deploymentReview(t, "UPDATE", bad, bad, 5), true},
		{"clean update", deploymentReview(t, "UPDATE", nil, bad, 1), true},
	} {
		resp := decodeResponse(t, postWorkload(strict, c.body), "0a1b2c")
		if resp.Allowed != c.allowed || resp.Patch != nil {
			t.Errorf("strict %s: allowed %v, want %v (%+v)", c.name, resp.Allowed, c.allowed, resp.Result)
		}
		if !c.allowed && !strings.Contains(resp.Result.Message, "pod template: podgrace: podgrace.dev/prestop-sleep=") {
			t.Errorf("strict %s: message %q", c.name, resp.Result.Message)
		}
		if c.name == "scale" && len(resp.Warnings) != 0 {
			t.Errorf("scale warned: %q", resp.Warnings)
		}
	}
	// Warn mode never denies.
	warnCfg := strictCfg
	warnCfg.Enforcement = policy.EnforcementWarn
	resp = decodeResponse(t, postWorkload(&WorkloadHandler{Pods: newTestHandler(&warnCfg, nil)}, deploymentReview(t, "CREATE", bad, nil, 1)), "0a1b2c")
	if !resp.Allowed {
		t.Errorf("warn mode denied: %+v", resp.Result)
	}
}

// TestWorkloadHandlerBadInput: malformed templates, unknown kinds and
// subresources are allowed with a warning, never denied, never a panic,
// strict mode or not.
func TestWorkloadHandlerBadInput(t *testing.T) {
	t.Parallel()
	strictCfg := policy.Default()
	strictCfg.Strict = true
	h := &WorkloadHandler{Pods: newTestHandler(&strictCfg, nil)}
	edits := map[string]func(map[string]any){
		"template not an object": func(rev map[string]any) {
			request(rev)["object"] = map[string]any{"spec": map[string]any{"template": 7}}
		},
		"no spec":     func(rev map[string]any) { request(rev)["object"] = map[string]any{"metadata": map[string]any{}} },
		"null object": func(rev map[string]any) { request(rev)["object"] = nil },
		"containers null": func(rev map[string]any) {
			request(rev)["object"] = map[string]any{"spec": map[string]any{"template": map[string]any{"spec": map[string]any{"containers": []any{nil}}}}}
		},
		"unknown kind": func(rev map[string]any) {
			request(rev)["kind"] = map[string]any{"group": "example.com", "version": "v1", "kind": "Job"}
		},
		"subresource": func(rev map[string]any) { request(rev)["subResource"] = "scale" },
		"delete":      func(rev map[string]any) { request(rev)["operation"] = "DELETE" },
	}
	for name, edit := range edits {
		body := deploymentReview(t, "CREATE", nil, nil, 1)
		var rev map[string]any
		if err := json.Unmarshal(body, &rev); err != nil {
			t.Fatal(err)
		}
		edit(rev)
		resp := decodeResponse(t, postWorkload(h, rawJSON(t, rev)), "0a1b2c")
		if !resp.Allowed || len(resp.Warnings) != 1 || !strings.HasPrefix(resp.Warnings[0], "podgrace: pod template not checked: ") {
			t.Errorf("%s: %+v", name, resp)
		}
	}
	if w := postWorkload(h, []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":`)); w.Code != http.StatusBadRequest {
		t.Errorf("truncated review: HTTP %d", w.Code)
	}
}

// FuzzWorkloadHandler: whatever the object, the handler answers (never a
// panic) and denies only in strict mode for an invalid setting.
func FuzzWorkloadHandler(f *testing.F) {
	f.Add([]byte(`{"spec":{"template":{"metadata":{"annotations":{"podgrace.dev/prestop-sleep":"abc"}},"spec":{"containers":[{"name":"a","command":["sh","-c","x &"]}]}}}}`))
	f.Add([]byte(`{"spec":{"template":null}}`))
	f.Add([]byte(`[]`))
	h := &WorkloadHandler{Pods: newTestHandler(nil, nil)}
	f.Fuzz(func(t *testing.T, obj []byte) {
		if !json.Valid(obj) {
			return
		}
		rev := map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": map[string]any{
			"uid": "u", "kind": map[string]any{"group": "apps", "version": "v1", "kind": "Deployment"},
			"resource":  map[string]any{"group": "apps", "version": "v1", "resource": "deployments"},
			"namespace": "shop", "operation": "CREATE", "object": json.RawMessage(obj),
		}}
		w := postWorkload(h, rawJSON(t, rev))
		if w.Code != http.StatusOK {
			return // an HTTP error is an answer too (fail open)
		}
		if resp := decodeResponse(t, w, "u"); !resp.Allowed {
			t.Fatalf("denied outside strict mode: %+v", resp.Result)
		}
	})
}

// TestEventOf: an event names the typo without the pod's name (so the
// recorder folds many pods into one Event); nothing to say is no event.
func TestEventOf(t *testing.T) {
	t.Parallel()
	p := testPod()
	p.Name = "web-abc"
	if _, ok := eventOf(p, nil, nil, ""); ok {
		t.Error("an event with nothing to say")
	}
	invalid := inject.Warning{Code: inject.WarnInvalidSetting, Message: `podgrace: podgrace.dev/prestop-sleep="abc" is not a duration, "auto" or "off"; using auto`}
	kept := inject.Warning{Code: inject.WarnShellFormKept, Message: "podgrace: app: shell-form command kept: trap"}
	ev, ok := eventOf(p, nil, []inject.Warning{kept, invalid}, "")
	if !ok || ev.reason != EventInvalidSetting || !slices.Equal(ev.messages, []string{invalid.Message, kept.Message}) || strings.Contains(strings.Join(ev.messages, ""), "web-abc") {
		t.Errorf("event %+v", ev)
	}
	ev, _ = eventOf(p, nil, []inject.Warning{kept}, "")
	if ev.reason != EventNotApplied {
		t.Errorf("reason %s", ev.reason)
	}
	ev, _ = eventOf(p, nil, nil, "podgrace: x (strict mode)")
	if ev.reason != EventDenied {
		t.Errorf("reason %s", ev.reason)
	}
}

// TestCertExpiryGauge: the gauge reads the serving certificate's NotAfter.
func TestCertExpiryGauge(t *testing.T) {
	dir := t.TempDir()
	watchCertExpiry(dir, "")
	if v := testutil.ToFloat64(certExpiry); v != 0 {
		t.Errorf("no certificate: %v, want 0", v)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	notAfter := time.Unix(1900000000, 0)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(1), NotAfter: notAfter}, &x509.Certificate{SerialNumber: big.NewInt(1)}, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tls.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(certExpiry); v != float64(notAfter.Unix()) {
		t.Errorf("expiry %v, want %v", v, notAfter.Unix())
	}
}
