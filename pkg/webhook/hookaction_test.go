package webhook

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/podgrace/podgrace/pkg/policy"
)

var podsGR = schema.GroupResource{Resource: "pods"}

// The API server's answers (as client-go returns them) and what each means.
// Their real forms are proven by test/integration on 1.29–1.37.
func TestClassifyProbe(t *testing.T) {
	t.Parallel()
	withSleep := probePod("ns")
	dropped := probePod("ns")
	dropped.Spec.Containers[0].Lifecycle = nil
	hookInvalid := apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "p", field.ErrorList{
		field.Required(field.NewPath("spec", "containers").Index(0).Child("lifecycle", "preStop"), "must specify a handler type"),
	})
	otherInvalid := apierrors.NewInvalid(schema.GroupKind{Kind: "Pod"}, "p", field.ErrorList{
		field.Invalid(field.NewPath("spec", "containers").Index(0).Child("image"), "x", "not allowed"),
	})
	unknown := apierrors.NewBadRequest(`Pod in version "v1" cannot be handled as a Pod: strict decoding error: unknown field "spec.containers[0].lifecycle.preStop.sleep"`)
	cases := []struct {
		name string
		got  *corev1.Pod
		err  error
		want policy.HookAction // "" = inconclusive
	}{
		{"accepted", withSleep, nil, policy.HookSleep},
		{"accepted but dropped", dropped, nil, policy.HookExec},
		{"hook invalid", nil, hookInvalid, policy.HookExec},
		{"unknown field", nil, unknown, policy.HookExec},
		{"another field invalid", nil, otherInvalid, ""},
		{"forbidden", nil, apierrors.NewForbidden(podsGR, "", errors.New("RBAC")), ""},
		{"webhook denied", nil, apierrors.NewBadRequest("admission webhook denied the request"), ""},
		{"unavailable", nil, apierrors.NewServiceUnavailable("etcd"), ""},
	}
	for _, tc := range cases {
		got, reason, err := classifyProbe(tc.got, tc.err)
		if got != tc.want || (tc.want == "") != errors.Is(err, errInconclusive) {
			t.Errorf("%s: %q %q %v; want %q", tc.name, got, reason, err, tc.want)
		}
	}
	if isTransient(apierrors.NewForbidden(podsGR, "", errors.New("x"))) || isTransient(hookInvalid) ||
		!isTransient(apierrors.NewServiceUnavailable("x")) || !isTransient(apierrors.NewTooManyRequests("x", 1)) ||
		!isTransient(errors.New("dial tcp: connection refused")) || !isTransient(apierrors.NewInternalError(errors.New("webhook call failed"))) {
		t.Error("isTransient misjudges")
	}
}

// fakeProbe answers the probe's creates with answers in turn.
func fakeProbe(t *testing.T, gitVersion string, answers ...error) (*HookProbe, *int) {
	t.Helper()
	cs := fake.NewClientset()
	cs.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &version.Info{GitVersion: gitVersion}
	calls := new(int)
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ca := a.(k8stesting.CreateActionImpl)
		if opts := ca.GetCreateOptions(); len(opts.DryRun) != 1 || opts.DryRun[0] != metav1.DryRunAll || ca.GetNamespace() != "podgrace" {
			t.Errorf("probe create not a dry run in podgrace's namespace: %+v in %q", opts, ca.GetNamespace())
		}
		i := *calls
		*calls++
		if i < len(answers) && answers[i] != nil {
			return true, nil, answers[i]
		}
		return true, ca.GetObject(), nil
	})
	return &HookProbe{Client: cs, Namespace: "podgrace", Attempts: 3, Backoff: time.Millisecond, Log: logr.Discard()}, calls
}

func TestHookProbeRetries(t *testing.T) {
	t.Parallel()
	busy := apierrors.NewServiceUnavailable("busy")
	// Two transient errors, then the answer.
	p, calls := fakeProbe(t, "v1.29.15", busy, busy)
	d, err := p.Decide(context.Background())
	if err != nil || d.Action != policy.HookSleep || d.Fallback || *calls != 3 {
		t.Errorf("after two 503s: %+v %v, %d calls", d, err, *calls)
	}
	// Transient errors throughout: the version decides (1.29: exec).
	p, calls = fakeProbe(t, "v1.29.15", busy, busy, busy)
	d, err = p.Decide(context.Background())
	if err != nil || d.Action != policy.HookExec || !d.Fallback || *calls != 3 || !strings.Contains(d.Reason, "3 attempts") {
		t.Errorf("503 throughout: %+v %v, %d calls", d, err, *calls)
	}
	// A final, inconclusive answer is not retried.
	p, calls = fakeProbe(t, "v1.31.0", apierrors.NewForbidden(podsGR, "", errors.New("RBAC")))
	d, err = p.Decide(context.Background())
	if err != nil || d.Action != policy.HookSleep || !d.Fallback || *calls != 1 {
		t.Errorf("forbidden: %+v %v, %d calls", d, err, *calls)
	}
	// Canceled while waiting: an error, not a guess.
	p, _ = fakeProbe(t, "v1.31.0", busy, busy, busy)
	p.Backoff = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if d, err := p.Decide(ctx); err == nil {
		t.Errorf("canceled: %+v", d)
	}
}
func TestHookActionFor(t *testing.T) {
	t.Parallel()
	cases := []struct {
		info version.Info
		want policy.HookAction
	}{
		{version.Info{GitVersion: "v1.36.3"}, policy.HookSleep},
		{version.Info{GitVersion: "v1.30.0"}, policy.HookSleep},
		{version.Info{GitVersion: "v1.29.9"}, policy.HookExec},
		{version.Info{GitVersion: "v1.28.15-eks-7f9249a"}, policy.HookExec},
		{version.Info{GitVersion: "v1.31.2-gke.1200"}, policy.HookSleep},
		{version.Info{GitVersion: "garbage", Major: "1", Minor: "30+"}, policy.HookSleep},
		{version.Info{GitVersion: "", Major: "1", Minor: "27+"}, policy.HookExec},
	}
	for _, tc := range cases {
		got, err := HookActionFor(&tc.info)
		if err != nil || got != tc.want {
			t.Errorf("%+v: %q, %v; want %q", tc.info, got, err, tc.want)
		}
	}
	if _, err := HookActionFor(&version.Info{GitVersion: "x"}); err == nil {
		t.Error("an unreadable version gave no error")
	}
}
