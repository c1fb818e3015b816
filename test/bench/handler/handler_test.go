package handler_test

// Benchmarks of the full HTTP handler (docs/develop/performance.md) on realistic
// AdmissionReviews, with two baselines on the same bodies: the floor (decode
// the review, answer allowed) and controller-runtime's defaulter path. The
// bodies are test/bench/testdata/reviews/*.json, written by benchReviews;
// refresh them with REFRESH_BENCH=true go test ./test/bench/handler -run TestBenchBodies.
//
//	go test ./test/bench/handler -run '^$' -bench 'Handler' -benchmem
//
// BenchmarkHandler/<pod>/<handler> are plain benchmarks (benchstat them);
// BenchmarkHandlerRatio/<pod> measures the handlers in alternating rounds in
// the same run and reports podgrace/floor, podgrace/defaulter and
// podgrace/floor-v2 (a floor decoding with podgrace's faster JSON engine),
// which stay meaningful on a busy, shared machine.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
	"github.com/podgrace/podgrace/pkg/webhook"
	"github.com/podgrace/podgrace/test/bench/baseline"
)

// benchNamespace is the namespace of every bench review; test/bench creates
// it before replaying them against a real server.
const benchNamespace = "bench"

// benchPods are the pods benchmarked, each with exec-form commands (podgrace
// adds the preStop sleeps and its status annotation) and, as <name>-rewrite,
// with shell-form ones (podgrace also rewrites every command).
var benchPods = []struct {
	name string
	pod  func(shell bool) *corev1.Pod
}{
	{"small", smallPod},
	{"typical", typicalPod},
	{"large", largePod},
}

// benchReviews returns the bench bodies by file name (without .json), as the
// API server would send them.
func benchReviews(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range benchPods {
		for _, shell := range []bool{false, true} {
			name := p.name
			if shell {
				name += "-rewrite"
			}
			out[name] = reviewOf(t, p.pod(shell), name)
		}
	}
	return out
}

// benchCases lists the bodies in benchmark order.
func benchCases() []string {
	var out []string
	for _, p := range benchPods {
		out = append(out, p.name, p.name+"-rewrite")
	}
	return out
}

// reviewOf wraps pod in an AdmissionReview for a CREATE by a Deployment's
// ReplicaSet controller, shaped like the API server's.
func reviewOf(t testing.TB, pod *corev1.Pod, name string) []byte {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	opts, err := json.Marshal(&metav1.CreateOptions{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "CreateOptions"}})
	if err != nil {
		t.Fatal(err)
	}
	gvk := metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}
	gvr := metav1.GroupVersionResource{Version: "v1", Resource: "pods"}
	rev := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:             types.UID("5f0c6a52-2f0e-4b6f-9c1e-" + fmt.Sprintf("%012x", len(name))),
			Kind:            gvk,
			Resource:        gvr,
			RequestKind:     &gvk,
			RequestResource: &gvr,
			Namespace:       benchNamespace,
			Operation:       admissionv1.Create,
			UserInfo: authenticationv1.UserInfo{
				Username: "system:serviceaccount:kube-system:replicaset-controller",
				UID:      "8d3b1f2e-6a1c-4e0f-9a7b-3c2d1e0f9a8b",
				Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
			},
			Object:  runtimeapi.RawExtension{Raw: raw},
			DryRun:  ptr.To(false),
			Options: runtimeapi.RawExtension{Raw: opts},
		},
	}
	body, err := json.Marshal(&rev)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// podBase is a pod as the API server sends it to admission: created by a
// ReplicaSet, defaults applied, the service account token volume mounted.
func podBase(app string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: app + "-7d9f8c6b5d-",
			Namespace:    benchNamespace,
			Labels:       map[string]string{"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "shop", "pod-template-hash": "7d9f8c6b5d"},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "ReplicaSet", Name: app + "-7d9f8c6b5d",
				UID: "0b7c3f7e-1d2a-4c55-8f1e-2a9b7c6d5e4f", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: corev1.PodSpec{
			Volumes:                       []corev1.Volume{tokenVolume()},
			RestartPolicy:                 corev1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: ptr.To[int64](30),
			DNSPolicy:                     corev1.DNSClusterFirst,
			ServiceAccountName:            "default",
			DeprecatedServiceAccount:      "default",
			SecurityContext:               &corev1.PodSecurityContext{},
			SchedulerName:                 corev1.DefaultSchedulerName,
			Tolerations: []corev1.Toleration{
				{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
				{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
			},
			Priority:           ptr.To[int32](0),
			EnableServiceLinks: ptr.To(true),
			PreemptionPolicy:   ptr.To(corev1.PreemptLowerPriority),
		},
	}
}

// tokenVolume is the projected volume the ServiceAccount admission plugin adds.
func tokenVolume() corev1.Volume {
	return corev1.Volume{Name: "kube-api-access-x7k2p", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](420),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: ptr.To[int64](3607), Path: "token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		},
	}}}
}

