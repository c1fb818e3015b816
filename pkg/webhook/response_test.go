package webhook

import (
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/randfill"
)

// marshalResponse is what encodeResponse must produce: encoding/json's bytes.
func marshalResponse(t testing.TB, resp *admissionv1.AdmissionResponse) []byte {
	t.Helper()
	b, err := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: reviewAPIVersion, Kind: reviewKind},
		Response: resp,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func checkEncodeResponse(t testing.TB, resp *admissionv1.AdmissionResponse) {
	t.Helper()
	got, err := encodeResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	if want := marshalResponse(t, resp); string(got) != string(want) {
		t.Fatalf("encodeResponse:\n got %s\nwant %s", got, want)
	}
}

func TestEncodeResponse(t *testing.T) {
	jp := admissionv1.PatchTypeJSONPatch
	for name, resp := range map[string]*admissionv1.AdmissionResponse{
		"allowed":           {UID: "u-1", Allowed: true},
		"denied, no status": {UID: "u-1"},
		"patch":             {UID: "u-1", Allowed: true, Patch: []byte(`[{"op":"add","path":"/a","value":1}]`), PatchType: &jp},
		"empty patch":       {UID: "u-1", Allowed: true, Patch: []byte{}, PatchType: &jp},
		"patch type only":   {UID: "u-1", Allowed: true, PatchType: &jp},
		"warnings": {UID: `needs "escaping" <&>`, Allowed: true, Patch: []byte{0, 1, 2, 0xff},
			Warnings: []string{"plain", "quote \" backslash \\ newline \n tab \t", "html <b>&</b>", "é ü 漢字", "bad utf8 \xff\xfe", "line sep \u2028 \u2029", ""}},
		"empty warnings": {UID: "u", Allowed: true, Warnings: []string{}},
		"denial": {UID: "u", Result: &metav1.Status{Status: metav1.StatusFailure, Code: 403, Reason: metav1.StatusReasonForbidden, Message: "no"},
			Warnings: []string{"w"}},
		"audit annotations": {UID: "u", Allowed: true, AuditAnnotations: map[string]string{"k": "v"}},
	} {
		t.Run(name, func(t *testing.T) { checkEncodeResponse(t, resp) })
	}
}

func FuzzEncodeResponse(f *testing.F) {
	f.Add("uid", true, []byte(`[{"op":"add"}]`), true, "warning", "second")
	f.Add("", false, []byte(nil), false, "", "")
	f.Add("\x00<>&\u2028", true, []byte{0xff}, true, "\xff\xfe", "\"\\")
	f.Fuzz(func(t *testing.T, uid string, allowed bool, patch []byte, withType bool, w1, w2 string) {
		resp := &admissionv1.AdmissionResponse{UID: types.UID(uid), Allowed: allowed, Patch: patch}
		if withType {
			pt := admissionv1.PatchTypeJSONPatch
			resp.PatchType = &pt
		}
		if w1 != "" || w2 != "" {
			resp.Warnings = []string{w1, w2}
		}
		checkEncodeResponse(t, resp)
	})
}

// TestEncodeResponseEveryField compares encodeResponse with encoding/json on
// responses with every field filled at random, half of them without the
// fields that take the encoding/json path: a field added to
// AdmissionResponse that the direct encoder does not write fails here.
func TestEncodeResponseEveryField(t *testing.T) {
	f := randfill.NewWithSeed(5).NilChance(0.2).NumElements(0, 3)
	for i := range 400 {
		var resp admissionv1.AdmissionResponse
		f.Fill(&resp)
		if i%2 == 0 {
			resp.Result, resp.AuditAnnotations = nil, nil
		}
		checkEncodeResponse(t, &resp)
	}
}
