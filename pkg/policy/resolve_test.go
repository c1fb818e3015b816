package policy

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func podWith(ann map[string]string, names ...string) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: ann}}
	for _, n := range names {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n})
	}
	return p
}

func TestResolvePrecedence(t *testing.T) {
	t.Parallel()
	cfg := Default()
	cfg.PreStopSleep = "7s"
	type want struct {
		sleep    string
		source   Source
		problems int
		fallback string
	}
	cases := map[string]struct {
		ns, pod map[string]string
		want    want
	}{
		"cluster":              {want: want{sleep: "7s", source: SourceCluster}},
		"namespace":            {ns: map[string]string{AnnotationPreStopSleep: "8s"}, want: want{sleep: "8s", source: SourceNamespace}},
		"pod over namespace":   {ns: map[string]string{AnnotationPreStopSleep: "8s"}, pod: map[string]string{AnnotationPreStopSleep: "9s"}, want: want{sleep: "9s", source: SourcePod}},
		"container over pod":   {pod: map[string]string{AnnotationPreStopSleep: "9s", "app." + AnnotationPreStopSleep: "off"}, want: want{sleep: "off", source: SourceContainer}},
		"bad namespace":        {ns: map[string]string{AnnotationPreStopSleep: "x"}, want: want{sleep: "7s", source: SourceCluster, problems: 1, fallback: "7s"}},
		"bad pod → namespace":  {ns: map[string]string{AnnotationPreStopSleep: "8s"}, pod: map[string]string{AnnotationPreStopSleep: "x"}, want: want{sleep: "8s", source: SourceNamespace, problems: 1, fallback: "8s"}},
		"bad container → pod":  {pod: map[string]string{AnnotationPreStopSleep: "9s", "app." + AnnotationPreStopSleep: "x"}, want: want{sleep: "9s", source: SourcePod, problems: 1, fallback: "9s"}},
		"bad everywhere":       {ns: map[string]string{AnnotationPreStopSleep: "x"}, pod: map[string]string{AnnotationPreStopSleep: "y", "app." + AnnotationPreStopSleep: "z"}, want: want{sleep: "7s", source: SourceCluster, problems: 3}},
		"other container only": {pod: map[string]string{"app." + AnnotationPreStopSleep: "3s", "worker." + AnnotationPreStopSleep: "4s"}, want: want{sleep: "3s", source: SourceContainer}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			pp := Resolve(&cfg, tc.ns, podWith(tc.pod, "app", "worker"))
			got := pp.Containers[0].Sleep
			if got.Value.String() != tc.want.sleep || got.Source != tc.want.source {
				t.Errorf("sleep = %s from %s, want %s from %s", got.Value, got.Source, tc.want.sleep, tc.want.source)
			}
			if len(pp.Problems) != tc.want.problems {
				t.Errorf("problems = %v, want %d", pp.Problems, tc.want.problems)
			}
			if tc.want.fallback != "" && (len(pp.Problems) == 0 || pp.Problems[0].Fallback != tc.want.fallback) {
				t.Errorf("fallback = %+v, want %q", pp.Problems, tc.want.fallback)
			}
		})
	}
}

func TestResolveWarningText(t *testing.T) {
	t.Parallel()
	cfg := Default()
	pp := Resolve(&cfg, nil, podWith(map[string]string{AnnotationPreStopSleep: "abc"}, "app"))
	want := `podgrace: podgrace.dev/prestop-sleep="abc" is not a duration, "auto" or "off"; using auto`
	if len(pp.Problems) != 1 || pp.Problems[0].String() != want {
		t.Fatalf("problems = %v, want %q (docs/design.md §3's example)", pp.Problems, want)
	}
}

func TestResolveSelection(t *testing.T) {
	t.Parallel()
	cfg := Default()
	always := corev1.ContainerRestartPolicyAlways
	pod := podWith(map[string]string{AnnotationContainers: "app,shipper,istio-proxy"}, "app", "istio-proxy", "cloud-sql-proxy", "worker")
	pod.Spec.InitContainers = []corev1.Container{{Name: "migrate"}, {Name: "shipper", RestartPolicy: &always}}
	pp := Resolve(&cfg, nil, pod)
	type got struct {
		skip   string
		role   Role
		listed bool
	}
	gots := map[string]got{}
	for _, c := range append(pp.InitContainers, pp.Containers...) {
		gots[c.Name] = got{c.Skip, c.Role, c.Listed}
	}
	want := map[string]got{
		"shipper":         {"", RoleNativeSidecar, false},
		"app":             {"", RoleApp, false},
		"istio-proxy":     {"", RoleSidecar, true},
		"cloud-sql-proxy": {SkipNotSelected, RoleSidecar, true},
		"worker":          {SkipNotSelected, RoleApp, false},
	}
	if len(gots) != len(want) {
		t.Fatalf("containers = %v, want %v (plain init containers are not listed)", gots, want)
	}
	for n, w := range want {
		if gots[n] != w {
			t.Errorf("%s: got %+v, want %+v", n, gots[n], w)
		}
	}
	if !pp.InitContainers[0].Init {
		t.Error("native sidecar not marked Init")
	}
}

