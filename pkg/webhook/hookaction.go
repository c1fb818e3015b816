package webhook

import (
	"fmt"
	"strings"

	utilversion "k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"

	"github.com/podgrace/podgrace/pkg/policy"
)

// nativeSleepSince is the first Kubernetes release with the native
// lifecycle sleep action on by default (PodLifecycleSleepAction: alpha 1.29,
// beta and on by default 1.30, GA 1.34). An older API server drops or
// rejects the field, so podgrace uses `exec: ["sleep", "S"]` there.
var nativeSleepSince = utilversion.MajorMinor(1, 30)

// resolveHookAction turns the configured hook action into sleep or exec. For
// auto it asks the API server its version once, at start: a webhook is
// restarted on every control plane upgrade that matters soon enough, and a
// version lookup per admission would cost a round trip.
func resolveHookAction(configured policy.HookAction, cfg *rest.Config) (policy.HookAction, string, error) {
	if configured != policy.HookAuto && configured != "" {
		return configured, "", nil
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return "", "", fmt.Errorf("webhook: discovery client: %w", err)
	}
	info, err := dc.ServerVersion()
	if err != nil {
		return "", "", fmt.Errorf("webhook: reading the API server's version for hookAction auto: %w", err)
	}
	hook, err := HookActionFor(info)
	return hook, info.GitVersion, err
}

// HookActionFor is the preStop action for an API server version: the native
// sleep from 1.30, exec below. It reads gitVersion (v1.30.2, v1.30.2-eks-…)
// and falls back to major/minor ("1", "30+" on some managed clusters).
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