// container is a defaulted container running argv, in exec form or, with
// shell, wrapped in `/bin/sh -c`.
func container(name, image string, argv []string, shell bool) corev1.Container {
	c := corev1.Container{
		Name:                     name,
		Image:                    image,
		Command:                  argv,
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		ImagePullPolicy:          corev1.PullIfNotPresent,
		VolumeMounts:             []corev1.VolumeMount{{Name: "kube-api-access-x7k2p", ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}},
	}
	if shell {
		c.Command = []string{"/bin/sh", "-c", strings.Join(argv, " ")}
	}
	return c
}

func resources(cpu, mem string) corev1.ResourceRequirements {
	return corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(mem)},
	}
}

func httpProbe(path string, port int, period int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(int32(port)), Scheme: corev1.URISchemeHTTP}},
		TimeoutSeconds:   1,
		PeriodSeconds:    period,
		SuccessThreshold: 1,
		FailureThreshold: 3,
	}
}

// smallPod is one container and nothing else (~1.5 KB).
func smallPod(shell bool) *corev1.Pod {
	p := podBase("hello")
	p.Spec.Containers = []corev1.Container{container("hello", "registry.example/hello:1.0", []string{"/hello", "--listen=:8080"}, shell)}
	return p
}

// typicalPod is a web app with a worker and a metrics exporter: env from
// values, secrets and the downward API, probes, resources, config and
// scratch volumes (~5 KB as the API server encodes it).
func typicalPod(shell bool) *corev1.Pod {
	p := podBase("shop-web")
	p.Annotations = map[string]string{
		"prometheus.io/scrape":                  "true",
		"prometheus.io/port":                    "9394",
		"kubectl.kubernetes.io/restartedAt":     "2026-11-20T09:14:02Z",
		"checksum/config":                       "4f1d2c3b5a6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708",
		"kubernetes.io/limit-ranger":            "LimitRanger plugin set: cpu request for container metrics",
		"podgrace.dev/prestop-sleep":            "auto",
		"cluster-autoscaler.kubernetes.io/safe": "true",
	}
	env := func(extra ...corev1.EnvVar) []corev1.EnvVar {
		return append([]corev1.EnvVar{
			{Name: "RAILS_ENV", Value: "production"},
			{Name: "RAILS_LOG_TO_STDOUT", Value: "1"},
			{Name: "DATABASE_URL", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "shop-db"}, Key: "url"}}},
			{Name: "REDIS_URL", Value: "redis://redis.shop.svc.cluster.local:6379/0"},
			{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}},
			{Name: "POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "status.podIP"}}},
		}, extra...)
	}
	mounts := func(c *corev1.Container, extra ...corev1.VolumeMount) {
		c.VolumeMounts = append(extra, c.VolumeMounts...)
	}

	web := container("web", "registry.example/shop/web:2026.11.3", []string{"bundle", "exec", "puma", "-C", "config/puma.rb"}, shell)
	web.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: 3000, Protocol: corev1.ProtocolTCP}}
	web.Env = env(corev1.EnvVar{Name: "WEB_CONCURRENCY", Value: "2"}, corev1.EnvVar{Name: "RAILS_MAX_THREADS", Value: "5"})
	web.Resources = resources("500m", "768Mi")
	web.ReadinessProbe = httpProbe("/up", 3000, 5)
	web.LivenessProbe = httpProbe("/up", 3000, 10)
	web.LivenessProbe.InitialDelaySeconds = 20
	web.SecurityContext = &corev1.SecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](1000), AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true)}
	mounts(&web,
		corev1.VolumeMount{Name: "config", MountPath: "/app/config/settings", ReadOnly: true},
		corev1.VolumeMount{Name: "tmp", MountPath: "/app/tmp"})

	worker := container("worker", "registry.example/shop/web:2026.11.3", []string{"bundle", "exec", "sidekiq", "-C", "config/sidekiq.yml"}, shell)
	worker.Env = env(corev1.EnvVar{Name: "SIDEKIQ_CONCURRENCY", Value: "10"})
	worker.Resources = resources("250m", "512Mi")
	worker.LivenessProbe = &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"bundle", "exec", "sidekiqmon", "ping"}}},
		TimeoutSeconds:   5,
		PeriodSeconds:    30,
		SuccessThreshold: 1,
		FailureThreshold: 3,
	}
	worker.SecurityContext = web.SecurityContext
	mounts(&worker,
		corev1.VolumeMount{Name: "config", MountPath: "/app/config/settings", ReadOnly: true},
		corev1.VolumeMount{Name: "tmp", MountPath: "/app/tmp"})

	metrics := container("metrics", "registry.example/prometheus/statsd-exporter:v0.28.0", []string{"/bin/statsd_exporter", "--statsd.mapping-config=/etc/statsd/mapping.yml", "--web.listen-address=:9394"}, shell)
	metrics.Ports = []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9394, Protocol: corev1.ProtocolTCP}, {Name: "statsd", ContainerPort: 9125, Protocol: corev1.ProtocolUDP}}
	metrics.Resources = resources("50m", "64Mi")
	metrics.ReadinessProbe = httpProbe("/metrics", 9394, 10)
	mounts(&metrics, corev1.VolumeMount{Name: "statsd-mapping", MountPath: "/etc/statsd", ReadOnly: true})

	p.Spec.Containers = []corev1.Container{web, worker, metrics}
	p.Spec.Volumes = append([]corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "shop-web-settings"}, DefaultMode: ptr.To[int32](420)}}},
		{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("1Gi"))}}},
		{Name: "statsd-mapping", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "statsd-mapping"}, DefaultMode: ptr.To[int32](420)}}},
	}, p.Spec.Volumes...)
	p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](45)
	p.Spec.ServiceAccountName, p.Spec.DeprecatedServiceAccount = "shop-web", "shop-web"
	return p
}