func TestResolveUnknownKeys(t *testing.T) {
	t.Parallel()
	cfg := Default()
	pp := Resolve(&cfg,
		map[string]string{AnnotationContainers: "app", "app." + AnnotationPreStopSleep: "3s", "other.io/x": "y"},
		podWith(map[string]string{Prefix + "/prestop-seep": "1s", "ghost." + AnnotationExecForm: "on", "app." + Prefix + "/inject": "x", "example.com/keep": "1"}, "app"))
	var msgs []string
	for _, p := range pp.Problems {
		msgs = append(msgs, p.String())
	}
	all := strings.Join(msgs, "\n")
	for _, w := range []string{
		`podgrace.dev/prestop-seep="1s" is not a podgrace key`,
		`ghost.podgrace.dev/exec-form="on" names no container "ghost"`,
		`app.podgrace.dev/inject="x" is not a per-container podgrace key`,
		`podgrace.dev/containers="app" is only read on pods`,
		`app.podgrace.dev/prestop-sleep="3s" is only read on pods`,
	} {
		if !strings.Contains(all, w) {
			t.Errorf("missing problem %q in:\n%s", w, all)
		}
	}
	if len(pp.Problems) != 5 {
		t.Errorf("got %d problems, want 5:\n%s", len(pp.Problems), all)
	}
}

// TestKeysLevels derives from Keys: every annotation, set to its example at
// every level, changes the resolved policy and is not warned about exactly
// where Keys says it is read, and is warned about ("ignored") with no effect
// everywhere else; a label set as an annotation and typos are warned about.
func TestKeysLevels(t *testing.T) {
	t.Parallel()
	cfg := Default()
	ignored := func(pp PodPolicy, key string) bool {
		for _, p := range pp.Problems {
			if p.Key == key && strings.HasSuffix(p.Msg, "; ignored") {
				return true
			}
		}
		return false
	}
	resolve := func(lv Level, key, value string) PodPolicy {
		ann := map[string]string{key: value}
		if lv == OnNamespace {
			return Resolve(&cfg, ann, podWith(nil, "app", "worker"))
		}
		return Resolve(&cfg, nil, podWith(ann, "app", "worker"))
	}
	base := Resolve(&cfg, nil, podWith(nil, "app", "worker"))
	for _, k := range Keys {
		if k.Label {
			for _, lv := range []Level{OnNamespace, OnPod} {
				if pp := resolve(lv, k.Name, k.Example); !ignored(pp, k.Name) {
					t.Errorf("label %s set as an annotation (level %b) was not warned about: %v", k.Name, lv, pp.Problems)
				}
			}
			continue
		}
		for _, lv := range []Level{OnNamespace, OnPod, PerContainer} {
			key := k.Name
			if lv == PerContainer {
				key = ContainerAnnotation("app", k.Name)
			}
			pp := resolve(lv, key, k.Example)
			valid := k.Levels&lv != 0
			if got := ignored(pp, key); got == valid {
				t.Errorf("%s at level %b: warned %v, but Keys says valid = %v (problems %v)", key, lv, got, valid, pp.Problems)
			}
			for _, p := range pp.Problems {
				if p.Key == key && !strings.HasSuffix(p.Msg, "; ignored") {
					t.Errorf("Keys' example of %s is invalid: %v", key, p)
				}
			}
			pp.Problems = nil
			// Written keys are read by the core, not by Resolve.
			if changed := !reflect.DeepEqual(pp, base); changed != (valid && !k.Written) {
				t.Errorf("%s=%q at level %b: policy changed = %v, Keys says valid = %v", key, k.Example, lv, changed, valid)
			}
		}
	}
	for _, typo := range []string{Prefix + "/prestop-seep", ContainerAnnotation("app", AnnotationContainers)} {
		if pp := resolve(OnPod, typo, "x"); !ignored(pp, typo) {
			t.Errorf("%s was not warned about: %v", typo, pp.Problems)
		}
	}
}

// TestUnknownContainersInOrder: several names in podgrace.dev/containers
// that match no container are reported in name order, the same at every
// admission (they came out in map order).
func TestUnknownContainersInOrder(t *testing.T) {
	cfg := Default()
	pod := podWith(map[string]string{AnnotationContainers: "zeta,alpha,mu,kappa,beta"}, "app")
	for range 20 {
		var got []string
		for _, p := range Resolve(&cfg, nil, pod).Problems {
			got = append(got, p.Msg)
		}
		want := []string{`names no container "alpha"`, `names no container "beta"`, `names no container "kappa"`, `names no container "mu"`, `names no container "zeta"`}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("problems %q, want %q", got, want)
		}
	}
}
