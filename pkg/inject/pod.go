package inject

import (
	"context"

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
			images = in.Images(ctx, in.Pod, need)
		}
	}
	if err := ctx.Err(); err != nil {
		return Result{Pod: in.Pod, Err: err}
	}
	return Mutate(Input{Pod: in.Pod, Policy: &pp, Config: in.Config, HookAction: in.HookAction, Images: images, Previous: &prev})
}
