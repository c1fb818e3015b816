package inject

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/podgrace/podgrace/pkg/policy"
)

// ImageLookup reads the configs of a pod's images. It is the only I/O the
// mutation needs, so the webhook and the CLI each pass their own (or none).
type ImageLookup func(ctx context.Context, pod *corev1.Pod, images []string) map[string]ImageInfo

// PodInput is what Pod needs: the pod, what stands for its namespace, the
// cluster config and how to read image configs.
type PodInput struct {
	Pod                  *corev1.Pod
	NamespaceAnnotations map[string]string
	Config               *policy.Config
	HookAction           policy.HookAction
	// Images may be nil: argvs that come from an image are then left alone.
	Images ImageLookup
	// LookupDeadline, when set, bounds the image lookup: it runs under a
	// context with this deadline, made only when there is a lookup (the
	// webhook's admission deadline; a timer per admission would cost every
	// pod).
	LookupDeadline time.Time
}

// Pod runs the whole mutation of one pod: resolve the policy, read the image
// configs the rewrite needs, mutate. It stops when ctx ends (the API server
// gave up on the admission, or its deadline passed): the Result then holds
// only Err, and no change may be applied.
func Pod(ctx context.Context, in PodInput) Result {
	if err := ctx.Err(); err != nil {
		return Result{Pod: in.Pod, Err: err}
	}
	pp := policy.Resolve(in.Config, in.NamespaceAnnotations, in.Pod)
	prev := ReadPrevious(in.Pod)
	var images map[string]ImageInfo
	denied := in.Config.Strict && len(pp.Problems) > 0
	if in.Images != nil && !denied {
		if need := ImagesNeeded(in.Pod, &pp, &prev); len(need) > 0 {
			images = lookup(ctx, in, need)
		}
	}
	if err := ctx.Err(); err != nil {
		return Result{Pod: in.Pod, Err: err}
	}
	return Mutate(Input{Pod: in.Pod, Policy: &pp, Config: in.Config, HookAction: in.HookAction, Images: images, Previous: &prev})
}

// lookup reads the image configs of need, under in.LookupDeadline if set.
func lookup(ctx context.Context, in PodInput, need []string) map[string]ImageInfo {
	if !in.LookupDeadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, in.LookupDeadline)
		defer cancel()
	}
	return in.Images(ctx, in.Pod, need)
}
