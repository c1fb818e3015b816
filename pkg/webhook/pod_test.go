package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/randfill"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// TestAdmissionPodKeepsWhatTheCoreReads fills pods with random values in
// every field, shapes the fields podgrace acts on (names, commands, grace
// periods, podgrace annotations) and checks that the mutation of the pod as
// the handler decodes it (admissionPod, which skips subtrees) equals the
// mutation of the fully decoded pod: same patch, warnings, status, denial,
// and the same images asked for. If the core starts reading a skipped
// field, the random values there make the two differ.
func TestAdmissionPodKeepsWhatTheCoreReads(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewSource(1))
	f := randfill.NewWithSeed(1).NilChance(0.2).NumElements(0, 3).MaxDepth(12).Funcs(
		func(q *resource.Quantity, c randfill.Continue) {
			*q = *resource.NewQuantity(c.Int63n(1<<20), resource.DecimalSI)
		},
		func(v *intstr.IntOrString, c randfill.Continue) { *v = intstr.FromInt32(c.Int31n(65535)) },
		func(v *metav1.FieldsV1, _ randfill.Continue) { v.SetRawBytes([]byte(`{"f:spec":{}}`)) },
		func(v *runtime.RawExtension, c randfill.Continue) { v.Raw = []byte(`{}`) },
		func(v *metav1.Time, c randfill.Continue) { *v = metav1.Unix(c.Int63n(1<<31), 0) },
		func(v *metav1.MicroTime, c randfill.Continue) {
			*v = metav1.NewMicroTime(metav1.Unix(c.Int63n(1<<31), 0).Time)
		},
	)
	commands := [][]string{
		nil,
		{"sh", "-c", "bundle exec puma"},
		{"/bin/bash", "-ec", "echo $(HOME) && exec app --port=$(PORT)"},
		{"sh", "-c", "app --home=$(HOME)"},
		{"sh", "-c", "$(HOME)/bin/app serve"},
		{"bash", "-c", "app serve"},
		{"sh", "-c", "trap 'exit 0' TERM; ./run & wait"},
		{"dash", "-c", "cd /app && node server.js"},
		{"app", "--flag"},
	}
	sleeps := []string{"auto", "15s", "off", "abc", "90"}
	graces := []*int64{nil, ptr(int64(0)), ptr(int64(3)), ptr(int64(30)), ptr(int64(120))}
	cfg := policy.Default()
	strict := policy.Default()
	strict.Strict = true
	images := func(_ context.Context, _ *corev1.Pod, imgs []string) map[string]inject.ImageInfo {
		out := map[string]inject.ImageInfo{}
		for _, img := range imgs {
			out[img] = inject.ImageInfo{Entrypoint: []string{"sh", "-c"}, Cmd: []string{"exec-me " + img}, Pinned: img + "@sha256:0"}
		}
		return out
	}

	checked := 0
	for i := range 400 {
		var p corev1.Pod
		f.Fill(&p)
		p.Namespace = "shop"
		p.Spec.TerminationGracePeriodSeconds = graces[r.Intn(len(graces))]
		shape := func(cs []corev1.Container, prefix string, init bool) {
			for j := range cs {
				c := &cs[j]
				c.Name = fmt.Sprintf("%s%d", prefix, j)
				c.Image = fmt.Sprintf("img%d", r.Intn(3))
				c.Command = slices.Clone(commands[r.Intn(len(commands))])
				if r.Intn(2) == 0 {
					c.Args = nil
				}
				if r.Intn(2) == 0 {
					c.Lifecycle = nil
				}
				if r.Intn(2) == 0 {
					c.EnvFrom = nil
				}
				if r.Intn(2) == 0 {
					c.Env = append(c.Env, corev1.EnvVar{Name: "HOME", Value: "/home/app"}, corev1.EnvVar{Name: "BASH_ENV", Value: "/env"})
				}
				if init && r.Intn(2) == 0 {
					c.RestartPolicy = ptr(corev1.ContainerRestartPolicyAlways)
				}
			}
		}
		shape(p.Spec.Containers, "c", false)
		shape(p.Spec.InitContainers, "i", true)
		// Sidecars, their drains and run-to-completion pods.
		if len(p.Spec.Containers) > 1 && r.Intn(2) == 0 {
			p.Spec.Containers[1].Name = "istio-proxy"
		}
		p.Spec.RestartPolicy = []corev1.RestartPolicy{"", corev1.RestartPolicyAlways, corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure}[r.Intn(4)]
		if p.Annotations == nil {
			p.Annotations = map[string]string{}
		}
		switch r.Intn(3) {
		case 0:
			p.Annotations[policy.AnnotationIstioProxyConfig] = "terminationDrainDuration: 12s"
		case 1:
			p.Annotations[policy.AnnotationLinkerdWaitBeforeExit] = "7"
		}
		p.Annotations[policy.AnnotationPreStopSleep] = sleeps[r.Intn(len(sleeps))]
		if len(p.Spec.Containers) > 0 && r.Intn(2) == 0 {
			p.Annotations[policy.ContainerAnnotation("c0", policy.AnnotationExecForm)] = "off"
		}
		raw, err := json.Marshal(&p)
		if err != nil {
			continue // a random value that does not encode
		}
		var full corev1.Pod
		if err := decode(raw, &full); err != nil {
			t.Fatalf("case %d: full decode: %v", i, err)
		}
		var slim admissionPod
		if err := decode(raw, &slim); err != nil {
			t.Fatalf("case %d: admissionPod decode: %v", i, err)
		}
		for _, c := range []*policy.Config{&cfg, &strict} {
			for _, hook := range []policy.HookAction{policy.HookSleep, policy.HookExec} {
				var askedFull, askedSlim []string
				run := func(pod *corev1.Pod, asked *[]string) inject.Result {
					return inject.Pod(context.Background(), inject.PodInput{
						Pod: pod, NamespaceAnnotations: map[string]string{policy.AnnotationExtendGrace: "false"},
						Config: c, HookAction: hook,
						Images: func(ctx context.Context, pod *corev1.Pod, imgs []string) map[string]inject.ImageInfo {
							*asked = append(*asked, imgs...)
							return images(ctx, pod, imgs)
						},
					})
				}
				slimPod, err := slim.pod()
				if err != nil {
					t.Fatalf("case %d: %v", i, err)
				}
				want, got := run(&full, &askedFull), run(slimPod, &askedSlim)
				wantPatch, _ := json.Marshal(want.Patch)
				gotPatch, _ := json.Marshal(got.Patch)
				if string(wantPatch) != string(gotPatch) || !slices.Equal(want.Warnings, got.Warnings) ||
					want.Denied != got.Denied || !reflect.DeepEqual(want.Status, got.Status) || !slices.Equal(askedFull, askedSlim) {
					t.Fatalf("case %d: the mutation of admissionPod differs from the full pod's:\nfull %s %q %q\nslim %s %q %q\npod %s",
						i, wantPatch, want.Warnings, want.Denied, gotPatch, got.Warnings, got.Denied, raw)
				}
			}
		}
		checked++
	}
	if checked < 200 {
		t.Fatalf("only %d random pods encoded", checked)
	}
}

