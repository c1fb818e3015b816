package webhook

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	utilptr "k8s.io/utils/ptr"

	"github.com/podgrace/podgrace/pkg/policy"
)

// nativeSleepSince is the first Kubernetes release with the native
// lifecycle sleep action on by default (PodLifecycleSleepAction: alpha 1.29,
// beta and on by default 1.30, GA 1.34). Used only when the dry-run probe
// cannot tell (see HookProbe).
var nativeSleepSince = utilversion.MajorMinor(1, 30)

// HookDecision is what hookAction auto resolved to, and why.
type HookDecision struct {
	Action policy.HookAction
	// Reason says how it was decided, for the start-up log.
	Reason string
	// ServerVersion is the API server's gitVersion ("" if not asked).
	ServerVersion string
	// Fallback is set when the probe could not tell and the version decided.
	Fallback bool
}

// HookProbe decides hookAction auto by asking the API server itself: a
// server-side dry-run create of a pod with a preStop sleep hook. The version
// number cannot tell, because the PodLifecycleSleepAction feature gate turns
// the action off on any release from 1.29 to 1.33 (docs/design.md §4). A
// dry run persists nothing and runs the admission chain, so it is the same
// answer a real pod would get.
type HookProbe struct {
	Client kubernetes.Interface
	// Namespace the probe pod is dry-run created in: podgrace's own (the
	// chart grants create on pods there, nowhere else).
	Namespace string
	// Attempts and Backoff bound the retries on transient errors (timeouts,
	// 429, 5xx, connection errors): Backoff doubles after each attempt.
	// Defaults: 6 attempts from 1 s (about 30 s in all).
	Attempts int
	Backoff  time.Duration
	Log      logr.Logger
}

// probeContainer is the container the probe pod names in errors.
const probeContainer = "probe"

// probePod is a pod that any admission policy should accept but for its
// preStop sleep: podgrace's own webhook skips it (opt-out label), and it
// meets the restricted Pod Security Standard and a quota that demands
// requests and limits.
func probePod(namespace string) *corev1.Pod {
	res := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("10m"),
		corev1.ResourceMemory: resource.MustParse("16Mi"),
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "podgrace-hookaction-probe-",
			Namespace:    namespace,
			Labels:       map[string]string{policy.LabelInject: policy.InjectDisabled},
		},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: utilptr.To(false),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   utilptr.To(true),
				RunAsUser:      utilptr.To[int64](65532),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:      probeContainer,
				Image:     "registry.k8s.io/pause:3.10",
				Resources: corev1.ResourceRequirements{Requests: res, Limits: res},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: utilptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				Lifecycle: &corev1.Lifecycle{
					PreStop: &corev1.LifecycleHandler{Sleep: &corev1.SleepAction{Seconds: 1}},
				},
			}},
		},
	}
}

// errInconclusive marks a probe whose answer says nothing about the sleep
// action (RBAC, another admission policy rejecting the pod, retries used up).
var errInconclusive = errors.New("inconclusive")

// Decide runs the probe. A definite answer (accepted with the sleep kept:
// sleep; rejected for the preStop hook, or accepted with the sleep dropped:
// exec) is final. An inconclusive one falls back to the server's version
// with the reason logged; only when the version cannot be read either does
// Decide fail.
func (p *HookProbe) Decide(ctx context.Context) (HookDecision, error) {
	var d HookDecision
	info, verr := p.Client.Discovery().ServerVersion()
	if verr == nil {
		d.ServerVersion = info.GitVersion
	}
	action, reason, err := p.probe(ctx)
	if err == nil {
		d.Action, d.Reason = action, reason
		return d, nil
	}
	if ctx.Err() != nil {
		return d, fmt.Errorf("webhook: hookAction auto: %w", ctx.Err())
	}
	if verr != nil {
		return d, fmt.Errorf("webhook: hookAction auto: the dry-run probe failed (%w) and the API server's version cannot be read: %w", err, verr)
	}
	d.Action, verr = HookActionFor(info)
	if verr != nil {
		return d, fmt.Errorf("webhook: hookAction auto: the dry-run probe failed (%w): %w", err, verr)
	}
	d.Fallback = true
	d.Reason = fmt.Sprintf("dry-run probe %v; chose by the API server's version %s instead", err, info.GitVersion)
	return d, nil
}