// largePod is 20 containers with 200 env vars each (~270 KB).
func largePod(shell bool) *corev1.Pod {
	p := podBase("batch")
	for i := range 20 {
		name := "step-" + strconv.Itoa(i)
		c := container(name, "registry.example/batch/step:3.2.1", []string{"/usr/local/bin/step", "--id=" + strconv.Itoa(i), "--queue=default"}, shell)
		c.Resources = resources("100m", "128Mi")
		for j := range 200 {
			c.Env = append(c.Env, corev1.EnvVar{Name: fmt.Sprintf("STEP_SETTING_%03d", j), Value: fmt.Sprintf("value-%d-%d-%s", i, j, strings.Repeat("x", 16))})
		}
		p.Spec.Containers = append(p.Spec.Containers, c)
	}
	return p
}

// committed says which bench bodies are kept in testdata/reviews for the load
// generator and test/bench; the large ones (280 KB each) are only generated.
func committed(name string) bool { return !strings.HasPrefix(name, "large") }

// TestBenchBodies keeps testdata/reviews equal to what benchReviews writes.
func TestBenchBodies(t *testing.T) {
	want := benchReviews(t)
	dir := filepath.Join("..", "testdata", "reviews")
	refresh := os.Getenv("REFRESH_BENCH") == "true"
	if refresh {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range benchCases() {
		t.Logf("%s: %d bytes", name, len(want[name]))
		if !committed(name) {
			continue
		}
		file := filepath.Join(dir, name+".json")
		if refresh {
			if err := os.WriteFile(file, want[name], 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(file)
		if err != nil || !bytes.Equal(got, want[name]) {
			t.Errorf("%s is stale or missing (%v): REFRESH_BENCH=true go test ./test/bench/handler -run TestBenchBodies", file, err)
		}
	}
}

// handler is one of the handlers benchmarked.
type handler struct {
	name string
	h    http.Handler
}

// handlers are the handlers benchmarked, on the default config, in the
// order they run: floor, podgrace, defaulter, floor-v2.
func handlers() []handler {
	// controller-runtime's loggers wait for a root logger; until one is set
	// every WithValues is kept, growing the heap the collector scans.
	ctrllog.SetLogger(logr.Discard())
	cfg := policy.Default()
	podgrace := &webhook.Handler{
		Config:     &cfg,
		HookAction: policy.HookSleep,
		// A namespace cache hit that holds no podgrace annotations.
		Namespaces: func(context.Context, string) (map[string]string, error) { return nil, nil },
		Log:        logr.Discard(),
	}
	return []handler{
		{"floor", baseline.Floor{}},
		{"podgrace", podgrace},
		{"defaulter", baseline.NewDefaulter(&cfg, policy.HookSleep)},
		{"floor-v2", baseline.FloorV2{}},
	}
}

// TestBaselines checks that the handlers are compared on equal terms: on
// every bench body podgrace mutates as intended, the defaulter's patch
// yields exactly podgrace's pod, and both floors allow without a patch.
func TestBaselines(t *testing.T) {
	t.Parallel()
	hs := handlers()
	floor, podgrace, defaulter, floorV2 := hs[0].h, hs[1].h, hs[2].h, hs[3].h
	for name, body := range benchReviews(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var orig admissionv1.AdmissionReview
			if err := json.Unmarshal(body, &orig); err != nil {
				t.Fatal(err)
			}
			rawPod := orig.Request.Object.Raw

			pg := serve(t, podgrace, body)
			if !pg.Allowed || pg.PatchType == nil || len(pg.Warnings) > 0 {
				t.Fatalf("podgrace: allowed %v, patch type %v, warnings %q", pg.Allowed, pg.PatchType, pg.Warnings)
			}
			pgPod := applyPatch(t, rawPod, pg.Patch)
			var st inject.Status
			if err := json.Unmarshal([]byte(pgPod.Annotations[policy.AnnotationStatus]), &st); err != nil {
				t.Fatal(err)
			}
			rewrite := strings.HasSuffix(name, "-rewrite")
			for _, r := range st.Containers {
				if r.PreStopSleep == 0 || (r.ExecForm != "") != rewrite {
					t.Errorf("container %s: %+v (rewrite case %v)", r.Name, r, rewrite)
				}
			}

			df := serve(t, defaulter, body)
			if !df.Allowed || df.PatchType == nil {
				t.Fatalf("defaulter: allowed %v, patch type %v, result %+v", df.Allowed, df.PatchType, df.Result)
			}
			if dfPod := applyPatch(t, rawPod, df.Patch); !reflect.DeepEqual(dfPod, pgPod) {
				t.Errorf("the defaulter's pod differs from podgrace's:\n%s\n%s", mustJSON(t, dfPod), mustJSON(t, pgPod))
			}

			for _, f := range []http.Handler{floor, floorV2} {
				if fl := serve(t, f, body); !fl.Allowed || fl.Patch != nil || fl.UID != orig.Request.UID {
					t.Errorf("floor %T: %+v", f, fl)
				}
			}
		})
	}
}

func serve(t *testing.T, h http.Handler, body []byte) *admissionv1.AdmissionResponse {
	t.Helper()
	w := newDiscard()
	var buf bytes.Buffer
	w.out = &buf
	h.ServeHTTP(w, newReq(body))
	if w.code != 0 && w.code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", w.code, buf.Bytes())
	}
	var rev admissionv1.AdmissionReview
	if err := json.Unmarshal(buf.Bytes(), &rev); err != nil || rev.Response == nil {
		t.Fatalf("not an AdmissionReview response (%v): %s", err, buf.Bytes())
	}
	return rev.Response
}