// TestAdmissionPodNullContainer: a `null` in a container list is refused on
// both decoders, and the handler admits such a pod unchanged with a warning:
// the core would see a zero container there, and its patch into null would
// not apply to the request's object (FuzzHandler found it).
func TestAdmissionPodNullContainer(t *testing.T) {
	t.Parallel()
	for _, data := range []string{
		`{"metadata":{"name":"p","namespace":"ns"},"spec":{"containers":[null,{"name":"a","command":["sh","-c","cd / && run"]}]}}`,
		`{"metadata":{"name":"p","namespace":"ns"},"spec":{"containers":[{"name":"a"}],"initContainers":[null]}}`,
	} {
		for name, dec := range map[string]func([]byte, any) error{"decode": decode, "decodeFast": decodeFast} {
			var p admissionPod
			if err := dec([]byte(data), &p); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if _, err := p.pod(); err == nil || !strings.Contains(err.Error(), "] is null") {
				t.Errorf("%s: pod() error %v, want a null container named", name, err)
			}
		}
		w := post(newTestHandler(nil, nil), reviewFor(t, json.RawMessage(data), nil), "application/json")
		resp := decodeResponse(t, w, "0a1b2c")
		if !resp.Allowed || resp.Patch != nil || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "is null") {
			t.Errorf("response %+v, want allowed unchanged with a warning naming the null container", resp)
		}
	}
}

// TestRequestController: the pod's ownerReferences, kept undecoded, give its
// controller when an Event asks for it, on both decoders; ownerReferences
// that do not decode give none, and the pod is still admitted as decoded.
func TestRequestController(t *testing.T) {
	pod := testPod()
	pod.OwnerReferences = []metav1.OwnerReference{
		{APIVersion: "v1", Kind: "ConfigMap", Name: "other", UID: "u1"},
		{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d4f8", UID: "u2", Controller: ptr(true)},
	}
	read := func(t *testing.T, body []byte) *admissionRequest {
		t.Helper()
		r := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		req, _, rerr := readReview(httptest.NewRecorder(), r, nil)
		if rerr != nil || req.PodErr != nil {
			t.Fatalf("readReview: %v %v", rerr, req.PodErr)
		}
		return req
	}
	body := reviewFor(t, pod, nil)
	for name, b := range map[string][]byte{
		"fast decoder": body,
		// A duplicate key: the fast decoder refuses it, decode takes it.
		"fallback decoder": bytes.Replace(body, []byte(`"uid":"0a1b2c"`), []byte(`"uid":"0a1b2c","uid":"0a1b2c"`), 1),
	} {
		t.Run(name, func(t *testing.T) {
			var fast podReview
			if fastOK := decodeFast(b, &fast) == nil; fastRejectsDuplicateNames && fastOK != (name == "fast decoder") {
				t.Fatalf("decodeFast accepted the body: %v; this case is for the %s", fastOK, name)
			}
			req := read(t, b)
			if len(req.Pod.OwnerReferences) != 0 {
				t.Errorf("the core's pod holds ownerReferences: %v", req.Pod.OwnerReferences)
			}
			c := req.controller()
			if c == nil || c.Kind != "ReplicaSet" || c.Name != "web-5d4f8" || c.UID != "u2" {
				t.Fatalf("controller = %+v, want ReplicaSet web-5d4f8", c)
			}
		})
	}
	bad := bytes.Replace(reviewFor(t, testPod(), nil), []byte(`"metadata":{`), []byte(`"metadata":{"ownerReferences":{"kind":7},`), 1)
	req := read(t, bad)
	if c := req.controller(); c != nil {
		t.Errorf("controller of undecodable ownerReferences = %+v, want none", c)
	}
}
