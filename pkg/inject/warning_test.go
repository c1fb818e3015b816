package inject

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/podgrace/podgrace/pkg/policy"
)

// TestWarningCodes: each code of the core comes with the warning it names,
// and every code is reachable, so that metrics and Events, which read the
// code, never need the text.
func TestWarningCodes(t *testing.T) {
	t.Parallel()
	grace := func(s int64) *int64 { return &s }
	always := corev1.ContainerRestartPolicyAlways
	shell := []string{"sh", "-c", "trap 'echo bye' TERM; exec app"}
	cases := []struct {
		code     WarningCode
		contains string
		pod      corev1.Pod
		cfg      func(*policy.Config)
		images   map[string]ImageInfo
	}{
		{code: WarnInvalidSetting, contains: `podgrace.dev/prestop-sleep="abc"`, pod: corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{policy.AnnotationPreStopSleep: "abc"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Command: []string{"app"}}}},
		}},
		{code: WarnStatusReplaced, contains: "is not podgrace's JSON", pod: corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{policy.AnnotationStatus: "{"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Command: []string{"app"}}}},
		}},
		{code: WarnDrainIgnored, contains: policy.AnnotationLinkerdWaitBeforeExit, pod: corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{policy.AnnotationLinkerdWaitBeforeExit: "abc"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Command: []string{"app"}}, {Name: "linkerd-proxy"}}},
		}},
		{code: WarnNoSleep, contains: "no preStop sleep", cfg: func(c *policy.Config) { c.ExtendGrace = false }, pod: corev1.Pod{
			Spec: corev1.PodSpec{TerminationGracePeriodSeconds: grace(3), Containers: []corev1.Container{{Name: "app", Command: []string{"app"}}}},
		}},
		{code: WarnSleepShortened, contains: "shortened", cfg: func(c *policy.Config) { c.MaxGracePeriod.Duration = 40 * time.Second }, pod: corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{policy.AnnotationPreStopSleep: "60s"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Command: []string{"app"}}}},
		}},
		{code: WarnDrainShortened, contains: "leaves the sidecar", pod: corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
				policy.AnnotationExtendGrace: "false",
				policy.AnnotationStatus:      `{"v":1,"graceBefore":16,"graceAfter":16,"containers":[{"name":"app","preStopSleep":8,"hook":"sleep"}]}`,
			}},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: grace(16),
				InitContainers:                []corev1.Container{{Name: "istio-proxy", RestartPolicy: &always}},
				Containers: []corev1.Container{{Name: "app", Lifecycle: &corev1.Lifecycle{
					PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 8}},
				}}},
			},
		}},
		{code: WarnImageUnreadable, contains: "unreadable", images: map[string]ImageInfo{"app:1": {Err: errors.New("no such host")}}, pod: corev1.Pod{
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
		}},
		{code: WarnShellFormKept, contains: "shell-form command kept", pod: corev1.Pod{
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Command: shell}}},
		}},
	}
	seen := map[WarningCode]bool{}
	for _, tc := range cases {
		t.Run(string(tc.code), func(t *testing.T) {
			t.Parallel()
			cfg := policy.Default()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			tc.pod.Namespace = "ns"
			pp := policy.Resolve(&cfg, nil, &tc.pod)
			res := Mutate(Input{Pod: &tc.pod, Policy: &pp, Config: &cfg, HookAction: policy.HookSleep, Images: tc.images})
			if len(res.Warnings) != 1 {
				t.Fatalf("warnings %+v, want one", res.Warnings)
			}
			w := res.Warnings[0]
			if w.Code != tc.code || !strings.HasPrefix(w.Message, "podgrace: ") || !strings.Contains(w.Message, tc.contains) {
				t.Errorf("warning %+v, want code %s and a message containing %q", w, tc.code, tc.contains)
			}
		})
		seen[tc.code] = true
	}
	for _, c := range WarningCodes {
		if !seen[c] {
			t.Errorf("code %s has no case", c)
		}
	}
	if len(seen) != len(WarningCodes) || len(slices.Compact(slices.Sorted(slices.Values(WarningCodes)))) != len(WarningCodes) {
		t.Errorf("WarningCodes %v: not distinct, or a case's code is not listed", WarningCodes)
	}
}
