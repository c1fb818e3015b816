package imageconfig

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/podgrace/podgrace/pkg/inject"
	"github.com/podgrace/podgrace/pkg/policy"
)

// OptionsFrom turns the cluster config's imageInspection section into
// Inspector options.
func OptionsFrom(c policy.ImageInspection) Options {
	// In the config a TTL of 0s means what it says, nothing is remembered;
	// in Options a zero field takes the default and a negative one disables.
	noneIfZero := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	o := Options{
		Timeout:            c.Timeout.Duration,
		TagTTL:             noneIfZero(c.TagTTL.Duration),
		ErrorTTL:           noneIfZero(c.ErrorTTL.Duration),
		MaxEntries:         c.CacheSize,
		CacheBytes:         c.CacheBytes.Value(),
		AllowedRegistries:  c.AllowedRegistries,
		DeniedRegistries:   c.DeniedRegistries,
		InsecureRegistries: c.InsecureRegistries,
	}
	for _, n := range c.DeniedNetworks {
		// policy.Config.Validate has refused anything else.
		if p, err := netip.ParsePrefix(n); err == nil {
			o.DeniedNetworks = append(o.DeniedNetworks, p)
		}
	}
	return o
}

// KeychainFunc gives the registry credentials a pod may use (its own and its
// ServiceAccount's imagePullSecrets, in the webhook). An error means
// anonymous access, and is reported with any lookup that then fails.
type KeychainFunc func(ctx context.Context, pod *corev1.Pod) (authn.Keychain, error)

// Lookup adapts the Inspector to the mutation core: it inspects a pod's
// images concurrently (each bounded by the Inspector's timeout, so the
// admission waits for the slowest one at most) and reports each outcome.
// keychain may be nil: anonymous access.
func (i *Inspector) Lookup(keychain KeychainFunc) inject.ImageLookup {
	return func(ctx context.Context, pod *corev1.Pod, images []string) map[string]inject.ImageInfo {
		var kc authn.Keychain
		var kcErr error
		if keychain != nil {
			kc, kcErr = keychain(ctx, pod)
		}
		platform := PlatformOf(pod)
		out := make(map[string]inject.ImageInfo, len(images))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, img := range images {
			wg.Go(func() {
				res, err := i.Inspect(ctx, Request{Image: img, Platform: platform, Keychain: kc})
				info := inject.ImageInfo{Entrypoint: res.Config.Entrypoint, Cmd: res.Config.Cmd, Pinned: res.Pinned, Err: err}
				if err != nil && kcErr != nil {
					info.Err = fmt.Errorf("%w (pull secrets unreadable: %w)", err, kcErr)
				}
				mu.Lock()
				out[img] = info
				mu.Unlock()
			})
		}
		wg.Wait()
		return out
	}
}

// PlatformOf is the platform a pod's nodeSelector pins (kubernetes.io/arch,
// kubernetes.io/os), or nil when it pins no architecture: then every linux
// platform of a multi-arch image must agree.
func PlatformOf(pod *corev1.Pod) *v1.Platform {
	arch := pod.Spec.NodeSelector[corev1.LabelArchStable]
	if arch == "" {
		return nil
	}
	return &v1.Platform{OS: pod.Spec.NodeSelector[corev1.LabelOSStable], Architecture: arch}
}