func (p *HookProbe) probe(ctx context.Context) (policy.HookAction, string, error) {
	attempts, backoff := p.Attempts, p.Backoff
	if attempts <= 0 {
		attempts = 6
	}
	if backoff <= 0 {
		backoff = time.Second
	}
	opts := metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldValidation: "Strict"}
	var last error
	var action policy.HookAction
	var reason string
	tries := 0
	err := wait.ExponentialBackoffWithContext(ctx, wait.Backoff{Duration: backoff, Factor: 2, Steps: attempts}, func(ctx context.Context) (bool, error) {
		if tries > 0 {
			p.Log.Info("hookAction auto: dry-run probe failed, retrying", "attempt", tries, "error", last.Error())
		}
		tries++
		got, err := p.Client.CoreV1().Pods(p.Namespace).Create(ctx, probePod(p.Namespace), opts)
		a, r, cerr := classifyProbe(got, err)
		if cerr == nil || !isTransient(err) {
			action, reason = a, r
			return true, cerr
		}
		last = err
		return false, nil
	})
	switch {
	case err == nil:
		return action, reason, nil
	case ctx.Err() != nil:
		return "", "", ctx.Err()
	case wait.Interrupted(err):
		return "", "", fmt.Errorf("%w: %d attempts failed, the last with: %w", errInconclusive, attempts, last)
	}
	return "", "", err
}

// classifyProbe reads the dry-run's outcome.
func classifyProbe(got *corev1.Pod, err error) (policy.HookAction, string, error) {
	if err == nil {
		if got != nil && len(got.Spec.Containers) > 0 && got.Spec.Containers[0].Lifecycle != nil &&
			got.Spec.Containers[0].Lifecycle.PreStop != nil && got.Spec.Containers[0].Lifecycle.PreStop.Sleep != nil {
			return policy.HookSleep, "the API server accepted a dry-run pod with a preStop sleep hook", nil
		}
		// A server with the feature gate off drops the field of a pod that
		// has another handler; ours has none, but be sure.
		return policy.HookExec, "the API server accepted a dry-run pod but dropped its preStop sleep hook", nil
	}
	if field, ok := rejectedHook(err); ok {
		return policy.HookExec, fmt.Sprintf("the API server rejected a dry-run pod's preStop sleep hook (%s: %s)", field, err), nil
	}
	return "", "", fmt.Errorf("%w: %w", errInconclusive, err)
}

// rejectedHook reports whether err rejects the probe's preStop hook: an
// Invalid with a cause on the hook (a server with the sleep action off drops
// the field, then finds the hook without a handler) or the strict decoder's
// unknown field (a server that predates it).
func rejectedHook(err error) (string, bool) {
	const hook = "spec.containers[0].lifecycle.preStop"
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return "", false
	}
	s := status.Status()
	if s.Details != nil && apierrors.IsInvalid(err) {
		for _, c := range s.Details.Causes {
			if strings.HasPrefix(c.Field, hook) {
				return c.Field, true
			}
		}
	}
	if apierrors.IsBadRequest(err) && strings.Contains(s.Message, `unknown field "`+hook+`.sleep"`) {
		return hook + ".sleep", true
	}
	return "", false
}

// isTransient reports whether a failed probe is worth repeating.
func isTransient(err error) bool {
	if err == nil {
		return false
	}
	if apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err) {
		return true
	}
	var status apierrors.APIStatus
	// Any other answer of the API server is final; no answer (connection
	// refused or reset, DNS, TLS handshake timeout) is worth another try.
	return !errors.As(err, &status)
}

// HookActionFor is the preStop action for an API server version: the native
// sleep from 1.30, exec below. It is the fallback when the dry-run probe is
// inconclusive. It reads gitVersion (v1.30.2, v1.30.2-eks-…) and falls back
// to major/minor ("1", "30+" on some managed clusters).
func HookActionFor(info *version.Info) (policy.HookAction, error) {
	v, err := utilversion.ParseGeneric(info.GitVersion)
	if err != nil {
		v, err = utilversion.ParseGeneric(strings.TrimSuffix(info.Major, "+") + "." + strings.TrimSuffix(info.Minor, "+"))
		if err != nil {
			return "", fmt.Errorf("webhook: cannot read the API server's version %q (major %q, minor %q)", info.GitVersion, info.Major, info.Minor)
		}
	}
	if v.AtLeast(nativeSleepSince) {
		return policy.HookSleep, nil
	}
	return policy.HookExec, nil
}
