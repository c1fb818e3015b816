package webhook

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/randfill"
)

// agreeFastSlow fails when decodeFast accepts data but decode rejects it or
// decodes it differently: the fast path must never change an answer.
func agreeFastSlow(t *testing.T, data []byte) (accepted bool) {
	t.Helper()
	var fast podReview
	if decodeFast(data, &fast) != nil {
		return false
	}
	var slow podReview
	if err := decode(data, &slow); err != nil {
		t.Fatalf("decodeFast accepts what decode rejects (%v):\n%s", err, data)
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("decodeFast and decode disagree:\nfast %+v\nslow %+v\non %s", fast.Request, slow.Request, data)
	}
	if fast.Request != nil && fast.Request.Object != nil && !reflect.DeepEqual(fast.Request.Object.pod(), slow.Request.Object.pod()) {
		t.Fatalf("the pods decodeFast and decode give differ:\n%s", data)
	}
	return true
}

// TestDecodeFastAgrees decodes random pods, wrapped in reviews, both ways:
// every field of a corev1.Pod filled with random values, including the ones
// podgrace skips, so that every type the decoders meet is exercised.
func TestDecodeFastAgrees(t *testing.T) {
	t.Parallel()
	f := randfill.NewWithSeed(7).NilChance(0.2).NumElements(0, 3).MaxDepth(12).Funcs(
		func(q *resource.Quantity, c randfill.Continue) {
			*q = *resource.NewQuantity(c.Int63n(1<<20), resource.DecimalSI)
		},
		func(v *intstr.IntOrString, c randfill.Continue) {
			if c.Intn(2) == 0 {
				*v = intstr.FromInt32(c.Int31n(65535))
			} else {
				*v = intstr.FromString(c.String(8))
			}
		},
		func(v *metav1.FieldsV1, _ randfill.Continue) { v.SetRawBytes([]byte(`{"f:spec":{}}`)) },
		func(v *runtime.RawExtension, _ randfill.Continue) { v.Raw = []byte(`{"a":[1,2.5,"x",null]}`) },
		func(v *metav1.Time, c randfill.Continue) { *v = metav1.Unix(c.Int63n(1<<31), 0) },
		func(v *metav1.MicroTime, c randfill.Continue) {
			*v = metav1.NewMicroTime(metav1.Unix(c.Int63n(1<<31), 0).Time)
		},
	)
	accepted := 0
	for i := range 300 {
		var p corev1.Pod
		f.Fill(&p)
		p.Namespace = "shop"
		raw, err := json.Marshal(&p)
		if err != nil {
			continue // a random value that does not encode
		}
		body := []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u` + string(rune('a'+i%26)) +
			`","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},` +
			`"namespace":"shop","operation":"CREATE","userInfo":{"username":"x","groups":["a","b"]},"dryRun":false,"object":` + string(raw) + `}}`)
		if agreeFastSlow(t, body) {
			accepted++
		}
	}
	if accepted < 200 {
		t.Fatalf("decodeFast accepted only %d random reviews: the fast path is not taken", accepted)
	}
}

// FuzzDecodeFast feeds arbitrary bodies to both decoders.
func FuzzDecodeFast(f *testing.F) {
	for _, dir := range []string{"../../test/bench/testdata/reviews", "testdata/fuzz/FuzzHandler"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*"))
		for _, file := range files {
			b, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			if strings.HasPrefix(string(b), "go test fuzz v1") {
				continue // the fuzzer reads its own corpus files
			}
			f.Add(b)
		}
	}
	for _, s := range []string{
		// Names differ only in case: both match case-sensitively.
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","Request":{"uid":"u"},"request":{"UID":"v","uid":"w","object":{"Metadata":{"name":"a"},"metadata":{"Name":"b","name":"c"}}}}`,
		// Duplicate names: the last wins, objects merge.
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":{"metadata":{"name":"a","annotations":{"x":"1"}},"metadata":{"annotations":{"y":"2"}}}},"request":{"namespace":"n"}}`,
		// Invalid UTF-8, escapes, numbers, nulls where values are expected.
		"{\"apiVersion\":\"admission.k8s.io/v1\",\"kind\":\"AdmissionReview\",\"request\":{\"uid\":\"\xff\\ud800\\u00e9\",\"dryRun\":null,\"object\":{\"spec\":{\"terminationGracePeriodSeconds\":1e3,\"containers\":null}}}}",
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":{"spec":{"terminationGracePeriodSeconds":-0,"containers":[{"name":"a","command":["sh",null],"env":[{"name":"X","value":1}]}]}}}}`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":{"spec":{"containers":[{"lifecycle":{"preStop":{"httpGet":{"port":"http"}}},"resources":{"limits":{"cpu":"x"}}}]}}}} trailing`,
		`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","object":{"metadata":{"creationTimestamp":"2026-01-02T03:04:05Z","annotations":{"a":null}},"spec":{"volumes":"not-a-list","enableServiceLinks":"true"}}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		agreeFastSlow(t, data)
	})
}