func applyPatch(t *testing.T, raw, patch []byte) *corev1.Pod {
	t.Helper()
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(out, &pod); err != nil {
		t.Fatal(err)
	}
	return &pod
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// discard is a ResponseWriter that keeps nothing but the status (or copies
// the body into out), so the benchmarks time the handlers, not a recorder.
type discard struct {
	h    http.Header
	code int
	n    int
	out  *bytes.Buffer
}

func newDiscard() *discard { return &discard{h: http.Header{}} }

func (w *discard) Header() http.Header { return w.h }
func (w *discard) WriteHeader(code int) {
	w.code = code
}

func (w *discard) Write(p []byte) (int, error) {
	w.n += len(p)
	if w.out != nil {
		w.out.Write(p)
	}
	return len(p), nil
}

func (w *discard) reset() {
	clear(w.h)
	w.code, w.n = 0, 0
}

// body is a request body that can be rewound without allocating.
type body struct{ bytes.Reader }

func (*body) Close() error { return nil }

// newReq is a POST of body as the API server sends it.
func newReq(b []byte) *http.Request {
	r, err := http.NewRequestWithContext(context.Background(), http.MethodPost, "https://podgrace.example"+webhook.Path+"?timeout=5s", http.NoBody)
	if err != nil {
		panic(err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json, */*")
	r.ContentLength = int64(len(b))
	rb := &body{}
	rb.Reset(b)
	r.Body = rb
	return r
}

// loop serves b n times on h, rewinding one request.
func loop(h http.Handler, b []byte, n int) {
	w := newDiscard()
	r := newReq(b)
	rb := r.Body.(*body)
	for range n {
		rb.Reset(b)
		w.reset()
		h.ServeHTTP(w, r)
		if w.code != 0 && w.code != http.StatusOK {
			panic(fmt.Sprintf("HTTP %d", w.code))
		}
	}
}

// BenchmarkHandler times each handler on each bench body.
func BenchmarkHandler(b *testing.B) {
	bodies := benchReviews(b)
	for _, name := range benchCases() {
		for _, h := range handlers() {
			b.Run(name+"/"+h.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(bodies[name])))
				loop(h.h, bodies[name], b.N)
			})
		}
	}
}

// BenchmarkHandlerRatio measures floor, podgrace, defaulter and floor-v2 in
// interleaved blocks (the order rotates every round) and reports the cost of
// an admission as CPU time: the process's CPU time over a block (the handler
// and the garbage collector it keeps busy) divided by the ops. A block is
// long enough to hold several GC cycles of the handler's own allocations, and
// no GC is forced between blocks: with short blocks each starting after a
// forced GC, whether a cycle fell inside a block depended on the process's
// heap at the time, and the same code measured 0.66× or 1.27× the floor from
// one invocation to the next. On a shared machine, wall time also counts
// whatever other processes take from this one; CPU time does not. podgrace/floor, podgrace/defaulter and podgrace/floor-v2 are the
// medians over the rounds of podgrace's CPU time per op divided by the
// other's in the same round: paired blocks cancel slow drifts (clock speed, cache pressure) and
// the median drops the rounds a burst hit. ns/op is podgrace's median wall
// time per op, cpu-ns/op its CPU time; B/op and allocs/op are podgrace's.
func BenchmarkHandlerRatio(b *testing.B) {
	const (
		target = 50 * time.Millisecond // a block's length
		budget = 6 * time.Second       // how long the rounds of a body take at most
	)
	bodies := benchReviews(b)
	hs := handlers() // floor, podgrace, defaulter, floor-v2
	for _, name := range benchCases() {
		b.Run(name, func(b *testing.B) {
			body := bodies[name]
			// Size each handler's block to about target, once warm: the
			// first calls build the decoders' per-type caches, and a block
			// sized on them would be a few ops long, each paying for
			// refilling the pools a GC empties.
			blocks := make([]int, len(hs))
			var round time.Duration // a round's estimated length
			for i, h := range hs {
				loop(h.h, body, 3)
				for n := 1; ; n *= 2 {
					start := time.Now()
					loop(h.h, body, n)
					if d := time.Since(start); d > target/4 {
						blocks[i] = max(1, int(float64(n)*float64(target)/float64(d)))
						round += max(target, d/time.Duration(n))
						break
					}
				}
			}
			// Up to 31 rounds, at least 11.
			rounds := min(31, max(11, int(budget/round)))
			wall := make([][]float64, len(hs))
			cpu := make([][]float64, len(hs))
			var allocs, bytesOp []float64
			var ms0, ms1 runtime.MemStats
			for r := range rounds {
				for k := range hs {
					i := (r + k) % len(hs)
					n := float64(blocks[i])
					runtime.ReadMemStats(&ms0)
					c0 := cpuTime(b)
					start := time.Now()
					loop(hs[i].h, body, blocks[i])
					d := time.Since(start)
					c := cpuTime(b) - c0
					runtime.ReadMemStats(&ms1)
					wall[i] = append(wall[i], float64(d)/n)
					cpu[i] = append(cpu[i], float64(c)/n)
					if hs[i].name == "podgrace" {
						allocs = append(allocs, float64(ms1.Mallocs-ms0.Mallocs)/n)
						bytesOp = append(bytesOp, float64(ms1.TotalAlloc-ms0.TotalAlloc)/n)
					}
				}
			}
			var toFloor, toDefaulter, toFloorV2 []float64
			for r := range rounds {
				toFloor = append(toFloor, cpu[1][r]/cpu[0][r])
				toDefaulter = append(toDefaulter, cpu[1][r]/cpu[2][r])
				toFloorV2 = append(toFloorV2, cpu[1][r]/cpu[3][r])
			}
			// b.N is not looped over: the rounds are the measurement.
			b.ReportMetric(median(wall[1]), "ns/op")
			b.ReportMetric(median(bytesOp), "B/op")
			b.ReportMetric(median(allocs), "allocs/op")
			for i, h := range hs {
				b.ReportMetric(median(cpu[i]), h.name+"-cpu-ns/op")
			}
			b.ReportMetric(median(toFloor), "podgrace/floor")
			b.ReportMetric(median(toDefaulter), "podgrace/defaulter")
			b.ReportMetric(median(toFloorV2), "podgrace/floor-v2")
		})
	}
}

// cpuTime is the CPU time this process has used, all threads.
func cpuTime(b *testing.B) time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ts.Nano())
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}
